/** The service's chat API, by URLs relative to the page (so it works behind a proxy or ingress). */

import { ApiError, detailOf, readAnswer } from "../lib/answer.js";

export { ApiError };

export interface ToolCallSummary {
  id: string;
  name: string;
  success: boolean;
}

/** `POST api/v1/chat` answer. */
export interface ChatResponse {
  conversation_id: string;
  message: string;
  tool_calls: ToolCallSummary[];
  iterations: number;
  tokens_used: number;
  response_time_ms: number;
  /** What a pending action would do, while it waits for "confirm" or "cancel" (a draft automation, a lock). */
  awaiting_confirmation?: string | null;
}

export interface ConversationMessage {
  role: "user" | "assistant";
  content: string;
}

/** `GET api/v1/conversations/{id}` answer. */
export interface Conversation {
  conversation_id: string;
  messages: ConversationMessage[];
}


function url(path: string): string {
  return new URL(path, document.baseURI).href;
}

async function request(path: string, init: RequestInit): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(url(path), init);
  } catch {
    throw new ApiError("The service cannot be reached. Check your connection and retry.", 0);
  }
  const body = await readAnswer(response);
  if (!response.ok) {
    const detail = detailOf(body, response.statusText);
    throw new ApiError(`The service answered ${response.status}: ${detail}`, response.status);
  }
  return body;
}

/** Sends one chat message; `headers` carry the W3C trace context of the page's `api_call` span. */
export async function sendChatMessage(
  message: string,
  conversationId: string | null,
  headers: Record<string, string>,
): Promise<ChatResponse> {
  const body: Record<string, string> = { message };
  if (conversationId !== null) {
    body["conversation_id"] = conversationId;
  }
  return (await request("api/v1/chat", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  })) as ChatResponse;
}

/** Reads a conversation back from the service. */
export async function loadConversation(conversationId: string): Promise<Conversation> {
  return (await request(`api/v1/conversations/${encodeURIComponent(conversationId)}`, {
    method: "GET",
    headers: { accept: "application/json" },
  })) as Conversation;
}
