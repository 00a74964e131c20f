// The gateway-specific pieces of the page, in plain JavaScript (no React, so they can be tested on
// their own): the routes (`gatewayRoutes`), what the transport sends (`lastUserMessageOnly`), tool
// approvals (`decisionsComplete`, `approvalResponseMessage`, `awaitedApprovals`, `approvalLabel`), how
// the conversation survives a reload (`stableChatId`, `loadConversation`, `saveConversation`,
// `completeFromRun`), messages sent while an answer streams (`sendDuringAnswer`, `readQueue`,
// `settlePending`, `showEndedRun`, `steeringLabel`), and how errors are shown (`describeChatError`).
//
// `describeChatError` turns what `useChat` reports as `error` into a sentence a person can act on.
//
// `useChat` (through `DefaultChatTransport`) surfaces three kinds of failure:
//   - the gateway answered with an HTTP error: an `APICallError` whose `statusCode` is the status
//     and whose `message`/`responseBody` is the raw body, here pi-gateway's JSON `{"error": "..."}`
//     (a full queue answers the whole `{ok:false, error, ...}` result);
//   - the request never got an answer: the browser's `TypeError` ("Failed to fetch"), which is also
//     what a CORS refusal looks like from inside the page;
//   - the run failed after the stream started: an `Error` whose message is the `error` chunk's text
//     (the agent's own error).

/**
 * `prepareSendMessagesRequest` for `DefaultChatTransport`: the body is `{ id, messages: [the new
 * message], trigger, messageId }` instead of the whole conversation. pi-gateway reads only the last
 * message; the agent remembers the rest itself. The new message is the last user message — or,
 * when the request answers tool approvals (`addToolApprovalResponse` with `sendAutomaticallyWhen:
 * decisionsComplete`), the assistant message that holds the decisions ({@link approvalResponseMessage}).
 */
export function lastUserMessageOnly({ id, messages, body, trigger, messageId }) {
	const answered = approvalResponseMessage(messages);
	const last = answered ?? messages.findLast((message) => message.role === "user");
	return { body: { ...body, id, messages: last ? [last] : [], trigger, messageId } };
}

// ---------------------------------------------------------------------------------------------
// Tool approvals (a gateway with `approval.policy`, chat protocol 6 or 7).
//
// A tool call the gateway holds for a decision arrives as a `tool-approval-request` chunk: useChat
// puts its tool part in state `approval-requested` (`part.approval.id` is the gateway's approval
// id), and the stream ends there while the run waits. `addToolApprovalResponse({ id, approved,
// reason })` moves the part to `approval-responded`; once every requested call of the message has
// its answer, `sendAutomaticallyWhen: decisionsComplete` sends the chat request again, and
// `lastUserMessageOnly` puts that assistant message (not the last user message) in the body. The
// gateway resolves the approvals from it and answers with the same run's continuation (its `start`
// has the same message id, so useChat goes on in the same message): the calls' outputs
// (`output-available`, also for calls that were never held), the denied ones as `output-denied`,
// then the rest of the answer.

/**
 * `sendAutomaticallyWhen` for useChat with pi-gateway's tool approvals: true when the last message
 * is an assistant message whose last step has at least one tool part in state `approval-responded`
 * and none still in `approval-requested` — every held call has its decision.
 *
 * Why not the AI SDK's `lastAssistantMessageIsCompleteWithApprovalResponses`: it also wants every
 * other tool part of the step finished (`output-*`). pi prepares all tool calls of one assistant
 * message before it runs any, so when a message mixes a held call (e.g. `bash`, policy `ask`) with
 * one that is allowed (e.g. `read`), the allowed call has not run when the stream pauses: its part
 * is still `input-available`, and stays so until the gateway runs it after the decisions. With the
 * SDK's predicate the decisions would never be sent (the chat would wait until the approval times
 * out). Here an `input-available` part is simply a call the gateway will run once the request goes
 * out. (pi-gateway runs every tool on its side; a page with client-side tools, answered with
 * `addToolOutput`, would need to wait for those too.)
 * @param {{ messages: any[] }} options
 * @returns {boolean}
 */
export function decisionsComplete({ messages }) {
	const last = messages.at(-1);
	if (!last || last.role !== "assistant" || !Array.isArray(last.parts)) return false;
	const stepStart = last.parts.findLastIndex((part) => part.type === "step-start");
	const tools = last.parts.slice(stepStart + 1).filter(isToolPart);
	return tools.some((part) => part.state === "approval-responded") && !tools.some((part) => part.state === "approval-requested");
}

/** Whether `part` is a tool part (`tool-<name>` or `dynamic-tool`). */
export function isToolPart(part) {
	return Boolean(part && typeof part.type === "string" && (part.type === "dynamic-tool" || part.type.startsWith("tool-")));
}

/** The tool name of a tool part. */
export function toolNameOf(part) {
	return part.type === "dynamic-tool" ? part.toolName : part.type.slice("tool-".length);
}

/**
 * The assistant message a chat request answering tool approvals sends: the last message of
 * `messages` when it is an assistant message with a tool part in state `approval-responded`, else
 * undefined. Only its `step-start` and tool parts are sent (the gateway reads the decisions; the
 * text it streamed need not go back).
 * @param {any[]} messages
 */
export function approvalResponseMessage(messages) {
	const last = messages.at(-1);
	if (!last || last.role !== "assistant" || !Array.isArray(last.parts)) return undefined;
	if (!last.parts.some((part) => isToolPart(part) && part.state === "approval-responded")) return undefined;
	return { ...last, parts: last.parts.filter((part) => part.type === "step-start" || isToolPart(part)) };
}

/**
 * The tool calls of the last assistant message of `messages` that wait for this page's decision
 * (state `approval-requested`).
 * @param {any[]} messages
 */
export function awaitedApprovals(messages) {
	const last = messages.at(-1);
	if (!last || last.role !== "assistant" || !Array.isArray(last.parts)) return [];
	return last.parts.filter((part) => isToolPart(part) && part.state === "approval-requested" && part.approval?.id);
}

/**
 * What a tool part says about its approval, for the page: `{ kind, text }` with `kind`
 * "requested" (waiting for a decision), "approved" / "denied" (decided, the answer goes on), or
 * undefined when the call was not held.
 * @param {any} part
 */
export function approvalLabel(part) {
	const reason = typeof part?.approval?.reason === "string" && part.approval.reason ? `: ${part.approval.reason}` : "";
	switch (part?.state) {
		case "approval-requested":
			return { kind: "requested", text: "waiting for your approval" };
		case "approval-responded":
			return part.approval?.approved
				? { kind: "approved", text: `approved${reason} — running…` }
				: { kind: "denied", text: `denied${reason}` };
		case "output-denied":
			return { kind: "denied", text: `denied${reason} — not run` };
		default:
			return part?.approval?.approved === true ? { kind: "approved", text: `approved${reason}` } : undefined;
	}
}

/**
 * The gateway routes the page uses, for one session key (percent-encoded into the path once).
 * @param {string} gateway  the gateway's base URL, without a trailing slash
 * @param {string} session  the session key
 */
export function gatewayRoutes(gateway, session) {
	const base = `${gateway}/sessions/${encodeURIComponent(session)}`;
	return {
		/** `GET`: `{ sessions: Snapshot[] }`, the sessions the gateway holds in memory. */
		sessions: `${gateway}/sessions`,
		/** `GET`: `{ session: Snapshot }` (with `model` and `thinkingLevel`). */
		session: base,
		/** `GET`: the session's event stream (SSE); opening it creates the session on demand. */
		events: `${base}/events`,
		/**
		 * `GET`: the conversation as AI SDK UI messages, oldest first: `{ messages, hasMore }`.
		 * `limit` (1..1000, the gateway's default 100) and `before` (a message id: the page before it).
		 */
		history: ({ limit, before } = {}) => {
			const query = new URLSearchParams({ format: "ui" });
			if (limit !== undefined) query.set("limit", String(limit));
			if (before !== undefined) query.set("before", before);
			return `${base}/messages?${query}`;
		},
		/** `GET`: `{ models: [{ provider, id, name, reasoning, … }], current }`. */
		models: `${gateway}/models`,
		/** `PUT {provider, id}`: the session's model. */
		model: `${base}/model`,
		/** `PUT {level}`: the session's thinking level. */
		thinking: `${base}/thinking`,
		/** `POST`: send a message, answered with a UI message stream. */
		chat: `${base}/chat`,
		/** `GET`: the chat's active run as a UI message stream (replayed from its start), or `204`. */
		stream: (chatId) => `${base}/chat/${encodeURIComponent(chatId)}/stream`,
		/** `POST {runId}`: abort the chat's active run. */
		stop: (chatId) => `${base}/chat/${encodeURIComponent(chatId)}/stop`,
		/** `GET`: one run's record, `{ run: { runId, status, result? } }`. */
		run: (runId) => `${base}/runs/${encodeURIComponent(runId)}`,
		/** `GET`: `{ running, queued, steering, followUp }`; `DELETE`: clear the queue. */
		queue: `${base}/queue`,
	};
}

// ---------------------------------------------------------------------------------------------
// Resuming after a reload.
//
// The conversation itself comes from the gateway's history (`loadStartingConversation` below):
// `GET /sessions/:key/messages?format=ui` on mount, handed to `useChat({ messages })`. While a run
// is running, that history ends at the run's user message; the rest is the running answer, which
// the resume route brings. The chat id is kept in localStorage: one per gateway and session key,
// so every tab on that session is the same chat and can resume its running answer.
// `useChat({ id, resume: true })` asks `GET .../chat/:chatId/stream` on mount; the gateway replays
// the running answer from its `start` chunk, whose `messageId` is the run id (the id the history
// gives that answer once it has ended), and useChat replaces an assistant message with that id
// instead of adding a second one.
//
// The tab also keeps what it shows in sessionStorage (`saveConversation`): the run that was
// streaming when the page went away (`openRunId`), the messages it queued (`pending`), and the
// messages themselves, which it shows only when the gateway cannot serve a history (an older
// gateway, or one the page cannot reach).

const STORAGE_PREFIX = "pi-gateway-chat-ui";

/** The storage key of one gateway + session key. */
function storageKey(kind, gateway, session) {
	return `${STORAGE_PREFIX}:${kind}:${gateway} ${session}`;
}

/**
 * The chat id of this gateway + session key: kept in `storage` (localStorage), created with
 * `generateId()` the first time. Without usable storage, the session key itself (the gateway's
 * own default chat id).
 * @param {{ storage?: Storage | null, gateway: string, session: string, generateId: () => string }} options
 */
export function stableChatId({ storage, gateway, session, generateId }) {
	const key = storageKey("chat-id", gateway, session);
	try {
		const known = storage?.getItem(key);
		if (known) return known;
		const id = generateId();
		storage?.setItem(key, id);
		if (storage?.getItem(key) === id) return id;
	} catch {
		// storage disabled (private mode, sandboxed frame): fall through
	}
	return session;
}

/**
 * What `saveConversation` stored for this chat, or an empty conversation.
 * `openRunId`: the run whose answer was still streaming when the page went away (if any).
 * @param {{ storage?: Storage | null, gateway: string, session: string, chatId: string }} options
 * @returns {{ messages: any[], openRunId?: string }}
 */
export function loadConversation({ storage, gateway, session, chatId }) {
	try {
		const raw = storage?.getItem(storageKey("messages", gateway, session));
		if (!raw) return { messages: [] };
		const saved = JSON.parse(raw);
		if (!saved || saved.chatId !== chatId || !Array.isArray(saved.messages)) return { messages: [] };
		const messages = saved.messages.filter(
			(m) => m && typeof m.id === "string" && (m.role === "user" || m.role === "assistant") && Array.isArray(m.parts),
		);
		const loaded = typeof saved.openRunId === "string" ? { messages, openRunId: saved.openRunId } : { messages };
		const pending = Array.isArray(saved.pending)
			? saved.pending.filter((p) => p && typeof p.runId === "string" && typeof p.text === "string")
			: [];
		if (pending.length > 0) loaded.pending = pending;
		return loaded;
	} catch {
		return { messages: [] };
	}
}

/**
 * Stores the conversation (sessionStorage). Best effort: when the storage is full or disabled,
 * the page keeps working and a reload shows less. Returns whether it was stored.
 * `pending`: the messages queued while an answer streamed whose answers are not shown yet
 * (`[{ runId, text }]`), so a reload still shows them when their turn comes.
 * @param {{ storage?: Storage | null, gateway: string, session: string, chatId: string, messages: any[], openRunId?: string, pending?: { runId: string, text: string }[] }} options
 */
export function saveConversation({ storage, gateway, session, chatId, messages, openRunId, pending }) {
	try {
		if (!storage) return false;
		const saved = { chatId, messages, openRunId };
		if (pending?.length) saved.pending = pending;
		storage.setItem(storageKey("messages", gateway, session), JSON.stringify(saved));
		return true;
	} catch {
		return false;
	}
}

/**
 * The run of the assistant message still streaming in `messages`, if any: the id of the last
 * message when it is the assistant's (the gateway's `start` chunk makes a message's id its run id).
 * @param {any[]} messages
 */
export function lastAssistantRunId(messages) {
	const last = messages.at(-1);
	return last && last.role === "assistant" ? last.id : undefined;
}

/**
 * When the answer ended while the page was reloading (the resume route answered `204`, nothing
 * to resume), the stored assistant message is only the part that had arrived. The run's record
 * (`GET /sessions/:key/runs/:runId`) holds the final text of the run's last assistant message
 * (`result.response`): if what the page shows of the message's last step is the start of it, the
 * last step's text is replaced by the whole of it. Anything else is left as it is.
 * @param {any[]} messages
 * @param {{ runId?: string, result?: { response?: unknown } } | undefined} run
 * @returns {any[]} `messages`, or a copy with that message completed
 */
export function completeFromRun(messages, run) {
	const response = run?.result?.response;
	if (typeof response !== "string" || !response) return messages;
	const index = messages.findLastIndex((m) => m.id === run.runId && m.role === "assistant");
	if (index === -1) return messages;
	const message = messages[index];
	const stepStart = message.parts.findLastIndex((part) => part.type === "step-start");
	const before = message.parts.slice(0, stepStart + 1);
	const step = message.parts.slice(stepStart + 1);
	const shown = step
		.filter((part) => part.type === "text")
		.map((part) => part.text)
		.join("");
	if (shown === response || !response.startsWith(shown)) return messages;
	const firstText = step.findIndex((part) => part.type === "text");
	const text = { type: "text", text: response, state: "done" };
	const parts =
		firstText === -1
			? [...before, ...step, text]
			: [...before, ...step.slice(0, firstText), text, ...step.slice(firstText + 1).filter((part) => part.type !== "text")];
	const copy = [...messages];
	copy[index] = { ...message, parts };
	return copy;
}

// ---------------------------------------------------------------------------------------------
// Messages sent while an answer streams (double texting, the gateway's queue modes).
//
// useChat reads one stream at a time, so a message sent while an answer streams does not go
// through `sendMessage`: `sendDuringAnswer` POSTs it to the same chat route with a `mode`, reads
// only the response's headers (`x-run-id`: the run that answers it) and cancels the body — a
// client that leaves a chat stream stops its stream, never the run.
//   - `steer`: pi takes the text into the running answer. The running run's chat stream (the
//     one useChat reads) gets a `data-steering` part, and the answer to it arrives in that
//     same stream. Nothing else to do.
//   - `queue`: the message gets its own run behind the running one. The page keeps it as
//     "pending" (`{ runId, text }`); when the current stream has ended it calls useChat's
//     `resumeStream()`: `GET …/chat/:chatId/stream` answers with the chat's oldest run that has
//     not ended, which is now the queued one, from its `start` chunk (messageId = run id).
// A steer that reached the gateway when no run was running any more (the answer ended in the
// meantime) is run as a queued message (its `x-run-id` is then not the running run's id), so
// it is kept as pending too.

/** What a message sent now does while an answer streams. */
export const SEND_MODES = /** @type {const} */ (["steer", "queue"]);

/**
 * The body of a chat request for one user message, as `lastUserMessageOnly` would send it, plus
 * the `mode`.
 * `files`: image attachments (`{ type: "file", mediaType, url }` parts), before the text, as
 * `sendMessage({ text, files })` puts them.
 * @param {{ chatId: string, text: string, mode: string, messageId: string, files?: object[] }} options
 */
export function chatRequestBody({ chatId, text, mode, messageId, files }) {
	const parts = [...(files ?? []), ...(text ? [{ type: "text", text }] : [])];
	return {
		id: chatId,
		messages: [{ id: messageId, role: "user", parts }],
		trigger: "submit-message",
		mode,
	};
}

/**
 * An error in the shape `useChat` reports an HTTP error (`statusCode`, `responseBody`), so
 * `describeChatError` reads both the same way.
 */
function httpError(status, body) {
	return Object.assign(new Error(body || `HTTP ${status}`), { statusCode: status, responseBody: body });
}

/**
 * Sends `text` to the chat with `mode` while an answer streams, without reading the answer:
 * resolves with the run that answers it (`x-run-id`) once the gateway has accepted it; rejects
 * with an HTTP error (`statusCode`, `responseBody`: a full queue is `429`) or the fetch's own error.
 * @param {{ routes: ReturnType<typeof gatewayRoutes>, headers?: Record<string, string>, chatId: string,
 *   text: string, mode: string, messageId: string, files?: object[], fetch?: typeof globalThis.fetch }} options
 * @returns {Promise<{ runId: string | undefined, status: number }>}
 */
export async function sendDuringAnswer({ routes, headers, chatId, text, mode, messageId, files, fetch = globalThis.fetch }) {
	const response = await fetch(routes.chat, {
		method: "POST",
		headers: { ...headers, "content-type": "application/json" },
		body: JSON.stringify(chatRequestBody({ chatId, text, mode, messageId, files })),
	});
	if (!response.ok) {
		const body = await response.text().catch(() => "");
		throw httpError(response.status, body);
	}
	const runId = response.headers.get("x-run-id") ?? undefined;
	// The answer comes through the chat's own stream (steer) or through a resume (queue).
	await response.body?.cancel().catch(() => {});
	return { runId, status: response.status };
}

/** An empty queue (what an unknown session has). */
export const EMPTY_QUEUE = Object.freeze({ running: null, queued: [], steering: [], followUp: [] });

/**
 * `GET /sessions/:key/queue`, normalized: `{ running, queued, steering, followUp }`; an unknown
 * session (404) is an empty queue.
 * @param {{ routes: ReturnType<typeof gatewayRoutes>, headers?: Record<string, string>, fetch?: typeof globalThis.fetch }} options
 */
export async function readQueue({ routes, headers, fetch = globalThis.fetch }) {
	const response = await fetch(routes.queue, { headers });
	if (response.status === 404) return EMPTY_QUEUE;
	if (!response.ok) throw httpError(response.status, await response.text().catch(() => ""));
	return parseQueue(await response.json());
}

/** A queue body as the page uses it; anything missing or malformed is empty. */
export function parseQueue(body) {
	const strings = (list) => (Array.isArray(list) ? list.filter((t) => typeof t === "string") : []);
	const runs = (list) => (Array.isArray(list) ? list.filter((r) => r && typeof r.runId === "string") : []);
	return {
		running: body?.running && typeof body.running.runId === "string" ? body.running : null,
		queued: runs(body?.queued),
		steering: strings(body?.steering),
		followUp: strings(body?.followUp),
	};
}

/** Whether a queue holds anything waiting (the running run does not count). */
export function queueHasWaiting(queue) {
	return Boolean(queue && (queue.queued.length > 0 || queue.steering.length > 0 || queue.followUp.length > 0));
}

/**
 * `DELETE /sessions/:key/queue`: the gateway's queued runs end `cancelled`, pi's pending steering
 * and follow-up texts are dropped. Resolves with the gateway's answer
 * (`{ ok, cleared, steering, followUp }`; an unknown session: `{ ok: true, cleared: 0, … }`).
 * @param {{ routes: ReturnType<typeof gatewayRoutes>, headers?: Record<string, string>, fetch?: typeof globalThis.fetch }} options
 */
export async function clearQueue({ routes, headers, fetch = globalThis.fetch }) {
	const response = await fetch(routes.queue, { method: "DELETE", headers });
	if (response.status === 404) return { ok: true, cleared: 0, steering: [], followUp: [] };
	if (!response.ok) throw httpError(response.status, await response.text().catch(() => ""));
	return response.json();
}

/** The text a `data-steering` part ({ text, mode }) is shown as. */
export function steeringLabel(data) {
	const text = typeof data?.text === "string" ? data.text : "";
	return data?.mode === "followUp" ? `↪ follow-up: ${text}` : `↪ steered: ${text}`;
}

/** The id of the user message the page shows for a queued message answered by `runId`. */
export function queuedUserMessageId(runId) {
	return `${runId}:user`;
}

/** The user message the page shows for a queued message (just before its answer). */
export function queuedUserMessage(entry) {
	return { id: queuedUserMessageId(entry.runId), role: "user", parts: [{ type: "text", text: entry.text }] };
}

/**
 * `messages` with the user message of `entry` (a pending queued message) added at the end,
 * unless it or its answer is already shown.
 * @param {any[]} messages
 * @param {{ runId: string, text: string }} entry
 */
export function withQueuedUserMessage(messages, entry) {
	const shown = messages.some((m) => m.id === queuedUserMessageId(entry.runId) || (m.role === "assistant" && m.id === entry.runId));
	return shown ? messages : [...messages, queuedUserMessage(entry)];
}

/**
 * The pending entries whose answer is not shown yet: an entry is settled once an assistant message
 * with its run id (the `start` chunk's messageId) is in `messages`. The same list when nothing
 * changed (so a React state update is skipped).
 * @param {{ runId: string, text: string }[]} pending
 * @param {any[]} messages
 */
export function settlePending(pending, messages) {
	if (pending.length === 0) return pending;
	const shown = new Set(messages.filter((m) => m.role === "assistant").map((m) => m.id));
	const left = pending.filter((entry) => !shown.has(entry.runId));
	return left.length === pending.length ? pending : left;
}

/**
 * A queued message whose run ended before the page could stream it (nothing left to resume):
 * its user message and an assistant message from the run's record — its final text, or a note of
 * how it ended (`cancelled: Queue cleared`).
 * @param {any[]} messages
 * @param {{ runId: string, text: string }} entry
 * @param {{ runId: string, status: string, result?: { ok?: boolean, response?: unknown, error?: unknown } }} run
 */
export function showEndedRun(messages, entry, run) {
	const withUser = withQueuedUserMessage(messages, entry);
	if (withUser.some((m) => m.role === "assistant" && m.id === entry.runId)) return withUser;
	const response = typeof run?.result?.response === "string" ? run.result.response : "";
	const parts = [{ type: "step-start" }];
	if (response) parts.push({ type: "text", text: response, state: "done" });
	if (!run?.result?.ok) {
		const error = typeof run?.result?.error === "string" ? run.result.error : "";
		parts.push({ type: "data-notice", data: { text: `${run?.status ?? "ended"}${error ? `: ${error}` : ""}` } });
	}
	return [...withUser, { id: entry.runId, role: "assistant", parts }];
}

/** The `error` string of a JSON error body, if `text` is one. */
export function gatewayErrorText(text) {
	if (typeof text !== "string") return undefined;
	const trimmed = text.trim();
	if (!trimmed.startsWith("{")) return undefined;
	try {
		const parsed = JSON.parse(trimmed);
		return parsed && typeof parsed.error === "string" && parsed.error.trim() ? parsed.error.trim() : undefined;
	} catch {
		return undefined;
	}
}

/** A network-level failure of `fetch` (refused connection, CORS refusal, DNS, offline…). */
function isNetworkError(error) {
	if (!error || typeof error !== "object") return false;
	if (error.name === "TypeError") {
		return /fetch|network|load failed/i.test(String(error.message ?? ""));
	}
	return false;
}

/** At most `max` characters of `text`, on one line. */
function short(text, max = 300) {
	const flat = String(text).replace(/\s+/g, " ").trim();
	return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** "Queue full (8 pending)." → "Queue full (8 pending)" (the page adds its own punctuation). */
function sentence(text) {
	return text.replace(/[.\s]+$/, "");
}

/**
 * @param {unknown} error      what `useChat` returned as `error`
 * @param {{ gateway: string, origin?: string }} context  the gateway's base URL and this page's origin
 * @returns {{ title: string, detail?: string, status?: number }}
 *   `title`: the one line to show; `detail`: what to do about it (may be absent);
 *   `status`: the HTTP status when the gateway answered.
 */
export function describeChatError(error, { gateway, origin } = { gateway: "the gateway" }) {
	if (isNetworkError(error)) {
		return {
			title: `Cannot reach the gateway at ${gateway}`,
			detail:
				"Is it running? The browser also reports it this way when the gateway does not allow this page's origin" +
				(origin ? ` (${origin})` : "") +
				": add it to cors.origins (--cors on the command line).",
		};
	}
	const err = /** @type {{ statusCode?: unknown, responseBody?: unknown, message?: unknown }} */ (
		error && typeof error === "object" ? error : { message: error }
	);
	const message = typeof err.message === "string" ? err.message : String(err.message ?? "Unknown error");
	const status = typeof err.statusCode === "number" ? err.statusCode : undefined;

	if (status === undefined) {
		// An `error` chunk of the stream (the agent's run failed), or anything else thrown.
		const text = gatewayErrorText(message) ?? message;
		return { title: sentence(short(text || "The request failed")), detail: "The agent's run ended with this error." };
	}

	const body = typeof err.responseBody === "string" ? err.responseBody : message;
	const said = gatewayErrorText(body);
	const title = said ? sentence(short(said)) : `The gateway answered ${status}${body.trim() ? `: ${short(body, 120)}` : ""}`;
	const hints = {
		400: "The gateway could not use this request.",
		401: "The gateway needs a bearer token: open the page with ?token=… (the gateway's bearerToken).",
		403: origin
			? `The gateway does not accept requests from this page's origin (${origin}): add it to cors.origins (--cors).`
			: "The gateway does not accept requests from this page: add its origin to cors.origins (--cors).",
		404: "Check the gateway URL and the session key.",
		413: "The message is too long for the gateway: send a shorter one.",
		415: "The gateway only takes JSON bodies.",
		429: "The agent is busy with earlier messages: wait for them to finish (or press Stop), then send again.",
		500: "The gateway failed to run the message.",
		502: "A proxy in front of the gateway could not reach it.",
		503: "The gateway is overloaded: try again in a moment.",
		504: "A proxy in front of the gateway could not reach it.",
	};
	return { title, detail: hints[status], status };
}

// ---------------------------------------------------------------------------------------------
// The conversation from the gateway: history, paging, and a reload during a running answer.
//
// `GET /sessions/:key/messages?format=ui` answers `{ messages, hasMore }`: AI SDK UI messages,
// oldest first — a user message per prompt (`text` and image `file` parts, id = pi's entry id) and
// one assistant message per run (id = the run id; `step-start`, `reasoning`, `text` and
// `dynamic-tool` parts; `metadata: { runId, usage, model, stopReason }`). `hasMore`: older ones
// exist, the next page is `before=<messages[0].id>`. While a run is running the history ends at
// that run's user message: the answer comes through the chat's resume route.
//
// A key the gateway has never seen answers `404 Session not found`, and a browser reports every
// 4xx it gets in its console. So the page asks for the history only when the gateway holds the
// session (`GET /sessions` lists it) or this browser has talked on it before (`rememberSession`):
// a session the gateway keeps on disk but not in memory then loads on that request.

/** How many messages the page loads at once (the gateway serves 1..1000). */
export const HISTORY_PAGE = 50;

/** The messages of a history answer the page can show (the rest is dropped). */
export function usableMessages(messages) {
	if (!Array.isArray(messages)) return [];
	return messages.filter(
		(m) => m && typeof m.id === "string" && (m.role === "user" || m.role === "assistant") && Array.isArray(m.parts),
	);
}

/**
 * One page of the session's history: `{ messages, hasMore }` (oldest first). Rejects with an
 * HTTP error (`statusCode`, `responseBody`) or the fetch's own error.
 * @param {{ routes: ReturnType<typeof gatewayRoutes>, headers?: Record<string, string>, limit?: number,
 *   before?: string, fetch?: typeof globalThis.fetch }} options
 * @returns {Promise<{ messages: any[], hasMore: boolean }>}
 */
export async function loadHistory({ routes, headers, limit = HISTORY_PAGE, before, fetch = globalThis.fetch }) {
	const response = await fetch(routes.history({ limit, before }), { headers });
	if (!response.ok) throw httpError(response.status, await response.text().catch(() => ""));
	const body = await response.json();
	return { messages: usableMessages(body?.messages), hasMore: body?.hasMore === true };
}

/** Whether an HTTP error is the gateway's `404 Session not found: <key>`. */
export function isSessionNotFound(error) {
	return error?.statusCode === 404 && /^Session not found/.test(gatewayErrorText(error.responseBody) ?? "");
}

/**
 * This session's snapshot from `GET /sessions` (the sessions the gateway holds in memory):
 * `{ listed: true, snapshot }` (`snapshot` undefined when the session is not there), or
 * `{ listed: false }` when the list could not be read (no token, a refused origin, …).
 * @param {{ routes: ReturnType<typeof gatewayRoutes>, headers?: Record<string, string>, session: string, fetch?: typeof globalThis.fetch }} options
 */
export async function findSession({ routes, headers, session, fetch = globalThis.fetch }) {
	try {
		const response = await fetch(routes.sessions, { headers });
		if (!response.ok) return { listed: false };
		const body = await response.json();
		const sessions = Array.isArray(body?.sessions) ? body.sessions : [];
		return { listed: true, snapshot: sessions.find((s) => s && s.sessionKey === session) };
	} catch {
		return { listed: false };
	}
}

/**
 * What the page starts with:
 * - `source: "history"`: the gateway's history (`messages`, `hasMore`);
 * - `source: "new"`: a session the gateway does not have (nothing to show);
 * - `source: "unavailable"`: the gateway could not say (`error` when the history request failed):
 *   the page shows what the tab stored, as before the gateway had a history.
 * `snapshot`: the session's snapshot when `GET /sessions` listed it.
 * @param {{ routes: ReturnType<typeof gatewayRoutes>, headers?: Record<string, string>, session: string,
 *   knownBefore?: boolean, limit?: number, fetch?: typeof globalThis.fetch }} options
 */
export async function loadStartingConversation({ routes, headers, session, knownBefore = false, limit = HISTORY_PAGE, fetch = globalThis.fetch }) {
	const { listed, snapshot } = await findSession({ routes, headers, session, fetch });
	const empty = { messages: [], hasMore: false, snapshot };
	if (!snapshot && !knownBefore) return { ...empty, source: listed ? "new" : "unavailable" };
	try {
		return { ...(await loadHistory({ routes, headers, limit, fetch })), snapshot, source: "history" };
	} catch (error) {
		if (isSessionNotFound(error)) return { ...empty, source: "new" };
		return { ...empty, source: "unavailable", error };
	}
}

/** `older` (a page of history before `messages[0]`) put before `messages`, without repeating an id. */
export function prependOlder(messages, older) {
	const ids = new Set(messages.map((m) => m.id));
	const fresh = usableMessages(older).filter((m) => !ids.has(m.id));
	return fresh.length === 0 ? messages : [...fresh, ...messages];
}

/**
 * Whether a history is cut at a running run: it ends with a user message (the run's answer is not
 * in the history yet; it comes through the resume route while it runs).
 */
export function historyIsCut(messages) {
	return messages.length > 0 && messages.at(-1).role === "user";
}

/** The ids of `messages`, as one string (to tell whether a list changed). */
export function messageIdsKey(messages) {
	return messages.map((m) => m.id).join("\n");
}

/**
 * Remembers that this browser talked on this gateway + session key (localStorage), so a later
 * visit asks for the history even when the gateway has the session on disk only.
 * @param {{ storage?: Storage | null, gateway: string, session: string }} options
 */
export function rememberSession({ storage, gateway, session }) {
	try {
		storage?.setItem(storageKey("talked", gateway, session), "1");
	} catch {
		// storage disabled: the history is then asked for when the gateway lists the session
	}
}

/** Whether {@link rememberSession} was called for this gateway + session key. */
export function sessionRemembered({ storage, gateway, session }) {
	try {
		return storage?.getItem(storageKey("talked", gateway, session)) === "1";
	} catch {
		return false;
	}
}

// ---------------------------------------------------------------------------------------------
// Model and thinking level.

/** pi's thinking levels, as `PUT /sessions/:key/thinking {level}` takes them. */
export const THINKING_LEVELS = /** @type {const} */ (["off", "minimal", "low", "medium", "high", "xhigh"]);

/** `provider/id` of a `{ provider, id }` model (the value the model picker uses), or "". */
export function modelKey(model) {
	return model && typeof model.provider === "string" && typeof model.id === "string" ? `${model.provider}/${model.id}` : "";
}

/** `{ provider, id }` of a `provider/id` value (the id may hold slashes). */
export function parseModelKey(key) {
	const slash = key.indexOf("/");
	return slash === -1 ? undefined : { provider: key.slice(0, slash), id: key.slice(slash + 1) };
}

/**
 * `GET /models`: `{ models: [{ provider, id, name, reasoning, … }], current }` (the models with
 * credentials; `current` is the primary session's model). Rejects with an HTTP error.
 * @param {{ routes: ReturnType<typeof gatewayRoutes>, headers?: Record<string, string>, fetch?: typeof globalThis.fetch }} options
 */
export async function readModels({ routes, headers, fetch = globalThis.fetch }) {
	const response = await fetch(routes.models, { headers });
	if (!response.ok) throw httpError(response.status, await response.text().catch(() => ""));
	const body = await response.json();
	const models = Array.isArray(body?.models) ? body.models.filter((m) => modelKey(m)) : [];
	return { models, current: modelKey(body?.current) ? body.current : undefined };
}

/**
 * `GET /sessions/:key`: `{ exists: true, model?, thinkingLevel?, name? }`, or `{ exists: false }`
 * (404). Rejects on any other failure.
 * @param {{ routes: ReturnType<typeof gatewayRoutes>, headers?: Record<string, string>, fetch?: typeof globalThis.fetch }} options
 */
export async function readSessionSettings({ routes, headers, fetch = globalThis.fetch }) {
	const response = await fetch(routes.session, { headers });
	if (response.status === 404) return { exists: false };
	if (!response.ok) throw httpError(response.status, await response.text().catch(() => ""));
	return settingsOf((await response.json())?.session);
}

/** What the page shows of a session snapshot: `{ exists, model?, thinkingLevel?, name? }`. */
export function settingsOf(snapshot) {
	if (!snapshot || typeof snapshot !== "object") return { exists: false };
	const settings = { exists: true };
	if (modelKey(snapshot.model)) settings.model = { provider: snapshot.model.provider, id: snapshot.model.id };
	if (typeof snapshot.thinkingLevel === "string") settings.thinkingLevel = snapshot.thinkingLevel;
	if (typeof snapshot.name === "string") settings.name = snapshot.name;
	return settings;
}

/**
 * Makes the gateway create the session (a key it does not have yet), so its model or thinking
 * level can be set before the first message: `GET /sessions/:key/events` creates the session on
 * demand; the page reads the response's headers (sent once the session exists) and closes it.
 * @param {{ routes: ReturnType<typeof gatewayRoutes>, headers?: Record<string, string>, fetch?: typeof globalThis.fetch }} options
 */
export async function createSessionOnGateway({ routes, headers, fetch = globalThis.fetch }) {
	const controller = new AbortController();
	try {
		const response = await fetch(routes.events, { headers, signal: controller.signal });
		if (!response.ok) throw httpError(response.status, await response.text().catch(() => ""));
	} finally {
		controller.abort();
	}
}

/** A JSON `PUT`; resolves with the answer's JSON, rejects with an HTTP error. */
async function putJson(url, { headers, body, fetch }) {
	const response = await fetch(url, {
		method: "PUT",
		headers: { ...headers, "content-type": "application/json" },
		body: JSON.stringify(body),
	});
	if (!response.ok) throw httpError(response.status, await response.text().catch(() => ""));
	return response.json();
}

/**
 * `PUT /sessions/:key/model {provider, id}` → `{ ok, sessionKey, model, thinkingLevel }` (the
 * thinking level the new model gives the session).
 * @param {{ routes: ReturnType<typeof gatewayRoutes>, headers?: Record<string, string>, model: { provider: string, id: string }, fetch?: typeof globalThis.fetch }} options
 */
export function setSessionModel({ routes, headers, model, fetch = globalThis.fetch }) {
	return putJson(routes.model, { headers, body: { provider: model.provider, id: model.id }, fetch });
}

/**
 * `PUT /sessions/:key/thinking {level}` → `{ ok, sessionKey, thinkingLevel }` (the level pi
 * applied: clamped to what the model can do).
 * @param {{ routes: ReturnType<typeof gatewayRoutes>, headers?: Record<string, string>, level: string, fetch?: typeof globalThis.fetch }} options
 */
export function setSessionThinking({ routes, headers, level, fetch = globalThis.fetch }) {
	return putJson(routes.thinking, { headers, body: { level }, fetch });
}

// ---------------------------------------------------------------------------------------------
// Images and usage.

/** The image types the gateway turns into pi images. */
export const IMAGE_TYPES = /** @type {const} */ (["image/png", "image/jpeg", "image/gif", "image/webp"]);
/** The gateway's default `limits.maxImageBytes` (5 MiB decoded). */
export const MAX_IMAGE_BYTES = 5 * 1024 * 1024;

/**
 * A `File` from a file input as the `file` part `sendMessage({ files })` sends:
 * `{ type: "file", mediaType, filename, url: "data:<type>;base64,…" }`. Rejects with a sentence
 * when the file is not one of {@link IMAGE_TYPES} or is larger than `maxBytes`.
 * @param {File} file
 * @param {{ maxBytes?: number }} [options]
 */
export function imageFilePart(file, { maxBytes = MAX_IMAGE_BYTES } = {}) {
	if (!IMAGE_TYPES.includes(file.type)) {
		return Promise.reject(new Error(`${file.name}: not a PNG, JPEG, GIF or WebP image`));
	}
	if (file.size > maxBytes) {
		return Promise.reject(new Error(`${file.name}: larger than ${Math.round(maxBytes / 1024 / 1024)} MiB`));
	}
	return new Promise((resolve, reject) => {
		const reader = new FileReader();
		reader.onload = () => resolve({ type: "file", mediaType: file.type, filename: file.name, url: String(reader.result) });
		reader.onerror = () => reject(new Error(`${file.name}: could not be read`));
		reader.readAsDataURL(file);
	});
}

/**
 * The line shown under an assistant message from its `metadata` (the gateway's `finish` chunk
 * `messageMetadata`, or the history's): `{ totalTokens, cost, model, text }`, or undefined when
 * the message has no usage. `text` is e.g. `1,234 tokens · $0.0123 · faux/faux-2`.
 * @param {unknown} metadata
 */
export function usageSummary(metadata) {
	const usage = /** @type {any} */ (metadata)?.usage;
	if (!usage || typeof usage !== "object") return undefined;
	const totalTokens = Number.isFinite(usage.totalTokens)
		? usage.totalTokens
		: ["input", "output", "cacheRead", "cacheWrite"].reduce((n, k) => n + (Number.isFinite(usage[k]) ? usage[k] : 0), 0);
	const cost = Number.isFinite(usage.cost?.total) ? usage.cost.total : undefined;
	const model = modelKey(/** @type {any} */ (metadata).model);
	const pieces = [`${totalTokens.toLocaleString("en-US")} tokens`];
	if (cost !== undefined) pieces.push(`$${cost < 0.01 && cost > 0 ? cost.toPrecision(2) : cost.toFixed(cost === 0 ? 0 : 4)}`);
	if (model) pieces.push(model);
	return { totalTokens, cost, model, text: pieces.join(" · ") };
}
