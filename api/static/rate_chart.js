// The activation rate against alpha with 95% interval error bars, drawn with plotly.js, and the fitted
// alpha-0 model over it: the curve logit(rate) = a + b*alpha + c*alpha^2 and its alpha-0 estimate.
const ACCENT = "#4f46e5";
const FIT = "#d97706";
const CURVE_POINTS = 60;

function alphaTicks(summary) {
  // A tick at each alpha reads best, until there are too many to label.
  const alphas = summary.map((point) => point.alpha);
  return alphas.length <= 12 ? { tickmode: "array", tickvals: alphas } : {};
}

function measuredTrace(summary) {
  return {
    name: "measured",
    x: summary.map((point) => point.alpha),
    y: summary.map((point) => point.rate),
    customdata: summary.map((point) => [point.activated, point.n, ...point.ci95]),
    type: "scatter",
    mode: "lines+markers",
    cliponaxis: false, // a point at rate 0 sits on the axis, whole
    marker: { size: 9, color: ACCENT },
    line: { color: ACCENT, width: 2 },
    error_y: {
      type: "data", symmetric: false, color: ACCENT, thickness: 1.5, width: 6,
      array: summary.map((point) => point.ci95[1] - point.rate),
      arrayminus: summary.map((point) => point.rate - point.ci95[0]),
    },
    hovertemplate: "alpha %{x}<br>rate %{y:.1%} (%{customdata[0]} of %{customdata[1]})" +
      "<br>95% interval %{customdata[2]:.1%} – %{customdata[3]:.1%}<extra></extra>",
  };
}

export function fittedCurve(estimate, largestAlpha) {
  // [alpha, rate] from 0 to the largest alpha: the fit's own curve, not a line through its points.
  const points = [];
  for (let i = 0; i <= CURVE_POINTS; i += 1) {
    const alpha = (largestAlpha * i) / CURVE_POINTS;
    const logit = estimate.intercept + estimate.slope * alpha + estimate.curvature * alpha * alpha;
    points.push([alpha, 1 / (1 + Math.exp(-logit))]);
  }
  return points;
}

function fitTraces(estimate, largestAlpha) {
  const curve = fittedCurve(estimate, largestAlpha);
  return [
    {
      name: "fit", x: curve.map(([alpha]) => alpha), y: curve.map(([, rate]) => rate), type: "scatter",
      mode: "lines", line: { color: FIT, width: 2, dash: "dot" }, hoverinfo: "skip",
    },
    {
      name: "alpha-0 estimate", x: [0], y: [estimate.rate], type: "scatter", mode: "markers",
      marker: { size: 11, color: FIT, symbol: "diamond" }, cliponaxis: false,
      error_y: { type: "data", symmetric: false, color: FIT, thickness: 1.5, width: 8,
        array: [estimate.ci95[1] - estimate.rate], arrayminus: [estimate.rate - estimate.ci95[0]] },
      hovertemplate: `alpha-0 estimate %{y:.3%}<br>95% ${(100 * estimate.ci95[0]).toFixed(3)}% – ` +
        `${(100 * estimate.ci95[1]).toFixed(3)}%<br>${estimate.model}<extra></extra>`,
    },
  ];
}

export function renderRateChart(chart, summary, estimate = null, logScale = false) {
  // The plotted numbers, readable by tests and scripts without parsing the SVG.
  chart.dataset.alphas = JSON.stringify(summary.map((point) => point.alpha));
  chart.dataset.rates = JSON.stringify(summary.map((point) => point.rate));
  chart.dataset.ci95 = JSON.stringify(summary.map((point) => point.ci95));
  chart.dataset.scale = logScale ? "log" : "linear";
  const largest = Math.max(0, ...summary.map((point) => point.alpha));
  const traces = [measuredTrace(summary)];
  if (estimate) {
    traces.push(...fitTraces(estimate, largest));
    chart.dataset.alpha0Estimate = JSON.stringify([estimate.rate, ...estimate.ci95]);
  } else {
    delete chart.dataset.alpha0Estimate;
  }
  const yaxis = logScale
    ? { title: { text: "activation rate (log)" }, type: "log", tickformat: ".1~%", gridcolor: "#e2e8f0" }
    : { title: { text: "activation rate" }, tickformat: ".0%", rangemode: "tozero", gridcolor: "#e2e8f0" };
  const layout = {
    height: 340, margin: { l: 64, r: 24, t: 28, b: 48 },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fafafa", showlegend: Boolean(estimate),
    legend: { orientation: "h", y: 1.12 },
    font: { family: getComputedStyle(document.body).fontFamily, size: 13, color: "#334155" },
    xaxis: { title: { text: "alpha" }, zeroline: false, gridcolor: "#e2e8f0", ...alphaTicks(summary) },
    yaxis,
  };
  Plotly.react(chart, traces, layout, { displaylogo: false, responsive: true });
}
