// The ldaq dashboard: polls the REST API and redraws. Everything shown comes from /api/v1.
import { renderRateChart } from "./rate_chart.js";

const API = document.body.dataset.api;
const POLL_MS = 2000;
const TOKEN_KEY = "ldaq.apiToken";
const LIST_LIMIT = 50;
const COMPLETIONS_PAGE = 100;
const COMPLETIONS_SHOWN = 500; // enough to read; the exports hold every row

const DEFAULT_DETECTOR = "default";

const state = {
  selectedId: new URLSearchParams(location.search).get("experiment"),
  detector: new URLSearchParams(location.search).get("detector") || DEFAULT_DETECTOR,
  logScale: new URLSearchParams(location.search).get("scale") === "log",
  completionsKey: null, // refetch activated completions and intervals only when this changes
  clustered: [], // per alpha, the prompt-resampled interval (null until fetched)
  explainOnLoad: parseRow(new URLSearchParams(location.search).get("explain")), // ?explain=prompt,alpha,sample
};

function parseRow(text) {
  const parts = (text || "").split(",").map(Number);
  if (parts.length !== 3 || parts.some(Number.isNaN)) return null;
  return { prompt_index: parts[0], alpha: parts[1], sample_index: parts[2] };
}

class ApiError extends Error {
  constructor(path, status) {
    super(status === 401 ? "the API needs a token" : `${path}: HTTP ${status}`);
    this.status = status;
  }
}

// ---- talking to the API -------------------------------------------------------------------

function authHeaders() {
  const token = localStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function apiFetch(path) {
  const response = await fetch(API + path, { headers: authHeaders() });
  if (!response.ok) throw new ApiError(path, response.status);
  return response;
}

async function getJson(path) {
  return (await apiFetch(path)).json();
}

async function postJson(path, body) {
  const response = await fetch(API + path, {
    method: "POST", headers: { ...authHeaders(), "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error ? answer.error.message : `${path}: HTTP ${response.status}`);
  return answer;
}

function experimentPath(id) {
  return `/experiments/${encodeURIComponent(id)}`;
}

function underDetector(query = {}) {
  // Every view of one experiment reads the chosen detector's results.
  return new URLSearchParams({ ...query, detector: state.detector });
}

async function activatedCompletions(id) {
  const rows = [];
  let cursor = null;
  do {
    const query = underDetector({ activated: "true", limit: COMPLETIONS_PAGE });
    if (cursor) query.set("cursor", cursor);
    const page = await getJson(`${experimentPath(id)}/completions?${query}`);
    rows.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && rows.length < COMPLETIONS_SHOWN);
  return rows;
}

// ---- small DOM helpers --------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // never innerHTML: completions are model output
  return node;
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el("td");
    td.append(cell);
    tr.append(td);
  }
  return tr;
}

function percent(value) {
  return value == null ? "–" : `${(100 * value).toFixed(1)}%`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "–";
}

function timeline(experiment) {
  const moments = [["created", experiment.created_at], ["started", experiment.started_at], ["finished", experiment.finished_at]];
  return moments.filter(([, iso]) => iso).map(([label, iso]) => `${label} ${when(iso)}`).join(" · ");
}

function showStatus(node, status) {
  node.className = `badge status-${status}`;
  node.textContent = status;
  return node;
}

function progressBar(progress) {
  const total = progress.completions_total || 0;
  const fraction = total ? progress.completions_done / total : 0;
  const bar = el("div", "progress");
  const fill = el("div", "progress-fill");
  fill.style.width = `${(100 * fraction).toFixed(1)}%`;
  bar.append(fill);
  const failed = progress.chunks_failed ? ` · ${progress.chunks_failed} failed` : "";
  const errored = progress.completions_errored ? ` (${progress.completions_errored} could not run)` : "";
  const label = el("div", "progress-label",
    `${progress.completions_done} / ${total} completions${errored} · ` +
    `${progress.chunks_done} / ${progress.chunks_total} chunks${failed}`);
  const troubled = progress.chunks_failed || progress.completions_errored;
  const wrapper = el("div", troubled ? "progress-block has-failures" : "progress-block");
  wrapper.append(bar, label);
  return wrapper;
}

// ---- the experiment list ------------------------------------------------------------------

function listItem(experiment) {
  const link = el("a", "experiment");
  link.href = `?experiment=${encodeURIComponent(experiment.id)}`;
  link.addEventListener("click", (event) => {
    event.preventDefault();
    history.pushState(null, "", link.href);
    select(experiment.id);
  });
  const title = el("div", "experiment-title");
  const name = el("span", "experiment-name", experiment.name || experiment.id.slice(0, 8));
  title.append(name, showStatus(el("span"), experiment.status));
  link.append(title, el("div", "meta", when(experiment.created_at)), progressBar(experiment.progress));
  const item = el("li");
  item.dataset.id = experiment.id;
  item.append(link);
  return item;
}

function markSelected() {
  for (const item of document.querySelectorAll("#experiment-list li")) {
    item.classList.toggle("selected", item.dataset.id === state.selectedId);
  }
}

function renderList(experiments) {
  document.getElementById("experiment-list").replaceChildren(...experiments.map(listItem));
  markSelected();
  document.getElementById("experiment-list-empty").hidden = experiments.length > 0;
}

// ---- one experiment -----------------------------------------------------------------------

function renderHead(experiment) {
  document.getElementById("detail-name").textContent = experiment.name || "unnamed experiment";
  document.getElementById("detail-id").textContent = experiment.id;
  document.getElementById("detail-times").textContent = timeline(experiment);
  showStatus(document.getElementById("detail-status"), experiment.status);
  document.getElementById("detail-progress").replaceChildren(progressBar(experiment.progress));
  const error = document.getElementById("detail-error");
  error.hidden = !experiment.error;
  error.textContent = experiment.error || "";
  for (const link of document.querySelectorAll(".exports a")) {
    link.href = `${API}${experimentPath(experiment.id)}/export?${underDetector({ format: link.dataset.format })}`;
    link.download = `${experiment.id}.${state.detector}.${link.dataset.format}`;
  }
}

function settingText(value) {
  if (value === null) return "–";
  if (Array.isArray(value)) return value.join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function renderSettings(params) {
  // The prompts themselves can be many; prompts_total counts them and the table shows them in use.
  const shown = Object.entries(params).filter(([key]) => key !== "prompts");
  const items = shown.flatMap(([key, value]) => [
    el("dt", "", key.replaceAll("_", " ")),
    el("dd", "", settingText(value)),
  ]);
  document.getElementById("settings").replaceChildren(...items);
}

function interval(bounds) {
  return bounds ? `${percent(bounds[0])} – ${percent(bounds[1])}` : "–";
}

function renderSummaryTable(summary) {
  const clustered = new Map(state.clustered.map((point) => [point.alpha, point.ci95_clustered]));
  const rows = summary.map((point) => {
    const tr = row([
      String(point.alpha), String(point.n), String(point.activated), percent(point.rate), interval(point.ci95),
      interval(clustered.get(point.alpha)),
      point.samples_for_95pct_detection == null ? "–" : String(point.samples_for_95pct_detection),
    ]);
    tr.dataset.clustered = JSON.stringify(clustered.get(point.alpha) ?? null);
    return tr;
  });
  document.getElementById("summary-body").replaceChildren(...rows);
}

function renderEstimate(estimate) {
  const node = document.getElementById("alpha0-estimate");
  node.hidden = !estimate;
  if (!estimate) return;
  const digits = (value) => `${(100 * value).toFixed(3)}%`;
  const direct = estimate.direct ? `; measured at alpha 0: ${digits(estimate.direct.rate)} of ${estimate.direct.n}` : "";
  node.textContent = `alpha-0 estimate: ${digits(estimate.rate)} [${digits(estimate.ci95[0])}, ` +
    `${digits(estimate.ci95[1])}] (${estimate.model})${direct}`;
}

function renderReweighted(reweighted) {
  const node = document.getElementById("alpha0-reweighted");
  node.hidden = !reweighted;
  if (!reweighted) return;
  const digits = (value) => `${(100 * value).toFixed(3)}%`;
  node.dataset.reweighted = JSON.stringify(reweighted.rate === null ? null : [reweighted.rate, ...reweighted.ci95]);
  node.textContent = reweighted.rate === null
    ? "alpha-0 reweighted: the hits' effective sample size has not reached 10 yet"
    : `alpha-0 reweighted: ${digits(reweighted.rate)} [${digits(reweighted.ci95[0])}, ${digits(reweighted.ci95[1])}] ` +
      `from alphas ${reweighted.alphas.join(", ")} (${reweighted.model})`;
}

function completionCell(completion) {
  // The detector's match, highlighted where it sits in the text.
  const cell = el("div", "completion-text");
  const at = completion.match ? completion.text.indexOf(completion.match) : -1;
  if (at < 0) {
    cell.textContent = completion.text;
    return cell;
  }
  const end = at + completion.match.length;
  cell.append(completion.text.slice(0, at), el("mark", "", completion.match), completion.text.slice(end));
  return cell;
}

function completionRow(completion) {
  const prompt = el("div", "prompt-text", completion.prompt);
  prompt.title = completion.prompt;
  const explain = el("button", "explain-button", "explain");
  explain.type = "button";
  explain.addEventListener("click", () => showExplanation(completion));
  const tr = row([
    prompt, String(completion.alpha), String(completion.sample_index),
    completionCell(completion), completion.finish_reason, explain,
  ]);
  tr.dataset.promptIndex = completion.prompt_index;
  tr.dataset.alpha = completion.alpha;
  tr.dataset.sampleIndex = completion.sample_index;
  return tr;
}

function renderCompletions(completions, activatedTotal) {
  document.getElementById("completions-body").replaceChildren(...completions.map(completionRow));
  const shown = completions.length < activatedTotal ? `showing ${completions.length} of ` : "";
  document.getElementById("activated-count").textContent = `(${shown}${activatedTotal})`;
}

function renderDetectors(detections) {
  // Only detectors whose results exist can be chosen; one still scanning shows its progress.
  const select = document.getElementById("detector-select");
  const options = detections.map((detection) => {
    const ready = detection.status === "succeeded" || detection.name === DEFAULT_DETECTOR;
    const progress = ready ? "" : ` (${detection.status} ${detection.completions_scanned}/${detection.completions_total})`;
    const option = el("option", "", `${detection.name}${progress}`);
    option.value = detection.name;
    option.disabled = !ready;
    return option;
  });
  select.replaceChildren(...options);
  if (!detections.some((d) => d.name === state.detector && (d.status === "succeeded" || d.name === DEFAULT_DETECTOR))) {
    state.detector = DEFAULT_DETECTOR;
  }
  select.value = state.detector;
}

function tokenSpan(token, largest) {
  // Shaded by the after-minus-before logit: what amplification multiplies.
  const span = el("span", "token", token.token);
  const strength = Math.min(1, Math.abs(token.logit_difference) / (largest || 1));
  const colour = token.logit_difference >= 0 ? "220, 38, 38" : "37, 99, 235";
  span.style.backgroundColor = `rgba(${colour}, ${(0.08 + 0.6 * strength).toFixed(3)})`;
  span.dataset.logitDifference = token.logit_difference;
  const sampled = token.logprob_sampled == null ? "–" : token.logprob_sampled.toFixed(3);
  span.title = `logit after - before ${token.logit_difference.toFixed(3)}\nlog p before ` +
    `${token.logprob_before.toFixed(3)}, after ${token.logprob_after.toFixed(3)}, sampled ${sampled}`;
  return span;
}

async function showExplanation(completion) {
  const which = { prompt_index: completion.prompt_index, alpha: completion.alpha, sample_index: completion.sample_index };
  document.getElementById("explain").hidden = false;
  document.getElementById("explain-which").textContent =
    `(prompt ${which.prompt_index}, alpha ${which.alpha}, sample ${which.sample_index})`;
  const status = document.getElementById("explain-status");
  status.textContent = "replaying through the worker…";
  document.getElementById("explain-tokens").replaceChildren();
  try {
    const explained = await postJson(`${experimentPath(state.selectedId)}/completions/explain`, which);
    const largest = Math.max(...explained.tokens.map((token) => Math.abs(token.logit_difference)));
    document.getElementById("explain-tokens").replaceChildren(...explained.tokens.map((t) => tokenSpan(t, largest)));
    status.textContent = explained.reproduces_stored === false
      ? "the replay differs from the stored text (float noise flipped a near-tie)" : "";
  } catch (error) {
    status.textContent = `could not explain: ${error.message}`;
  }
}

async function refreshIntervals(id) {
  try {
    state.clustered = (await getJson(`${experimentPath(id)}/intervals?${underDetector()}`)).intervals;
  } catch (error) {
    state.clustered = []; // the Wilson intervals still show; the table says "–" for these
  }
}

async function refreshDetail(id) {
  renderDetectors((await getJson(`${experimentPath(id)}/detections`)).items);
  const experiment = await getJson(`${experimentPath(id)}?${underDetector()}`);
  if (id !== state.selectedId) return; // the user picked another while this was in flight
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-placeholder").hidden = true;
  renderHead(experiment);
  renderSettings(experiment.params);
  renderEstimate(experiment.alpha0_estimate);
  renderReweighted(experiment.alpha0_reweighted);
  if (state.explainOnLoad) {
    showExplanation(state.explainOnLoad);
    state.explainOnLoad = null;
  }
  renderRateChart(document.getElementById("rate-chart"), experiment.summary, experiment.alpha0_estimate, state.logScale);
  const key = `${id}:${state.detector}:${experiment.status}:${experiment.progress.completions_done}`;
  if (key !== state.completionsKey) await refreshIntervals(id); // computed on demand, cached by the server
  renderSummaryTable(experiment.summary);
  if (key === state.completionsKey) return;
  const completions = await activatedCompletions(id);
  const activatedTotal = experiment.summary.reduce((sum, point) => sum + point.activated, 0);
  if (id !== state.selectedId) return;
  renderCompletions(completions, activatedTotal);
  state.completionsKey = key;
}

// ---- polling, selection, token ------------------------------------------------------------

function setConnection(kind, text) {
  const node = document.getElementById("connection");
  node.dataset.state = kind;
  node.textContent = text;
}

function reportError(error) {
  if (error.status === 401) document.getElementById("token-form").hidden = false;
  setConnection("error", error.message);
}

async function poll() {
  try {
    const list = await getJson(`/experiments?limit=${LIST_LIMIT}`);
    if (!state.selectedId && list.items.length) state.selectedId = list.items[0].id;
    renderList(list.items);
    if (state.selectedId) await refreshDetail(state.selectedId);
    setConnection("live", `live · updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    reportError(error);
  }
  setTimeout(poll, POLL_MS);
}

function select(id) {
  state.selectedId = id;
  state.completionsKey = null;
  document.getElementById("explain").hidden = true;
  markSelected();
  refreshDetail(id).catch(reportError);
}

async function downloadExport(event) {
  // A plain link cannot carry the Authorization header, so with a token the file is fetched here.
  if (!localStorage.getItem(TOKEN_KEY)) return;
  event.preventDefault();
  const link = event.currentTarget;
  const path = `${experimentPath(state.selectedId)}/export?${underDetector({ format: link.dataset.format })}`;
  const url = URL.createObjectURL(await (await apiFetch(path)).blob());
  Object.assign(el("a"), { href: url, download: link.download }).click();
  URL.revokeObjectURL(url);
}

function setUpTokenForm() {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  input.value = localStorage.getItem(TOKEN_KEY) || "";
  form.hidden = !input.value;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
    if (state.selectedId) select(state.selectedId);
  });
}

setUpTokenForm();
const logScale = document.getElementById("log-scale");
logScale.checked = state.logScale;
logScale.addEventListener("change", () => {
  state.logScale = logScale.checked;
  if (state.selectedId) select(state.selectedId);
});
document.getElementById("detector-select").addEventListener("change", (event) => {
  state.detector = event.target.value;
  state.completionsKey = null;
  if (state.selectedId) select(state.selectedId);
});
for (const link of document.querySelectorAll(".exports a")) {
  link.addEventListener("click", (event) => downloadExport(event).catch(reportError));
}
window.addEventListener("popstate", () => {
  const id = new URLSearchParams(location.search).get("experiment");
  if (id) select(id);
});
poll();
