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
		/** What a message without `mode` does while its session is busy. Default "queue". */
		defaultMode?: GatewayMessageMode;
		/**
		 * Sessions held in memory at once, the primary included: 1 to 1000000, default 1000. A new
		 * session past it first evicts the least recently active idle non-primary session (nothing
		 * running or queued, no event subscriber); with none idle, the request is refused: HTTP 503
		 * "Too many sessions" with `Retry-After: 5`, `enqueueMessage` resolves `ok: false` with that
		 * error, `submitMessage` rejects with it.
		 */
		maxSessions?: number;
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
	events?: {
		/**
		 * Frames each session key keeps in its event log, for `Last-Event-ID` / `?after=` /
		 * `addSubscriber(..., { after })` replay and run streams; the oldest are dropped first. Default 4096.
		 */
		replayEvents?: number;
		/** Bytes of encoded frames each session key keeps in its event log. Default 4194304 (4 MiB). */
		replayBytes?: number;
	};
	runs?: {
		/** How long an ended run stays readable (`getRun`, `GET /sessions/:key/runs/:runId`). Default 3600000 (1 h). */
		retainMs?: number;
		/** Ended runs kept per session key; the oldest are forgotten first. Default 100. */
		retainPerSession?: number;
	};
	idempotency?: {
		/** How long an `Idempotency-Key` is remembered. Default 86400000 (24 h). */
		ttlMs?: number;
		/** Keys remembered at once; past it the oldest is forgotten. Default 100000. */
		maxKeys?: number;
	};
	chat?: {
		/**
		 * When true, a `/chat` client that disconnects aborts its run (or cancels it while queued).
		 * Default false: the run goes on and stays resumable at `GET /sessions/:key/chat/:chatId/stream`.
		 */
		abortOnDisconnect?: boolean;
		/**
		 * The major version of the `ai` package your chat clients use: 5, 6 or 7. Default 6. From 6 on,
		 * a tool call waiting for approval is a `tool-approval-request` chunk and the stream pauses
		 * (the SDK's own approval flow); with 5, it is a `data-approval-request` part and the stream
		 * stays open while a person decides through the REST route.
		 */
		protocol?: 5 | 6 | 7;
	};
	/**
	 * Approvals (a person decides before the agent runs a tool). Default: no policy, every tool runs.
	 */
	approval?: {
		/**
		 * Per tool name (`bash`, `write`, `edit`, ...; `"*"` is every tool not named): `allow` runs it,
		 * `ask` holds the call until a client decides (or the timeout denies it), `deny` blocks it at
		 * once (the model is told "Denied by policy"). A tool not named, with no `"*"`: `allow`.
		 */
		policy?: Record<string, GatewayApprovalPolicy>;
		/** How long a call waits for a decision before it is denied. Default 120000 (2 min); at most one day. */
		timeoutMs?: number;
	};
	cors?: {
		/** Origins allowed to call from a browser: exact origins (`http(s)://host[:port]`, no path or trailing slash), or "*". Unset: no CORS headers, and every request with a foreign `Origin` is refused (403). */
		origins?: "*" | string[];
	};
	/** How long `stop()` waits for open connections to finish. Default 2000. */
	shutdownTimeoutMs?: number;
	/** `GET /metrics` (Prometheus). */
	metrics?: {
		/** Serve `/metrics` without the bearer token (e.g. to a scraper on a private network). Default false. */
		public?: boolean;
	};
	/**
	 * Outbound webhooks (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
	 * `webhook-signature: v1,<base64 HMAC-SHA256>`), and per-request callbacks
	 * (`POST /sessions/:key/messages {text, callback: {url}}`). Default: nothing is sent.
	 */
	webhooks?: {
		/** Receivers told of every event they subscribe to (all events without `events`). At most 16. */
		outbound?: GatewayWebhookTarget[];
		/**
		 * Hosts a per-request `callback.url` may name: exact names, `*.example.com` (any subdomain),
		 * or IP literals (`127.0.0.1`, `[::1]`). A host resolving to a private, loopback or
		 * link-local address is refused unless it is listed exactly (a wildcard does not lift that).
		 */
		allowedHosts?: string[];
		/** Signs per-request callbacks (`whsec_<base64>`). Without it, `callback` is refused with 400. */
		callbackSecret?: string;
		/** The wait before each retry of a failed delivery. Default [5000, 30000, 120000, 600000, 3600000]; then it is given up. At most 20 entries, each at most a day. */
		retryScheduleMs?: number[];
		/** One attempt's limit: connect and answer. Default 10000. */
		timeoutMs?: number;
		/** Deliveries held at once (queued, in flight, waiting to retry); past it new ones are dropped and logged. Default 1000. */
		maxPending?: number;
	};
	/** Several gateways sharing sessions through Redis. Unset: one node. */
	cluster?: GatewayClusterConfig;
}

/**
 * Several gateways sharing sessions through Redis (see the README, "Running several gateways").
 * Unset: one node, no Redis.
 */
export interface GatewayClusterConfig {
	/** `redis://[user:password@]host:port/db` (or a unix socket URL). Required. */
	redisUrl: string;
	/** `http://host:port`: how the other nodes reach this one. Required. */
	advertiseUrl: string;
	/** 1 to 128 of `[A-Za-z0-9._:-]`. Default: a new UUID at each start. */
	nodeId?: string;
	/** Every Redis key starts with it. Default `"pi-gateway:"`. */
	prefix?: string;
	/** A session's lease; a dead node's sessions wait this long before another node takes them. Default 10000 (1000 to 600000). */
	leaseMs?: number;
}

/** The events an outbound webhook can carry: `{type, timestamp, data}`, `data` the run record or the approval. */
export type GatewayWebhookEvent = "run.succeeded" | "run.failed" | "run.aborted" | "run.cancelled" | "approval.requested";

export interface GatewayWebhookTarget {
	/** `https://…` or `http://…`. */
	url: string;
	/** `whsec_` followed by the base64 of 16 to 64 random bytes (the Standard Webhooks form). */
	secret: string;
	/** Only these events (default: all). */
	events?: GatewayWebhookEvent[];
}

/** A level of `logLevel`, least first. */
export type GatewayLogLevel = "debug" | "info" | "warn" | "error";

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
	/**
	 * Optional: clears pi's own steering and follow-up queue (on a primary reset, `clearQueue`,
	 * `DELETE /sessions/:key/queue`); returns what it removed.
	 */
	clearQueue?: () => unknown;
	/** Optional, with `followUp`: lets `steer` messages reach a running prompt (else they are queued). */
	steer?(text: string, images?: GatewayImageContent[]): Promise<unknown>;
	/** Optional, with `steer`: lets `followUp` messages reach a running prompt (else they are queued). */
	followUp?(text: string, images?: GatewayImageContent[]): Promise<unknown>;
	/**
	 * Optional: pi's agent, reset on a primary reset. With `approval.policy`, the gateway chains its
	 * check onto `beforeToolCall` (the session's own hook runs first) and calls `abort()` when an
	 * abort denies a waiting call; a session without an agent cannot have its tool calls held.
	 */
	readonly agent?: {
		reset(): void;
		sessionId?: string;
		waitForIdle?(): Promise<void>;
		abort?(): void;
		beforeToolCall?: (context: any, signal?: AbortSignal) => Promise<{ block?: boolean; reason?: string } | undefined>;
	};
	/**
	 * Optional: pi's SessionManager. `getSessionDir()` roots `getGatewaySessionDir()`; `newSession()`
	 * starts a new session file on a reset. The history route reads `getBranch()` (without it, the
	 * session's `messages`), and `appendCustomEntry()` marks where each run begins
	 * (`pi-gateway.run {runId}`), so an answer keeps its run id in the history.
	 */
	readonly sessionManager?: {
		getSessionDir(): string;
		newSession?(...args: any[]): unknown;
		getSessionId?(): string;
		getBranch?(): readonly unknown[];
		appendCustomEntry?(customType: string, data?: unknown): unknown;
		isPersisted?(): boolean;
		getSessionFile?(): string | undefined;
		getHeader?(): unknown;
	};
	// The management routes call these when the session has them; without one, its route answers
	// 501 "Not supported by this session: <method>()". pi's AgentSession has them all.
	/** Optional: `POST /sessions/:key/compact`; its result's `summary` is the run's response. */
	compact?(customInstructions?: string): Promise<unknown>;
	/** Optional: `GET /sessions/:key/stats` (without `sessionFile`). */
	getSessionStats?(): unknown;
	/** Optional: `PATCH /sessions/:key {name}`. */
	setSessionName?(name: string): void;
	/** The session's name, shown in its snapshot. */
	readonly sessionName?: string;
	/** Optional: `PUT /sessions/:key/thinking {level}`. */
	setThinkingLevel?(level: GatewayThinkingLevel): void;
	/** The session's thinking level, shown in its snapshot. */
	readonly thinkingLevel?: string;
	/** Optional, with `modelRegistry`: `PUT /sessions/:key/model {provider, id}`. */
	setModel?(model: any): Promise<unknown>;
	/** The session's model, shown in its snapshot as `{provider, id}`. */
	readonly model?: { provider: string; id: string };
	/**
	 * Optional: pi's ModelRegistry. `find()` resolves `PUT …/model` (404 when it finds nothing),
	 * `hasConfiguredAuth()` refuses a model without credentials (400), `getAvailable()` lists
	 * `GET /models` (asked of the primary session).
	 */
	readonly modelRegistry?: {
		find?(provider: string, id: string): any;
		hasConfiguredAuth?(model: any): boolean;
		getAvailable?(): readonly any[];
	};
	/**
	 * Optional: a chat `trigger: "regenerate-message"` first moves the session's tree to before the
	 * previous answer, so that answer leaves the context (without it, the message is simply run again).
	 */
	navigateTree?(targetId: string, options?: { summarize?: boolean }): Promise<unknown>;
}

export type GatewaySessionFactory = (sessionKey: string) => Promise<GatewayAgentSession>;

/**
 * What a message sent while its session is busy (a run running or queued) does. On a session that
 * is not busy every mode starts a run of its own.
 * - `queue`: waits its turn behind the others (`maxQueuePerSession` applies).
 * - `steer`: handed to the running run (`session.steer()`, delivered after its current tool calls);
 *   answered with that run's result.
 * - `followUp`: handed to the running run (`session.followUp()`, delivered when it would otherwise
 *   stop); answered with that run's result.
 * - `interrupt`: the running run is aborted; this message runs next, ahead of the queue.
 * - `reject`: refused (`ok: false`, "Session busy", with the busy run's `runId`; HTTP 409).
 *
 * `steer` and `followUp` are queued instead when the session has no `steer()`/`followUp()`, when
 * nothing is running yet, or when the running run is being aborted.
 */
export type GatewayMessageMode = "queue" | "steer" | "followUp" | "interrupt" | "reject";

export interface GatewayMessageRequest {
	sessionKey: string;
	text: string;
	source?: "interactive" | "rpc" | "extension";
	images?: GatewayImageContent[];
	metadata?: Record<string, unknown>;
	/**
	 * As the HTTP `Idempotency-Key` header (1 to 255 characters from `!` to `~`): a repeat of the
	 * same request with the same key joins the first run instead of starting another; the same key
	 * with a different request is refused ("Idempotency-Key reused with a different request").
	 * Remembered `idempotency.ttlMs`, at most `idempotency.maxKeys` keys.
	 */
	idempotencyKey?: string;
	/** What it does if the session is busy. Default `config.session.defaultMode` ("queue"). */
	mode?: GatewayMessageMode;
}

export interface GatewayMessageResult {
	ok: boolean;
	response: string;
	error?: string;
	sessionKey: string;
	/** The run that answered. Absent only when the message was refused before it became a run (e.g. queue full). */
	runId?: string;
}

/**
 * `aborted`: aborted while running (`abortSession`, `cancelRun`, a chat stop). `cancelled`: cleared,
 * reset, cancelled (`cancelRun` of a queued run) or stopped by `stop()` before it finished.
 */
export type GatewayRunStatus = "queued" | "running" | "succeeded" | "failed" | "aborted" | "cancelled";

/** A run's status once it has ended. */
export type GatewayRunEndStatus = Exclude<GatewayRunStatus, "queued" | "running">;

/** One accepted message: `GET /sessions/:key/runs/:runId` answers `{ run }` with this record. */
export interface GatewayRun {
	/** A UUIDv7, unique across processes and restarts. */
	runId: string;
	sessionKey: string;
	status: GatewayRunStatus;
	/** The mode the message was sent with. */
	mode: GatewayMessageMode;
	/** Milliseconds since the epoch, as every time here. */
	createdAt: number;
	startedAt?: number;
	endedAt?: number;
	/** Present once the run has ended. */
	result?: GatewayMessageResult;
}

/** What `submitMessage` resolves with: the record of the run that answers the message. */
export interface GatewaySubmittedRun extends GatewayRun {
	/** Set when the message was handed to this (already running) run rather than given its own. */
	delivered?: "steer" | "followUp";
}

/** A session's queue (`GET /sessions/:key/queue`, `getQueue`). */
export interface GatewayQueue {
	/** The running run, if one is. */
	running: GatewayRun | null;
	/** Runs waiting their turn, in the order they will run. */
	queued: GatewayRun[];
	/** pi's own pending steering texts (handed over with `steer`, not yet delivered). */
	steering: string[];
	/** pi's own pending follow-up texts. */
	followUp: string[];
}

export interface GatewaySessionSnapshot {
	sessionKey: string;
	sessionId: string;
	messageCount: number;
	queueDepth: number;
	processing: boolean;
	lastActiveAt: number;
	createdAt: number;
	/** pi's session name, once one is set (`PATCH /sessions/:key {name}`). */
	name?: string;
	/** The session's model, when the session has one. */
	model?: GatewayModelRef;
	/** The session's thinking level, when the session has one. */
	thinkingLevel?: GatewayThinkingLevel;
}

export interface GatewayRuntimeOptions {
	config: GatewayConfig;
	primarySessionKey: string;
	primarySession: GatewayAgentSession;
	createSession: GatewaySessionFactory;
	/**
	 * Receives the gateway's log lines (as text, or one JSON object a line with `logFormat: "json"`).
	 * Without it, warnings and errors go to the console.
	 */
	log?: (line: string) => void;
	/**
	 * `"text"` (default): each line is its message, as it always was. `"json"`: each line is
	 * `{"time", "level", "message", "sessionKey"?, "runId"?}`.
	 */
	logFormat?: "text" | "json";
	/** The least level logged. Default `"info"`; `"debug"` adds an access line per HTTP request. */
	logLevel?: GatewayLogLevel;
	/**
	 * Whether a conversation is stored for `sessionKey`. A session route (`GET /sessions/:key`,
	 * `…/messages`, `…/stats`, `PATCH`, `DELETE`, `…/model`, `…/thinking`, `…/compact`) on a key
	 * that is not in memory loads it with `createSession(key)` when this answers true, and answers
	 * 404 otherwise (always 404 without this option).
	 */
	sessionExists?(sessionKey: string): boolean | Promise<boolean>;
	/**
	 * Deletes what is stored for `sessionKey`: called by `DELETE /sessions/:key?purge=true` after the
	 * session is disposed. Without it, `purge=true` is refused (501) and nothing is deleted.
	 */
	deleteSession?(sessionKey: string): void | Promise<void>;
}

/** A model as the gateway names it. */
export interface GatewayModelRef {
	provider: string;
	id: string;
}

/** pi's thinking levels (`PUT /sessions/:key/thinking`). */
export type GatewayThinkingLevel = "off" | "minimal" | "low" | "medium" | "high" | "xhigh";

/** Why a model call stopped (pi-ai's `StopReason`). */
export type GatewayStopReason = "stop" | "length" | "toolUse" | "error" | "aborted";

/** pi-ai's token usage: of one assistant message, or summed over a run's assistant messages. */
export interface GatewayUsage {
	input: number;
	output: number;
	cacheRead: number;
	cacheWrite: number;
	totalTokens: number;
	/** In the model's currency units (dollars for pi's built-in models). */
	cost: { input: number; output: number; cacheRead: number; cacheWrite: number; total: number };
}

/** `messageMetadata` of a chat stream's `start` chunk. */
export interface GatewayChatStartMetadata {
	sessionKey: string;
	/** The run's id, also the assistant message's id (`messageId`). */
	runId: string;
}

/** `messageMetadata` of a chat stream's `finish` chunk (present once an assistant message completed). */
export interface GatewayChatFinishMetadata {
	/** Summed over the run's assistant messages. */
	usage: GatewayUsage;
	/** The model of the run's last assistant message. */
	model?: GatewayModelRef;
	/** The stop reason of the run's last assistant message. */
	stopReason?: GatewayStopReason;
}

/** `metadata` of an assistant message in the history (`ui` format). */
export interface GatewayHistoryMetadata extends GatewayChatFinishMetadata {
	/** The run that wrote it, when the gateway ran it. */
	runId?: string;
}

/**
 * The metadata a `useChat` message of the gateway carries: the history's, or the chat stream's
 * `start` and `finish` metadata merged (each part once it has arrived). For `UIMessage<GatewayUIMessageMetadata>`.
 */
export type GatewayUIMessageMetadata = Partial<GatewayChatStartMetadata & GatewayChatFinishMetadata>;

export interface GatewayUITextPart {
	type: "text";
	text: string;
	/** `"done"` in assistant messages; absent in user messages. */
	state?: "done";
}

export interface GatewayUIReasoningPart {
	type: "reasoning";
	text: string;
	state: "done";
}

/** An image of a user message, as a data URL (`data:<mediaType>;base64,<data>`). */
export interface GatewayUIFilePart {
	type: "file";
	mediaType: string;
	url: string;
}

/** Where a model call of the run began. */
export interface GatewayUIStepStartPart {
	type: "step-start";
}

/** What a pi tool answered: its content blocks and, when it gave them, its details. */
export interface GatewayToolOutput {
	content: Array<{ type: "text"; text: string } | { type: "image"; data: string; mimeType: string }>;
	details?: unknown;
}

/** A tool call (pi's tools are not declared to the client: `dynamic-tool` parts). */
export type GatewayUIDynamicToolPart = {
	type: "dynamic-tool";
	toolName: string;
	toolCallId: string;
	input: unknown;
} & (
	| { state: "output-available"; output: GatewayToolOutput }
	| { state: "output-error"; errorText: string }
	/** A call without a result (its run was aborted before the tool answered). */
	| { state: "input-available" }
);

export interface GatewayUIUserMessage {
	/** pi's entry id. */
	id: string;
	role: "user";
	parts: Array<GatewayUITextPart | GatewayUIFilePart>;
}

/**
 * The answer of one run: its model calls (each after a `step-start`), reasoning, tool calls and
 * text. A user message steered into the run splits it: the part after it is another assistant
 * message with the id `<runId>-<n>`.
 */
export interface GatewayUIAssistantMessage {
	/** The run id when the gateway ran it (the chat stream's `messageId`), else pi's entry id. */
	id: string;
	role: "assistant";
	metadata: GatewayHistoryMetadata;
	parts: Array<GatewayUITextPart | GatewayUIReasoningPart | GatewayUIStepStartPart | GatewayUIDynamicToolPart>;
}

/** An AI SDK (v5 and later) `UIMessage`, as `GET /sessions/:key/messages` serves it: `useChat({ messages })` takes them. */
export type GatewayUIMessage = GatewayUIUserMessage | GatewayUIAssistantMessage;

/** One of pi's message entries on the session's current branch (`format=pi`). */
export interface GatewayPiHistoryEntry {
	/** pi's entry id. */
	id: string;
	/** pi's parent entry id (it may name an entry the history does not list, such as a run marker); null for the first. */
	parentId: string | null;
	/** When pi wrote the entry (ISO 8601). */
	timestamp: string;
	/** pi's message, as pi stores it (`role`: `user`, `assistant`, `toolResult`, …). */
	message: { role: string; [field: string]: unknown };
}

export type GatewayHistoryFormat = "ui" | "pi";

export interface GatewayHistoryPageBase {
	sessionKey: string;
	/** Older messages exist: the next page is `before=<messages[0].id>`. */
	hasMore: boolean;
}
/** `GET /sessions/:key/messages` (default format). Oldest first. */
export interface GatewayUIHistoryPage extends GatewayHistoryPageBase {
	format: "ui";
	messages: GatewayUIMessage[];
}
/** `GET /sessions/:key/messages?format=pi`. Oldest first. */
export interface GatewayPiHistoryPage extends GatewayHistoryPageBase {
	format: "pi";
	messages: GatewayPiHistoryEntry[];
}
/** `GET /sessions/:key/messages?format=ui|pi&limit=N&before=<id>`. */
export type GatewayHistoryPage = GatewayUIHistoryPage | GatewayPiHistoryPage;

/** `GET /sessions/:key/stats`: pi's `getSessionStats()` without `sessionFile`. */
export interface GatewaySessionStats {
	sessionKey: string;
	sessionId: string;
	userMessages: number;
	assistantMessages: number;
	toolCalls: number;
	toolResults: number;
	totalMessages: number;
	tokens: { input: number; output: number; cacheRead: number; cacheWrite: number; total: number };
	/** Total cost. */
	cost: number;
	contextUsage?: { tokens: number | null; contextWindow: number; percent: number | null };
}

/** A model a session may switch to. */
export interface GatewayModelInfo extends GatewayModelRef {
	name: string;
	reasoning: boolean;
	input: Array<"text" | "image">;
	contextWindow: number | null;
	maxTokens: number | null;
}

/** `GET /models`: the models with credentials, and the primary session's model. */
export interface GatewayModels {
	models: GatewayModelInfo[];
	current: GatewayModelRef | null;
}

/** `DELETE /sessions/:key[?purge=true]`. */
export interface GatewayDeleteSessionResult {
	ok: true;
	sessionKey: string;
	/** Whether what was stored was deleted too (`options.deleteSession`). */
	purged: boolean;
}

/** `PATCH /sessions/:key {name}`. */
export interface GatewayRenameResult {
	ok: true;
	sessionKey: string;
	/** The name, trimmed. */
	name: string;
}

/** `PUT /sessions/:key/model {provider, id}`. */
export interface GatewaySetModelResult {
	ok: true;
	sessionKey: string;
	model: GatewayModelRef;
	/** The thinking level after the switch (pi clamps it to what the model supports). */
	thinkingLevel: GatewayThinkingLevel | null;
}

/** `PUT /sessions/:key/thinking {level}`. */
export interface GatewaySetThinkingResult {
	ok: true;
	sessionKey: string;
	/** The level pi applied (clamped to the model: `off` on a model without reasoning). */
	thinkingLevel: GatewayThinkingLevel;
}

/**
 * The session event stream (`GET /sessions/:key/events`, `addSubscriber`). Events a run caused carry
 * its `runId`; `hello` and `session_state` never do. For one run the order is `run_start`,
 * `session_state` (processing), the agent's events, `aborted` or `error` if so, `run_end`,
 * `session_state`. A queued run that is cancelled gets only its `run_end` (`status: "cancelled"`).
 */
export type GatewayEvent =
	| {
			type: "hello";
			sessionKey: string;
			snapshot: GatewaySessionSnapshot;
			/** Set when events after the requested `after` / `Last-Event-ID` are no longer in the log. */
			missed?: true;
	  }
	| { type: "session_state"; sessionKey: string; snapshot: GatewaySessionSnapshot }
	| { type: "run_start"; sessionKey: string; runId: string }
	| { type: "run_end"; sessionKey: string; runId: string; status: GatewayRunEndStatus; error?: string }
	| { type: "turn_start"; sessionKey: string; runId?: string }
	| { type: "turn_end"; sessionKey: string; runId?: string }
	| { type: "message_start"; sessionKey: string; role?: string; runId?: string }
	| { type: "token"; sessionKey: string; delta: string; contentIndex: number; runId?: string }
	| { type: "thinking"; sessionKey: string; delta: string; contentIndex: number; runId?: string }
	| { type: "tool_start"; sessionKey: string; toolCallId: string; toolName: string; args: unknown; runId?: string }
	| {
			type: "tool_update";
			sessionKey: string;
			toolCallId: string;
			toolName: string;
			partialResult: unknown;
			runId?: string;
	  }
	| {
			type: "tool_complete";
			sessionKey: string;
			toolCallId: string;
			toolName: string;
			result: unknown;
			isError: boolean;
			runId?: string;
	  }
	| {
			type: "message_complete";
			sessionKey: string;
			text: string;
			/** pi's usage of this assistant message (null when it had none). */
			usage: GatewayUsage | null;
			stopReason?: GatewayStopReason;
			/** The model that wrote it (null when unknown). */
			model: GatewayModelRef | null;
			runId?: string;
	  }
	/** pi's agent loop started / ended (once per prompt; a handed-over message may start another). */
	| { type: "agent_start"; sessionKey: string; runId?: string }
	| { type: "agent_end"; sessionKey: string; runId?: string }
	| { type: "compaction_start"; sessionKey: string; reason: "manual" | "threshold" | "overflow"; runId?: string }
	| {
			type: "compaction_end";
			sessionKey: string;
			reason: "manual" | "threshold" | "overflow";
			aborted: boolean;
			willRetry: boolean;
			errorMessage?: string;
			/** Context tokens before the compaction (when it produced a result). */
			tokensBefore?: number;
			runId?: string;
	  }
	| {
			type: "auto_retry_start";
			sessionKey: string;
			attempt: number;
			maxAttempts: number;
			delayMs: number;
			errorMessage: string;
			runId?: string;
	  }
	| { type: "auto_retry_end"; sessionKey: string; success: boolean; attempt: number; finalError?: string; runId?: string }
	| { type: "thinking_level_changed"; sessionKey: string; level: GatewayThinkingLevel; runId?: string }
	/** The session's name changed (absent when it was cleared). */
	| { type: "session_info_changed"; sessionKey: string; name?: string; runId?: string }
	/** `PUT /sessions/:key/model` switched the session's model. */
	| { type: "model_changed"; sessionKey: string; model: GatewayModelRef; runId?: string }
	| { type: "error"; sessionKey: string; error: string; runId?: string }
	| { type: "aborted"; sessionKey: string; runId?: string }
	/** pi's own queue of handed-over messages changed (`steer` / `followUp`). */
	| { type: "queue_update"; sessionKey: string; steering: string[]; followUp: string[]; runId?: string }
	/** A tool call waits for a decision (`approval.policy` says `ask`). */
	| {
			type: "approval_request";
			sessionKey: string;
			approvalId: string;
			toolCallId: string;
			toolName: string;
			args: unknown;
			/** Epoch ms: when the timeout denies it. */
			expiresAt: number;
			runId?: string;
	  }
	/** A pending approval was decided. `reason`: the client's, or the gateway's for a timeout or an abort. */
	| {
			type: "approval_resolved";
			sessionKey: string;
			approvalId: string;
			toolCallId: string;
			approved: boolean;
			reason?: string;
			by: GatewayApprovalDecidedBy;
			runId?: string;
	  };

export type GatewayApprovalPolicy = "allow" | "ask" | "deny";

/** Who decided an approval: a client (REST, JS or a chat continuation), its timeout, or an abort. */
export type GatewayApprovalDecidedBy = "client" | "timeout" | "abort";

/** A tool call waiting for a decision (`GET /sessions/:key/approvals`, `listApprovals`). */
export interface GatewayApproval {
	approvalId: string;
	sessionKey: string;
	/** The run the call belongs to (absent for a prompt the gateway did not start). */
	runId?: string;
	toolCallId: string;
	toolName: string;
	/** The tool call's arguments (for `bash`: `{ command, timeout? }`). */
	args: unknown;
	/** Epoch ms. */
	requestedAt: number;
	/** Epoch ms: when the timeout denies it. */
	expiresAt: number;
}

/** A decision for `resolveApproval` (the body of `POST /sessions/:key/approvals/:approvalId`). */
export interface GatewayApprovalDecision {
	approved: boolean;
	/** Told to the model with a denial (at most 2000 characters). */
	reason?: string;
}

/** What `resolveApproval` (and the REST route) answer with. */
export interface GatewayApprovalResolved {
	ok: true;
	approvalId: string;
	approved: boolean;
	reason?: string;
	by: GatewayApprovalDecidedBy;
}

/** `resolveApproval` refused: `status` 404 (unknown approval), 409 (already decided) or 400 (bad decision). */
export declare class GatewayApprovalError extends Error {
	readonly status: 400 | 404 | 409;
	/** For a 409: the decision that stands. */
	readonly decided?: { approved: boolean; by: GatewayApprovalDecidedBy; reason?: string };
}

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
	/**
	 * Runs the message in its turn (see `mode`) and resolves with its result (`runId` included): its
	 * own run's, or for `steer` / `followUp` the running run's. A full queue or `reject` on a busy
	 * session resolves with `ok: false` too.
	 */
	enqueueMessage(request: GatewayMessageRequest): Promise<GatewayMessageResult>;
	/**
	 * Accepts the message as a run and resolves at once with its record (`queued` or `running`),
	 * without waiting for it; `waitForRun` gets the result. Rejects when the queue is full or the
	 * request is invalid, and with "Session busy" for `reject` on a busy session. The run goes on
	 * whatever the caller does. For a `steer` / `followUp` handed to the running run, that run's
	 * record with `delivered` set.
	 */
	submitMessage(request: GatewayMessageRequest): Promise<GatewaySubmittedRun>;
	/** A queued, running or retained ended run; `undefined` when unknown or no longer retained. */
	getRun(sessionKey: string, runId: string): GatewayRun | undefined;
	/** The session's queued, running and retained runs, oldest first. `[]` for an unknown key. */
	listRuns(sessionKey: string): GatewayRun[];
	/** Resolves with the run's result once it has ended (at once if it already has). Rejects when the run is unknown. */
	waitForRun(sessionKey: string, runId: string): Promise<GatewayMessageResult>;
	/**
	 * A queued run is cancelled at once (its caller gets `ok: false`, "Run cancelled"); a running one
	 * is aborted, and the promise waits (up to 10 s) for it to end. `status` is the run's status then.
	 * `ok: false` with `error` when the run is unknown or has already ended.
	 */
	cancelRun(
		sessionKey: string,
		runId: string,
	): Promise<{ ok: boolean; runId: string; status?: GatewayRunStatus; error?: string }>;
	/**
	 * `hello` first, then the session's events. `id` is the event's id in the session's log (strictly
	 * increasing per key); for `hello` it is the id delivery goes on after: the last id already logged,
	 * or `after` when given. With `after` (a non-negative integer), the logged events whose id is greater
	 * come after `hello`, then live ones, with no gap or duplicate; if some of them were already dropped
	 * from the log (or `after` was never issued), `hello` has `missed: true` and replay starts at the
	 * oldest event still logged. Resolves with the unsubscribe function.
	 */
	addSubscriber(
		sessionKey: string,
		listener: (event: GatewayEvent, id: number) => void,
		options?: { after?: number },
	): Promise<() => void>;
	/** False when nothing was running. */
	abortSession(sessionKey: string): boolean;
	/**
	 * Queued (not running) messages are answered `ok: false`, "Queue cleared"; pi's own pending
	 * steering and follow-up messages are cleared too (their senders still get the running run's result).
	 */
	clearQueue(sessionKey: string): void;
	/** The session's queue; `undefined` for an unknown session. */
	getQueue(sessionKey: string): GatewayQueue | undefined;
	resetSession(sessionKey: string): Promise<void>;
	listSessions(): GatewaySessionSnapshot[];
	getSession(sessionKey: string): GatewaySessionSnapshot | undefined;
	getGatewaySessionDir(sessionKey: string): string;
	/** The session's tool calls waiting for a decision, oldest first. `[]` for a key not in memory. */
	listApprovals(sessionKey: string): GatewayApproval[];
	/**
	 * Decides a pending approval: approved, the tool runs; denied, the model is told "Denied by the
	 * user[: reason]". Throws a GatewayApprovalError (404 unknown, 409 already decided, 400 bad decision).
	 */
	resolveApproval(sessionKey: string, approvalId: string, decision: GatewayApprovalDecision): GatewayApprovalResolved;
	/** Diagnostics for tests and benchmarks (not in the seed). */
	stats(): GatewayStats;
}

export declare function setActiveGatewayRuntime(runtime: GatewayRuntime | null): void;
export declare function getActiveGatewayRuntime(): GatewayRuntime | null;
export declare function sanitizeSessionKey(sessionKey: string): string;
/**
 * `SessionManager.create(cwd, join(root, sanitizeSessionKey(key)))`: always a new conversation
 * (the seed's); needs `@mariozechner/pi-coding-agent`.
 */
export declare function createGatewaySessionManager(
	cwd: string,
	sessionKey: string,
	sessionDirRoot: string,
): SessionManager;
/**
 * `SessionManager.continueRecent(cwd, join(root, sanitizeSessionKey(key)))`: continues the most
 * recent conversation stored in the key's directory, or starts one, so a key's conversation
 * survives idle eviction and restarts. Needs `@mariozechner/pi-coding-agent`.
 */
export declare function openGatewaySessionManager(
	cwd: string,
	sessionKey: string,
	sessionDirRoot: string,
): SessionManager;
