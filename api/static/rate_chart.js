// The activation rate against alpha with 95% interval error bars, drawn with plotly.js.
const ACCENT = "#4f46e5";

function alphaTicks(summary) {
  // A tick at each alpha reads best, until there are too many to label.
  const alphas = summary.map((point) => point.alpha);
  return alphas.length <= 12 ? { tickmode: "array", tickvals: alphas } : {};
}

export function renderRateChart(chart, summary) {
  // The plotted numbers, readable by tests and scripts without parsing the SVG.
  chart.dataset.alphas = JSON.stringify(summary.map((point) => point.alpha));
  chart.dataset.rates = JSON.stringify(summary.map((point) => point.rate));
  chart.dataset.ci95 = JSON.stringify(summary.map((point) => point.ci95));
  const trace = {
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
  const layout = {
    height: 340, margin: { l: 64, r: 24, t: 28, b: 48 },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fafafa",
    font: { family: getComputedStyle(document.body).fontFamily, size: 13, color: "#334155" },
    xaxis: { title: { text: "alpha" }, zeroline: false, gridcolor: "#e2e8f0", ...alphaTicks(summary) },
    yaxis: { title: { text: "activation rate" }, tickformat: ".0%", rangemode: "tozero", gridcolor: "#e2e8f0" },
  };
  Plotly.react(chart, [trace], layout, { displaylogo: false, responsive: true });
}
