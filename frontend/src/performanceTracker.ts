/**
 * The reference document's frontend performance tracker, on OpenTelemetry JS.
 *
 *   import { performanceTracker } from "../performanceTracker";
 *
 *   const op = performanceTracker.startOperation("send_message");
 *   await op.trackUpdate("ui_update", { operation: "add_user_message", message_length: 12 }, () => {
 *     list.append(bubble);                        // measured until the browser has painted it
 *   });
 *   const response = await op.track("api_call", { operation: "sendChatMessage" }, (metric) =>
 *     fetch(url, { headers: { ...metric.traceHeaders() } }),   // W3C traceparent: the server's span is a child
 *   );
 *   op.end();                                     // one report, one "[Performance]" console line
 *
 *   performanceTracker.getReports();              // the last 100 reports, oldest first
 *   performanceTracker.getReportsForOperation("send_message");
 *   performanceTracker.getAverageDuration("send_message");   // ms; 0 when there are none
 *   performanceTracker.exportReports();           // JSON
 *
 * Every operation is a root span and every metric a child span of it (name = metric name,
 * attributes = metadata). Reports are folded from the finished spans by a span processor, the same
 * design as the Python tracker; `exportTo(exporter)` ships the same spans, batched, and the SDK's
 * browser batch processor flushes them when the page is hidden. No zone.js and no global context
 * manager: a metric's parent is its operation, passed explicitly.
 */
import {
  ROOT_CONTEXT,
  SpanStatusCode,
  defaultTextMapSetter,
  trace,
  type Attributes,
  type Span,
  type Tracer,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BatchSpanProcessor,
  TracerProvider,
  type BatchSpanProcessorOptions,
  type SpanExporter,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace";
import { FanoutProcessor, reportOnce } from "./lib/fanout.js";
import { painted } from "./lib/painted.js";
import { ReportProcessor } from "./lib/reportProcessor.js";
import {
  OPERATION_ATTRIBUTE,
  TRACER_NAME,
  type Metadata,
  type MetadataValue,
  type PerformanceMetric,
  type PerformanceReport,
} from "./lib/types.js";

export {
  OPERATION_ATTRIBUTE,
  TRACER_NAME,
  type Metadata,
  type MetadataValue,
  type PerformanceMetric,
  type PerformanceReport,
};

/** `service.name` of the chat page's spans; the service's relay accepts spans of this service only. */
export const DEFAULT_SERVICE_NAME = "ai-automation-ui";

export interface TrackerOptions {
  /** `service.name` of every span. Default {@link DEFAULT_SERVICE_NAME}. */
  serviceName?: string;
  /** Reports kept, oldest dropped first. Default 100, as in the reference document. */
  maxReports?: number;
  /** Where each report's one-line summary goes; `false` for nowhere. Default `console.log`. */
  log?: ((line: string, report: PerformanceReport) => void) | false;
  /** Resolves when the browser has painted (tests replace it). Default: a double requestAnimationFrame. */
  painted?: () => Promise<void>;
  /** More span processors, e.g. a `SimpleSpanProcessor` over an in-memory exporter in tests. */
  spanProcessors?: SpanProcessor[];
}

const propagator = new W3CTraceContextPropagator();

function attributesOf(metadata: Metadata | undefined): Attributes {
  const attributes: Attributes = {};
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (value !== undefined && value !== null) {
        attributes[key] = value;
      }
    }
  }
  return attributes;
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** One tracked metric: a span, open until `end()`. */
export class Metric {
  private ended = false;

  constructor(
    readonly name: string,
    private readonly span: Span,
    private readonly waitForPaint: () => Promise<void>,
  ) {}

  /** Adds or replaces one metadata value (`undefined`/`null` are left out). */
  set(key: string, value: MetadataValue | null | undefined): this {
    if (value !== undefined && value !== null) {
      this.span.setAttribute(key, value);
    }
    return this;
  }

  /** Adds or replaces several metadata values. */
  update(metadata: Metadata): this {
    this.span.setAttributes(attributesOf(metadata));
    return this;
  }

  /** Marks the metric failed (status error, the exception recorded); the caller decides what follows. */
  recordError(error: unknown): this {
    if (error instanceof Error) {
      this.span.recordException(error);
    }
    this.span.setStatus({ code: SpanStatusCode.ERROR, message: describe(error) });
    return this;
  }

  /** The W3C `traceparent` (and `tracestate`) headers that make a server's span this metric's child. */
  traceHeaders(): Record<string, string> {
    const headers: Record<string, string> = {};
    propagator.inject(trace.setSpan(ROOT_CONTEXT, this.span), headers, defaultTextMapSetter);
    return headers;
  }

  /** Ends the metric now. Ending twice is harmless. */
  end(): void {
    if (!this.ended) {
      this.ended = true;
      this.span.end();
    }
  }

  /** Ends the metric once the browser has painted the DOM changes made so far. */
  async endWhenPainted(): Promise<void> {
    try {
      await this.waitForPaint();
    } finally {
      this.end();
    }
  }
}

/** One operation (e.g. one send): the root span whose children are its metrics. */
export class Operation {
  private ended = false;
  private readonly open = new Set<Metric>();

  constructor(
    readonly operation: string,
    private readonly root: Span,
    private readonly tracer: Tracer,
    private readonly waitForPaint: () => Promise<void>,
  ) {}

  /** 32 hex digits: the trace this operation's report and spans belong to. */
  get traceId(): string {
    return this.root.spanContext().traceId;
  }

  /** Starts a metric; the caller ends it. */
  startMetric(name: string, metadata?: Metadata): Metric {
    if (!name) {
      throw new Error("a metric needs a name");
    }
    const parent = trace.setSpan(ROOT_CONTEXT, this.root);
    const span = this.tracer.startSpan(name, { attributes: attributesOf(metadata) }, parent);
    const metric = new Metric(name, span, this.waitForPaint);
    this.open.add(metric);
    return metric;
  }

  /**
   * Runs `work` as one metric, ended when it returns or its promise settles. A failure marks the
   * metric failed and propagates.
   */
  async track<T>(name: string, metadata: Metadata, work: (metric: Metric) => T | Promise<T>): Promise<T> {
    const metric = this.startMetric(name, metadata);
    try {
      return await work(metric);
    } catch (error) {
      metric.recordError(error);
      throw error;
    } finally {
      metric.end();
      this.open.delete(metric);
    }
  }

  /**
   * Runs `update` (a DOM change) as one metric, ended once the browser has painted it, not when the
   * DOM call returns.
   */
  async trackUpdate<T>(name: string, metadata: Metadata, update: (metric: Metric) => T): Promise<T> {
    const metric = this.startMetric(name, metadata);
    try {
      const result = update(metric);
      await metric.endWhenPainted();
      return result;
    } catch (error) {
      metric.recordError(error);
      throw error;
    } finally {
      metric.end();
      this.open.delete(metric);
    }
  }

  /** Adds metadata to the operation's root span (it is not a metric of the report). */
  update(metadata: Metadata): this {
    this.root.setAttributes(attributesOf(metadata));
    return this;
  }

  /** Ends the operation: metrics still open are ended first, then the report is made. */
  end(): void {
    if (this.ended) {
      return;
    }
    this.ended = true;
    for (const metric of this.open) {
      metric.end();
    }
    this.open.clear();
    this.root.end();
  }
}

export class PerformanceTracker {
  private readonly reports: PerformanceReport[] = [];
  private readonly maxReports: number;
  private readonly provider: TracerProvider;
  private readonly tracer: Tracer;
  private readonly exports = new FanoutProcessor();
  private readonly log: ((line: string, report: PerformanceReport) => void) | false;
  private readonly waitForPaint: () => Promise<void>;

  constructor(options: TrackerOptions = {}) {
    const maxReports = options.maxReports ?? 100;
    if (!Number.isInteger(maxReports) || maxReports < 1) {
      throw new Error(`maxReports must be a positive integer, not ${String(maxReports)}`);
    }
    this.maxReports = maxReports;
    this.log = options.log ?? ((line, report) => console.log(line, report));
    this.waitForPaint = options.painted ?? painted;
    const reportProcessor = new ReportProcessor((report) => this.keep(report));
    this.provider = new TracerProvider({
      resource: resourceFromAttributes({
        "service.name": options.serviceName ?? DEFAULT_SERVICE_NAME,
        "telemetry.sdk.language": "webjs",
      }),
      spanProcessors: [reportProcessor, this.exports, ...(options.spanProcessors ?? [])],
    });
    this.tracer = this.provider.getTracer(TRACER_NAME);
  }

  /** Starts an operation: a root span named after it (a stable name such as `send_message`). */
  startOperation(operation: string, metadata?: Metadata): Operation {
    if (!operation) {
      throw new Error("an operation needs a name");
    }
    const attributes = { ...attributesOf(metadata), [OPERATION_ATTRIBUTE]: operation };
    const root = this.tracer.startSpan(operation, { attributes }, ROOT_CONTEXT);
    return new Operation(operation, root, this.tracer, this.waitForPaint);
  }

  /** Ships every span through `exporter`, batched; flushed when the page is hidden. */
  exportTo(exporter: SpanExporter, options: Omit<BatchSpanProcessorOptions, "exporter"> = {}): void {
    this.exports.add(new BatchSpanProcessor({ scheduledDelayMillis: 1000, ...options, exporter }));
  }

  /** Sends the spans waiting in the export batch now. */
  forceFlush(): Promise<void> {
    return this.provider.forceFlush();
  }

  /** The last reports, oldest first (a copy). */
  getReports(): PerformanceReport[] {
    return [...this.reports];
  }

  /** The reports of one operation, oldest first. */
  getReportsForOperation(operation: string): PerformanceReport[] {
    return this.reports.filter((report) => report.operation === operation);
  }

  /** Mean total duration of an operation's reports in ms; 0 when there are none. */
  getAverageDuration(operation: string): number {
    const reports = this.getReportsForOperation(operation);
    if (reports.length === 0) {
      return 0;
    }
    return reports.reduce((sum, report) => sum + report.totalDuration, 0) / reports.length;
  }

  /** Every report as a JSON array. */
  exportReports(): string {
    return JSON.stringify(this.reports, null, 2);
  }

  /** Forgets every report. */
  clearReports(): void {
    this.reports.length = 0;
  }

  private keep(report: PerformanceReport): void {
    this.reports.push(report);
    if (this.reports.length > this.maxReports) {
      this.reports.splice(0, this.reports.length - this.maxReports);
    }
    if (this.log !== false) {
      try {
        this.log(headline(report), report);
      } catch (error) {
        reportOnce(error);
      }
    }
  }
}

/** `[Performance] send_message 812.40 ms (trace 4bf92f35…); slowest: api_call 640.10 ms, ...` */
export function headline(report: PerformanceReport, slowest = 3): string {
  const top = [...report.metrics]
    .sort((a, b) => b.duration - a.duration)
    .slice(0, slowest)
    .map((metric) => `${metric.name} ${metric.duration.toFixed(2)} ms`);
  const trace = `(trace ${report.traceId.slice(0, 8)}…)`;
  const tail = top.length ? `; slowest: ${top.join(", ")}` : "";
  return `[Performance] ${report.operation} ${report.totalDuration.toFixed(2)} ms ${trace}${tail}`;
}

/** The page's tracker, as the reference document imports it. */
export const performanceTracker = new PerformanceTracker();

declare global {
  interface Window {
    performanceTracker: PerformanceTracker;
  }
}

if (typeof window !== "undefined") {
  // The document's test instructions read reports from the browser console.
  window.performanceTracker = performanceTracker;
}
