/** A metadata value: what an OpenTelemetry attribute can carry, one value. */
export type MetadataValue = string | number | boolean;

/** Metadata as callers pass it: `undefined` and `null` values are left out. */
export type Metadata = Record<string, MetadataValue | null | undefined>;

/** One tracked metric of a report, as the reference document's frontend report has it. */
export interface PerformanceMetric {
  name: string;
  /** Milliseconds. */
  duration: number;
  metadata: Record<string, MetadataValue>;
  /** Present, as `"error"`, only when the metric failed. */
  status?: "error";
}

/** The report of one operation: the reference document's frontend report, plus the trace id. */
export interface PerformanceReport {
  /** A stable name (`send_message`), never a per-message id. */
  operation: string;
  /** Milliseconds from the operation's start to its end. */
  totalDuration: number;
  /** Epoch milliseconds at the operation's start. */
  timestamp: number;
  /** In start order. */
  metrics: PerformanceMetric[];
  /** 32 hex digits: the same trace at the collector and in the service's report. */
  traceId: string;
}

/** Attribute keys under this prefix are the tracker's own, not metadata. */
export const RESERVED_PREFIX = "ha_agent_tracing.";

/** The root span's attribute that names its operation (the backend uses the same key). */
export const OPERATION_ATTRIBUTE = `${RESERVED_PREFIX}operation`;

/** The instrumentation scope of every span the tracker makes; the relay accepts only these as metrics. */
export const TRACER_NAME = "ha_agent_tracing.browser";
