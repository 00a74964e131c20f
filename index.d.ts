// Type definitions for pi-gateway. Hand-written: the names and shapes are the seed gateway's
// (`gateway-runtime.ts`), so a program written against the seed compiles unchanged.

import type { SessionManager } from "@mariozechner/pi-coding-agent";

export interface GatewayConfig {
	/** Address to listen on: an IP address or "localhost". */
	bind: string;
	/** TCP port, 0 to 65535. `0` picks a free port; `getAddress()` reports the real one. */
	port: number;
	/** When set, every route but `/health` and webhooks needs `Authorization: Bearer <token>`. */
	bearerToken?: string;
	session: {
		/** Minutes a non-primary session may sit idle before it is disposed. Fractions allowed. */
		idleMinutes: number;
		/** Messages that may wait behind the running one; more are refused (HTTP 429). */
		maxQueuePerSession: number;
		/** How often idle sessions are looked for. Default 60000. */
		sweepIntervalMs?: number;
		/** How long `createSession` may take before its requests fail. Default 30000. */
		createTimeoutMs?: number;
	};
	webhook: {
		enabled: boolean;
		/** Must start with "/". Webhooks are `POST basePath` and `POST basePath/<route...>`. */
		basePath: string;
		/** Required header `x-pi-webhook-secret`. Without it, `start()` refuses a non-loopback bind. */
		secret?: string;
	};
	limits?: {
		/** Largest request body accepted; larger ones get 413 unread. Default 1048576 (1 MiB). */
		maxBodyBytes?: number;
		/** Time a client has to send its request head. Default 10000. */
		headerTimeoutMs?: number;
		/** Connections served at once; more are closed on accept. Default 1024. */
		maxConnections?: number;
	};
	sse?: {
		/** A `: ping` comment on a stream idle this long. Default 15000. */
		heartbeatMs?: number;
		/** Events one subscriber may fall behind before it is disconnected. Default 4096. */
		bufferEvents?: number;
	};
	cors?: {
		/** Origins allowed to call from a browser: exact origins, or "*". Unset: no CORS headers. */
		origins?: "*" | string[];
	};
	/** How long `stop()` waits for open connections to finish. Default 2000. */
	shutdownTimeoutMs?: number;
}

/** Image content passed through to `prompt()` (pi-ai's `ImageContent`). */
export interface GatewayImageContent {
	type: "image";
	data: string;
	mimeType: string;
}

/**
 * The session the gateway drives. `AgentSession` from `@mariozechner/pi-coding-agent`
 * fits it, and so does a test double.
 */
export interface GatewayAgentSession {
	prompt(text: string, options?: { images?: GatewayImageContent[]; source?: any }): Promise<unknown>;
	subscribe(listener: (event: any) => void): () => void;
	abort(): Promise<unknown>;
	dispose(): void;
	readonly sessionId: string;
	readonly messages: readonly unknown[];
	/** Optional: used to reset the primary session. Without it, reset aborts and clears. */
	newSession?: (...args: any[]) => Promise<unknown>;
	/** Optional: roots `getGatewaySessionDir()`. */
	readonly sessionManager?: { getSessionDir(): string };
}

export type GatewaySessionFactory = (sessionKey: string) => Promise<GatewayAgentSession>;

export interface GatewayMessageRequest {
	sessionKey: string;
	text: string;
	source?: "interactive" | "rpc" | "extension";
	images?: GatewayImageContent[];
	metadata?: Record<string, unknown>;
}

export interface GatewayMessageResult {
	ok: boolean;
	response: string;
	error?: string;
	sessionKey: string;
}

export interface GatewaySessionSnapshot {
	sessionKey: string;
	sessionId: string;
	messageCount: number;
	queueDepth: number;
	processing: boolean;
	lastActiveAt: number;
	createdAt: number;
}

export interface GatewayRuntimeOptions {
	config: GatewayConfig;
	primarySessionKey: string;
	primarySession: GatewayAgentSession;
	createSession: GatewaySessionFactory;
	log?: (message: string) => void;
}

export type GatewayEvent =
	| { type: "hello"; sessionKey: string; snapshot: GatewaySessionSnapshot }
	| { type: "session_state"; sessionKey: string; snapshot: GatewaySessionSnapshot }
	| { type: "turn_start"; sessionKey: string }
	| { type: "turn_end"; sessionKey: string }
	| { type: "message_start"; sessionKey: string; role?: string }
	| { type: "token"; sessionKey: string; delta: string; contentIndex: number }
	| { type: "thinking"; sessionKey: string; delta: string; contentIndex: number }
	| { type: "tool_start"; sessionKey: string; toolCallId: string; toolName: string; args: unknown }
	| { type: "tool_update"; sessionKey: string; toolCallId: string; toolName: string; partialResult: unknown }
	| {
			type: "tool_complete";
			sessionKey: string;
			toolCallId: string;
			toolName: string;
			result: unknown;
			isError: boolean;
	  }
	| { type: "message_complete"; sessionKey: string; text: string }
	| { type: "error"; sessionKey: string; error: string }
	| { type: "aborted"; sessionKey: string };

/** Counters of what crossed from the agent into the native core. */
export interface GatewayStats {
	/** Agent events forwarded. */
	events: number;
	/** Payload bytes of those events (strings and JSON only; never whole messages). */
	eventBytes: number;
}

export declare class GatewayRuntime {
	/** Validates the config; throws an Error naming the bad field. */
	constructor(options: GatewayRuntimeOptions);
	/** Creates the primary session and listens. Rejects on a busy port, naming the address. */
	start(): Promise<void>;
	/** Ends streams, answers every pending message (`ok: false`), closes the port. */
	stop(): Promise<void>;
	isReady(): boolean;
	/** The configured bind address and the port actually bound. */
	getAddress(): { bind: string; port: number };
	enqueueMessage(request: GatewayMessageRequest): Promise<GatewayMessageResult>;
	/** `hello` first, then the session's events. Resolves with the unsubscribe function. */
	addSubscriber(sessionKey: string, listener: (event: GatewayEvent) => void): Promise<() => void>;
	/** False when nothing was running. */
	abortSession(sessionKey: string): boolean;
	/** Queued (not running) messages are answered `ok: false`, "Queue cleared". */
	clearQueue(sessionKey: string): void;
	resetSession(sessionKey: string): Promise<void>;
	listSessions(): GatewaySessionSnapshot[];
	getSession(sessionKey: string): GatewaySessionSnapshot | undefined;
	getGatewaySessionDir(sessionKey: string): string;
	/** Diagnostics for tests and benchmarks (not in the seed). */
	stats(): GatewayStats;
}

export declare function setActiveGatewayRuntime(runtime: GatewayRuntime | null): void;
export declare function getActiveGatewayRuntime(): GatewayRuntime | null;
export declare function sanitizeSessionKey(sessionKey: string): string;
/** `SessionManager.create(cwd, join(root, sanitizeSessionKey(key)))`; needs `@mariozechner/pi-coding-agent`. */
export declare function createGatewaySessionManager(
	cwd: string,
	sessionKey: string,
	sessionDirRoot: string,
): SessionManager;
