import type { Context } from "@opentelemetry/api";
import type { ReadableSpan, Span, SpanProcessor } from "@opentelemetry/sdk-trace";

/**
 * Span processors that can be added after the provider is built.
 *
 * The SDK takes its processors once, at construction; the tracker exists as soon as its module is
 * imported, and the page decides later where spans go (`exportTo`). One processor failing does not
 * stop the others: telemetry must never break the page.
 */
export class FanoutProcessor implements SpanProcessor {
  private readonly processors: SpanProcessor[] = [];

  add(processor: SpanProcessor): void {
    this.processors.push(processor);
  }

  onStart(span: Span, parentContext: Context): void {
    for (const processor of this.processors) {
      try {
        processor.onStart(span, parentContext);
      } catch (error) {
        reportOnce(error);
      }
    }
  }

  onEnd(span: ReadableSpan): void {
    for (const processor of this.processors) {
      try {
        processor.onEnd(span);
      } catch (error) {
        reportOnce(error);
      }
    }
  }

  async forceFlush(): Promise<void> {
    await Promise.allSettled(this.processors.map((processor) => processor.forceFlush()));
  }

  async shutdown(): Promise<void> {
    await Promise.allSettled(this.processors.map((processor) => processor.shutdown()));
  }
}

let reported = false;

/** A failure inside the telemetry: said once on the console, never thrown at the page. */
export function reportOnce(error: unknown): void {
  if (!reported) {
    reported = true;
    console.warn("[Performance] telemetry error (the page carries on):", error);
  }
}
