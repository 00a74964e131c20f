// The gateway-specific pieces of the page, in plain JavaScript (no React, so they can be tested on
// their own): the routes (`gatewayRoutes`), what the transport sends (`lastUserMessageOnly`), how
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
 * `prepareSendMessagesRequest` for `DefaultChatTransport`: the body is `{ id, messages: [the last
 * user message], trigger, messageId }` instead of the whole conversation. pi-gateway reads only
 * the last user message's text parts; the agent remembers the rest itself.
 */
export function lastUserMessageOnly({ id, messages, body, trigger, messageId }) {
	const last = messages.findLast((message) => message.role === "user");
	return { body: { ...body, id, messages: last ? [last] : [], trigger, messageId } };
}

/**
 * The gateway routes the page uses, for one session key (percent-encoded into the path once).
 * @param {string} gateway  the gateway's base URL, without a trailing slash
 * @param {string} session  the session key
 */
export function gatewayRoutes(gateway, session) {
	const base = `${gateway}/sessions/${encodeURIComponent(session)}`;
	return {
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
// useChat keeps the conversation in memory only, and the gateway has no history route yet, so the
// page keeps it in the tab's sessionStorage (it survives a reload, not a closed tab). The chat id
// is kept in localStorage: one per gateway and session key, so every tab on that session is the
// same chat and can resume its running answer. `useChat({ id, resume: true })` asks
// `GET .../chat/:chatId/stream` on mount; the gateway replays the running answer from its `start`
// chunk, whose `messageId` is the run id, and useChat replaces the stored (partial) assistant
// message with that id instead of adding a second one.

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
 * @param {{ chatId: string, text: string, mode: string, messageId: string }} options
 */
export function chatRequestBody({ chatId, text, mode, messageId }) {
	return {
		id: chatId,
		messages: [{ id: messageId, role: "user", parts: [{ type: "text", text }] }],
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
 *   text: string, mode: string, messageId: string, fetch?: typeof globalThis.fetch }} options
 * @returns {Promise<{ runId: string | undefined, status: number }>}
 */
export async function sendDuringAnswer({ routes, headers, chatId, text, mode, messageId, fetch = globalThis.fetch }) {
	const response = await fetch(routes.chat, {
		method: "POST",
		headers: { ...headers, "content-type": "application/json" },
		body: JSON.stringify(chatRequestBody({ chatId, text, mode, messageId })),
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
