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

/** The service refused or failed (its HTTP `status`), or could not be reached (`status` 0). */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = "ApiError";
  }
}
