/** The time charts (uPlot on canvas): latency percentiles, volume and error rate, tokens per request. */

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import type { Bucket, Cell, Timeline } from "./api";

type Series = (number | null)[];

/** Every bucket start from `since` to `until` (gaps stay `null`, so lines break where nothing ran). */
export function slots(timeline: Timeline): number[] {
  const width = timeline.bucket_seconds;
  const first = Math.floor(timeline.since / width) * width;
  const out: number[] = [];
  for (let t = first; t <= timeline.until; t += width) {
    out.push(t);
  }
  return out;
}

function column(xs: number[], buckets: Bucket[], pick: (b: Bucket) => number | null): Series {
  const at = new Map(buckets.map((b) => [b.start, b]));
  return xs.map((x) => {
    const bucket = at.get(x);
    return bucket ? pick(bucket) : null;
  });
}

/** The cell of `metric` ("" for the request's total) in a bucket. */
function cellOf(bucket: Bucket, metric: string): Cell | undefined {
  return metric === "" ? bucket.total : bucket.metrics[metric];
}

/** Every bucket drawn as a dot too: a range with few requests still shows them. */
const POINTS = { show: true, size: 6 };

const COLORS = { p50: "#1a73e8", p95: "#f29900", p99: "#d93025", requests: "#5f6368", errors: "#d93025" };

function size(container: HTMLElement): { width: number; height: number } {
  return { width: Math.max(container.clientWidth, 320), height: 220 };
}

function ms(_u: uPlot, values: number[]): string[] {
  return values.map((v) => `${v} ms`);
}

/** An axis in the page's colours (light or dark scheme), read when the chart is drawn. */
function axis(options: uPlot.Axis = {}): uPlot.Axis {
  const style = getComputedStyle(document.documentElement);
  const text = style.getPropertyValue("--text").trim() || "#1c1e21";
  const line = style.getPropertyValue("--line").trim() || "#dadce0";
  return { stroke: text, ticks: { stroke: line }, ...options, grid: { stroke: line, ...options.grid } };
}

/** A chart that redraws with new data and tells tests (and people) how many points it drew. */
export class Chart {
  private plot: uPlot | null = null;

  constructor(
    private readonly container: HTMLElement,
    private readonly options: (width: number, height: number) => uPlot.Options,
  ) {}

  draw(data: uPlot.AlignedData): void {
    const { width, height } = size(this.container);
    this.plot?.destroy();
    this.plot = new uPlot(this.options(width, height), data, this.container);
    const points = data.slice(1).reduce((n, s) => n + Array.from(s).filter((v) => v !== null).length, 0);
    this.container.dataset["points"] = String(points);
    this.container.dataset["drawn"] = String(Number(this.container.dataset["drawn"] ?? "0") + 1);
  }

  resize(): void {
    if (this.plot) {
      this.plot.setSize(size(this.container));
    }
  }
}

export function latencyChart(container: HTMLElement): Chart {
  return new Chart(container, (width, height) => ({
    width,
    height,
    scales: { x: { time: true } },
    axes: [axis(), axis({ values: ms, size: 70 })],
    series: [
      {},
      { label: "p50", stroke: COLORS.p50, width: 2, points: POINTS },
      { label: "p95", stroke: COLORS.p95, width: 2, points: POINTS },
      { label: "p99", stroke: COLORS.p99, width: 2, dash: [6, 4], points: POINTS },
    ],
  }));
}

export function latencyData(timeline: Timeline, metric: string): uPlot.AlignedData {
  const xs = slots(timeline);
  const pick = (key: "p50" | "p95" | "p99") => (b: Bucket) => cellOf(b, metric)?.[key] ?? null;
  return [xs, column(xs, timeline.buckets, pick("p50")), column(xs, timeline.buckets, pick("p95")), column(xs, timeline.buckets, pick("p99"))];
}

export function volumeChart(container: HTMLElement): Chart {
  return new Chart(container, (width, height) => ({
    width,
    height,
    scales: { x: { time: true }, rate: { range: [0, 100] } },
    axes: [
      axis(),
      axis({ label: "requests", size: 60 }),
      axis({ scale: "rate", side: 1, values: (_u, v) => v.map((x) => `${x} %`), grid: { show: false } }),
    ],
    series: [
      {},
      { label: "requests", stroke: COLORS.requests, fill: "rgba(95, 99, 104, 0.15)", width: 1, paths: uPlot.paths.bars!({ size: [0.8, 40] }) },
      { label: "error rate %", stroke: COLORS.errors, width: 2, scale: "rate", points: POINTS },
    ],
  }));
}

export function volumeData(timeline: Timeline): uPlot.AlignedData {
  const xs = slots(timeline);
  return [
    xs,
    column(xs, timeline.buckets, (b) => b.requests),
    column(xs, timeline.buckets, (b) => (b.requests ? (100 * b.errors) / b.requests : null)),
  ];
}

export function tokensChart(container: HTMLElement): Chart {
  return new Chart(container, (width, height) => ({
    width,
    height,
    scales: { x: { time: true } },
    axes: [axis(), axis({ label: "tokens per request", size: 60 })],
    series: [
      {},
      { label: "input tokens", stroke: "#1a73e8", width: 2, points: POINTS },
      { label: "output tokens", stroke: "#188038", width: 2, points: POINTS },
    ],
  }));
}

export function tokensData(timeline: Timeline): uPlot.AlignedData {
  const xs = slots(timeline);
  const per = (key: "input_tokens" | "output_tokens") => (b: Bucket) => (b.requests ? b[key] / b.requests : null);
  return [xs, column(xs, timeline.buckets, per("input_tokens")), column(xs, timeline.buckets, per("output_tokens"))];
}
