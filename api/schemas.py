"""The REST contract as pydantic models: one source for validation, OpenAPI and serialization.

Request bodies are the service's own models (`ldaq.request_models`), used here as they are. Query
models are lax because query strings are text. Response models are what every view dumps, so a
response that drifts from the contract fails loudly in tests instead of in clients.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ldaq.request_models import DEFAULT_DETECTOR, DetectorSpec, ExperimentSettings
from ldaq.statuses import DetectionStatus, ExperimentStatus

MAX_PAGE_SIZE = 500
PageSize = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)]
# What an encoded cursor looks like (urlsafe base64); whether it decodes to a key is the server's check.
Cursor = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+={0,2}$", description="a next_cursor as handed out")]


class QueryModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ExperimentParams(ExperimentSettings):
    """The request as submitted, with defaults filled and chunk_size resolved.

    `prompts` is listed only when there are fewer than 1000 of them (the list pages through
    GET .../completions otherwise); `prompts_total` is always there.
    """

    model_config = ConfigDict(strict=False)

    chunk_size: int
    prompts_total: int
    prompts: list[str] | None = Field(None, exclude_if=lambda prompts: prompts is None)


class Progress(BaseModel):
    chunks_total: int
    chunks_done: int
    chunks_failed: int
    completions_total: int
    completions_done: int = Field(description="Rows stored, those that could not run included.")
    completions_errored: int = Field(
        description="Rows stored with finish_reason 'error' (they could not run): in completions_done, not in any rate's n."
    )


class AlphaSummaryOut(BaseModel):
    """Activation at one alpha; ci95 is the Wilson interval, [0, 1] while n is 0."""

    alpha: float
    n: int
    activated: int
    rate: float
    ci95: tuple[float, float]
    samples_for_95pct_detection: int | None


class DirectAlpha0Out(BaseModel):
    """Alpha 0 as measured: its Wilson interval."""

    n: int
    activated: int
    rate: float
    ci95: tuple[float, float]


class FittedRateOut(BaseModel):
    alpha: float
    rate: float


class Alpha0EstimateOut(BaseModel):
    """The alpha-0 rate fitted from the positive alphas only (alpha 0's own counts stay an independent check).

    logit(rate) is fitted as a quadratic in alpha (a line with only two alphas). Where the slope
    dies away faster than a quadratic bends, or the rate levels off low, the interval is confidently
    wrong: compare `fitted` with the measured rates and `direct`."""

    rate: float
    ci95: tuple[float, float] = Field(description="95% profile-likelihood interval of the alpha-0 rate")
    model: str = Field(description="the fitted model, in words")
    alphas: list[float] = Field(description="the positive alphas the fit used")
    intercept: float = Field(description="a in logit(rate) = a + b*alpha + c*alpha^2")
    slope: float = Field(description="b in logit(rate) = a + b*alpha + c*alpha^2")
    curvature: float = Field(description="c in logit(rate) = a + b*alpha + c*alpha^2; 0 for a line (two alphas)")
    fitted: list[FittedRateOut] = Field(description="the fitted rate at 0 and at every alpha of the request")
    direct: DirectAlpha0Out | None = Field(description="alpha 0 as measured, when the request has it and it has completions")


class AlphaReweightedOut(BaseModel):
    alpha: float
    n: int
    prompts: int
    activated: int
    rate: float = Field(description="this alpha's term: the mean of hit * alpha0_weight over its completions (the "
                                    "estimate is the terms' mean; an estimate alone only for own-alpha weights)")
    standard_error: float = Field(description="of this term, prompt-clustered")
    effective_hits: float = Field(description="Kish's effective sample size of the hits' weights: (sum w)^2 / sum w^2")


class Alpha0ReweightedOut(BaseModel):
    """The alpha-0 rate from the amplified completions themselves: each weighted by p_0(text) / mean_j p_j(text)
    over the experiment's positive alphas (multiple importance sampling with the balance heuristic: unbiased,
    no curve assumed), the estimate the mean over the alphas of each one's mean of hit * weight. Exact where
    top-p leaves out no token alpha 0 could sample."""

    rate: float | None = Field(description="null until the hits' effective sample size reaches 10")
    ci95: tuple[float, float] | None = Field(
        description="95%, prompt-clustered, symmetric on the 1/rate scale with Student's t at Satterthwaite's degrees "
                    "of freedom; its upper end is 1 where the data cannot bound it")
    alphas: list[float] = Field(description="the positive alphas pooled: those whose completions all carry a weight")
    alpha: float | None = Field(description="always null: the estimate pools every alpha in `alphas` (it came from "
                                            "one alpha before; kept for clients that read it)")
    effective_hits: float = Field(description="Kish's effective sample size of every alpha's hits' weights")
    model: str = Field(description="the estimator, in words")
    by_alpha: list[AlphaReweightedOut] = Field(description="each pooled alpha's term")


class ExperimentOut(BaseModel):
    id: str
    name: str
    status: ExperimentStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    params: ExperimentParams
    progress: Progress
    detector: str = Field(description='the detector the summary counts under ("default": the experiment\'s own)')
    summary: list[AlphaSummaryOut] = Field(description="one entry per alpha of the request, in increasing alpha")
    alpha0_estimate: Alpha0EstimateOut | None = Field(
        description="null until two positive alphas have completions"
    )
    alpha0_reweighted: Alpha0ReweightedOut | None = Field(
        description="null until a positive alpha has completions that all carry an alpha-0 weight (sampled, not "
        "greedy, and stored since weights were kept)"
    )


class AlphaIntervalsOut(BaseModel):
    alpha: float
    n: int
    activated: int
    prompts: int = Field(description="prompts with completions at this alpha")
    rate: float | None
    ci95_wilson: tuple[float, float] = Field(description="over completions: right when samples per prompt are few")
    ci95_clustered: tuple[float, float] | None = Field(
        description="a BCa bootstrap over prompts: right when samples per prompt are many and the prompts stand for "
        "more; null without completions, a point when no (or every) completion activated (read Wilson then)"
    )
    design_effect: float | None = Field(
        description="clustered over binomial variance: how many completions one independent one is worth"
    )


class ClusteredIntervalsOut(BaseModel):
    experiment_id: str
    detector: str
    completions_done: int = Field(description="the counts these intervals are of (cached until this changes)")
    resamples: int
    seed: int
    intervals: list[AlphaIntervalsOut] = Field(description="one entry per alpha of the request, in increasing alpha")


class ExperimentPage(BaseModel):
    items: list[ExperimentOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class ExperimentListQuery(QueryModel):
    status: ExperimentStatus | None = None
    limit: PageSize = 50
    cursor: Cursor | None = None


class CompletionOut(BaseModel):
    prompt_index: int
    prompt: str
    alpha: float
    sample_index: int
    text: str | None = Field(
        description='null when the row could not run, or when the experiment has keep_text "activated" and this one '
        "did not activate"
    )
    tokens: int
    finish_reason: Literal["eos", "length", "error"] = Field(
        description='"error" when the row could not run (see error): it counts in progress, not in any rate'
    )
    activated: bool
    match: str | None
    error: str | None = Field(description="why the row could not run; null for every row that ran")
    alpha0_weight: float | None = Field(
        description="p_0(text)/p_alpha(text): alpha 0's probability of this completion over that of the distribution "
        "it was sampled from (1 at alpha 0); the mean of activated * alpha0_weight over an alpha's completions "
        "estimates alpha 0's rate. null when greedy or stored before weights were kept"
    )


class CompletionPage(BaseModel):
    items: list[CompletionOut]
    next_cursor: str | None


DetectorName = Annotated[str, Field(min_length=1, max_length=100, description='a detector\'s name: "default" or a detection\'s (GET .../detections)')]


class DetectorQuery(QueryModel):
    detector: DetectorName = DEFAULT_DETECTOR


class ExperimentQuery(DetectorQuery):
    estimates: bool = Field(True, description=(
        "false: alpha0_estimate and alpha0_reweighted are left out (null). While an experiment runs its counts "
        "change with every commit, so each read fits both anew; a progress poll need not pay for that"))


class CompletionQuery(DetectorQuery):
    alpha: float | None = None
    activated: bool | None = Field(None, description="activated under `detector`")
    limit: PageSize = 100
    cursor: Cursor | None = None


class ExportQuery(DetectorQuery):
    format: Literal["jsonl", "csv"] = "jsonl"


class TokenExplanationOut(BaseModel):
    token: str = Field(description="the token's text, decoded alone")
    token_id: int
    logprob_before: float = Field(description="log-probability under the before-model (temperature 1)")
    logprob_after: float = Field(description="log-probability under the after-model (temperature 1)")
    logprob_sampled: float | None = Field(
        description="under the distribution it was drawn from: amplified, then temperature and top-p; null where "
        "float noise puts it just outside that distribution (a greedy near-tie)"
    )
    logit_difference: float = Field(description="after-minus-before logit of this token: what alpha multiplies")


class ExplanationOut(BaseModel):
    prompt_index: int
    alpha: float
    sample_index: int
    text: str = Field(description="the replayed completion")
    finish_reason: Literal["eos", "length"]
    stored_text: str | None = Field(description='the stored completion; null if not stored (yet, or keep_text "activated")')
    reproduces_stored: bool | None = Field(description="whether the replay's text equals the stored one")
    tokens: list[TokenExplanationOut] = Field(description="one per generated token (an ending EOS excluded)")


class DetectionOut(BaseModel):
    name: str
    detector: DetectorSpec
    status: DetectionStatus = Field(
        description='"default" is running while its experiment is, then succeeded; a detection: queued, running '
        "(completions_scanned says how far), succeeded or failed (see error)"
    )
    completions_scanned: int
    completions_total: int = Field(description="the experiment's completions that ran: what a scan reads")
    activated: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class DetectionList(BaseModel):
    items: list[DetectionOut] = Field(description='"default" first, then each detection, oldest first')


class ModelPairOut(BaseModel):
    name: str
    before: str
    after: str | None
    adapter: str | None


class ModelPairList(BaseModel):
    items: list[ModelPairOut]


class GenerateResponse(BaseModel):
    completions: list[str] = Field(description="one per prompt, in request order")


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str] = Field(description='"ok" per dependency: database, broker')


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable, e.g. invalid_request, unknown_model_pair, not_found")
    message: str
    details: dict


class ErrorResponse(BaseModel):
    error: ErrorBody
