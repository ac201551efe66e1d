import type { Context } from "@opentelemetry/api";
import { SpanStatusCode } from "@opentelemetry/api";
import { hrTimeToMilliseconds } from "@opentelemetry/core";
import type { ReadableSpan, Span, SpanProcessor } from "@opentelemetry/sdk-trace";
import { OPERATION_ATTRIBUTE, RESERVED_PREFIX, type MetadataValue, type PerformanceMetric, type PerformanceReport } from "./types.js";

/**
 * Folds the spans of one operation into its report when the operation's root span ends.
 *
 * Spans are grouped by their operation's root (the span started without a parent in this page):
 * every child started under an operation records the root it belongs to, so operations that
 * overlap (two sends, a reload while a send runs) never mix. The report's metrics are the
 * operation's finished child spans in start order; their attributes are the metadata.
 */
export class ReportProcessor implements SpanProcessor {
  /** Root span id -> finished child spans, while the root runs. */
  private readonly pending = new Map<string, ReadableSpan[]>();
  /** Span id -> its root span id, for spans not yet ended. */
  private readonly rootOf = new Map<string, string>();

  constructor(
    private readonly onReport: (report: PerformanceReport) => void,
    private readonly maxPending = 100,
  ) {}

  onStart(span: Span, _parentContext: Context): void {
    const id = span.spanContext().spanId;
    const parent = span.parentSpanContext;
    const root = parent === undefined || parent.isRemote ? undefined : this.rootOf.get(parent.spanId);
    if (root === undefined) {
      if (this.pending.size >= this.maxPending) {
        return; // an operation nobody ends must not grow memory without bound
      }
      this.pending.set(id, []);
      this.rootOf.set(id, id);
    } else {
      this.rootOf.set(id, root);
    }
  }

  onEnd(span: ReadableSpan): void {
    const id = span.spanContext().spanId;
    const root = this.rootOf.get(id);
    this.rootOf.delete(id);
    if (root === undefined) {
      return;
    }
    const spans = this.pending.get(root);
    if (spans === undefined) {
      return;
    }
    if (root !== id) {
      spans.push(span);
      return;
    }
    this.pending.delete(root);
    for (const [child, itsRoot] of this.rootOf) {
      if (itsRoot === root) {
        this.rootOf.delete(child); // still open when its operation ended: not in the report
      }
    }
    this.onReport(foldReport(span, spans));
  }

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    this.pending.clear();
    this.rootOf.clear();
    return Promise.resolve();
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

function metadataOf(span: ReadableSpan): Record<string, MetadataValue> {
  const metadata: Record<string, MetadataValue> = {};
  for (const [key, value] of Object.entries(span.attributes)) {
    if (key.startsWith(RESERVED_PREFIX) || value === undefined || value === null) {
      continue;
    }
    if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") {
      metadata[key] = value;
    }
  }
  return metadata;
}

/** One operation's report from its root span and its finished children. */
export function foldReport(root: ReadableSpan, children: readonly ReadableSpan[]): PerformanceReport {
  const ordered = [...children].sort(
    (a, b) => hrTimeToMilliseconds(a.startTime) - hrTimeToMilliseconds(b.startTime),
  );
  const metrics: PerformanceMetric[] = ordered.map((span) => {
    const metric: PerformanceMetric = {
      name: span.name,
      duration: round(hrTimeToMilliseconds(span.duration)),
      metadata: metadataOf(span),
    };
    if (span.status.code === SpanStatusCode.ERROR) {
      metric.status = "error";
    }
    return metric;
  });
  const operation = root.attributes[OPERATION_ATTRIBUTE];
  return {
    operation: typeof operation === "string" ? operation : root.name,
    totalDuration: round(hrTimeToMilliseconds(root.duration)),
    timestamp: round(hrTimeToMilliseconds(root.startTime)),
    metrics,
    traceId: root.spanContext().traceId,
  };
}
