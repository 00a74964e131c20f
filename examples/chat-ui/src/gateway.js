// The two gateway-specific pieces of the page, in plain JavaScript (no React, so they can be
// tested on their own): what the transport sends (`lastUserMessageOnly`), and how errors are
// shown (`describeChatError`).
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
