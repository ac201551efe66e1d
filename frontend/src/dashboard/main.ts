/**
 * The performance dashboard at /performance: percentiles over time, volume and errors, tokens,
 * each metric against its usual p95, the slowest requests and the waterfall of one of them.
 *
 * Everything comes from the reports API (`api/v1/performance/*`) with the token a person enters
 * once per browser session (kept in sessionStorage, never put in a URL). On loopback with
 * HA_AGENT_TRACING_API_ALLOW_LOOPBACK=true no token is asked for.
 */

import {
  type Alert,
  ApiError,
  type DashboardConfig,
  get,
  type InsightsAnswer,
  type Report,
  storedToken,
  storeToken,
  type Summary,
  type Timeline,
} from "./api";
import { latencyChart, latencyData, tokensChart, tokensData, volumeChart, volumeData } from "./charts";
import "./style.css";
import { ms, renderWaterfall } from "./waterfall";

/** Range in seconds -> bucket width, about 60 to 100 points per chart. */
const RANGES: Record<string, { seconds: number; bucket: string }> = {
  "15m": { seconds: 900, bucket: "15s" },
  "1h": { seconds: 3600, bucket: "1m" },
  "6h": { seconds: 21600, bucket: "5m" },
  "24h": { seconds: 86400, bucket: "15m" },
  "7d": { seconds: 604800, bucket: "2h" },
  "30d": { seconds: 2592000, bucket: "6h" },
};
/** A metric's usual p95 comes from the range shown and the week before it. */
const BASELINE_S = 7 * 86400;
/** A metric whose p95 is this many times its usual one stands out. */
const SLOWER = 1.5;

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) {
    throw new Error(`#${id} is missing from the page`);
  }
  return found as T;
}

const gate = element<HTMLElement>("gate");
const tokenForm = element<HTMLFormElement>("token-form");
const tokenInput = element<HTMLInputElement>("token");
const gateError = element<HTMLElement>("gate-error");
const board = element<HTMLElement>("board");
const status = element<HTMLElement>("status");
const controls = element<HTMLFormElement>("controls");
const operationSelect = element<HTMLSelectElement>("operation");
const rangeSelect = element<HTMLSelectElement>("range");
const metricSelect = element<HTMLSelectElement>("metric");
const forget = element<HTMLButtonElement>("forget-token");
const usualBody = element<HTMLTableSectionElement>("usual-body");
const slowestBody = element<HTMLTableSectionElement>("slowest-body");
const waterfallPanel = element<HTMLElement>("waterfall-panel");
const waterfallTitle = element<HTMLElement>("waterfall-title");
const jaegerLink = element<HTMLAnchorElement>("jaeger-link");
const turnsBody = element<HTMLTableSectionElement>("turns-body");
const traceForm = element<HTMLFormElement>("trace-form");
const traceInput = element<HTMLInputElement>("trace-id");
const alertsTable = element<HTMLTableElement>("alerts");
const alertsBody = element<HTMLTableSectionElement>("alerts-body");
const alertsNone = element<HTMLElement>("alerts-none");
const insightsSummary = element<HTMLElement>("insights-summary");
const insightsSample = element<HTMLElement>("insights-sample");
const sharesTable = element<HTMLTableElement>("shares");
const sharesBody = element<HTMLTableSectionElement>("shares-body");
const insightsNotes = element<HTMLUListElement>("insights-notes");

const latency = latencyChart(element("latency-chart"));
const volume = volumeChart(element("volume-chart"));
const tokens = tokensChart(element("tokens-chart"));

let config: DashboardConfig = { jaeger_url: null, history: "off" };
let timeline: Timeline | null = null;

function say(text: string, error = false): void {
  status.textContent = text;
  status.classList.toggle("error", error);
}

function showGate(message: string): void {
  board.hidden = true;
  controls.hidden = true;
  gate.hidden = false;
  forget.hidden = true;
  gateError.textContent = message;
  tokenInput.value = "";
  tokenInput.focus();
}

/** Opens the board if the API lets us in (stored token, or loopback without one); else the token form. */
async function open(): Promise<void> {
  if (storedToken() === null) {
    // Asked first, so that a person without a token sees the form rather than a refused request.
    let access: { token_required: boolean } | null;
    try {
      access = await get<{ token_required: boolean }>("access");
    } catch (error) {
      showGate(error instanceof Error ? error.message : String(error));
      return;
    }
    if (access === null) {
      showGate("The reports API is off: start the service with HA_AGENT_TRACING_REPORTS_API=on.");
      return;
    }
    if (access.token_required) {
      showGate("");
      return;
    }
  }
  gate.hidden = true;
  board.hidden = false;
  controls.hidden = false;
  forget.hidden = storedToken() === null;
  await load();
}

function option(select: HTMLSelectElement, value: string, label: string): void {
  const item = document.createElement("option");
  item.value = value;
  item.textContent = label;
  select.append(item);
}

function cell(row: HTMLTableRowElement, text: string, className = ""): HTMLTableCellElement {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) {
    td.className = className;
  }
  row.append(td);
  return td;
}

/** A time of today as hh:mm:ss, an earlier one with its date. */
function when(epoch: number): string {
  const date = new Date(epoch * 1000);
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return date.toDateString() === new Date().toDateString() ? time : `${date.toLocaleDateString()} ${time}`;
}

async function load(): Promise<void> {
  const range = RANGES[rangeSelect.value] ?? RANGES["1h"]!;
  const until = Date.now() / 1000;
  const since = until - range.seconds;
  say("Loading…");
  try {
    config = (await get<DashboardConfig>("config")) ?? config;
    const operations = (await get<Record<string, Summary>>("summary", { since, until })) ?? {};
    const names = Object.keys(operations).sort((a, b) => operations[b]!.count - operations[a]!.count);
    const chosen = names.includes(operationSelect.value) ? operationSelect.value : names.includes("chat_request") ? "chat_request" : (names[0] ?? "");
    operationSelect.replaceChildren();
    for (const name of names) {
      option(operationSelect, name, `${name} (${operations[name]!.count})`);
    }
    operationSelect.value = chosen;
    const operation = chosen || undefined;
    const [current, usual, slowest, alerts, insights] = await Promise.all([
      get<Timeline>("summary", { since, until, bucket: range.bucket, operation }),
      get<Record<string, Summary>>("summary", { since: since - BASELINE_S, until, operation }),
      get<{ count: number; reports: Report[] }>("reports", { since, until, operation, order: "slowest", limit: 15 }),
      get<{ alerts: Alert[] }>("alerts"),
      get<InsightsAnswer>("insights", { since, until, operation, top: 3 }),
    ]);
    timeline = current;
    if (!current) {
      throw new ApiError("the summary endpoint is missing", 404);
    }
    renderMetricChoices(current);
    drawCharts();
    renderUsual(current, chosen ? (usual?.[chosen] ?? null) : null);
    renderSlowest(slowest?.reports ?? []);
    renderAlerts(alerts?.alerts ?? []);
    renderInsights(chosen, insights);
    const requests = current.overall.requests;
    say(
      requests
        ? `${requests} requests, ${current.overall.errors} failed, from ${when(since)} to ${when(until)}${historyNote()}.`
        : `No ${chosen || ""} requests from ${when(since)} to ${when(until)}.`,
    );
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403 || error.status === 503)) {
      storeToken(null);
      showGate(error.status === 503 ? error.message : "That token was not accepted. Enter the API token.");
      return;
    }
    say(`Could not load the reports: ${error instanceof Error ? error.message : String(error)}`, true);
  }
}

/** Said only when the history does not back the range: off, or unavailable (memory only). */
function historyNote(): string {
  if (config.history === "off") {
    return " (history is off: the requests in memory only)";
  }
  return config.history === "unavailable" || config.history === "closed"
    ? ` (history ${config.history}: the requests in memory only)`
    : "";
}

function renderMetricChoices(current: Timeline): void {
  const previous = metricSelect.value;
  metricSelect.replaceChildren();
  option(metricSelect, "", "total (the whole request)");
  for (const name of Object.keys(current.overall.metrics).sort()) {
    option(metricSelect, name, name);
  }
  metricSelect.value = [...metricSelect.options].some((o) => o.value === previous) ? previous : "";
}

function drawCharts(): void {
  if (!timeline) {
    return;
  }
  latency.draw(latencyData(timeline, metricSelect.value));
  volume.draw(volumeData(timeline));
  tokens.draw(tokensData(timeline));
}

function renderUsual(current: Timeline, usual: Summary | null): void {
  usualBody.replaceChildren();
  const rows: [string, number, number | null][] = [];
  if (current.overall.total) {
    rows.push(["total", current.overall.total.p95, usual?.total_duration.p95 ?? null]);
  }
  for (const [name, stats] of Object.entries(current.overall.metrics)) {
    rows.push([name, stats.p95, usual?.metrics[name]?.p95 ?? null]);
  }
  const ratio = (p95: number, usualP95: number | null): number | null => (usualP95 ? p95 / usualP95 : null);
  // The total first, then the metrics, the most above their usual first.
  rows.sort(
    (a, b) =>
      Number(b[0] === "total") - Number(a[0] === "total") ||
      (ratio(b[1], b[2]) ?? 0) - (ratio(a[1], a[2]) ?? 0) ||
      a[0].localeCompare(b[0]),
  );
  for (const [name, p95, usualP95] of rows) {
    const row = document.createElement("tr");
    const head = document.createElement("th");
    head.scope = "row";
    head.textContent = name;
    row.append(head);
    cell(row, ms(p95), "num");
    cell(row, usualP95 === null ? "—" : ms(usualP95), "num");
    const times = ratio(p95, usualP95);
    const verdict = cell(row, times === null ? "no data" : `${times.toFixed(2)}×`, "num");
    if (times !== null && times >= SLOWER) {
      row.classList.add("slower");
      verdict.textContent += " slower than usual";
    }
    usualBody.append(row);
  }
}

function renderSlowest(reports: Report[]): void {
  slowestBody.replaceChildren();
  if (!reports.length) {
    const row = document.createElement("tr");
    cell(row, "No requests in this range.").colSpan = 5;
    slowestBody.append(row);
    return;
  }
  for (const report of reports) {
    const row = document.createElement("tr");
    const first = document.createElement("td");
    first.append(traceButton(report.trace_id));
    row.append(first);
    cell(row, when(report.timestamp));
    cell(row, report.operation);
    cell(row, ms(report.total_duration), "num");
    const slowestMetric = [...report.metrics].sort((a, b) => b.duration - a.duration)[0];
    cell(row, slowestMetric ? `${slowestMetric.name} ${ms(slowestMetric.duration)}` : "—");
    if (report.status === "error") {
      row.classList.add("failed");
    }
    slowestBody.append(row);
  }
}

function number(value: number): string {
  return String(Number(value.toFixed(2)));
}

/** An alert's value or threshold in its unit: milliseconds, or a share of calls as a percentage. */
function alertValue(value: number, unit: Alert["unit"]): string {
  return unit === "ratio" ? `${(value * 100).toFixed(1)} %` : `${number(value)} ms`;
}

function renderAlerts(alerts: Alert[]): void {
  alertsBody.replaceChildren();
  alertsTable.hidden = alerts.length === 0;
  alertsNone.hidden = alerts.length > 0;
  for (const alert of alerts) {
    const row = document.createElement("tr");
    row.className = alert.state;
    cell(row, alert.state === "firing" ? "Firing" : "Resolved");
    const rule = document.createElement("th");
    rule.scope = "row";
    rule.textContent = alert.rule;
    row.append(rule);
    cell(row, alert.summary);
    cell(row, alertValue(alert.value, alert.unit), "num");
    cell(row, alertValue(alert.threshold, alert.unit), "num");
    cell(row, when(alert.since));
    alertsBody.append(row);
  }
}

function percent(share: number): string {
  return `${Math.round(share * 100)} %`;
}

/** A button that opens the waterfall of one trace, as the slowest requests' do. */
function traceButton(traceId: string): HTMLButtonElement {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link";
  button.textContent = traceId.slice(0, 12) + "…";
  button.setAttribute("aria-label", `Show the waterfall of trace ${traceId}`);
  button.dataset["trace"] = traceId;
  button.addEventListener("click", () => void showReport(traceId));
  return button;
}

function note(...parts: (string | Node)[]): void {
  const item = document.createElement("li");
  item.append(...parts);
  insightsNotes.append(item);
}

/** Which requests the insights rest on: all of the range's, or how large a sample, and from where. */
function sampleText(answer: InsightsAnswer, analysed: number, inRange: number): string {
  const from =
    answer.source === "history"
      ? "from history"
      : config.history === "off"
        ? "from memory (history is off)"
        : "from memory (history cannot be read)";
  return analysed < inRange
    ? `Sample: ${analysed} of the range's ${inRange} requests, evenly spaced in time (at most ${answer.sample_limit} per operation), ${from}.`
    : `Sample: all ${inRange} requests of the range, ${from}.`;
}

function renderInsights(operation: string, answer: InsightsAnswer | null): void {
  sharesBody.replaceChildren();
  insightsNotes.replaceChildren();
  const insights = answer?.operations[operation] ?? null;
  const sample = answer?.samples[operation] ?? null;
  sharesTable.hidden = insights === null;
  if (answer === null || insights === null || sample === null) {
    insightsSummary.textContent = `No ${operation} requests in this range to analyse.`;
    insightsSample.textContent = "";
    return;
  }
  insightsSample.textContent = sampleText(answer, sample.analysed, sample.in_range);
  const which = sample.analysed < sample.in_range ? `${sample.analysed} sampled` : `the ${sample.in_range}`;
  const head = `Of ${which} ${operation} requests in this range (p50 ${ms(insights.p50_ms)}, p95 ${ms(insights.p95_ms)})`;
  const bottleneck = insights.bottleneck;
  insightsSummary.textContent = bottleneck
    ? `${head}, the bottleneck is ${bottleneck.name}: ${percent(bottleneck.share_p50)} of a typical request's critical path, ${percent(bottleneck.share_p95)} of a slow one's.`
    : `${head}: no bottleneck stands out.`;
  for (const share of insights.shares.slice(0, 6)) {
    const row = document.createElement("tr");
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = share.name;
    row.append(name);
    cell(row, `${percent(share.share_p50)} (${ms(share.ms_p50)})`, "num");
    cell(row, `${percent(share.share_p95)} (${ms(share.ms_p95)})`, "num");
    sharesBody.append(row);
  }
  const concurrency = insights.concurrency;
  if (concurrency.requests_with_concurrency > 0) {
    note(
      `Concurrency saved ${ms(concurrency.saved_ms_per_request)} per request: ` +
        `${concurrency.requests_with_concurrency} of ${insights.requests} ran metrics side by side.`,
    );
  }
  for (const cache of insights.cache) {
    const hit = cache.hit_ms_p50 === null ? "" : `, p50 ${ms(cache.hit_ms_p50)} on a hit`;
    const miss = cache.miss_ms_p50 === null ? "" : `, ${ms(cache.miss_ms_p50)} on a miss`;
    note(`${cache.name} cache: ${percent(cache.hit_rate)} hits (${cache.hits} of ${cache.hits + cache.misses})${hit}${miss}.`);
  }
  const repeated = insights.repeated_tool_calls[0];
  if (repeated) {
    note(
      `${insights.repeated_tool_calls.length} requests called a tool again with the same input; the costliest, ${repeated.tool} ` +
        `${repeated.calls}× (${ms(repeated.repeat_ms)} repeated): `,
      traceButton(repeated.trace_id),
    );
  }
  const turn = insights.top_token_turns[0];
  if (turn) {
    note(
      `Largest model turn: ${turn.tokens} tokens (${turn.prompt_tokens} in, ${turn.completion_tokens} out): `,
      traceButton(turn.trace_id),
    );
  }
  for (const text of insights.notes) {
    note(`Note: ${text}.`);
  }
}

async function showReport(traceId: string): Promise<void> {
  let report: Report | null;
  try {
    report = await get<Report>(`reports/${traceId}`);
  } catch (error) {
    say(`Could not load trace ${traceId}: ${error instanceof Error ? error.message : String(error)}`, true);
    return;
  }
  if (!report) {
    say(`No report of trace ${traceId} is kept, in memory or in history.`, true);
    return;
  }
  waterfallPanel.hidden = false;
  waterfallTitle.textContent = `${report.operation}, ${ms(report.total_duration)}, ${when(report.timestamp)}`;
  renderWaterfall(element("waterfall"), element("waterfall-details"), report);
  if (config.jaeger_url) {
    jaegerLink.href = `${config.jaeger_url.replace(/\/+$/, "")}/trace/${report.trace_id}`;
    jaegerLink.hidden = false;
  } else {
    jaegerLink.hidden = true;
  }
  turnsBody.replaceChildren();
  const turns = report.metrics.filter((m) => m.name === "openai_api_call");
  for (const [index, turn] of turns.entries()) {
    const meta = turn.metadata;
    const number = (key: string, fallback: string): string => String(meta[key] ?? meta[fallback] ?? "—");
    const row = document.createElement("tr");
    cell(row, String(meta["iteration"] ?? index + 1));
    cell(row, number("gen_ai.usage.input_tokens", "prompt_tokens"), "num");
    cell(row, number("gen_ai.usage.output_tokens", "completion_tokens"), "num");
    cell(row, ms(turn.duration), "num");
    turnsBody.append(row);
  }
  waterfallPanel.scrollIntoView({ block: "start" });
  (element("waterfall").firstElementChild as HTMLElement | null)?.focus({ preventScroll: true });
}

tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const token = tokenInput.value.trim();
  if (!token) {
    gateError.textContent = "Enter the API token.";
    return;
  }
  storeToken(token);
  void open();
});
traceForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const traceId = traceInput.value.trim().toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(traceId)) {
    say("A trace id is 32 hexadecimal digits.", true);
    return;
  }
  void showReport(traceId);
});
forget.addEventListener("click", () => {
  storeToken(null);
  void open();
});
controls.addEventListener("submit", (event) => {
  event.preventDefault();
  void load();
});
rangeSelect.addEventListener("change", () => void load());
operationSelect.addEventListener("change", () => void load());
metricSelect.addEventListener("change", () => {
  if (timeline) {
    latency.draw(latencyData(timeline, metricSelect.value));
  }
});
window.addEventListener("resize", () => {
  latency.resize();
  volume.resize();
  tokens.resize();
});

void open();
