"""The alpha-0 rate as an experiment's summary reports it: fitted from the amplified alphas
(lda_core.extrapolate), beside alpha 0's own measurement. A few per-alpha cells: cheap enough for
every poll."""

from __future__ import annotations

from lda_core.extrapolate import estimate_alpha0
from lda_core.stats import wilson_interval


def alpha0_estimate(counts: dict[float, tuple[int, int]], alphas: list[float]) -> dict | None:
    """The alpha-0 rate fitted from the positive alphas' (n, activated), the fitted curve at every
    alpha of `alphas` (and 0), and alpha 0's own measurement where there is one; None until two
    positive alphas have completions."""
    try:
        estimate = estimate_alpha0([(alpha, n, activated) for alpha, (n, activated) in counts.items()])
    except (ValueError, ArithmeticError):  # too few positive alphas, or cells no polynomial can be fitted to
        return None
    at = sorted({0.0, *alphas})
    n, activated = counts.get(0.0, (0, 0))
    direct = None if n == 0 else {"n": n, "activated": activated, "rate": activated / n,
                                  "ci95": list(wilson_interval(activated, n))}
    return {
        "rate": estimate.rate, "ci95": list(estimate.ci95), "model": estimate.model,
        "alphas": list(estimate.alphas), "intercept": estimate.intercept, "slope": estimate.slope,
        "curvature": estimate.curvature,
        "fitted": [{"alpha": alpha, "rate": rate} for alpha, rate in zip(at, estimate.curve(at), strict=True)],
        "direct": direct,
    }
