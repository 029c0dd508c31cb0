"""The alpha-0 rate as an experiment's summary reports it: fitted from the amplified alphas
(lda_core.extrapolate), beside alpha 0's own measurement. A few per-alpha cells: cheap enough for
every poll."""

from __future__ import annotations

from functools import lru_cache

from lda_core.extrapolate import Alpha0Estimate, estimate_alpha0
from lda_core.stats import summarize_alpha

FITS_REMEMBERED = 1024  # an unchanged experiment, polled or listed again, is not fitted again


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
