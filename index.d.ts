// Type definitions for pi-gateway. Hand-written: the names and shapes are the seed gateway's
// (`gateway-runtime.ts`), so a program written against the seed compiles unchanged.

import type { SessionManager } from "@mariozechner/pi-coding-agent";

export interface GatewayConfig {
	/** Address to listen on: an IP address or "localhost". */
	bind: string;
	/** TCP port, 0 to 65535. `0` picks a free port; `getAddress()` reports the real one. */
	port: number;
	/** When set, every route but `/health` and webhooks needs `Authorization: Bearer <token>`. Must not be empty. */
	bearerToken?: string;
	/**
	 * Host names (no scheme, no port) accepted in the `Host` header besides loopback names
	 * (`localhost`, `*.localhost`, `127.x.x.x`, `[::1]`). On a loopback bind any other `Host` is
	 * refused (403, DNS rebinding); on another bind the check applies only when this is set.
	 */
	allowedHosts?: string[];
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
		/** Required header `x-pi-webhook-secret`. Without it, `start()` refuses a non-loopback bind. Must not be empty. */
		secret?: string;
		/**
		 * Let a webhook body name its session with `sessionKey` (otherwise 400). Even then only keys
		 * that start with `sessionKeyPrefix` are reachable, never the primary session. Default false.
		 */
		allowRequestSessionKey?: boolean;
		/** Prefix of every webhook session key, derived (`<prefix><route>:<sender>`) or named. Default "webhook:". */
		sessionKeyPrefix?: string;
	};
	limits?: {
		/** Largest request body accepted; larger ones get 413 unread. Default 1048576 (1 MiB). */
		maxBodyBytes?: number;
		/** Time a client has to send its request head. Default 10000. */
		headerTimeoutMs?: number;
		/** Connections served at once; past it (and the reserve) new ones are closed on accept. Default 1024. */
		maxConnections?: number;
		/**
		 * Connections accepted past `maxConnections` that may only ask `GET /health` (anything else: 503
		 * with `Retry-After`), so a monitor still gets an answer under a flood. Default 32.
		 */
		reserveConnections?: number;
		/** Time a client has to send a whole request body, from its head; then 408 and the connection closes. Default 30000. */
		bodyTimeoutMs?: number;
		/** Largest `/chat` body (a `useChat` request carries the conversation). Default 8388608 (8 MiB). */
		maxChatBodyBytes?: number;
		/** Images in one message. Default 8. */
		maxImages?: number;
		/** Size of one image, decoded. Default 5242880 (5 MiB). */
		maxImageBytes?: number;
	};
	sse?: {
		/** A `: ping` comment on a stream idle this long. Default 15000. */
		heartbeatMs?: number;
		/** Events one subscriber may fall behind before it is disconnected. Default 4096. */
		bufferEvents?: number;
	};
	cors?: {
		/** Origins allowed to call from a browser: exact origins (`http(s)://host[:port]`, no path or trailing slash), or "*". Unset: no CORS headers, and every request with a foreign `Origin` is refused (403). */
		origins?: "*" | string[];
	};
	/** How long `stop()` waits for open connections to finish. Default 2000. */
	shutdownTimeoutMs?: number;
}

/**
 * An image for `prompt()` (pi-ai's `ImageContent`), checked at the door: base64 `data` whose bytes
 * really are of `mimeType`, at most `limits.maxImageBytes` decoded.
 */
export interface GatewayImageContent {
	type?: "image";
	data: string;
	/** "image/png", "image/jpeg", "image/gif" or "image/webp" (typed `string`, as pi-ai's `ImageContent`). */
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
	/**
	 * Optional: resets the primary session. Without it, reset starts a new conversation with pi's own
	 * pieces when they are there (`abort()`, `clearQueue()`, `sessionManager.newSession()`,
	 * `agent.reset()`), else aborts and clears and keeps the conversation (with a logged warning).
	 */
	newSession?: (...args: any[]) => Promise<unknown>;
	/** Optional: clears pi's own steering and follow-up queue on a primary reset. */
	clearQueue?: () => unknown;
	/** Optional: pi's agent, reset on a primary reset. */
	readonly agent?: { reset(): void; sessionId?: string; waitForIdle?(): Promise<void> };
	/** Optional: roots `getGatewaySessionDir()`; `newSession()` starts a new session file on a primary reset. */
	readonly sessionManager?: { getSessionDir(): string; newSession?(...args: any[]): unknown; getSessionId?(): string };
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
