// Issue 14 (conversations): persistence, history, management and the new events, used the way
// the README shows them. If this compiles against index.d.ts, the README's examples and the new
// types agree, pi's AgentSession still fits the session shape, and the history's messages are
// AI SDK UIMessages for ai 5, 6 and 7.
import type { UIMessage } from "ai";
import type { UIMessage as UIMessageV5 } from "ai-v5";
import type { UIMessage as UIMessageV6 } from "ai-v6";
import { type AgentSession, createAgentSession } from "@mariozechner/pi-coding-agent";
import { createFauxPiAgent } from "../../lib/faux-agent.js";
import {
	type GatewayAgentSession,
	type GatewayChatFinishMetadata,
	type GatewayChatStartMetadata,
	type GatewayConfig,
	type GatewayDeleteSessionResult,
	type GatewayEvent,
	type GatewayHistoryMetadata,
	type GatewayHistoryPage,
	type GatewayMessageResult,
	type GatewayModelInfo,
	type GatewayModelRef,
	type GatewayModels,
	type GatewayPiHistoryEntry,
	type GatewayRenameResult,
	GatewayRuntime,
	type GatewayRuntimeOptions,
	type GatewaySessionSnapshot,
	type GatewaySessionStats,
	type GatewaySetModelResult,
	type GatewaySetThinkingResult,
	type GatewayStopReason,
	type GatewayThinkingLevel,
	type GatewayUIAssistantMessage,
	type GatewayUIMessage,
	type GatewayUIMessageMetadata,
	type GatewayUsage,
	openGatewaySessionManager,
} from "../../index.js";

export const historyConfig: GatewayConfig = {
	bind: "127.0.0.1",
	port: 0,
	session: { idleMinutes: 30, maxQueuePerSession: 8, maxSessions: 1000 },
	webhook: { enabled: false, basePath: "/webhook" },
};

/** pi's AgentSession still fits the session shape, with every optional method the routes call. */
export function fits(session: AgentSession): GatewayAgentSession {
	return session;
}

/** The README's persistence example: conversations continue; stored keys load; purge deletes. */
export async function persistent(primarySession: AgentSession, cwd: string, root: string): Promise<GatewayRuntime> {
	const options: GatewayRuntimeOptions = {
		config: historyConfig,
		primarySessionKey: "main",
		primarySession,
		createSession: async (key) =>
			(await createAgentSession({ cwd, sessionManager: openGatewaySessionManager(cwd, key, root) })).session,
		sessionExists: (key) => key.length > 0,
		deleteSession: async (key) => {
			console.log("delete", key);
		},
	};
	return new GatewayRuntime(options);
}

/** The faux agent's sessionExists / deleteSession are the options of the same names. */
export async function fauxOptions(): Promise<GatewayRuntime> {
	const agent = await createFauxPiAgent({ sessionDir: "/tmp/pi-gateway-data" });
	return new GatewayRuntime({
		config: historyConfig,
		primarySessionKey: "main",
		primarySession: agent.primarySession,
		createSession: agent.createSession,
		sessionExists: agent.sessionExists,
		deleteSession: agent.deleteSession,
	});
}

/** A client of the history and management routes. */
export async function client(base: string): Promise<void> {
	const page = (await (await fetch(`${base}/sessions/demo/messages?limit=50`)).json()) as GatewayHistoryPage;
	if (page.format === "ui") {
		for (const message of page.messages) {
			if (message.role === "assistant") {
				const meta: GatewayHistoryMetadata = message.metadata;
				const usage: GatewayUsage = meta.usage;
				const model: GatewayModelRef | undefined = meta.model;
				const stop: GatewayStopReason | undefined = meta.stopReason;
				console.log(meta.runId, usage.totalTokens, usage.cost.total, model?.id, stop);
				for (const part of message.parts) {
					if (part.type === "dynamic-tool") {
						if (part.state === "output-available") console.log(part.toolName, part.input, part.output.content);
						else if (part.state === "output-error") console.log(part.errorText);
					} else if (part.type === "reasoning" || part.type === "text") console.log(part.text);
				}
			} else {
				for (const part of message.parts) console.log(part.type === "file" ? part.url : part.text);
			}
		}
		if (page.hasMore && page.messages.length > 0) {
			const before = encodeURIComponent(page.messages[0].id);
			const older = (await (await fetch(`${base}/sessions/demo/messages?before=${before}`)).json()) as GatewayHistoryPage;
			console.log(older.messages.length);
		}
	} else {
		const entries: GatewayPiHistoryEntry[] = page.messages;
		console.log(entries.map((e) => `${e.id}<-${e.parentId ?? "root"} ${e.timestamp} ${e.message.role}`));
	}

	const stats = (await (await fetch(`${base}/sessions/demo/stats`)).json()) as GatewaySessionStats;
	console.log(stats.tokens.total, stats.cost, stats.contextUsage?.percent ?? "unknown");
	const { models, current } = (await (await fetch(`${base}/models`)).json()) as GatewayModels;
	const reasoning: GatewayModelInfo[] = models.filter((m) => m.reasoning && m.input.includes("image"));
	console.log(reasoning.length, current?.provider);
	const put = (path: string, body: unknown) =>
		fetch(`${base}/sessions/demo/${path}`, { method: "PUT", body: JSON.stringify(body) }).then((r) => r.json());
	const switched = (await put("model", { provider: "faux", id: "faux-2" })) as GatewaySetModelResult;
	const level: GatewayThinkingLevel | null = switched.thinkingLevel;
	const thinking = (await put("thinking", { level: "high" })) as GatewaySetThinkingResult;
	console.log(switched.model.id, level, thinking.thinkingLevel);
	const renamed = (await (
		await fetch(`${base}/sessions/demo`, { method: "PATCH", body: JSON.stringify({ name: "Demo" }) })
	).json()) as GatewayRenameResult;
	const compacted = (await (
		await fetch(`${base}/sessions/demo/compact`, { method: "POST", body: "{}" })
	).json()) as GatewayMessageResult;
	const deleted = (await (
		await fetch(`${base}/sessions/demo?purge=true`, { method: "DELETE" })
	).json()) as GatewayDeleteSessionResult;
	console.log(renamed.name, compacted.response, deleted.purged);
}

/** The snapshot's new fields and the new events. */
export async function watch(gateway: GatewayRuntime): Promise<() => void> {
	const snapshot: GatewaySessionSnapshot | undefined = gateway.getSession("demo");
	const name: string | undefined = snapshot?.name;
	const model: GatewayModelRef | undefined = snapshot?.model;
	const thinking: GatewayThinkingLevel | undefined = snapshot?.thinkingLevel;
	console.log(name, model, thinking);
	const busy = await gateway.enqueueMessage({ sessionKey: "another", text: "hi" });
	if (!busy.ok && busy.error === "Too many sessions") console.log("retry later", busy.sessionKey);
	return gateway.addSubscriber("demo", (event: GatewayEvent) => {
		switch (event.type) {
			case "agent_start":
			case "agent_end":
				console.log(event.type, event.runId);
				break;
			case "message_complete": {
				const usage: GatewayUsage | null = event.usage;
				const by: GatewayModelRef | null = event.model;
				console.log(event.text, usage?.totalTokens, event.stopReason, by?.id);
				break;
			}
			case "compaction_start":
				console.log(event.reason);
				break;
			case "compaction_end":
				console.log(event.reason, event.aborted, event.willRetry, event.tokensBefore, event.errorMessage);
				break;
			case "auto_retry_start":
				console.log(event.attempt, event.maxAttempts, event.delayMs, event.errorMessage);
				break;
			case "auto_retry_end":
				console.log(event.success, event.attempt, event.finalError);
				break;
			case "thinking_level_changed":
				console.log(event.level satisfies GatewayThinkingLevel);
				break;
			case "session_info_changed":
				console.log(event.name ?? "(no name)");
				break;
			case "model_changed":
				console.log(event.model.provider, event.model.id);
				break;
		}
	});
}

/** History messages are AI SDK UIMessages (ai 5, 6 and 7), with the gateway's metadata. */
export function asUIMessages(messages: GatewayUIMessage[]): {
	v7: UIMessage<GatewayUIMessageMetadata>[];
	v6: UIMessageV6<GatewayUIMessageMetadata>[];
	v5: UIMessageV5<GatewayUIMessageMetadata>[];
} {
	return { v7: messages, v6: messages, v5: messages };
}

/** What a useChat message's metadata holds after a chat stream: start and finish merged. */
export function streamed(start: GatewayChatStartMetadata, finish: GatewayChatFinishMetadata): GatewayUIMessageMetadata {
	const merged: GatewayUIMessageMetadata = { ...start, ...finish };
	const fromHistory: GatewayUIAssistantMessage["metadata"] = { usage: finish.usage, runId: start.runId };
	const again: GatewayUIMessageMetadata = fromHistory;
	return merged.runId ? merged : again;
}

// The README's history snippet (under "History"), as written there.
type ChatMessage = UIMessage<GatewayUIMessageMetadata>;

export async function loadHistory(base: string): Promise<ChatMessage[]> {
	const res = await fetch(`${base}/messages?limit=1000`);
	const page = (await res.json()) as GatewayHistoryPage;
	return page.format === "ui" ? page.messages : [];
}

export function tokens(message: ChatMessage): string {
	const usage = message.metadata?.usage;
	return usage ? `${usage.totalTokens} tokens, $${usage.cost.total.toFixed(4)}` : "";
}
