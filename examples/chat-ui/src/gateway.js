// The gateway-specific pieces of the page, in plain JavaScript (no React, so they can be tested on
// their own): the routes (`gatewayRoutes`), what the transport sends (`lastUserMessageOnly`), how
// the conversation survives a reload (`stableChatId`, `loadConversation`, `saveConversation`,
// `completeFromRun`), and how errors are shown (`describeChatError`).
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
		return typeof saved.openRunId === "string" ? { messages, openRunId: saved.openRunId } : { messages };
	} catch {
		return { messages: [] };
	}
}

/**
 * Stores the conversation (sessionStorage). Best effort: when the storage is full or disabled,
 * the page keeps working and a reload shows less. Returns whether it was stored.
 * @param {{ storage?: Storage | null, gateway: string, session: string, chatId: string, messages: any[], openRunId?: string }} options
 */
export function saveConversation({ storage, gateway, session, chatId, messages, openRunId }) {
	try {
		if (!storage) return false;
		storage.setItem(storageKey("messages", gateway, session), JSON.stringify({ chatId, messages, openRunId }));
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
