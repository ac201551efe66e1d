import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Report, ReportMetric } from "../src/dashboard/api.js";
import { layout } from "../src/dashboard/waterfall.js";

function metric(
  name: string,
  start: number,
  duration: number,
  span: string,
  parent: string | null = null,
  source = "server",
  parentName: string | null = null,
): ReportMetric {
  return {
    name,
    duration,
    metadata: {},
    start_offset: start,
    parent: parentName,
    parent_span_id: parent,
    span_id: span,
    status: "ok",
    source,
  };
}

const report: Report = {
  operation: "chat_request",
  total_duration: 100,
  timestamp: 1_800_000_000,
  trace_id: "0".repeat(31) + "1",
  span_id: "0".repeat(15) + "1",
  metrics: [
    metric("send_message", -20, 130, "b0", null, "browser"),
    metric("message_assembly", 2, 12, "a1"),
    metric("context_refresh", 3, 10, "a2", "a1"),
    metric("openai_api_call", 15, 40, "a3"),
    metric("tool_execution", 56, 20, "a4"),
    metric("tool_execution", 57, 25, "a5"),
    metric("openai_api_call", 83, 15, "a6"),
  ],
};

describe("waterfall layout", () => {
  it("puts the request first, then every metric at its offset and duration", () => {
    const { rows } = layout(report);
    assert.equal(rows.length, report.metrics.length + 1);
    assert.deepEqual(rows[0], { metric: null, name: "chat_request (total)", depth: 0, start: 0, end: 100, concurrent: false });
    assert.deepEqual(
      rows.slice(1).map((r) => [r.name, r.start, r.end]),
      report.metrics.map((m) => [m.name, m.start_offset, m.start_offset + m.duration]),
    );
  });

  it("indents nested metrics under their parent", () => {
    const depth = Object.fromEntries(layout(report).rows.slice(1).map((r) => [r.metric!.span_id, r.depth]));
    assert.deepEqual(depth, { b0: 1, a1: 1, a2: 2, a3: 1, a4: 1, a5: 1, a6: 1 });
  });

  it("nests a metric under its enclosing metric through a span that is not a metric", () => {
    // Two tool_execution metrics; each calls Home Assistant through an HTTP client span (not a
    // metric, so not in the report), inside which a metric ran: the report names the enclosing
    // metric ("tool_execution") and gives the HTTP span as the direct parent.
    const nested: Report = {
      ...report,
      metrics: [
        metric("tool_execution", 10, 30, "t1"),
        metric("tool_execution", 50, 30, "t2"),
        metric("ha_state_read", 20, 5, "h1", "c1", "server", "tool_execution"),
        metric("ha_state_read", 60, 5, "h2", "c2", "server", "tool_execution"),
        metric("orphan_step", 90, 5, "o1", "c3", "server", "missing_metric"),
      ],
    };
    const rows = layout(nested).rows.slice(1);
    const depth = Object.fromEntries(rows.map((r) => [r.metric!.span_id, r.depth]));
    assert.deepEqual(depth, { t1: 1, t2: 1, h1: 2, h2: 2, o1: 1 });
    // Each read sits right under its own tool call, not under the other one.
    assert.deepEqual(
      rows.map((r) => r.metric!.span_id),
      ["t1", "h1", "t2", "h2", "o1"],
    );
    assert.ok(rows.every((r) => !r.concurrent), "no two of these overlap under one parent");
  });

  it("does not mark the server's top-level metrics concurrent with the page's send_message", () => {
    // As the service reports them: the server's metrics hang under its request span (not a metric),
    // the page's send_message has no parent in the report; their times overlap.
    const joined: Report = {
      ...report,
      metrics: [
        metric("send_message", -20, 130, "b0", null, "browser"),
        metric("rate_limit_check", 1, 1, "s1", "srv"),
        metric("tool_execution", 10, 20, "s2", "srv"),
        metric("tool_execution", 15, 20, "s3", "srv"),
      ],
    };
    const concurrent = layout(joined)
      .rows.filter((r) => r.concurrent)
      .map((r) => r.metric!.span_id);
    assert.deepEqual(concurrent, ["s2", "s3"]);
  });

  it("marks metrics of one parent that overlap in time as concurrent, and only those", () => {
    const concurrent = layout(report)
      .rows.filter((r) => r.concurrent)
      .map((r) => r.metric!.span_id);
    // The browser's send_message spans the whole request, so it overlaps every top-level server metric too.
    assert.deepEqual(concurrent, ["b0", "a1", "a3", "a4", "a5", "a6"]);
    const serverOnly = layout({ ...report, metrics: report.metrics.slice(1) })
      .rows.filter((r) => r.concurrent)
      .map((r) => r.metric!.span_id);
    assert.deepEqual(serverOnly, ["a4", "a5"]);
  });

  it("stretches the axis to a browser metric that starts before the request and ends after it", () => {
    const { from, to } = layout(report);
    assert.equal(from, -20);
    assert.equal(to, 110);
  });

  it("indents each level of nesting once more, and a metric whose parent is not in the report at the top", () => {
    const deep: Report = {
      ...report,
      metrics: [
        metric("outer", 0, 50, "d1"),
        metric("middle", 1, 40, "d2", "d1"),
        metric("inner", 2, 30, "d3", "d2"),
        metric("orphan", 3, 5, "d4", "not-in-this-report"),
      ],
    };
    assert.deepEqual(
      layout(deep).rows.map((r) => [r.name, r.depth]),
      [["chat_request (total)", 0], ["outer", 1], ["middle", 2], ["inner", 3], ["orphan", 1]],
    );
  });

  it("survives a parent cycle (corrupt data) without recursing forever", () => {
    const cyclic: Report = { ...report, metrics: [metric("a", 0, 1, "c1", "c2"), metric("b", 0, 1, "c2", "c1")] };
    const depths = layout(cyclic).rows.slice(1).map((r) => r.depth);
    assert.equal(depths.length, 2);
    assert.ok(depths.every((d) => Number.isInteger(d) && d >= 1 && d <= 3), String(depths));
  });

  it("does not call metrics of different parents concurrent, however they overlap", () => {
    const apart: Report = {
      ...report,
      metrics: [metric("p", 0, 50, "e1"), metric("q", 0, 50, "e2"), metric("child", 10, 20, "e3", "e1")],
    };
    const marked = layout(apart).rows.filter((r) => r.concurrent).map((r) => r.metric!.span_id);
    assert.deepEqual(marked, ["e1", "e2"]);
  });

  it("puts a parent before a child that starts in the same clock tick, whatever the report's order", () => {
    const tick: Report = {
      ...report,
      metrics: [metric("ui_update", -50, 15, "f2", "f1", "browser"), metric("send_message", -50, 200, "f1", null, "browser")],
    };
    assert.deepEqual(
      layout(tick).rows.slice(1).map((r) => [r.name, r.depth]),
      [["send_message", 1], ["ui_update", 2]],
    );
  });
});
