"""The alpha-0 rate as an experiment's summary reports it: fitted from the amplified alphas
(lda_core.extrapolate), beside alpha 0's own measurement, and reweighted from the amplified
completions' alpha-0 weights (lda_core.reweight). The fit reads a few per-alpha cells; the reweighted
estimate reads one row per prompt and alpha, so it is cached until the experiment's counts change."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from lda_core.extrapolate import Alpha0Estimate, estimate_alpha0
from lda_core.reweight import AlphaWeights, PromptWeights, reweighted_alpha0
from lda_core.stats import summarize_alpha
from ldaq.result_cache import ResultCache
from ldaq.tables import Experiment, PromptTotal

FITS_REMEMBERED = 1024  # an unchanged experiment, polled or listed again, is not fitted again
_reweighted: ResultCache[dict | None] = ResultCache(FITS_REMEMBERED)


def alpha0_estimate(counts: dict[float, tuple[int, int]], alphas: list[float]) -> dict | None:
    """The alpha-0 rate fitted from the positive alphas' (n, activated), the fitted curve at every
    alpha of `alphas` (and 0), and alpha 0's own measurement where there is one; None until two
    positive alphas have completions."""
    estimate = _fit(tuple(sorted((alpha, n, activated) for alpha, (n, activated) in counts.items())))
    if estimate is None:
        return None
    at = sorted({0.0, *alphas})
    measured = summarize_alpha(0.0, *counts.get(0.0, (0, 0)))
    direct = None if measured.n == 0 else {"n": measured.n, "activated": measured.activated, "rate": measured.rate,
                                           "ci95": list(measured.ci95)}
    return {
        "rate": estimate.rate, "ci95": list(estimate.ci95), "model": estimate.model,
        "alphas": list(estimate.alphas), "intercept": estimate.intercept, "slope": estimate.slope,
        "curvature": estimate.curvature,
        "fitted": [{"alpha": alpha, "rate": rate} for alpha, rate in zip(at, estimate.curve(at), strict=True)],
        "direct": direct,
    }


@lru_cache(maxsize=FITS_REMEMBERED)
def _fit(cells: tuple[tuple[float, int, int], ...]) -> Alpha0Estimate | None:
    try:
        return estimate_alpha0(cells)
    except (ValueError, ArithmeticError):  # too few positive alphas, or cells no polynomial can be fitted to
        return None


def alpha0_reweighted(session: Session, experiment: Experiment, detector: str) -> dict | None:
    """The reweighted alpha-0 estimate (lda_core.reweight) under `detector`, from the positive alphas whose every
    completion carries a weight; None until one has completions. Cached until the counts change."""
    key = (experiment.id, detector, experiment.completions_done)
    return _reweighted.get_or_compute(key, lambda: _reweighted_view(session, experiment.id, detector))


def _reweighted_view(session: Session, experiment_id: str, detector: str) -> dict | None:
    rows = session.execute(
        select(PromptTotal.alpha, PromptTotal.prompt_index, PromptTotal.n, PromptTotal.activated, PromptTotal.weighed,
               PromptTotal.weighted_activated, PromptTotal.weighted_activated_sq)
        .where(PromptTotal.experiment_id == experiment_id, PromptTotal.detector == detector, PromptTotal.alpha > 0)
    ).all()
    per_alpha = defaultdict(list)
    for row in rows:
        per_alpha[row.alpha].append(row)
    # An alpha some of whose completions have no weight (greedy, or stored before weights were kept) is left out.
    cells = [
        AlphaWeights(alpha, [PromptWeights(row.prompt_index, row.n, row.weighted_activated) for row in prompts],
                     sum(row.activated for row in prompts), sum(row.weighted_activated for row in prompts),
                     sum(row.weighted_activated_sq for row in prompts))
        for alpha, prompts in sorted(per_alpha.items()) if all(row.weighed == row.n for row in prompts)
    ]
    if not cells:
        return None
    estimate = reweighted_alpha0(cells)
    return {
        "rate": estimate.rate, "ci95": None if estimate.ci95 is None else list(estimate.ci95),
        "alphas": list(estimate.alphas), "alpha": None, "effective_hits": estimate.effective_hits,
        "model": estimate.model, "by_alpha": [asdict(cell) for cell in estimate.by_alpha],
    }
