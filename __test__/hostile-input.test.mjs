// Hostile input, table-driven, over raw sockets (fetch would normalize most of it away).
//
// Each case asserts a SPECIFIC status (and the JSON error body where there is one) and that
// the gateway's state did not move: the GET /sessions list and the prompt count are the same
// before and after — except for the few cases that are meant to be accepted, which state the
// exact number of prompts they cause.
//
// Decisions recorded here where SPEC.md is silent (each also named in its case):
// - Paths are not normalized: "/health/../sessions", "//sessions", "/%73essions" match no
//   route (404, after auth). Only the session key segment is percent-decoded, once.
// - A key is any non-empty UTF-8 string of at most 1024 bytes after decoding, including "/",
//   NUL and raw non-ASCII bytes sent unencoded; invalid UTF-8 (encoded or raw) is refused.
// - The query string and fragment are ignored.
// - Content types an HTML form can send are refused before the body is read (SPEC section 16):
//   text/plain and multipart/form-data → 415, and application/x-www-form-urlencoded too when
//   the request carries an Origin or a Sec-Fetch-* header. Any other content type (or none,
//   or urlencoded as curl -d sends it) is read as JSON; anything that does not parse as a
//   JSON object is 400 "Invalid JSON body".
// - Raw requests send a loopback Host (localhost, 127.0.0.1): the Host check against DNS
//   rebinding is tested in safe-guard.test.mjs.
// - /chat has its own body limit, limits.maxChatBodyBytes, set here to twice maxBodyBytes.
// - Transport-level garbage is answered by hyper itself, with an empty body and
//   `connection: close`: 400 (bad request line, header syntax, bad or conflicting
//   Content-Length, unsupported Transfer-Encoding, unknown HTTP versions — hyper does not use
//   505), 414 (URI > hyper's limit), 431 (head > ~400 KB, or more than 100 headers).
//   An HTTP/2 preface is not answered at all: the connection is closed.
// - With both Content-Length and Transfer-Encoding: chunked, hyper reads the body as chunked
//   and closes the connection after the response (no request smuggling).
// - Auth: the scheme is case-insensitive, the token is trimmed of surrounding spaces (so
//   "Bearer  tok" passes), a tab as separator, a prefix, a suffix, another scheme, a second
//   Authorization header, or non-ASCII bytes are all 401. Auth is checked before routing and
//   method checks, so an unauthenticated client learns nothing about which paths exist.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { startGateway } from "./support/gateway.mjs";
import { api, chunked, jsonOf, rawExchange, rawRequest } from "./support/rel-util.mjs";
import { createDouble, createDoubleFactory } from "./support/sessions.mjs";
import { bodyWithRunId, withRunId } from "./support/runs.mjs";

const TOKEN = "tok-secret";
const SECRET = "hook-secret";
const LIMIT = 64 * 1024;
const CHAT_LIMIT = 2 * LIMIT;
const AUTH = { Authorization: `Bearer ${TOKEN}` };

// ---------------------------------------------------------------- the gateway under attack

let gw;
let primary;
let factory;

before(async () => {
	primary = createDouble("main");
	factory = createDoubleFactory();
	gw = await startGateway({
		config: {
			bearerToken: TOKEN,
			webhook: { enabled: true, basePath: "/webhook", secret: SECRET },
			limits: { maxBodyBytes: LIMIT, maxChatBodyBytes: CHAT_LIMIT },
		},
		primarySession: primary,
		createSession: factory,
	});
	// A second, existing session.
	const r = await api(gw.base, "POST", "/sessions/exists/messages", { token: TOKEN, body: { text: "setup" } });
	assert.equal(r.status, 200);
});

after(async () => {
	await gw?.stop();
});

async function state() {
	const r = await api(gw.base, "GET", "/sessions", { token: TOKEN });
	assert.equal(r.status, 200);
	const prompts = primary.calls.prompt + factory.created.reduce((n, s) => n + s.calls.prompt, 0);
	return { list: r.body.sessions, prompts, created: factory.created.length };
}

// ---------------------------------------------------------------- request builders

/** An authenticated raw request. */
const A = (method, path, opts = {}) => rawRequest(method, path, { ...opts, headers: { ...AUTH, ...opts.headers } });
/** An unauthenticated raw request. */
const U = (method, path, opts = {}) => rawRequest(method, path, opts);
const B = (...parts) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p, "latin1"))));
const msg = (text) => JSON.stringify({ text });
const E = (error) => ({ error });

const NOT_FOUND = E("Not found");
const UNAUTH = E("Unauthorized");
const BAD_KEY = E("Invalid session key");
const BAD_JSON = E("Invalid JSON body");
const MISSING = E("Missing text");
const TOO_LARGE = E(`Request body too large (limit ${LIMIT} bytes)`);
const NOT_ALLOWED = E("Method not allowed");
const BAD_SECRET = E("Invalid webhook secret");
const UNSUPPORTED = (type) => E(`Unsupported Content-Type ${type}: send application/json`);
const HYPER_400 = { status: 400, body: "", headers: { connection: "close" } };

const long = (n) => "a".repeat(n);

// Each case: { name, send, status | statuses, body? (object → JSON equality, "" → empty),
// bodies?, headers?, prompts? (expected prompt delta, default 0), closed? (server closed),
// noResponse? }.
const cases = [
	// ---- path tricks
	{ name: "dot segments are not resolved: /health/../sessions", send: A("GET", "/health/../sessions"), status: 404, body: NOT_FOUND },
	{ name: "dot segments inside /sessions: /sessions/../health", send: A("GET", "/sessions/../health"), status: 404, body: NOT_FOUND },
	{ name: "a doubled slash: //sessions", send: A("GET", "//sessions"), status: 404, body: NOT_FOUND },
	{ name: "an encoded route: /%73essions", send: A("GET", "/%73essions"), status: 404, body: NOT_FOUND },
	{ name: "routes are case-sensitive: /SESSIONS", send: A("GET", "/SESSIONS"), status: 404, body: NOT_FOUND },
	{ name: "an empty key: /sessions/", send: A("GET", "/sessions/"), status: 404, body: NOT_FOUND },
	{ name: "an empty key with an action: /sessions//events", send: A("GET", "/sessions//events"), status: 404, body: NOT_FOUND },
	{ name: "a trailing slash after the key: /sessions/main/", send: A("GET", "/sessions/main/"), status: 404, body: NOT_FOUND },
	{ name: "an unknown action", send: A("GET", "/sessions/main/bogus"), status: 404, body: NOT_FOUND },
	{ name: "a segment after the action", send: A("GET", "/sessions/main/events/x"), status: 404, body: NOT_FOUND },
	{ name: "a backslash is just a character", send: A("GET", "/sessions\\main"), status: 404, body: NOT_FOUND },
	{ name: "an encoded slash is a key: /sessions/%2F", send: A("GET", "/sessions/%2F"), status: 404, body: E("Session not found: /") },
	{ name: "an encoded slash inside a key: /sessions/a%2Fb", send: A("GET", "/sessions/a%2Fb"), status: 404, body: E("Session not found: a/b") },
	{ name: "decoded once: /sessions/%252F", send: A("GET", "/sessions/%252F"), status: 404, body: E("Session not found: %2F") },
	{ name: "an encoded NUL is a key: /sessions/%00", send: A("GET", "/sessions/%00"), status: 404, body: E("Session not found: \u0000") },
	{ name: "a NUL inside a key: /sessions/a%00b", send: A("GET", "/sessions/a%00b"), status: 404, body: E("Session not found: a\u0000b") },
	{ name: "dot-dot as a key: /sessions/%2E%2E", send: A("GET", "/sessions/%2E%2E"), status: 404, body: E("Session not found: ..") },
	{ name: "a 2,000-character key", send: A("GET", `/sessions/${long(2000)}`), status: 400, body: BAD_KEY },
	{ name: "a key of exactly 1,024 bytes is allowed", send: A("GET", `/sessions/${long(1024)}`), status: 404, body: E(`Session not found: ${long(1024)}`) },
	{ name: "a key of 1,025 bytes", send: A("GET", `/sessions/${long(1025)}`), status: 400, body: BAD_KEY },
	{ name: "the cap counts decoded bytes: 342 × € (1,026 bytes)", send: A("GET", `/sessions/${"%E2%82%AC".repeat(342)}`), status: 400, body: BAD_KEY },
	{ name: "341 × € (1,023 bytes) is allowed", send: A("GET", `/sessions/${"%E2%82%AC".repeat(341)}`), status: 404, body: E(`Session not found: ${"€".repeat(341)}`) },
	{ name: "an overlong key on POST /messages creates nothing", send: A("POST", `/sessions/${long(2000)}/messages`, { body: msg("hi") }), status: 400, body: BAD_KEY },
	{ name: "invalid UTF-8 in a key: %C3%28", send: A("GET", "/sessions/%C3%28"), status: 400, body: BAD_KEY },
	{ name: "invalid UTF-8 in a key on POST /messages", send: A("POST", "/sessions/%C3%28/messages", { body: msg("hi") }), status: 400, body: BAD_KEY },
	{ name: "an overlong UTF-8 encoding of '/': %C0%AF", send: A("GET", "/sessions/%C0%AF"), status: 400, body: BAD_KEY },
	{ name: "a malformed escape: %ZZ", send: A("GET", "/sessions/%ZZ"), status: 400, body: BAD_KEY },
	{ name: "a truncated escape: abc%", send: A("GET", "/sessions/abc%"), status: 400, body: BAD_KEY },
	{ name: "a half escape: %4", send: A("GET", "/sessions/%4"), status: 400, body: BAD_KEY },
	{ name: "raw UTF-8 bytes in the path are a key", send: B("GET /sessions/caf", Buffer.from([0xc3, 0xa9]), ` HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`), status: 404, body: E("Session not found: café") },
	{ name: "a raw 0xFF byte in the path", send: B("GET /sessions/a", Buffer.from([0xff]), ` HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`), ...HYPER_400 },
	{ name: "a control character in the path", send: B(`GET /sessions/a\x01b HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`), ...HYPER_400 },
	{ name: "the query string is ignored, even malformed", send: A("GET", "/sessions/main?x=%zz&y"), status: 200 },
	{ name: "an absolute-form target is routed by its path", send: U("GET", "http://127.0.0.1/health"), status: 200, body: { ok: true, ready: true } },
	{ name: "an asterisk-form target matches nothing", send: A("GET", "*"), status: 404, body: NOT_FOUND },
	{ name: "a 100 KB URL", send: A("GET", `/sessions/${long(100 * 1024)}`), status: 414, body: "", headers: { connection: "close" } },

	// ---- huge and duplicate headers
	{ name: "a 100 KB header fits hyper's buffer and is served", send: U("GET", "/health", { headers: { "X-Big": long(100 * 1024) } }), status: 200, body: { ok: true, ready: true } },
	{ name: "a 500 KB header", send: U("GET", "/health", { headers: { "X-Big": long(500 * 1024) } }), status: 431, body: "", headers: { connection: "close" } },
	{ name: "120 headers", send: U("GET", "/health", { headers: Object.fromEntries(Array.from({ length: 120 }, (_, i) => [`X-H${i}`, "v"])) }), status: 431, body: "" },
	{ name: "two Authorization headers, both right", send: U("GET", "/sessions", { headers: { Authorization: [`Bearer ${TOKEN}`, `Bearer ${TOKEN}`] } }), status: 401, body: UNAUTH },
	{ name: "two Authorization headers, one wrong", send: U("GET", "/sessions", { headers: { Authorization: ["Bearer nope", `Bearer ${TOKEN}`] } }), status: 401, body: UNAUTH },
	{ name: "two different Content-Length headers", send: B(`POST /sessions/main/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{} `), ...HYPER_400 },
	{ name: "two equal Content-Length headers are one", send: B(`POST /sessions/main/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}`), status: 400, body: MISSING },
	{ name: "Content-Length and chunked: chunked wins and the connection closes", send: B(A("POST", "/sessions/main/messages", { headers: { "Content-Length": "4", "Transfer-Encoding": "chunked" } }), chunked("[1]")), status: 400, body: BAD_JSON, headers: { connection: "close" } },
	{ name: "a Transfer-Encoding other than chunked", send: A("POST", "/sessions/main/messages", { headers: { "Transfer-Encoding": "gzip" }, body: "[1]" }), ...HYPER_400 },
	{ name: "a non-numeric Content-Length", send: A("POST", "/sessions/main/messages", { headers: { "Content-Length": "abc" }, body: "{}" }), ...HYPER_400 },
	{ name: "a negative Content-Length", send: A("POST", "/sessions/main/messages", { headers: { "Content-Length": "-1" }, body: "{}" }), ...HYPER_400 },
	{ name: "a Content-Length past 2^64", send: A("POST", "/sessions/main/messages", { headers: { "Content-Length": "99999999999999999999999" } }), ...HYPER_400 },
	{ name: "header folding (obs-fold)", send: B("GET /health HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n"), ...HYPER_400 },
	{ name: "a space in a header name", send: B("GET /health HTTP/1.1\r\nHost: localhost\r\nBad Header: v\r\n\r\n"), ...HYPER_400 },
	{ name: "two webhook secret headers, both right", send: U("POST", "/webhook", { headers: { "x-pi-webhook-secret": [SECRET, SECRET] }, body: msg("hi") }), status: 401, body: BAD_SECRET },

	// ---- odd methods
	{ name: "PATCH /sessions", send: A("PATCH", "/sessions"), status: 405, body: NOT_ALLOWED, headers: { allow: "GET, HEAD" } },
	{ name: "DELETE /sessions/main: the primary is never deleted", send: A("DELETE", "/sessions/main"), status: 409, body: { error: "The primary session cannot be deleted" } },
	{ name: "PUT /sessions/main", send: A("PUT", "/sessions/main", { body: msg("hi") }), status: 405, body: NOT_ALLOWED, headers: { allow: "GET, HEAD, PATCH, DELETE" } },
	{ name: "PUT /sessions/main/messages", send: A("PUT", "/sessions/main/messages", { body: msg("hi") }), status: 405, body: NOT_ALLOWED, headers: { allow: "GET, HEAD, POST" } },
	{ name: "TRACE /health", send: A("TRACE", "/health"), status: 405, body: NOT_ALLOWED, headers: { allow: "GET, HEAD" } },
	{ name: "OPTIONS without CORS configured", send: A("OPTIONS", "/sessions"), status: 405, body: NOT_ALLOWED, headers: { allow: "GET, HEAD" } },
	{ name: "an extension method FOO", send: A("FOO", "/sessions"), status: 405, body: NOT_ALLOWED, headers: { allow: "GET, HEAD" } },
	{ name: "methods are case-sensitive: get /health", send: A("get", "/health"), status: 405, body: NOT_ALLOWED, headers: { allow: "GET, HEAD" } },
	{ name: "a method with illegal characters", send: A("G(T", "/health"), ...HYPER_400 },
	{ name: "CONNECT", send: B(`CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1:80\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`), status: 404, body: NOT_FOUND },
	{ name: "GET on an action route", send: A("GET", "/sessions/main/abort"), status: 405, body: NOT_ALLOWED, headers: { allow: "POST" } },
	{ name: "POST on a session", send: A("POST", "/sessions/main", { body: msg("hi") }), status: 405, body: NOT_ALLOWED, headers: { allow: "GET, HEAD, PATCH, DELETE" } },
	{ name: "POST /health", send: A("POST", "/health", { body: "{}" }), status: 405, body: NOT_ALLOWED, headers: { allow: "GET, HEAD" } },
	{ name: "GET on the webhook path", send: U("GET", "/webhook"), status: 405, body: NOT_ALLOWED, headers: { allow: "POST" } },
	{ name: "an unauthenticated DELETE learns nothing", send: U("DELETE", "/sessions"), status: 401, body: UNAUTH },
	{ name: "an unauthenticated request to a bogus path learns nothing", send: U("POST", "/sessions/main/bogus"), status: 401, body: UNAUTH },

	// ---- content types (form types refused) and bodies
	{ name: "text/plain holding a JSON object is refused 415", send: A("POST", "/sessions/main/messages", { headers: { "Content-Type": "text/plain" }, body: msg("plain") }), status: 415, body: UNSUPPORTED("text/plain") },
	{ name: "text/plain with parameters, in capitals, is refused 415", send: A("POST", "/sessions/main/messages", { headers: { "Content-Type": " TEXT/Plain ; charset=UTF-8" }, body: msg("plain") }), status: 415, body: UNSUPPORTED("text/plain") },
	{ name: "text/plain on a webhook is refused 415", send: U("POST", "/webhook", { headers: { "x-pi-webhook-secret": SECRET, "Content-Type": "text/plain" }, body: msg("plain") }), status: 415, body: UNSUPPORTED("text/plain") },
	{ name: "text/plain on chat is refused 415", send: A("POST", "/sessions/main/chat", { headers: { "Content-Type": "text/plain" }, body: msg("plain") }), status: 415, body: UNSUPPORTED("text/plain") },
	{ name: "no content-type at all is accepted", send: A("POST", "/sessions/main/messages", { body: msg("bare") }), status: 200, body: { ok: true, response: "echo:bare", sessionKey: "main" }, prompts: 1 },
	{ name: "application/json is accepted", send: A("POST", "/sessions/main/messages", { headers: { "Content-Type": "application/json" }, body: msg("json") }), status: 200, body: { ok: true, response: "echo:json", sessionKey: "main" }, prompts: 1 },
	{ name: "a form-encoded body", send: A("POST", "/sessions/main/messages", { headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: "text=hi" }), status: 400, body: BAD_JSON },
	{ name: "urlencoded holding JSON without browser headers (curl -d) is accepted", send: A("POST", "/sessions/main/messages", { headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: msg("curl") }), status: 200, body: { ok: true, response: "echo:curl", sessionKey: "main" }, prompts: 1 },
	{ name: "urlencoded with a Sec-Fetch-* header (a browser's form) is refused 415", send: A("POST", "/sessions/main/messages", { headers: { "Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Mode": "navigate" }, body: msg("form") }), status: 415, body: UNSUPPORTED("application/x-www-form-urlencoded") },
	{ name: "urlencoded with the gateway's own Origin is refused 415", send: A("POST", "/sessions/main/messages", { headers: { "Content-Type": "application/x-www-form-urlencoded", Origin: "http://127.0.0.1" }, body: msg("form") }), status: 415, body: UNSUPPORTED("application/x-www-form-urlencoded") },
	{ name: "a multipart body is refused 415", send: A("POST", "/sessions/main/messages", { headers: { "Content-Type": "multipart/form-data; boundary=x" }, body: '--x\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n--x--\r\n' }), status: 415, body: UNSUPPORTED("multipart/form-data") },
	{ name: "arrays nested 10,000 deep", send: A("POST", "/sessions/main/messages", { body: "[".repeat(10000) + "]".repeat(10000) }), status: 400, body: BAD_JSON },
	{ name: "objects nested 10,000 deep", send: A("POST", "/sessions/main/messages", { body: '{"a":'.repeat(10000) + "1" + "}".repeat(10000) }), status: 400, body: BAD_JSON },
	{ name: "deep nesting inside a valid object", send: A("POST", "/sessions/main/messages", { body: `{"text":"hi","x":${"[".repeat(5000)}${"]".repeat(5000)}}` }), status: 400, body: BAD_JSON },
	{ name: "a JSON array", send: A("POST", "/sessions/main/messages", { body: "[]" }), status: 400, body: BAD_JSON },
	{ name: "a JSON string", send: A("POST", "/sessions/main/messages", { body: '"s"' }), status: 400, body: BAD_JSON },
	{ name: "a JSON number", send: A("POST", "/sessions/main/messages", { body: "1" }), status: 400, body: BAD_JSON },
	{ name: "JSON null", send: A("POST", "/sessions/main/messages", { body: "null" }), status: 400, body: BAD_JSON },
	{ name: "JSON true", send: A("POST", "/sessions/main/messages", { body: "true" }), status: 400, body: BAD_JSON },
	{ name: "truncated JSON", send: A("POST", "/sessions/main/messages", { body: '{"text":' }), status: 400, body: BAD_JSON },
	{ name: "trailing garbage after the object", send: A("POST", "/sessions/main/messages", { body: `${msg("a")} x` }), status: 400, body: BAD_JSON },
	{ name: "a UTF-8 byte-order mark before the object", send: A("POST", "/sessions/main/messages", { body: B(Buffer.from([0xef, 0xbb, 0xbf]), msg("bom")) }), status: 400, body: BAD_JSON },
	{ name: "invalid UTF-8 inside a JSON string", send: A("POST", "/sessions/main/messages", { body: B('{"text":"', Buffer.from([0xff, 0xfe]), '"}') }), status: 400, body: BAD_JSON },
	{ name: "a lone surrogate escape", send: A("POST", "/sessions/main/messages", { body: '{"text":"\\ud800"}' }), status: 400, body: BAD_JSON },
	{ name: "a number out of range", send: A("POST", "/sessions/main/messages", { body: '{"text":"x","n":1e999999}' }), status: 400, body: BAD_JSON },
	{ name: "text that is a number", send: A("POST", "/sessions/main/messages", { body: '{"text":5}' }), status: 400, body: MISSING },
	{ name: "text that is null", send: A("POST", "/sessions/main/messages", { body: '{"text":null}' }), status: 400, body: MISSING },
	{ name: "blank text", send: A("POST", "/sessions/main/messages", { body: msg("   \n\t") }), status: 400, body: MISSING },
	{ name: "an empty body", send: A("POST", "/sessions/main/messages", { body: "" }), status: 400, body: MISSING },
	{ name: "a chat body with no user text", send: A("POST", "/sessions/main/chat", { body: '{"messages":[{"role":"assistant","parts":[{"type":"text","text":"hi"}]}]}' }), status: 400, body: E("Missing user message text") },

	// ---- body limits
	{ name: "a declared Content-Length past the limit, body not sent", send: A("POST", "/sessions/main/messages", { headers: { "Content-Length": String(LIMIT + 1) } }), status: 413, body: TOO_LARGE },
	{ name: "a body one byte past the limit", send: A("POST", "/sessions/main/messages", { body: JSON.stringify({ text: "x".repeat(LIMIT - 11 + 1) }) }), status: 413, body: TOO_LARGE },
	{ name: "a body exactly at the limit is accepted", send: A("POST", "/sessions/main/messages", { body: JSON.stringify({ text: "x".repeat(LIMIT - 11) }) }), status: 200, prompts: 1 },
	{ name: "a chunked body past the limit, no Content-Length", send: B(A("POST", "/sessions/main/messages", { headers: { "Transfer-Encoding": "chunked" } }), chunked(JSON.stringify({ text: "x".repeat(LIMIT + 5000) }), 8192)), status: 413, body: TOO_LARGE },
	{ name: "a chat body past limits.maxChatBodyBytes", send: A("POST", "/sessions/main/chat", { headers: { "Content-Length": String(CHAT_LIMIT + 1) } }), status: 413, body: E(`Request body too large (limit ${CHAT_LIMIT} bytes)`) },
	{ name: "a chat body past maxBodyBytes but within maxChatBodyBytes is read", send: A("POST", "/sessions/main/chat", { body: JSON.stringify({ text: "big chat", pad: "x".repeat(LIMIT + 1000) }) }), status: 200, prompts: 1 },
	{ name: "a webhook body past the limit", send: U("POST", "/webhook", { headers: { "x-pi-webhook-secret": SECRET, "Content-Length": String(LIMIT * 4) } }), status: 413, body: TOO_LARGE },

	// ---- chunked bodies
	{ name: "a small chunked JSON body is accepted", send: B(A("POST", "/sessions/main/messages", { headers: { "Transfer-Encoding": "chunked" } }), chunked(msg("chunky"), 7)), status: 200, body: { ok: true, response: "echo:chunky", sessionKey: "main" }, prompts: 1 },
	{ name: "chunk extensions are tolerated", send: B(A("POST", "/sessions/main/messages", { headers: { "Transfer-Encoding": "chunked" } }), `6;ext=1\r\n{"text\r\n8;a=b;c\r\n":"ext"}\r\n0\r\n\r\n`), status: 200, body: { ok: true, response: "echo:ext", sessionKey: "main" }, prompts: 1 },
	{ name: "chunked trailers are tolerated", send: B(A("POST", "/sessions/main/messages", { headers: { "Transfer-Encoding": "chunked" } }), `6\r\n{"text\r\n9\r\n":"trail"\r\n1\r\n}\r\n0\r\nX-Trailer: t\r\n\r\n`), status: 200, body: { ok: true, response: "echo:trail", sessionKey: "main" }, prompts: 1 },
	{ name: "an invalid chunk size", send: B(A("POST", "/sessions/main/messages", { headers: { "Transfer-Encoding": "chunked" } }), "zz\r\nabc\r\n0\r\n\r\n"), status: 400, body: E("Request body could not be read") },

	// ---- HTTP versions and framing
	{ name: "HTTP/1.0 without Host is answered and closed", send: U("GET", "/health", { version: "HTTP/1.0", host: false }), status: 200, body: { ok: true, ready: true }, closed: true },
	{ name: "HTTP/1.0 with auth", send: A("GET", "/sessions/exists", { version: "HTTP/1.0" }), status: 200 },
	{ name: "HTTP/1.1 without Host is served", send: U("GET", "/health", { host: false }), status: 200, body: { ok: true, ready: true } },
	{ name: "HTTP/0.9", send: B("GET /health\r\n\r\n"), ...HYPER_400 },
	{ name: "HTTP/1.2", send: U("GET", "/health", { version: "HTTP/1.2" }), ...HYPER_400 },
	{ name: "HTTP/3.0", send: U("GET", "/health", { version: "HTTP/3.0" }), ...HYPER_400 },
	{ name: "an HTTP/2 preface is not answered; the connection closes", send: B("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), noResponse: true, closed: true },
	{ name: "bare LF line endings are accepted", send: B("GET /health HTTP/1.1\nHost: localhost\n\n"), status: 200, body: { ok: true, ready: true } },
	{ name: "Expect: 100-continue gets 100 then the answer", send: [A("POST", "/sessions/main/messages", { headers: { Expect: "100-continue", "Content-Length": "2" } }), "{}"], statuses: [100, 400], bodies: ["", MISSING] },

	// ---- pipelining
	{ name: "two pipelined GETs are answered in order", send: B(U("GET", "/health"), A("GET", "/sessions/exists")), statuses: [200, 200], bodies: [{ ok: true, ready: true }, undefined] },
	{ name: "a pipelined bad request does not poison the next", send: B(A("POST", "/sessions/main/messages", { body: "{bad" }), U("GET", "/health")), statuses: [400, 200], bodies: [BAD_JSON, { ok: true, ready: true }] },
	{ name: "three pipelined messages run in order", send: B(...["p1", "p2", "p3"].map((t) => A("POST", "/sessions/main/messages", { body: msg(t) }))), statuses: [200, 200, 200], bodies: ["p1", "p2", "p3"].map((t) => ({ ok: true, response: `echo:${t}`, sessionKey: "main" })), prompts: 3 },
	{ name: "after a chunked 413 the connection resynchronizes", send: B(A("POST", "/sessions/main/messages", { headers: { "Transfer-Encoding": "chunked" } }), chunked(JSON.stringify({ text: "x".repeat(LIMIT + 5000) }), 8192), U("GET", "/health")), statuses: [413, 200], bodies: [TOO_LARGE, { ok: true, ready: true }] },
	{ name: "a smuggled request inside a JSON body is not executed", send: A("POST", "/sessions/main/messages", { body: `{"text":"x"\r\n\r\nPOST /sessions/main/reset HTTP/1.1\r\nHost: localhost\r\n\r\n` }), status: 400, body: BAD_JSON },

	// ---- auth variants
	{ name: "no Authorization header", send: U("GET", "/sessions"), status: 401, body: UNAUTH },
	{ name: "a lowercase scheme is accepted", send: U("GET", "/sessions/exists", { headers: { Authorization: `bearer ${TOKEN}` } }), status: 200 },
	{ name: "an uppercase scheme is accepted", send: U("GET", "/sessions/exists", { headers: { Authorization: `BEARER ${TOKEN}` } }), status: 200 },
	{ name: "two spaces before the token are accepted (trimmed)", send: U("GET", "/sessions/exists", { headers: { Authorization: `Bearer  ${TOKEN}` } }), status: 200 },
	{ name: "trailing spaces after the token are accepted", send: U("GET", "/sessions/exists", { headers: { Authorization: `Bearer ${TOKEN}   ` } }), status: 200 },
	{ name: "a tab as separator", send: U("GET", "/sessions", { headers: { Authorization: `Bearer\t${TOKEN}` } }), status: 401, body: UNAUTH },
	{ name: "a prefix of the token", send: U("GET", "/sessions", { headers: { Authorization: `Bearer ${TOKEN.slice(0, -1)}` } }), status: 401, body: UNAUTH },
	{ name: "the token with a suffix", send: U("GET", "/sessions", { headers: { Authorization: `Bearer ${TOKEN}X` } }), status: 401, body: UNAUTH },
	{ name: "the token in another case", send: U("GET", "/sessions", { headers: { Authorization: `Bearer ${TOKEN.toUpperCase()}` } }), status: 401, body: UNAUTH },
	{ name: "Basic auth", send: U("GET", "/sessions", { headers: { Authorization: `Basic ${Buffer.from(`user:${TOKEN}`).toString("base64")}` } }), status: 401, body: UNAUTH },
	{ name: "an empty Authorization header", send: U("GET", "/sessions", { headers: { Authorization: "" } }), status: 401, body: UNAUTH },
	{ name: "the scheme alone", send: U("GET", "/sessions", { headers: { Authorization: "Bearer" } }), status: 401, body: UNAUTH },
	{ name: "the scheme and a space", send: U("GET", "/sessions", { headers: { Authorization: "Bearer " } }), status: 401, body: UNAUTH },
	{ name: "no space between scheme and token", send: U("GET", "/sessions", { headers: { Authorization: `Bearer${TOKEN}` } }), status: 401, body: UNAUTH },
	{ name: "another scheme with the right token", send: U("GET", "/sessions", { headers: { Authorization: `Token ${TOKEN}` } }), status: 401, body: UNAUTH },
	{ name: "the token alone", send: U("GET", "/sessions", { headers: { Authorization: TOKEN } }), status: 401, body: UNAUTH },
	{ name: "a non-ASCII byte after the token", send: B(`GET /sessions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${TOKEN}`, Buffer.from([0xe9]), "\r\n\r\n"), status: 401, body: UNAUTH },
	{ name: "the token in the query string", send: U("GET", `/sessions?token=${TOKEN}&access_token=${TOKEN}`), status: 401, body: UNAUTH },
	{ name: "the token in another header", send: U("GET", "/sessions", { headers: { "X-Authorization": `Bearer ${TOKEN}`, "Proxy-Authorization": `Bearer ${TOKEN}` } }), status: 401, body: UNAUTH },
	{ name: "/ready needs the token", send: U("GET", "/ready"), status: 401, body: UNAUTH },
	{ name: "/health needs none", send: U("GET", "/health"), status: 200, body: { ok: true, ready: true } },
	{ name: "an unauthenticated message creates nothing", send: U("POST", "/sessions/newcomer/messages", { body: msg("hi") }), status: 401, body: UNAUTH },
	{ name: "an unauthenticated reset", send: U("POST", "/sessions/main/reset"), status: 401, body: UNAUTH },
	{ name: "an unauthenticated event stream", send: U("GET", "/sessions/main/events"), status: 401, body: UNAUTH },

	// ---- webhooks
	{ name: "a webhook without its secret", send: U("POST", "/webhook", { body: msg("hi") }), status: 401, body: BAD_SECRET },
	{ name: "a webhook with a wrong secret", send: U("POST", "/webhook/x", { headers: { "x-pi-webhook-secret": "nope" }, body: msg("hi") }), status: 401, body: BAD_SECRET },
	{ name: "a webhook with a prefix of the secret", send: U("POST", "/webhook", { headers: { "x-pi-webhook-secret": SECRET.slice(0, -1) }, body: msg("hi") }), status: 401, body: BAD_SECRET },
	{ name: "a webhook with the bearer token instead of the secret", send: U("POST", "/webhook", { headers: AUTH, body: msg("hi") }), status: 401, body: BAD_SECRET },
	{ name: "a webhook with no text", send: U("POST", "/webhook", { headers: { "x-pi-webhook-secret": SECRET }, body: "{}" }), status: 400, body: MISSING },
	{ name: "a webhook with a non-object body", send: U("POST", "/webhook", { headers: { "x-pi-webhook-secret": SECRET }, body: "[]" }), status: 400, body: BAD_JSON },
	{ name: "a look-alike webhook path is not a webhook (no token → 401)", send: U("POST", "/webhooks-x", { headers: { "x-pi-webhook-secret": SECRET }, body: msg("hi") }), status: 401, body: UNAUTH },
	{ name: "a look-alike webhook path with the token is not found", send: A("POST", "/webhooks-x", { body: msg("hi") }), status: 404, body: NOT_FOUND },
];

test("the hostile-input table has at least 60 cases", () => {
	assert.ok(cases.length >= 60, `${cases.length} cases`);
	assert.equal(new Set(cases.map((c) => c.name)).size, cases.length, "case names are unique");
});

function checkBody(res, expected, label) {
	if (expected === undefined) return;
	if (expected === "") {
		assert.equal(res.body.length, 0, `${label}: expected an empty body, got ${res.body.toString().slice(0, 200)}`);
		return;
	}
	assert.match(String(res.headers["content-type"]), /^application\/json; charset=utf-8$/, `${label}: content-type`);
	let body = jsonOf(res);
	// An accepted message's result carries its run's id (SPEC §10), also in x-run-id; no other
	// answer carries one.
	if (expected && typeof expected === "object" && "response" in expected && res.status !== 429) {
		body = withRunId(body, label);
		assert.equal(res.headers["x-run-id"], jsonOf(res).runId, `${label}: x-run-id`);
	} else {
		assert.equal(body?.runId, undefined, `${label}: a runId`);
		assert.equal(res.headers["x-run-id"], undefined, `${label}: an x-run-id header`);
	}
	assert.deepEqual(body, expected, label);
}

for (const c of cases) {
	test(`hostile input: ${c.name}`, async () => {
		const before = await state();
		const statuses = c.statuses ?? (c.noResponse ? [] : [c.status]);
		// Cases that expect the server to close are read until the close (expect 0).
		const r = await rawExchange(gw.port, c.send, { expect: c.closed ? 0 : statuses.length || 1, timeoutMs: c.closed ? 5000 : 10000 });
		assert.equal(r.timedOut, false, `no complete answer${c.closed ? " and close" : ""} in time; got ${JSON.stringify(r.raw.toString("latin1").slice(0, 300))}`);
		assert.deepEqual(
			r.responses.map((x) => x.status),
			statuses,
			`statuses; raw: ${JSON.stringify(r.raw.toString("latin1").slice(0, 300))}`,
		);
		if (c.statuses) {
			c.bodies?.forEach((b, i) => checkBody(r.responses[i], b, `response ${i}`));
		} else if (!c.noResponse) {
			const res = r.responses[0];
			checkBody(res, c.body, "body");
			for (const [name, value] of Object.entries(c.headers ?? {})) {
				assert.equal(res.headers[name], value, `header ${name}`);
			}
		}
		if (c.closed) assert.equal(r.closed, true, "the server closed the connection");

		const after = await state();
		const delta = c.prompts ?? 0;
		assert.equal(after.prompts - before.prompts, delta, "prompt count");
		assert.equal(after.created, before.created, "no session created");
		if (delta === 0) {
			assert.deepEqual(after.list, before.list, "GET /sessions unchanged");
		} else {
			assert.deepEqual(
				after.list.map((s) => [s.sessionKey, s.sessionId, s.queueDepth, s.processing]),
				before.list.map((s) => [s.sessionKey, s.sessionId, s.queueDepth, s.processing]),
				"the same sessions, idle",
			);
		}
	});
}

test("after all of that the gateway still answers, and the process is healthy", async () => {
	const h = await api(gw.base, "GET", "/health");
	assert.deepEqual(h.body, { ok: true, ready: true });
	const r = await api(gw.base, "POST", "/sessions/exists/messages", { token: TOKEN, body: { text: "still fine" } });
	assert.equal(r.status, 200);
	assert.deepEqual(bodyWithRunId(r), { ok: true, response: "echo:still fine", sessionKey: "exists" });
});

test("getGatewaySessionDir keeps hostile keys inside the gateway-sessions root", () => {
	const rt = gw.rt;
	const root = rt.getGatewaySessionDir("plain").replace(/[/\\]plain$/, "");
	for (const key of ["..", ".", "../..", "a/../../b", "..\\..", "%2E%2E", "\u0000", "../etc/passwd"]) {
		const dir = rt.getGatewaySessionDir(key);
		assert.ok(dir.startsWith(`${root}/`) && dir.length > root.length + 1, `key ${JSON.stringify(key)} maps to ${dir}, outside ${root}`);
	}
});
