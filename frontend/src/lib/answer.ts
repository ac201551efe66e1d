/**
 * Reads a JSON answer of the service, for the pages' API clients.
 *
 * `body` is the parsed JSON, or null when the answer was not JSON; `detail` is the service's
 * own explanation of a refusal (FastAPI's `{"detail": "..."}`), or `fallback` when it gave none.
 */
export async function readAnswer(response: Response): Promise<unknown> {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

export function detailOf(body: unknown, fallback: string): string {
  return typeof body === "object" && body !== null && "detail" in body && typeof body.detail === "string"
    ? body.detail
    : fallback;
}
