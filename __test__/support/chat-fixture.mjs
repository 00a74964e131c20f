// Shared by the chat-stream tests: faux model scripts for real pi AgentSessions (the gateway in
// front of them is gateway.mjs's startChatGateway), and helpers to read a UI message stream and
// to describe what the faux model really produced; the in-memory state of an AbstractChat.

import { rm } from "node:fs/promises";
import { fauxAssistantMessage, fauxText, fauxThinking, fauxToolCall, registerFauxProvider } from "@mariozechner/pi-ai";
import { FAUX_MODEL_ID, FAUX_PROVIDER, HELLO_FILE } from "../../lib/faux-agent.js";

/** The faux-model gateway starter lives in gateway.mjs; re-exported here for the tests that import it from this file. */
export { startChatGateway } from "./gateway.mjs";

/** The user text that selects {@link registerMultiStepModel}'s script. */
export const MULTI_STEP_COMMAND = "/multistep";

/**
 * Registers a faux model (`name`) whose every answer is `answer(context)`, streamed in chunks of
 * `tokens` tokens (4 characters each); its queue of responses refills itself, so it never runs
 * dry. Returns the registration (`getModel()`, `unregister()`).
 * @param {{ name: string, tokens?: number, answer: (context: any) => any }} options
 */
export function registerFauxScript({ name, tokens = 1, answer }) {
	const registration = registerFauxProvider({
		provider: FAUX_PROVIDER,
		models: [{ id: FAUX_MODEL_ID, name, reasoning: false }],
		tokenSize: { min: tokens, max: tokens },
	});
	const factory = (context) => {
		if (registration.getPendingResponseCount() < 16) registration.appendResponses(new Array(64).fill(factory));
		return answer(context);
	};
	registration.setResponses(new Array(64).fill(factory));
	return registration;
}

/**
 * One more faux script for real pi AgentSessions, for what lib/faux-agent.js does not produce:
 * reasoning AND text in more than one step of one message. The first model call answers with
 * reasoning, text and a `read` call of hello.txt; the second (with the tool result) with
 * reasoning and text again. Sessions use it when their last user message starts with
 * {@link MULTI_STEP_COMMAND} (see `startChatGateway({ multiStep: true })`).
 */
export function registerMultiStepModel() {
	return registerFauxScript({
		name: "Faux multi-step script",
		answer: (context) => {
			const messages = context.messages ?? [];
			const lastUser = messages.findLastIndex((m) => m.role === "user");
			const result = messages.slice(lastUser + 1).findLast((m) => m.role === "toolResult");
			if (!result) {
				return fauxAssistantMessage(
					[fauxThinking("First step: read the file."), fauxText("Let me read it."), fauxToolCall("read", { path: HELLO_FILE })],
					{ stopReason: "toolUse" },
				);
			}
			const content = result.content.map((c) => c.text ?? "").join("");
			return fauxAssistantMessage([fauxThinking("Second step: answer."), fauxText(`It says: ${content}`)]);
		},
	});
}

/** The last user message's text in a model context. */
export function lastUserText(context) {
	const user = (context.messages ?? []).findLast((m) => m.role === "user");
	if (!user) return "";
	return typeof user.content === "string" ? user.content : user.content.map((c) => c.text ?? "").join("");
}

/** Removes a directory tree, ignoring errors (cleanup in `finally`/`after`). */
export async function removeDir(dir) {
	if (dir) await rm(dir, { recursive: true, force: true }).catch(() => {});
}

/** The text of pi content blocks of one type (`text` → `.text`, `thinking` → `.thinking`). */
function blockText(content, type) {
	if (!Array.isArray(content)) return "";
	const field = type === "thinking" ? "thinking" : "text";
	return content
		.filter((block) => block && block.type === type)
		.map((block) => block[field])
		.join("");
}

/**
 * What the faux model and pi's tools produced in a session since message index `from`, as a list
 * of parts in the shape {@link uiParts} gives a UIMessage: `step` for each assistant message,
 * then its `reasoning`, `tool` (with the result pi recorded) and `text` parts, in order.
 * @param {{ messages: any[] }} session
 * @param {number} from
 */
export function fauxParts(session, from) {
	const messages = session.messages.slice(from);
	const results = new Map(
		messages.filter((m) => m.role === "toolResult").map((m) => [m.toolCallId, m]),
	);
	const parts = [];
	for (const message of messages) {
		if (message.role !== "assistant") continue;
		parts.push({ kind: "step" });
		for (const block of message.content) {
			if (block.type === "thinking") parts.push({ kind: "reasoning", text: block.thinking });
			else if (block.type === "text") parts.push({ kind: "text", text: block.text });
			else if (block.type === "toolCall") {
				const result = results.get(block.id);
				const tool = { kind: "tool", toolCallId: block.id, toolName: block.name, input: block.arguments };
				if (!result) tool.state = "input-available";
				else if (result.isError) {
					tool.state = "output-error";
					tool.errorText = blockText(result.content, "text");
				} else {
					tool.state = "output-available";
					// What pi's tool_execution_end carries: the tool's `{content, details}`.
					tool.output = JSON.parse(JSON.stringify({ content: result.content, details: result.details }));
				}
				parts.push(tool);
			}
		}
	}
	return parts;
}

/**
 * The parts of an assembled UIMessage in the shape of {@link fauxParts}: `step-start` → `step`,
 * `reasoning`, `text`, and static (`tool-<name>`) or dynamic tool parts → `tool`.
 * @param {{ parts: any[] }} message
 */
export function uiParts(message) {
	return message.parts.map((part) => {
		if (part.type === "step-start") return { kind: "step" };
		if (part.type === "reasoning") return { kind: "reasoning", text: part.text };
		if (part.type === "text") return { kind: "text", text: part.text };
		if (part.type === "dynamic-tool" || part.type.startsWith("tool-")) {
			const tool = {
				kind: "tool",
				toolCallId: part.toolCallId,
				toolName: part.type === "dynamic-tool" ? part.toolName : part.type.slice("tool-".length),
				input: part.input,
				state: part.state,
			};
			if (part.state === "output-error") tool.errorText = part.errorText;
			if (part.state === "output-available") tool.output = part.output;
			return tool;
		}
		return { kind: part.type, part };
	});
}

/**
 * The plain in-memory ChatState an `AbstractChat` (what useChat wraps) needs in node, in any `ai`
 * version we test: `new ChatState(messages)`.
 */
export class ChatState {
	status = "ready";
	error = undefined;
	messages;
	constructor(messages = []) {
		this.messages = messages;
	}
	pushMessage = (message) => {
		this.messages = this.messages.concat(message);
	};
	popMessage = () => {
		this.messages = this.messages.slice(0, -1);
	};
	replaceMessage = (index, message) => {
		this.messages = [...this.messages.slice(0, index), message, ...this.messages.slice(index + 1)];
	};
	snapshot = (value) => structuredClone(value);
}
