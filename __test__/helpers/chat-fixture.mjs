// Shared by the chat-stream tests: a pi-gateway in front of real pi AgentSessions on the faux
// model, with a handle on every session it creates, and helpers to read a UI message stream
// and to describe what the faux model really produced.

import { rm } from "node:fs/promises";
import { GatewayRuntime } from "../../index.js";
import { createFauxPiAgent } from "../../lib/faux-agent.js";

/**
 * Starts a faux pi agent and a gateway in front of it on 127.0.0.1:0.
 * @param {{ config?: object, faux?: object, primarySessionKey?: string }} [options]
 *   `config` is merged over a minimal valid GatewayConfig (e.g. `{ bearerToken, cors }`).
 */
export async function startChatGateway(options = {}) {
	const agent = await createFauxPiAgent(options.faux ?? {});
	/** @type {Map<string, import("@mariozechner/pi-coding-agent").AgentSession>} */
	const sessions = new Map();
	const primarySessionKey = options.primarySessionKey ?? "main";
	sessions.set(primarySessionKey, agent.primarySession);
	let runtime;
	try {
		runtime = new GatewayRuntime({
			config: {
				bind: "127.0.0.1",
				port: 0,
				session: { idleMinutes: 10, maxQueuePerSession: 16 },
				webhook: { enabled: false, basePath: "/webhook" },
				...options.config,
			},
			primarySessionKey,
			primarySession: agent.primarySession,
			createSession: async (key) => {
				const session = await agent.createSession(key);
				sessions.set(key, session);
				return session;
			},
			log: () => {},
		});
		await runtime.start();
	} catch (error) {
		await agent.close();
		throw error;
	}
	const port = runtime.getAddress().port;
	let closed = false;
	return {
		runtime,
		agent,
		port,
		base: `http://127.0.0.1:${port}`,
		sessions,
		async close() {
			if (closed) return;
			closed = true;
			try {
				await runtime.stop();
			} finally {
				await agent.close();
			}
		},
	};
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
