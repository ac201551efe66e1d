/**
 * One request's waterfall: every metric at its start offset and duration on one time axis.
 *
 * `layout()` is pure (unit-tested); `renderWaterfall()` draws it as focusable rows, so a keyboard
 * or screen-reader user reaches every metric and its details as a mouse user does.
 */

import type { Report, ReportMetric } from "./api";

export interface Row {
  /** The metric, or `null` for the request itself (the first row). */
  metric: ReportMetric | null;
  name: string;
  depth: number;
  /** Start and end on the axis, ms after the request started (browser metrics may start before 0). */
  start: number;
  end: number;
  /** Another metric with the same parent runs at the same time (tool calls of one model turn). */
  concurrent: boolean;
}

export interface Layout {
  rows: Row[];
  /** The axis, ms: from the earliest start (0 or a browser metric before the request) to the latest end. */
  from: number;
  to: number;
}

export function layout(report: Report): Layout {
  const metrics = report.metrics;
  const byId = new Map(metrics.map((m) => [m.span_id, m]));
  const enclosing = new Map(metrics.map((m) => [m.span_id, enclosingMetric(m, byId, metrics)]));
  // Siblings share the metric they are nested in, else their direct parent span (the server's
  // request span for its top-level metrics; none for the page's send_message).
  const parentKey = (metric: ReportMetric): string | null =>
    enclosing.get(metric.span_id)?.span_id ?? metric.parent_span_id ?? null;
  const depths = new Map<string, number>();
  const depthOf = (metric: ReportMetric, seen: Set<string> = new Set()): number => {
    const known = depths.get(metric.span_id);
    if (known !== undefined) {
      return known;
    }
    const parent = enclosing.get(metric.span_id);
    const depth = parent && !seen.has(parent.span_id) ? depthOf(parent, seen.add(metric.span_id)) + 1 : 1;
    depths.set(metric.span_id, depth);
    return depth;
  };
  const rows: Row[] = [
    {
      metric: null,
      name: `${report.operation} (total)`,
      depth: 0,
      start: 0,
      end: report.total_duration,
      concurrent: false,
    },
  ];
  // By start, and a parent before the children that start with it (one clock tick holds both).
  const ordered = [...metrics].sort((a, b) => a.start_offset - b.start_offset || depthOf(a) - depthOf(b));
  for (const metric of ordered) {
    rows.push({
      metric,
      name: metric.name,
      depth: depthOf(metric),
      start: metric.start_offset,
      end: metric.start_offset + metric.duration,
      concurrent: false,
    });
  }
  for (const row of rows) {
    if (row.metric === null) {
      continue;
    }
    const parent = parentKey(row.metric);
    row.concurrent = rows.some(
      (other) =>
        other !== row &&
        other.metric !== null &&
        parentKey(other.metric) === parent &&
        other.start < row.end &&
        row.start < other.end,
    );
  }
  const from = Math.min(0, ...rows.map((r) => r.start));
  const to = Math.max(report.total_duration, ...rows.map((r) => r.end), from + 1e-6);
  return { rows, from, to };
}

/**
 * The metric a metric is nested in: its direct parent span when that is a metric of the report;
 * otherwise (the direct parent is a span that is not a metric, e.g. an HTTP client span) the
 * report's `parent` names the nearest enclosing metric, and of the metrics by that name the
 * innermost one whose time holds this metric's is it.
 */
function enclosingMetric(
  metric: ReportMetric,
  byId: Map<string, ReportMetric>,
  metrics: readonly ReportMetric[],
): ReportMetric | undefined {
  const direct = metric.parent_span_id ? byId.get(metric.parent_span_id) : undefined;
  if (direct !== undefined || !metric.parent) {
    return direct;
  }
  const end = metric.start_offset + metric.duration;
  const slack = 1e-3; // offsets and durations are rounded ms
  let best: ReportMetric | undefined;
  for (const other of metrics) {
    if (
      other !== metric &&
      other.name === metric.parent &&
      other.start_offset <= metric.start_offset + slack &&
      other.start_offset + other.duration + slack >= end &&
      (best === undefined || other.start_offset > best.start_offset)
    ) {
      best = other;
    }
  }
  return best;
}

export function ms(value: number): string {
  return value >= 100 ? `${value.toFixed(0)} ms` : value >= 1 ? `${value.toFixed(1)} ms` : `${value.toFixed(2)} ms`;
}

function describe(row: Row): string {
  const status = row.metric?.status ?? "ok";
  const source = row.metric?.source ? `, ${row.metric.source}` : "";
  return `${row.name}: ${ms(row.end - row.start)}, starts at ${ms(row.start)}, ${status}${source}${
    row.concurrent ? ", concurrent" : ""
  }`;
}

function details(row: Row, report: Report): HTMLElement {
  const list = document.createElement("dl");
  const add = (term: string, value: string): void => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  };
  add("metric", row.name);
  add("duration", ms(row.end - row.start));
  add("start", `${ms(row.start)} after the request started`);
  if (row.metric === null) {
    add("status", report.status ?? "ok");
    add("trace", report.trace_id);
    return list;
  }
  add("status", row.metric.status + (row.metric.error ? ` (${row.metric.error})` : ""));
  add("source", row.metric.source ?? "server");
  if (row.metric.parent) {
    add("inside", row.metric.parent);
  }
  for (const [key, value] of Object.entries(row.metric.metadata)) {
    add(key, typeof value === "string" ? value : JSON.stringify(value));
  }
  return list;
}

/**
 * Draws `report` into `container`; `detailsPanel` shows the metadata of the row under the pointer or
 * keyboard focus.
 */
export function renderWaterfall(container: HTMLElement, detailsPanel: HTMLElement, report: Report): void {
  const { rows, from, to } = layout(report);
  const span = to - from;
  container.replaceChildren();
  container.setAttribute("role", "list");
  container.dataset["from"] = String(from);
  container.dataset["to"] = String(to);
  const show = (row: Row): void => {
    detailsPanel.replaceChildren(details(row, report));
  };
  rows.forEach((row, index) => {
    const item = document.createElement("div");
    item.className = "wf-row";
    item.setAttribute("role", "listitem");
    item.tabIndex = 0;
    item.dataset["name"] = row.name;
    item.dataset["start"] = String(row.start);
    item.dataset["duration"] = String(row.end - row.start);
    item.dataset["depth"] = String(row.depth);
    item.dataset["source"] = row.metric?.source ?? "server";
    item.dataset["concurrent"] = String(row.concurrent);
    item.setAttribute("aria-label", describe(row));
    const label = document.createElement("span");
    label.className = "wf-label";
    label.style.paddingLeft = `${row.depth * 0.9}rem`;
    label.textContent = row.name;
    if (row.concurrent) {
      const badge = document.createElement("span");
      badge.className = "wf-concurrent";
      badge.title = "runs concurrently with another metric of the same parent";
      badge.textContent = "||";
      label.append(" ", badge);
    }
    const track = document.createElement("span");
    track.className = "wf-track";
    const bar = document.createElement("span");
    bar.className = `wf-bar ${row.metric === null ? "wf-total" : ""} ${row.metric?.status === "error" ? "wf-error" : ""} ${
      row.metric?.source === "browser" ? "wf-browser" : ""
    }`;
    bar.style.left = `${((row.start - from) / span) * 100}%`;
    bar.style.width = `${Math.max(((row.end - row.start) / span) * 100, 0.3)}%`;
    const value = document.createElement("span");
    value.className = "wf-value";
    value.textContent = ms(row.end - row.start);
    track.append(bar);
    item.append(label, track, value);
    item.addEventListener("mouseenter", () => show(row));
    item.addEventListener("focus", () => show(row));
    item.addEventListener("keydown", (event) => {
      const next = event.key === "ArrowDown" ? index + 1 : event.key === "ArrowUp" ? index - 1 : -1;
      const target = container.children[next];
      if (target instanceof HTMLElement) {
        event.preventDefault();
        target.focus();
      }
    });
    container.append(item);
  });
  show(rows[0]!);
}
