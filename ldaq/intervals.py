"""Per alpha, the prompt-clustered interval beside the Wilson one.

The clustered interval is a bootstrap over prompts (lda_core.cluster_bootstrap): too dear for every
poll of a running experiment, so it is computed when asked for and cached until the experiment's
counts change.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from lda_core.cluster_bootstrap import prompt_clustered_interval
from lda_core.stats import wilson_interval
from ldaq.backend import Backend
from ldaq.experiments import require_detector, require_experiment
from ldaq.request_models import DEFAULT_DETECTOR
from ldaq.result_cache import ResultCache
from ldaq.tables import PromptTotal

CLUSTERED_RESAMPLES = 2000
CLUSTERED_SEED = 0  # fixed: the same counts give the same interval on every call and every server
CACHED_EXPERIMENTS = 256

_cache: ResultCache[dict] = ResultCache(CACHED_EXPERIMENTS)


def clustered_intervals(backend: Backend, experiment_id: str, detector: str = DEFAULT_DETECTOR) -> dict:
    """Per alpha: n, activations, the Wilson and the prompt-clustered 95% intervals, the design effect."""
    with backend.database.read() as session:
        experiment = require_experiment(session, experiment_id)
        require_detector(session, experiment, detector)
        key = (experiment_id, detector, experiment.completions_done)
        alphas = sorted(experiment.params["alphas"])
        return _cache.get_or_compute(key, lambda: _intervals(session, key, alphas))


def _intervals(session: Session, key: tuple[str, str, int], alphas: list[float]) -> dict:
    experiment_id, detector, completions_done = key
    rows = session.execute(
        select(PromptTotal.alpha, PromptTotal.n, PromptTotal.activated)
        .where(PromptTotal.experiment_id == experiment_id, PromptTotal.detector == detector)
        .order_by(PromptTotal.alpha, PromptTotal.prompt_index)
    ).all()
    per_prompt: dict[float, list[tuple[int, int]]] = defaultdict(list)
    for alpha, n, activated in rows:
        per_prompt[alpha].append((n, activated))
    return {
        "experiment_id": experiment_id, "detector": detector, "completions_done": completions_done,
        "resamples": CLUSTERED_RESAMPLES, "seed": CLUSTERED_SEED,
        "intervals": [_alpha_intervals(alpha, per_prompt.get(alpha, [])) for alpha in alphas],
    }


def _alpha_intervals(alpha: float, per_prompt: list[tuple[int, int]]) -> dict:
    n, activated = sum(count for count, _ in per_prompt), sum(hits for _, hits in per_prompt)
    clustered = prompt_clustered_interval(per_prompt, CLUSTERED_RESAMPLES, CLUSTERED_SEED) if per_prompt else None
    return {
        "alpha": alpha, "n": n, "activated": activated, "prompts": len(per_prompt),
        "rate": activated / n if n else None,
        "ci95_wilson": list(wilson_interval(activated, n)),
        "ci95_clustered": None if clustered is None else [clustered.low, clustered.high],
        "design_effect": None if clustered is None else clustered.design_effect,
    }
