"""A model's context window, read from its config: shared by the API's prompt check (no torch) and
the engine's own guard, so both refuse the same prompts."""

from __future__ import annotations

from collections.abc import Mapping

CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx")  # Llama-likes, GPT-2


def context_window(config: Mapping) -> int | None:
    """Positions the model can attend over, or None where its config does not say."""
    return next((config[key] for key in CONTEXT_KEYS if isinstance(config.get(key), int)), None)
