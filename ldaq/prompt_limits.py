"""Whether a pair can take the prompts asked of it: checked in the API, before the worker sees them.

For a pair on local paths the API reads the tokenizer (`tokenizers`, no torch) and `config.json`:
a prompt whose tokens plus `max_new_tokens` exceed the context window, or `chat_template: true`
on a tokenizer without one, is refused with the prompt's index. A pair named by hub id cannot be
read here, so its prompts get a character limit instead (`LDAQ_MAX_PROMPT_CHARS`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tokenizers import Tokenizer

from lda_core.context_window import context_window
from ldaq.errors import InvalidRequest
from ldaq.model_pairs import ModelPairSpec

CHAT_OVERHEAD_TOKENS = 64  # what a chat template adds around one user turn, at most, in the pairs we know


@dataclass(frozen=True)
class PairLimits:
    """What the API knows of a pair's tokenizer: None where the pair is not on a readable local path."""

    tokenizer: Tokenizer | None
    context_window: int | None
    has_chat_template: bool | None


def _tokenizer_dir(spec: ModelPairSpec) -> Path:
    return Path(spec.after or spec.before).expanduser()


def _has_chat_template(directory: Path) -> bool:
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    return bool(config.get("chat_template")) or (directory / "chat_template.jinja").is_file()


@cache
def _limits_of(directory: Path, modified: float) -> PairLimits:
    """Read once per directory and change (`modified` is the tokenizer file's mtime)."""
    config = json.loads((directory / "config.json").read_text())
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    return PairLimits(tokenizer, context_window(config), _has_chat_template(directory))


def pair_limits(spec: ModelPairSpec) -> PairLimits:
    """The pair's limits, or unknown ones for a hub id or a pair not built yet (the toy pair trains lazily)."""
    directory = _tokenizer_dir(spec)
    tokenizer_file, config_file = directory / "tokenizer.json", directory / "config.json"
    if not (tokenizer_file.is_file() and config_file.is_file()):
        return PairLimits(None, None, None)
    return _limits_of(directory, tokenizer_file.stat().st_mtime)


def check_prompts(
    spec: ModelPairSpec, prompts: list[str], template: str | None, chat_template: bool, max_new_tokens: int,
    max_prompt_chars: int,
) -> None:
    """Refuse prompts the pair cannot take (InvalidRequest naming the first one); pass the rest."""
    limits = pair_limits(spec)
    if chat_template and limits.has_chat_template is False:
        raise InvalidRequest(
            f"model pair {spec.name!r} has no chat template; use prompt_template instead",
            code="no_chat_template", details={"model_pair": spec.name},
        )
    if limits.tokenizer is None or limits.context_window is None:
        _check_characters(prompts, max_prompt_chars)
        return
    texts = [template.replace("{prompt}", prompt) if template else prompt for prompt in prompts]
    overhead = CHAT_OVERHEAD_TOKENS if chat_template else 0
    lengths = [len(encoding.ids) + overhead for encoding in limits.tokenizer.encode_batch(texts)]
    room = limits.context_window - max_new_tokens
    for index, tokens in enumerate(lengths):
        if tokens > room:
            raise InvalidRequest(
                f"prompts[{index}] is {tokens} tokens; with max_new_tokens {max_new_tokens} it exceeds the pair's "
                f"context window of {limits.context_window} tokens",
                code="prompt_too_long",
                details={"prompt_index": index, "prompt_tokens": tokens, "max_new_tokens": max_new_tokens,
                         "context_window": limits.context_window},
            )


def _check_characters(prompts: list[str], max_prompt_chars: int) -> None:
    for index, prompt in enumerate(prompts):
        if len(prompt) > max_prompt_chars:
            raise InvalidRequest(
                f"prompts[{index}] has {len(prompt)} characters; this server allows {max_prompt_chars} for a pair "
                "it cannot tokenize here (LDAQ_MAX_PROMPT_CHARS)",
                code="prompt_too_long",
                details={"prompt_index": index, "prompt_chars": len(prompt), "max_prompt_chars": max_prompt_chars},
            )
