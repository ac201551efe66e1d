/** The performance API, by URLs relative to the page, with the token a person entered for this session. */

import { ApiError, detailOf, readAnswer } from "../lib/answer";

export { ApiError };

const TOKEN_KEY = "ha-agent-tracing.api-token";

/** One metric of a report, as the service folds it. */
export interface ReportMetric {
  name: string;
  duration: number;
  metadata: Record<string, unknown>;
  start_offset: number;
  parent: string | null;
  parent_span_id?: string | null;
  span_id: string;
  status: "ok" | "error";
  source?: string;
  error?: string;
}

/** One request's report. */
export interface Report {
  operation: string;
  total_duration: number;
  timestamp: number;
  metrics: ReportMetric[];
  trace_id: string;
  span_id: string;
  root_span?: string;
  status?: "ok" | "error";
}

/** Count, percentiles (ms) and failures of one cell of the timeline. */
export interface Cell {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  errors: number;
}

export interface Bucket {
  start: number;
  requests: number;
  errors: number;
  input_tokens: number;
  output_tokens: number;
  total: Cell;
  metrics: Record<string, Cell>;
}

/** `GET api/v1/performance/summary?bucket=...` */
export interface Timeline {
  since: number;
  until: number;
  bucket_seconds: number;
  operation: string | null;
  buckets: Bucket[];
  overall: {
    requests: number;
    errors: number;
    input_tokens: number;
    output_tokens: number;
    total: Cell | null;
    metrics: Record<string, Cell>;
  };
}

/** One rule that has fired, from `GET api/v1/performance/alerts` (firing first). */
export interface Alert {
  rule: string;
  state: "firing" | "resolved";
  /** Epoch seconds: when it fired, or when it resolved. */
  since: number;
  /** In `unit`: milliseconds, or a share of calls (0.05 is 5 %). */
  value: number;
  threshold: number;
  unit: "ms" | "ratio";
  summary: string;
}

/** A metric's part of the critical path of typical (p50) and slow (p95) requests. */
export interface Share {
  name: string;
  share_p50: number;
  share_p95: number;
  ms_p50: number;
  ms_p95: number;
}

/** One operation of `GET api/v1/performance/insights` (`ha-agent-tracing analyze`). */
export interface Insights {
  requests: number;
  p50_ms: number;
  p95_ms: number;
  bottleneck: Share | null;
  shares: Share[];
  concurrency: {
    requests_with_concurrency: number;
    saved_ms_per_request: number;
    metrics: string[];
  };
  cache: { name: string; hits: number; misses: number; hit_rate: number; hit_ms_p50: number | null; miss_ms_p50: number | null }[];
  repeated_tool_calls: { trace_id: string; tool: string; calls: number; repeat_ms: number }[];
  top_token_turns: { trace_id: string; name: string; tokens: number; prompt_tokens: number; completion_tokens: number }[];
  notes: string[];
}

/** How many of one operation's reports the insights were worked out from. */
export interface InsightsSample {
  /** All the range's reports, or an evenly spaced sample of them. */
  analysed: number;
  in_range: number;
}

/** `GET api/v1/performance/insights?since=&until=&operation=`: where the time goes over a range. */
export interface InsightsAnswer {
  since: number | null;
  until: number | null;
  /** `history` (with what is not written yet, from memory), or `memory` when history is off or unreadable. */
  source: "history" | "memory";
  /** Most reports analysed per operation; a range with more is sampled evenly in time. */
  sample_limit: number;
  count: number;
  in_range: number;
  samples: Record<string, InsightsSample>;
  operations: Record<string, Insights>;
}

/** `GET api/v1/performance/config` */
export interface DashboardConfig {
  /** The Jaeger UI each trace links to, when HA_AGENT_TRACING_JAEGER_URL is set. */
  jaeger_url: string | null;
  /** History's state (`ok`, `starting`, `unavailable`, `closed`) or `off`. */
  history: string;
}

/** Count, mean, percentiles and max (ms) of one series. */
export interface Stats {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** One operation of `GET api/v1/performance/summary` (no bucket). */
export interface Summary {
  count: number;
  total_duration: Stats;
  metrics: Record<string, Stats>;
}


export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string | null): void {
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  } else {
    sessionStorage.removeItem(TOKEN_KEY);
  }
}

/** GET a performance endpoint; `null` when it does not exist here (404). */
export async function get<T>(path: string, query: Record<string, string | number | undefined> = {}): Promise<T | null> {
  const url = new URL(`api/v1/performance/${path}`, document.baseURI);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) {
      url.searchParams.set(key, String(value));
    }
  }
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = storedToken();
  if (token) {
    headers["Authorization"] = `Bearer ${token}`;
  }
  let response: Response;
  try {
    response = await fetch(url, { headers, cache: "no-store" });
  } catch {
    throw new ApiError("The service cannot be reached.", 0);
  }
  if (response.status === 404) {
    return null;
  }
  const body = await readAnswer(response);
  if (!response.ok) {
    throw new ApiError(detailOf(body, `HTTP ${response.status}`), response.status);
  }
  return body as T;
}
