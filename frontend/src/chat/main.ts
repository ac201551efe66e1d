/**
 * The chat page: the counterpart of the reference document's HAAgentChat.tsx, tracked the same way.
 *
 * One send is one `send_message` operation; its metrics are the document's: `ui_update`
 * (add_user_message, show_loading, render_response, handle_error — each until painted), `api_call`
 * (its W3C traceparent makes the service's `POST /api/v1/chat` span its child), `response_processing`
 * and, for a new conversation, `conversation_reload`.
 */
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { performanceTracker, type Operation } from "../performanceTracker.js";
import { ApiError, loadConversation, sendChatMessage, type ChatResponse, type ConversationMessage } from "./api.js";
import "./style.css";

const OPERATION = "send_message";

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (found === null) {
    throw new Error(`the page has no #${id}`);
  }
  return found as T;
}

const form = element<HTMLFormElement>("composer");
const input = element<HTMLInputElement>("message");
const send = element<HTMLButtonElement>("send");
const list = element<HTMLOListElement>("messages");
const loading = element<HTMLElement>("loading");
const errorBox = element<HTMLElement>("error");
const errorText = element<HTMLElement>("error-text");
const retry = element<HTMLButtonElement>("retry");
const preview = element<HTMLElement>("preview");
const previewText = element<HTMLElement>("preview-text");
const confirmButton = element<HTMLButtonElement>("confirm");
const cancelButton = element<HTMLButtonElement>("cancel");
const newConversation = element<HTMLButtonElement>("new-conversation");

let conversationId: string | null = null;
let busy = false;
let failed: { text: string; bubble: HTMLLIElement } | null = null;
/** The tool notes of this conversation's answers, in order: a reload from the service keeps them. */
let toolNotes: string[][] = [];

performanceTracker.exportTo(
  new OTLPTraceExporter({ url: new URL("api/v1/telemetry/traces", document.baseURI).href }),
);

function bubble(role: ConversationMessage["role"], text: string, tools: string[] = []): HTMLLIElement {
  const item = document.createElement("li");
  item.className = `message ${role}`;
  const who = document.createElement("span");
  who.className = "visually-hidden";
  who.textContent = role === "user" ? "You: " : "Agent: ";
  item.append(who, text);
  if (tools.length) {
    const note = document.createElement("span");
    note.className = "tools";
    note.textContent = `tools: ${tools.join(", ")}`;
    item.append(note);
  }
  return item;
}

function setBusy(value: boolean): void {
  busy = value;
  send.disabled = value;
  confirmButton.disabled = value;
  cancelButton.disabled = value;
  retry.disabled = value;
}

interface View {
  text: string;
  tools: string[];
  /** What waits for the user's confirmation, if anything. */
  confirmation: string | null;
}

function toView(response: ChatResponse): View {
  const tools = response.tool_calls.map((call) => (call.success ? call.name : `${call.name} (failed)`));
  return { text: response.message, tools, confirmation: response.awaiting_confirmation ?? null };
}

async function reload(op: Operation, id: string): Promise<void> {
  await op.track("conversation_reload", { conversation_id: id }, async (metric) => {
    const conversation = await loadConversation(id);
    let answers = 0;
    list.replaceChildren(
      ...conversation.messages.map((m) =>
        m.role === "assistant" ? bubble(m.role, m.content, toolNotes[answers++]) : bubble(m.role, m.content),
      ),
    );
    metric.set("message_count", conversation.messages.length);
    await metric.endWhenPainted();
  });
}

/** The document's handleSend(): one tracked operation per message. */
async function handleSend(text: string): Promise<void> {
  if (busy || !text.trim()) {
    return;
  }
  setBusy(true);
  errorBox.hidden = true;
  preview.hidden = true;
  const isNew = conversationId === null;
  const op = performanceTracker.startOperation(OPERATION, { is_new_conversation: isNew });
  let userBubble: HTMLLIElement | null = null;
  try {
    await op.trackUpdate("ui_update", { operation: "add_user_message", message_length: text.length }, () => {
      userBubble = bubble("user", text);
      list.append(userBubble);
      userBubble.scrollIntoView({ block: "nearest" });
    });
    await op.trackUpdate("ui_update", { operation: "show_loading" }, () => {
      loading.hidden = false;
    });
    const response = await op.track(
      "api_call",
      { operation: "sendChatMessage", conversation_id: conversationId ?? "new", success: false },
      async (metric) => {
        try {
          const answer = await sendChatMessage(text, conversationId, metric.traceHeaders());
          metric.update({
            success: true,
            conversation_id: answer.conversation_id,
            response_time_ms: answer.response_time_ms,
            tokens_used: answer.tokens_used,
            tool_calls_count: answer.tool_calls.length,
            iterations: answer.iterations,
          });
          return answer;
        } catch (error) {
          metric.set("status_code", error instanceof ApiError ? error.status : 0);
          throw error;
        }
      },
    );
    const view = await op.track("response_processing", {}, (metric) => {
      const result = toView(response);
      metric.update({
        message_length: result.text.length,
        tool_calls_count: result.tools.length,
        has_preview: result.confirmation !== null,
      });
      return result;
    });
    await op.trackUpdate("ui_update", { operation: "render_response", message_length: view.text.length }, () => {
      loading.hidden = true;
      const answer = bubble("assistant", view.text, view.tools);
      list.append(answer);
      toolNotes.push(view.tools);
      previewText.textContent = view.confirmation === null ? "" : `The agent is ready to ${view.confirmation}.`;
      preview.hidden = view.confirmation === null;
      (view.confirmation === null ? answer : preview).scrollIntoView({ block: "nearest" });
    });
    conversationId = response.conversation_id;
    if (isNew) {
      await reload(op, response.conversation_id);
    }
    failed = null;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    await op.trackUpdate(
      "ui_update",
      { operation: "handle_error", message_length: message.length, status_code: error instanceof ApiError ? error.status : 0 },
      () => {
        loading.hidden = true;
        errorText.textContent = message;
        errorBox.hidden = false;
        if (userBubble !== null) {
          userBubble.classList.add("failed");
          failed = { text, bubble: userBubble };
        }
      },
    );
  } finally {
    op.end();
    setBusy(false);
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value;
  if (!text.trim() || busy) {
    return;
  }
  input.value = "";
  void handleSend(text);
  input.focus();
});

retry.addEventListener("click", () => {
  if (failed === null) {
    return;
  }
  const { text, bubble: stale } = failed;
  failed = null;
  stale.remove();
  void handleSend(text).then(() => input.focus());
});

confirmButton.addEventListener("click", () => {
  void handleSend("confirm").then(() => input.focus());
});

cancelButton.addEventListener("click", () => {
  void handleSend("cancel").then(() => input.focus());
});

newConversation.addEventListener("click", () => {
  if (busy) {
    return;
  }
  conversationId = null;
  failed = null;
  toolNotes = [];
  list.replaceChildren();
  errorBox.hidden = true;
  preview.hidden = true;
  input.focus();
});
