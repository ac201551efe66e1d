import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace";
import {
  DEFAULT_SERVICE_NAME,
  OPERATION_ATTRIBUTE,
  PerformanceTracker,
  TRACER_NAME,
  headline,
  type PerformanceReport,
} from "../src/performanceTracker.js";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface Harness {
  tracker: PerformanceTracker;
  spans: InMemorySpanExporter;
  lines: string[];
}

function harness(options: { maxReports?: number; paintMs?: number } = {}): Harness {
  const spans = new InMemorySpanExporter();
  const lines: string[] = [];
  const paintMs = options.paintMs ?? 0;
  const tracker = new PerformanceTracker({
    ...(options.maxReports === undefined ? {} : { maxReports: options.maxReports }),
    log: (line) => lines.push(line),
    painted: () => sleep(paintMs),
    spanProcessors: [new SimpleSpanProcessor({ exporter: spans })],
  });
  return { tracker, spans, lines };
}

describe("a send_message report", () => {
  let h: Harness;
  let report: PerformanceReport;
  let before: number;

  beforeEach(async () => {
    h = harness({ paintMs: 25 });
    before = Date.now();
    const op = h.tracker.startOperation("send_message");
    await op.trackUpdate("ui_update", { operation: "add_user_message", message_length: 12 }, () => undefined);
    await op.track("api_call", { operation: "sendChatMessage", conversation_id: "new", success: false }, async (m) => {
      await sleep(40);
      m.update({ success: true, conversation_id: "conv_1", response_time_ms: 31.5, tokens_used: 420, tool_calls_count: 2, iterations: 2 });
    });
    await op.track("response_processing", { message_length: 30 }, () => 1);
    op.end();
    const reports = h.tracker.getReports();
    assert.equal(reports.length, 1);
    report = reports[0]!;
  });

  it("has the document's keys, a stable operation name and the trace id", () => {
    assert.deepEqual(Object.keys(report).sort(), ["metrics", "operation", "timestamp", "totalDuration", "traceId"]);
    assert.equal(report.operation, "send_message");
    assert.match(report.traceId, /^[0-9a-f]{32}$/);
    assert.notEqual(report.traceId, "0".repeat(32));
  });

  it("keeps metrics in start order with their metadata, reserved attributes left out", () => {
    assert.deepEqual(
      report.metrics.map((m) => [m.name, m.metadata]),
      [
        ["ui_update", { operation: "add_user_message", message_length: 12 }],
        ["api_call", { operation: "sendChatMessage", conversation_id: "conv_1", success: true, response_time_ms: 31.5, tokens_used: 420, tool_calls_count: 2, iterations: 2 }],
        ["response_processing", { message_length: 30 }],
      ],
    );
  });

  it("measures in milliseconds: a UI update until painted, the total over every metric", () => {
    const [ui, api] = report.metrics;
    assert.ok(ui!.duration >= 24, `ui_update ${ui!.duration} ms ends after the paint (25 ms), not at the DOM call`);
    assert.ok(api!.duration >= 39 && api!.duration < 1000, `api_call ${api!.duration} ms`);
    assert.ok(report.totalDuration >= ui!.duration + api!.duration - 0.5, `total ${report.totalDuration}`);
  });

  it("stamps the start in epoch milliseconds", () => {
    assert.ok(report.timestamp >= before - 5 && report.timestamp <= Date.now(), `${report.timestamp} vs ${before}`);
  });

  it("logs one [Performance] line per report", () => {
    assert.equal(h.lines.length, 1);
    assert.match(h.lines[0]!, /^\[Performance\] send_message \d+\.\d\d ms \(trace [0-9a-f]{8}…\); slowest: api_call \d+\.\d\d ms/);
  });

  it("is made of spans: one root per operation, each metric its child, on the browser's scope and service", () => {
    const spans = h.spans.getFinishedSpans();
    const root = spans.find((s) => s.name === "send_message")!;
    assert.ok(root, "a root span named after the operation");
    assert.equal(root.parentSpanContext, undefined);
    assert.equal(root.attributes[OPERATION_ATTRIBUTE], "send_message");
    const children = spans.filter((s) => s !== root);
    assert.deepEqual(children.map((s) => s.name).sort(), ["api_call", "response_processing", "ui_update"]);
    for (const child of children) {
      assert.equal(child.spanContext().traceId, report.traceId);
      assert.equal(child.parentSpanContext?.spanId, root.spanContext().spanId);
    }
    for (const span of spans) {
      assert.equal(span.instrumentationScope.name, TRACER_NAME);
      assert.equal(span.resource.attributes["service.name"], DEFAULT_SERVICE_NAME);
    }
  });
});

describe("the document's queries", () => {
  it("keeps the last 100 reports, oldest first", () => {
    const { tracker } = harness();
    for (let n = 0; n < 105; n++) {
      tracker.startOperation("send_message", { n }).end();
      tracker.startOperation(n % 2 ? "odd" : "even").end();
    }
    const reports = tracker.getReports();
    assert.equal(reports.length, 100);
    // 210 made, the first 110 dropped: the oldest kept is n=55's pair (send_message, odd), the newest n=104's "even".
    assert.deepEqual(reports.slice(0, 2).map((r) => r.operation), ["send_message", "odd"]);
    assert.equal(reports[99]!.operation, "even");
    assert.equal(tracker.getReportsForOperation("send_message").length, 50);
  });

  it("honours maxReports and refuses a bad one", () => {
    const { tracker } = harness({ maxReports: 3 });
    for (let n = 0; n < 5; n++) tracker.startOperation(`op${n}`).end();
    assert.deepEqual(tracker.getReports().map((r) => r.operation), ["op2", "op3", "op4"]);
    assert.throws(() => new PerformanceTracker({ maxReports: 0 }), /maxReports/);
  });

  it("averages an operation's total durations, 0 when there are none", async () => {
    const { tracker } = harness();
    assert.equal(tracker.getAverageDuration("send_message"), 0);
    for (const ms of [10, 30]) {
      const op = tracker.startOperation("send_message");
      await sleep(ms);
      op.end();
    }
    tracker.startOperation("other").end();
    const totals = tracker.getReportsForOperation("send_message").map((r) => r.totalDuration);
    assert.equal(totals.length, 2);
    assert.ok(totals[0]! >= 9 && totals[1]! >= 29, String(totals));
    assert.equal(tracker.getAverageDuration("send_message"), (totals[0]! + totals[1]!) / 2);
  });

  it("exports the reports as JSON that reads back equal", async () => {
    const { tracker } = harness();
    const op = tracker.startOperation("send_message");
    await op.track("api_call", { success: true }, () => undefined);
    op.end();
    assert.deepEqual(JSON.parse(tracker.exportReports()), tracker.getReports());
  });

  it("returns copies: a caller cannot change the kept reports", () => {
    const { tracker } = harness();
    tracker.startOperation("send_message").end();
    tracker.getReports().pop();
    assert.equal(tracker.getReports().length, 1);
  });
});

describe("metrics", () => {
  it("gives the W3C traceparent of the metric's own span", async () => {
    const { tracker, spans } = harness();
    const op = tracker.startOperation("send_message");
    let headers: Record<string, string> = {};
    await op.track("api_call", {}, (m) => {
      headers = m.traceHeaders();
    });
    op.end();
    const api = spans.getFinishedSpans().find((s) => s.name === "api_call")!;
    assert.equal(headers["traceparent"], `00-${api.spanContext().traceId}-${api.spanContext().spanId}-01`);
  });

  it("marks a failing metric as an error, lets the error through, and still reports", async () => {
    const { tracker, spans } = harness();
    const op = tracker.startOperation("send_message");
    await assert.rejects(
      op.track("api_call", { success: false }, async () => {
        throw new TypeError("Failed to fetch");
      }),
      TypeError,
    );
    op.end();
    const [report] = tracker.getReports();
    assert.deepEqual(report!.metrics.map((m) => [m.name, m.status]), [["api_call", "error"]]);
    const span = spans.getFinishedSpans().find((s) => s.name === "api_call")!;
    assert.equal(span.status.message, "TypeError: Failed to fetch");
    assert.equal(span.events[0]?.name, "exception");
  });

  it("leaves out null and undefined metadata", async () => {
    const { tracker } = harness();
    const op = tracker.startOperation("send_message");
    await op.track("ui_update", { operation: "show_loading", gone: undefined, none: null }, (m) => {
      m.set("also_gone", undefined);
    });
    op.end();
    assert.deepEqual(tracker.getReports()[0]!.metrics[0]!.metadata, { operation: "show_loading" });
  });

  it("ends metrics still open when their operation ends, and ending twice is harmless", () => {
    const { tracker, spans } = harness();
    const op = tracker.startOperation("send_message");
    const open = op.startMetric("conversation_reload", { message_count: 2 });
    op.end();
    op.end();
    open.end();
    assert.deepEqual(tracker.getReports()[0]!.metrics.map((m) => m.name), ["conversation_reload"]);
    assert.equal(tracker.getReports().length, 1);
    assert.equal(spans.getFinishedSpans().length, 2);
  });

  it("never mixes the metrics of overlapping operations", async () => {
    const { tracker } = harness();
    const first = tracker.startOperation("send_message", { n: 1 });
    const second = tracker.startOperation("send_message", { n: 2 });
    const a = first.startMetric("api_call", { which: "first" });
    const b = second.startMetric("api_call", { which: "second" });
    b.end();
    second.end();
    a.end();
    first.end();
    const [r2, r1] = tracker.getReports();
    assert.deepEqual(r2!.metrics.map((m) => m.metadata["which"]), ["second"]);
    assert.deepEqual(r1!.metrics.map((m) => m.metadata["which"]), ["first"]);
    assert.notEqual(r1!.traceId, r2!.traceId);
  });

  it("refuses a metric or operation without a name", () => {
    const { tracker } = harness();
    assert.throws(() => tracker.startOperation(""), /name/);
    assert.throws(() => tracker.startOperation("x").startMetric(""), /name/);
  });

  it("keeps the page running when the log callback throws", () => {
    const tracker = new PerformanceTracker({
      log: () => {
        throw new Error("console gone");
      },
    });
    const warn = console.warn;
    console.warn = () => undefined;
    try {
      tracker.startOperation("send_message").end();
    } finally {
      console.warn = warn;
    }
    assert.equal(tracker.getReports().length, 1);
  });
});

describe("headline", () => {
  it("names the three slowest metrics", () => {
    const line = headline({
      operation: "send_message",
      totalDuration: 812.4,
      timestamp: 0,
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      metrics: [
        { name: "ui_update", duration: 5.2, metadata: {} },
        { name: "api_call", duration: 640.1, metadata: {} },
        { name: "response_processing", duration: 0.3, metadata: {} },
        { name: "conversation_reload", duration: 40, metadata: {} },
      ],
    });
    assert.equal(
      line,
      "[Performance] send_message 812.40 ms (trace 4bf92f35…); slowest: api_call 640.10 ms, conversation_reload 40.00 ms, ui_update 5.20 ms",
    );
  });
});
