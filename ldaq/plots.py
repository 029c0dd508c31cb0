"""The activation rate against alpha as a PNG, for `ldaq export --plot` and reports.

matplotlib is imported inside the function so that the API and the worker, which never plot,
do not pay for it at start-up.
"""

from __future__ import annotations


def _error_bars(summary: list[dict]) -> list[list[float]]:
    """matplotlib's asymmetric yerr, [[below...], [above...]], from each point's ci95 interval."""
    below = [max(point["rate"] - point["ci95"][0], 0.0) for point in summary]
    above = [max(point["ci95"][1] - point["rate"], 0.0) for point in summary]
    return [below, above]


def plot_rates(summary: list[dict], path: str, title: str = "") -> None:
    """Write rate against alpha with 95% interval error bars, one point per entry of `summary`.

    `summary` is the API's experiment summary: dicts with alpha, rate and ci95 = [low, high].
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    if not summary:
        raise ValueError("the summary is empty: nothing to plot")
    points = sorted(summary, key=lambda point: point["alpha"])
    # A bare Figure on the Agg canvas: no pyplot global state, safe from any thread.
    figure = Figure(figsize=(7, 4.5), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.errorbar(
        [point["alpha"] for point in points],
        [point["rate"] for point in points],
        yerr=_error_bars(points),
        fmt="-o",
        color="#4f46e5",
        ecolor="#818cf8",
        capsize=4,
        linewidth=1.8,
        markersize=6,
    )
    axes.set_xlabel("alpha")
    axes.set_ylabel("activation rate (95% interval)")
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    axes.set_ylim(bottom=-0.02)  # a hair below 0 so that points at rate 0 are not cut in half
    axes.grid(True, color="#e2e8f0")
    if title:
        axes.set_title(title)
    figure.savefig(path)
