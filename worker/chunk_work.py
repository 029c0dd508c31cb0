"""A claimed chunk, POST /generate or explain request as rows for the batch, and its completions as what the
ledger stores or the request is answered with. Pure conversions: no database, no threads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from transformers import PreTrainedTokenizerBase

from lda_core.explain import TokenExplanation
from lda_core.generate import Completion, GenerationSettings, Row
from lda_core.prompts import format_prompt
from ldaq.ledger import ChunkClaim
from ldaq.tables import storable
from worker.chunk_records import FinishedChunk, FinishedRow


def generation_settings(params: dict) -> GenerationSettings:
    """lda_core's GenerationSettings from stored request parameters (an experiment's or /generate's)."""
    return GenerationSettings(
        max_new_tokens=params["max_new_tokens"],
        temperature=params["temperature"],
        top_p=params["top_p"],
        seed=params["seed"],
        stop_at_eos=params["stop_at_eos"],
    )


def mixture_alphas(params: dict, alpha: float) -> tuple[float, ...]:
    """What an experiment's row at `alpha` is weighed against (`Row.mixture_alphas`): an amplified row, the
    mixture of the experiment's positive alphas, so that they all pool into one alpha-0 estimate
    (lda_core.reweight); any other row, its own alpha."""
    return tuple(sorted(a for a in params["alphas"] if a > 0)) if alpha > 0 else ()


@dataclass
class Work:
    """Rows of one chunk or request in the worker's hands: what they are, and what has come back."""

    tag: tuple[str, object]  # ("chunk", chunk id) or ("direct", request id): every row of it carries it
    rows: list[Row]  # the rows to generate
    expected: int  # completions it needs before it can be written, errors included
    claim: ChunkClaim | None = None  # for a chunk
    request: dict | None = None  # for a direct request
    done: list[Completion] = field(default_factory=list)
    claimed_at: float = 0.0
    explanation: list[TokenExplanation] | None = None  # an explain request's, once its row has run
    explanation_error: str | None = None
    first_started_at: float | None = None
    last_finished_at: float | None = None

    @property
    def complete(self) -> bool:
        return len(self.done) >= self.expected

    @property
    def retried(self) -> bool:
        """A chunk on its second attempt or later: its last run may have killed its worker."""
        return self.claim is not None and self.claim.attempt > 1

    @property
    def experiment_id(self) -> str | None:
        return self.claim.experiment_id if self.claim is not None else None


def _formatted(prompt: str, tokenizer: PreTrainedTokenizerBase, params: dict) -> str | Exception:
    """The prompt as the models see it, or why it could not be formatted (a chat template that fails on it)."""
    try:
        return format_prompt(prompt, tokenizer, params.get("prompt_template"), params.get("chat_template", False))
    except Exception as error:  # a template's own error, whatever its type: only this prompt's rows fail
        return error


def chunk_work(claim: ChunkClaim, tokenizer: PreTrainedTokenizerBase, claimed_at: float) -> Work:
    """A claimed chunk's rows, each with the experiment's settings; rows whose prompt cannot be
    formatted are already done, as error completions."""
    tag, settings = ("chunk", claim.chunk_id), generation_settings(claim.params)
    formatted = {index: _formatted(prompt, tokenizer, claim.params) for index, prompt in claim.prompts.items()}
    mixtures = {alpha: mixture_alphas(claim.params, alpha) for alpha in {row_id.alpha for row_id in claim.rows}}
    work = Work(tag, [], len(claim.rows), claim=claim, claimed_at=claimed_at)
    for row_id in claim.rows:
        prompt = formatted[row_id.prompt_index]
        row = Row(row_id.prompt_index, prompt if isinstance(prompt, str) else "", row_id.alpha, row_id.sample_index,
                  settings, tag, mixtures[row_id.alpha])
        if isinstance(prompt, str):
            work.rows.append(row)
        else:
            work.done.append(Completion.failed(row, f"prompt could not be formatted: {type(prompt).__name__}: {prompt}"))
    return work


def direct_work(request_id: str, request: dict, tokenizer: PreTrainedTokenizerBase, claimed_at: float) -> Work:
    """A POST /generate request's rows (its prompts as given, at one alpha, ending at EOS), or an explain
    request's one row: a stored completion's prompt, formatted as its experiment's were, and its identity."""
    if "explain" in request:
        return _explanation_work(request_id, request, tokenizer, claimed_at)
    tag, settings = ("direct", request_id), generation_settings({**request, "stop_at_eos": True})
    rows = [Row(i, prompt, float(request["alpha"]), 0, settings, tag) for i, prompt in enumerate(request["prompts"])]
    return Work(tag, rows, len(rows), request=request, claimed_at=claimed_at)


def _explanation_work(request_id: str, request: dict, tokenizer: PreTrainedTokenizerBase, claimed_at: float) -> Work:
    tag, params, which = ("direct", request_id), request["params"], request["explain"]
    prompt = _formatted(request["prompt"], tokenizer, params)
    row = Row(which["prompt_index"], prompt if isinstance(prompt, str) else "", float(which["alpha"]),
              which["sample_index"], generation_settings(params), tag)
    work = Work(tag, [], 1, request=request, claimed_at=claimed_at)
    if isinstance(prompt, str):
        work.rows.append(row)
    else:
        work.done.append(Completion.failed(row, f"prompt could not be formatted: {type(prompt).__name__}: {prompt}"))
    return work


def is_explanation(work: Work) -> bool:
    return work.request is not None and "explain" in work.request


def explanation_answer(work: Work) -> tuple[dict | None, str | None]:
    """The replayed completion with its tokens explained, or why there is none."""
    completion = work.done[0]
    if completion.error or work.explanation is None:
        return None, completion.error or work.explanation_error
    tokens = [{**asdict(token), "token": storable(token.token)} for token in work.explanation]
    return {"text": storable(completion.text), "finish_reason": completion.finish_reason, "tokens": tokens}, None


def direct_answer(work: Work) -> tuple[list[str] | None, str | None]:
    """The texts in prompt order, or why there are none: the first prompt that could not run."""
    done = sorted(work.done, key=lambda completion: completion.prompt_index)
    failed = next((completion for completion in done if completion.error), None)
    if failed is not None:
        return None, f"prompts[{failed.prompt_index}] could not run: {failed.error}"
    return [completion.text for completion in done], None


def finished_chunk(work: Work, now: float) -> FinishedChunk:
    """A chunk's ended rows as its commit needs them (`worker.record_store` pickles it to another process)."""
    rows = [FinishedRow(c.prompt_index, c.alpha, c.sample_index, c.text, c.tokens, c.finish_reason, c.error, c.log_weight)
            for c in work.done]
    model_seconds = (work.last_finished_at or 0.0) - (work.first_started_at or 0.0)
    return FinishedChunk(work.claim, rows, now - work.claimed_at, model_seconds)
