// Issue 11, "nothing poisons a session": every hostile body of the hostile-input suite plus
// the field shapes of the issue (images, metadata, source, sender), sent to /messages of the
// primary session "main", of another session, and to a webhook session — each answered with
// the status the contract gives (a 400 naming the field for a bad field) and EACH followed by a
// good message to the same session that must get the right answer.
//
// Twice: against recording session doubles (which also prove what the agent receives: a valid
// image arrives as {type:"image", data, mimeType} only, with its source) and, with a smaller
// set, against REAL pi AgentSessions on the offline faux model (lib/faux-agent.js).
// Also: enqueueMessage from JS rejects a bad field with the same message as HTTP.
//
// Contract: /tmp/contract.md, "Validation at the door" and "Request guard" (rule 4).
// Run: npm test -- __test__/no-poison.test.mjs

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { createFauxPiAgent } from "../lib/faux-agent.js";
import {
	build,
	gifBytes,
	jpegBytes,
	png,
	pngBytes,
	runCleanup,
	send,
	show,
	startSafe,
	webpBytes,
} from "./support/safe-util.mjs";
import { chunked } from "./support/rel-util.mjs";
import { recordingFactory, recordingSession } from "./support/sessions.mjs";
import { bodyWithRunId, withRunId } from "./support/runs.mjs";

const SECRET = "poison-hook-secret";
const LIMIT = 64 * 1024;
const MAX_IMAGE_BYTES = 4096;
const JSON_TYPE = "application/json; charset=utf-8";

const P = png();
const b64 = (buf) => Buffer.from(buf).toString("base64");
const good = (data = P, mimeType = "image/png") => ({ data, mimeType });

const BAD_JSON = "Invalid JSON body";
const MISSING = "Missing text";

// ---------------------------------------------------------------- the cases

// Each case: { name, body (a value sent as JSON) | raw (a string/Buffer body sent as is),
//   contentType?, headers?, wire? ((head) => data: the whole request on the wire, built from a
//   function that makes the head for the target), status, error (exact) | prefix (the
//   contract's text, which the gateway may follow with details such as ", got 5") | match (RegExp),
//   empty? (an empty body, from hyper), statuses? (several responses), hookOnly?, notHook? }.
// All of them must leave the target session answering the next good message.
const HOSTILE = [
	// ---- bodies of the hostile-input suite
	{ name: "arrays nested 10,000 deep", raw: "[".repeat(10000) + "]".repeat(10000), status: 400, error: BAD_JSON },
	{ name: "objects nested 10,000 deep", raw: '{"a":'.repeat(10000) + "1" + "}".repeat(10000), status: 400, error: BAD_JSON },
	{ name: "deep nesting inside a valid object", raw: `{"text":"hi","x":${"[".repeat(5000)}${"]".repeat(5000)}}`, status: 400, error: BAD_JSON },
	{ name: "a JSON array", raw: "[]", status: 400, error: BAD_JSON },
	{ name: "a JSON string", raw: '"s"', status: 400, error: BAD_JSON },
	{ name: "a JSON number", raw: "1", status: 400, error: BAD_JSON },
	{ name: "JSON null", raw: "null", status: 400, error: BAD_JSON },
	{ name: "JSON true", raw: "true", status: 400, error: BAD_JSON },
	{ name: "truncated JSON", raw: '{"text":', status: 400, error: BAD_JSON },
	{ name: "trailing garbage", raw: '{"text":"a"} x', status: 400, error: BAD_JSON },
	{ name: "a byte-order mark", raw: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"text":"bom"}')]), status: 400, error: BAD_JSON },
	{ name: "invalid UTF-8 in a string", raw: Buffer.concat([Buffer.from('{"text":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]), status: 400, error: BAD_JSON },
	{ name: "a lone surrogate", raw: '{"text":"\\ud800"}', status: 400, error: BAD_JSON },
	{ name: "a number out of range", raw: '{"text":"x","n":1e999999}', status: 400, error: BAD_JSON },
	{ name: "text that is a number", raw: '{"text":5}', status: 400, error: MISSING },
	{ name: "text that is null", raw: '{"text":null}', status: 400, error: MISSING },
	{ name: "text that is an object", body: { text: { evil: true } }, status: 400, error: MISSING },
	{ name: "blank text", body: { text: "   \n\t" }, status: 400, error: MISSING },
	{ name: "an empty body", raw: "", status: 400, error: MISSING },
	{ name: "a smuggled request inside the body", raw: '{"text":"x"\r\n\r\nPOST /sessions/main/reset HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', status: 400, error: BAD_JSON },
	{ name: "a form-encoded body from curl (read as JSON)", raw: "text=hi", contentType: "application/x-www-form-urlencoded", status: 400, error: BAD_JSON },
	{ name: "a text/plain body holding JSON (the form attack)", raw: '{"text":"pwn","x":"="}', contentType: "text/plain", status: 415, error: "Unsupported Content-Type text/plain: send application/json" },
	{ name: "a multipart body", raw: '--x\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n--x--\r\n', contentType: "multipart/form-data; boundary=x", status: 415, error: "Unsupported Content-Type multipart/form-data: send application/json" },
	{ name: "a declared Content-Length past the limit, body not sent", wire: (h) => h({ "Content-Length": String(LIMIT + 1) }), status: 413, error: `Request body too large (limit ${LIMIT} bytes)` },
	{ name: "a body one byte past the limit", body: { text: "x".repeat(LIMIT - 11 + 1) }, status: 413, error: `Request body too large (limit ${LIMIT} bytes)` },
	{ name: "a chunked body past the limit", wire: (h) => Buffer.concat([h({ "Transfer-Encoding": "chunked" }), chunked(JSON.stringify({ text: "x".repeat(LIMIT + 5000) }), 8192)]), status: 413, error: `Request body too large (limit ${LIMIT} bytes)` },
	{ name: "an invalid chunk size", wire: (h) => Buffer.concat([h({ "Transfer-Encoding": "chunked" }), Buffer.from("zz\r\nabc\r\n0\r\n\r\n")]), status: 400, error: "Request body could not be read" },
	{ name: "Content-Length and chunked: chunked wins", wire: (h) => Buffer.concat([h({ "Content-Length": "4", "Transfer-Encoding": "chunked" }), chunked("[1]")]), status: 400, error: BAD_JSON },
	{ name: "a Transfer-Encoding other than chunked", wire: (h) => Buffer.concat([h({ "Transfer-Encoding": "gzip" }), Buffer.from("[1]")]), status: 400, empty: true },
	{ name: "a non-numeric Content-Length", wire: (h) => Buffer.concat([h({ "Content-Length": "abc" }), Buffer.from("{}")]), status: 400, empty: true },
	{ name: "Expect: 100-continue, then an empty object", wire: (h) => [h({ Expect: "100-continue", "Content-Length": "2" }), "{}"], statuses: [100, 400], error: MISSING },

	// ---- images (the shapes of the issue, and the rules of the contract)
	{ name: "images: a string", body: { text: "look", images: "not-an-array" }, status: 400, prefix: "Invalid images: expected an array" },
	{ name: "images: an object", body: { text: "look", images: good() }, status: 400, prefix: "Invalid images: expected an array" },
	{ name: "images: [{}]", body: { text: "look", images: [{}] }, status: 400, match: /^Invalid images\[0\]\.(data|mimeType): / },
	{ name: "images: [null]", body: { text: "look", images: [null] }, status: 400, prefix: "Invalid images[0]: expected an object" },
	{ name: "images: [\"str\"]", body: { text: "look", images: ["str"] }, status: 400, prefix: "Invalid images[0]: expected an object" },
	{ name: "images: [5]", body: { text: "look", images: [5] }, status: 400, prefix: "Invalid images[0]: expected an object" },
	{ name: "images: [[]]", body: { text: "look", images: [[]] }, status: 400, prefix: "Invalid images[0]: expected an object" },
	{ name: "images: a text block", body: { text: "look", images: [{ type: "text", text: 123 }] }, status: 400, match: /^Invalid images\[0\]\.(type|data|mimeType): / },
	{ name: "images: type text on a valid image", body: { text: "look", images: [{ type: "text", ...good() }] }, status: 400, prefix: 'Invalid images[0].type: expected "image"' },
	{ name: "images: type 5", body: { text: "look", images: [{ type: 5, ...good() }] }, status: 400, match: /^Invalid images\[0\]\.type: / },
	{ name: "images: no data", body: { text: "look", images: [{ mimeType: "image/png" }] }, status: 400, match: /^Invalid images\[0\]\.data: / },
	{ name: "images: data a number", body: { text: "look", images: [{ data: 5, mimeType: "image/png" }] }, status: 400, match: /^Invalid images\[0\]\.data: / },
	{ name: "images: bad base64", body: { text: "look", images: [good("@@not*base64@@")] }, status: 400, match: /^Invalid images\[0\]\.data: / },
	{ name: "images: a data: URL instead of base64", body: { text: "look", images: [good(`data:image/png;base64,${P}`)] }, status: 400, match: /^Invalid images\[0\]\.data: / },
	{ name: "images: empty data", body: { text: "look", images: [good("")] }, status: 400, match: /^Invalid images\[0\]\.(data|mimeType): / },
	{ name: "images: no mimeType", body: { text: "look", images: [{ data: P }] }, status: 400, match: /^Invalid images\[0\]\.mimeType: / },
	{ name: "images: mimeType image/svg+xml", body: { text: "look", images: [good(b64("<svg xmlns='http://www.w3.org/2000/svg'/>"), "image/svg+xml")] }, status: 400, match: /^Invalid images\[0\]\.mimeType: / },
	{ name: "images: mimeType text/html", body: { text: "look", images: [good(b64("<script>x</script>"), "text/html")] }, status: 400, match: /^Invalid images\[0\]\.mimeType: / },
	{ name: "images: mimeType a number", body: { text: "look", images: [{ data: P, mimeType: 5 }] }, status: 400, match: /^Invalid images\[0\]\.mimeType: / },
	{ name: "images: PNG bytes labelled image/jpeg", body: { text: "look", images: [good(P, "image/jpeg")] }, status: 400, match: /^Invalid images\[0\]\.(data|mimeType): / },
	{ name: "images: JPEG bytes labelled image/png", body: { text: "look", images: [good(b64(jpegBytes()), "image/png")] }, status: 400, match: /^Invalid images\[0\]\.(data|mimeType): / },
	{ name: "images: text bytes labelled image/gif", body: { text: "look", images: [good(b64("hello, not a gif"), "image/gif")] }, status: 400, match: /^Invalid images\[0\]\.(data|mimeType): / },
	{ name: "images: the second one is bad", body: { text: "look", images: [good(), good(P, "image/bmp")] }, status: 400, match: /^Invalid images\[1\]\.mimeType: / },
	{ name: "images: nine (the default limit is 8)", body: { text: "look", images: Array.from({ length: 9 }, () => good()) }, status: 400, match: /^Invalid images: / },
	{ name: "images: one byte past limits.maxImageBytes", body: { text: "look", images: [good(png({ padTo: MAX_IMAGE_BYTES + 1 }))] }, status: 400, match: /^Invalid images\[0\]/ },

	// ---- metadata and source
	{ name: "metadata: 5", body: { text: "hi", metadata: 5 }, status: 400, prefix: "Invalid metadata: expected an object" },
	{ name: "metadata: a string", body: { text: "hi", metadata: "m" }, status: 400, prefix: "Invalid metadata: expected an object" },
	{ name: "metadata: an array", body: { text: "hi", metadata: [1] }, status: 400, prefix: "Invalid metadata: expected an object" },
	{ name: "source: \"evil\"", body: { text: "hi", source: "evil" }, status: 400, match: /^Invalid source: / },
	{ name: "source: 5", body: { text: "hi", source: 5 }, status: 400, match: /^Invalid source: / },
	{ name: "source: \"\"", body: { text: "hi", source: "" }, status: 400, match: /^Invalid source: / },

	// ---- webhooks only
	{ name: "sender: 5", body: { text: "hi", sender: 5 }, status: 400, match: /^Invalid sender: /, hookOnly: true },
	{ name: "sender: an object", body: { text: "hi", sender: { id: 1 } }, status: 400, match: /^Invalid sender: /, hookOnly: true },
	{ name: "sessionKey naming the primary", body: { text: "hi", sessionKey: "main" }, status: 400, error: "Invalid sessionKey: webhook bodies may not name a session (set webhook.allowRequestSessionKey)", hookOnly: true },
	{ name: "sessionKey naming a webhook session", body: { text: "hi", sessionKey: "webhook:np:default" }, status: 400, error: "Invalid sessionKey: webhook bodies may not name a session (set webhook.allowRequestSessionKey)", hookOnly: true },
];

/** The smaller set sent to the real agent. */
const REAL_SUBSET = new Set([
	"a JSON array",
	"truncated JSON",
	"a lone surrogate",
	"blank text",
	"a text/plain body holding JSON (the form attack)",
	"a body one byte past the limit",
	"images: a string",
	"images: [{}]",
	"images: [null]",
	"images: [\"str\"]",
	"images: a text block",
	"images: bad base64",
	"images: PNG bytes labelled image/jpeg",
	"images: nine (the default limit is 8)",
	"metadata: 5",
	"source: \"evil\"",
	"source: 5",
	"sender: 5",
	"sessionKey naming the primary",
]);

// ---------------------------------------------------------------- driving one target

/**
 * A target: where hostile and good messages go. `path` for HTTP, `headers` added to each
 * request, `key` the session key the answers name.
 */
const targets = (port) => [
	{ label: "the primary (main)", path: "/sessions/main/messages", key: "main", hook: false },
	{ label: "another session", path: "/sessions/other/messages", key: "other", hook: false },
	{ label: "a webhook session", path: "/webhook/np", key: "webhook:np:default", hook: true, headers: { "x-pi-webhook-secret": SECRET } },
].map((t) => ({ ...t, port }));

function requestFor(target, c) {
	const host = `127.0.0.1:${target.port}`;
	const headers = { ...target.headers, ...c.headers };
	if (c.wire) return c.wire((extra) => build("POST", target.path, { host, contentType: c.contentType ?? "application/json", headers: { ...headers, ...extra } }));
	const body = c.raw !== undefined ? c.raw : c.body;
	return build("POST", target.path, { host, contentType: c.contentType === undefined ? "application/json" : c.contentType, headers, body: typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body) });
}

/** Sends case `c` to `target`; asserts the answer; returns the error text (or undefined). */
async function sendHostile(target, c) {
	const data = requestFor(target, c);
	const statuses = c.statuses ?? [c.status];
	const r = await send(target.port, "POST", target.path, { data, expect: statuses.length, timeoutMs: 15000 });
	const got = r.responses.map((x) => x.status);
	assert.deepEqual(got, statuses, `${c.name} → ${target.label}: statuses; raw ${JSON.stringify(r.raw.slice(0, 300))}`);
	const last = r.responses.at(-1);
	const text = last.body.toString("utf8");
	if (c.empty) {
		assert.equal(text, "", `${c.name}: hyper answers with an empty body`);
		return undefined;
	}
	assert.equal(last.headers["content-type"], JSON_TYPE, `${c.name}: content-type; body ${text}`);
	const json = JSON.parse(text);
	assert.deepEqual(Object.keys(json), ["error"], `${c.name}: {error} only, got ${text.slice(0, 300)}`);
	assert.equal(last.headers["x-run-id"], undefined, `${c.name}: a refusal has no x-run-id`);
	if (c.error !== undefined) assert.equal(json.error, c.error, `${c.name} → ${target.label}`);
	if (c.prefix !== undefined) assert.ok(json.error.startsWith(c.prefix), `${c.name} → ${target.label}: ${JSON.stringify(json.error)} does not start with ${JSON.stringify(c.prefix)}`);
	if (c.match) assert.match(json.error, c.match, `${c.name} → ${target.label}`);
	return json.error;
}

/**
 * A good message to `target`; returns the answer's JSON after checking the status and its run
 * id (SPEC §10: a UUIDv7 `runId`, repeated in x-run-id), without the runId.
 */
async function sendGood(target, text) {
	const r = await send(target.port, "POST", target.path, { headers: target.headers, body: { text } });
	assert.equal(r.status, 200, `good message to ${target.label} after a hostile one: ${show(r)}`);
	return bodyWithRunId(r, `good message to ${target.label}`);
}

/**
 * The gateway of a describe block. Before its tests: `sessions(cleanup)` makes the sessions
 * (`{ primary, create }`: the primary, "main", and the factory of the others; what they need
 * closed goes onto `cleanup`), the gateway starts in front of them (startSafe) with this suite's
 * webhook and limits (`session`: config.session too), `byKey`, when given, gets every session
 * under its key, and `setup(target)` runs for every target, so that the targets exist before the
 * first hostile body. After them, runCleanup. Returns the gateway (its fields from `before` on).
 */
function suiteGateway({ sessions, byKey, session, setup }) {
	const cleanup = [];
	const gw = {};
	before(async () => {
		const { primary, create } = await sessions(cleanup);
		byKey?.set("main", primary);
		const createSession = byKey
			? async (key) => {
					const s = await create(key);
					byKey.set(key, s);
					return s;
				}
			: create;
		const config = { webhook: { enabled: true, secret: SECRET }, limits: { maxBodyBytes: LIMIT, maxImageBytes: MAX_IMAGE_BYTES } };
		Object.assign(gw, await startSafe(cleanup, { primary, createSession, config: session ? { ...config, session } : config }));
		for (const t of targets(gw.port)) await setup(t);
	});
	after(() => runCleanup(cleanup));
	return gw;
}

/** For {@link suiteGateway}: recording session doubles. */
const recordingSessions = () => ({ primary: recordingSession("main"), create: recordingFactory() });

/**
 * For {@link suiteGateway}: the sessions of a faux pi agent (lib/faux-agent.js), closed with the
 * gateway; `onAgent(agent)`, when given, gets the agent.
 */
const realSessions =
	(onAgent) =>
	async (cleanup) => {
		const agent = await createFauxPiAgent();
		cleanup.push(() => agent.close());
		onAgent?.(agent);
		return { primary: agent.primarySession, create: (key) => agent.createSession(key) };
	};

/** For {@link suiteGateway}: each target answers "setup". */
const setupRecording = (target) => sendGood(target, "setup");

/** For {@link suiteGateway}: each target's real agent answers "/echo setup". */
async function setupReal(target) {
	const a = await sendGood(target, "/echo setup");
	assert.equal(a.response, "You said: setup");
}

// ---------------------------------------------------------------- scripted sessions

describe("nothing poisons a session (recording doubles)", () => {
	/** key → recording session (the primary and every one created). */
	const byKey = new Map();
	const gw = suiteGateway({ sessions: recordingSessions, byKey, setup: setupRecording });

	const calls = () => [...byKey.values()].reduce((n, s) => n + s.calls.length, 0);
	let n = 0;

	for (const c of HOSTILE) {
		test(`${c.name}: refused, then every session answers`, async () => {
			for (const target of targets(gw.port)) {
				if (c.hookOnly && !target.hook) continue;
				const before = calls();
				await sendHostile(target, c);
				assert.equal(calls(), before, `${c.name} → ${target.label}: nothing reached an agent`);
				const text = `good ${++n}`;
				const answer = await sendGood(target, text);
				assert.deepEqual(answer, { ok: true, response: `echo:${text}`, sessionKey: target.key });
				const session = byKey.get(target.key);
				const last = session.calls.at(-1);
				assert.equal(last.text, text);
				assert.ok(!last.options?.images?.length, `${target.label}: no images leaked into the good message`);
				assert.equal(calls(), before + 1, "exactly one prompt: the good message");
			}
		});
	}

	test("a pipelined bad body does not poison the good one after it on the same connection", async () => {
		for (const target of targets(gw.port)) {
			const host = `127.0.0.1:${target.port}`;
			const data = Buffer.concat([
				build("POST", target.path, { host, headers: target.headers, contentType: "application/json", body: '{"text":"x","images":[{}]}' }),
				build("POST", target.path, { host, headers: target.headers, contentType: "application/json", body: "{bad" }),
				build("POST", target.path, { host, headers: target.headers, body: { text: "piped" } }),
			]);
			const r = await send(gw.port, "POST", target.path, { data, expect: 3 });
			assert.deepEqual(
				r.responses.map((x) => x.status),
				[400, 400, 200],
				r.raw.slice(0, 400),
			);
			const piped = JSON.parse(r.responses[2].body.toString());
			assert.deepEqual(withRunId(piped), { ok: true, response: "echo:piped", sessionKey: target.key });
			assert.equal(r.responses[2].headers["x-run-id"], piped.runId);
		}
	});

	// ---- what a valid request hands the agent

	/** Sends `body` to `target`, expects 200 echo, returns the options the agent got. */
	async function accepted(target, body) {
		const r = await send(gw.port, "POST", target.path, { headers: target.headers, body });
		assert.equal(r.status, 200, `${JSON.stringify(body).slice(0, 120)} → ${target.label}: ${show(r)}`);
		assert.deepEqual(bodyWithRunId(r), { ok: true, response: `echo:${body.text}`, sessionKey: target.key });
		const last = byKey.get(target.key).calls.at(-1);
		assert.equal(last.text, body.text);
		return last.options ?? {};
	}

	test("a valid PNG reaches the agent as {type, data, mimeType} only; the session answers after it", async () => {
		for (const target of targets(gw.port)) {
			let o = await accepted(target, { text: "a png", images: [good()] });
			assert.deepEqual(o.images, [{ type: "image", data: P, mimeType: "image/png" }]);
			o = await accepted(target, { text: "typed png", images: [{ type: "image", data: P, mimeType: "image/png", name: "x.png", url: "http://evil.example/x", detail: { a: 1 } }] });
			assert.deepEqual(o.images, [{ type: "image", data: P, mimeType: "image/png" }]);
			const answer = await sendGood(target, "after the png");
			assert.equal(answer.response, "echo:after the png");
		}
	});

	test("JPEG, GIF and WEBP, eight images (the limit) and an image of exactly maxImageBytes are accepted", async () => {
		const target = targets(gw.port)[0];
		const four = [good(b64(jpegBytes()), "image/jpeg"), good(b64(gifBytes()), "image/gif"), good(b64(webpBytes()), "image/webp"), good()];
		let o = await accepted(target, { text: "four kinds", images: four });
		assert.deepEqual(
			o.images,
			four.map((i) => ({ type: "image", ...i })),
		);
		o = await accepted(target, { text: "eight", images: [...four, ...four] });
		assert.equal(o.images.length, 8);
		const big = png({ padTo: MAX_IMAGE_BYTES });
		assert.equal(pngBytes({ padTo: MAX_IMAGE_BYTES }).length, MAX_IMAGE_BYTES);
		o = await accepted(target, { text: "exactly the limit", images: [good(big)] });
		assert.deepEqual(o.images, [{ type: "image", data: big, mimeType: "image/png" }]);
		o = await accepted(target, { text: "no images", images: [] });
		assert.ok(!o.images?.length);
	});

	test("source reaches the agent (default \"extension\"); metadata objects are accepted", async () => {
		for (const target of targets(gw.port)) {
			assert.equal((await accepted(target, { text: "default source" })).source, "extension");
			for (const source of ["interactive", "rpc", "extension"]) {
				assert.equal((await accepted(target, { text: `source ${source}`, source })).source, source);
			}
			await accepted(target, { text: "with metadata", metadata: { a: 1, nested: { b: [1, 2] } } });
		}
	});

	test("enqueueMessage from JS rejects a bad field with the same message as HTTP, and the session still answers", async () => {
		const shapes = [
			{ images: "not-an-array" },
			{ images: [{}] },
			{ images: [null] },
			{ images: ["str"] },
			{ images: [{ type: "text", text: 123 }] },
			{ images: [good("@@not*base64@@")] },
			{ images: [good(P, "image/jpeg")] },
			{ images: [good(), good(P, "image/bmp")] },
			{ source: "evil" },
			{ source: 5 },
			{ metadata: 5 },
			{ metadata: "m" },
		];
		const main = targets(gw.port)[0];
		const mismatches = [];
		for (const shape of shapes) {
			const before = calls();
			const http = await send(gw.port, "POST", main.path, { body: { text: "js", ...shape } });
			assert.equal(http.status, 400, `${JSON.stringify(shape)}: ${show(http)}`);
			for (const key of ["main", "other", "js-fresh"]) {
				let outcome;
				try {
					outcome = { resolved: await gw.rt.enqueueMessage({ sessionKey: key, text: "js", ...shape }) };
				} catch (e) {
					outcome = { error: e };
				}
				const label = `enqueueMessage(${JSON.stringify(key)}, ${JSON.stringify(shape).slice(0, 80)})`;
				if (!(outcome.error instanceof Error)) mismatches.push(`${label} did not reject with an Error: ${JSON.stringify(outcome).slice(0, 200)}`);
				else if (outcome.error.message !== http.json.error) mismatches.push(`${label} rejected with ${JSON.stringify(outcome.error.message)}, HTTP says ${JSON.stringify(http.json.error)}`);
			}
			if (calls() !== before) mismatches.push(`enqueueMessage(${JSON.stringify(shape).slice(0, 80)}) reached the agent: ${calls() - before} prompts`);
			const ok = await gw.rt.enqueueMessage({ sessionKey: "main", text: "js good" });
			assert.deepEqual(withRunId(ok), { ok: true, response: "echo:js good", sessionKey: "main" });
		}
		if (gw.rt.getSession("js-fresh") !== undefined) mismatches.push("a rejected enqueueMessage created the session js-fresh");
		const withImage = await gw.rt.enqueueMessage({ sessionKey: "main", text: "js png", images: [good()] });
		assert.equal(withImage.ok, true);
		assert.deepEqual(byKey.get("main").calls.at(-1).options.images, [{ type: "image", data: P, mimeType: "image/png" }]);
		assert.deepEqual(mismatches, [], "enqueueMessage must reject with the HTTP error text");
	});
});

// ---------------------------------------------------------------- real AgentSessions

describe("nothing poisons a real pi AgentSession (faux model, offline)", () => {
	let agent;
	const gw = suiteGateway({ sessions: realSessions((a) => (agent = a)), setup: setupReal });

	let n = 0;
	for (const c of HOSTILE.filter((x) => REAL_SUBSET.has(x.name))) {
		test(`${c.name}: refused, then the real agent answers`, async () => {
			for (const target of targets(gw.port)) {
				if (c.hookOnly && !target.hook) continue;
				await sendHostile(target, c);
				const text = `after ${++n}`;
				const answer = await sendGood(target, `/echo ${text}`);
				assert.deepEqual(answer, { ok: true, response: `You said: ${text}`, sessionKey: target.key });
			}
		});
	}

	test("a valid PNG reaches the real agent's conversation, and the next message is answered", async () => {
		const main = targets(gw.port)[0];
		const r = await send(gw.port, "POST", main.path, { body: { text: "/echo with a picture", images: [good()] } });
		assert.equal(r.status, 200, show(r));
		assert.equal(r.json.response, "You said: with a picture");
		const user = agent.primarySession.messages.findLast((m) => m.role === "user");
		assert.deepEqual(
			user.content.filter((p) => p.type === "image"),
			[{ type: "image", data: P, mimeType: "image/png" }],
		);
		const answer = await sendGood(main, "/echo still here");
		assert.equal(answer.response, "You said: still here");
		// The default command (a thinking block, a real read tool call, an answer) still works on main.
		const full = await sendGood(main, "What is in the workspace?");
		assert.match(full.response, /^hello\.txt says: /);
	});

	test("enqueueMessage with bad images is refused before the real agent sees it", async () => {
		const before = agent.primarySession.messages.length;
		await assert.rejects(gw.rt.enqueueMessage({ sessionKey: "main", text: "x", images: [{}] }), /^Error: Invalid images\[0\]\./);
		await assert.rejects(gw.rt.enqueueMessage({ sessionKey: "main", text: "x", images: "not-an-array" }), { message: /^Invalid images: expected an array\b/ });
		assert.equal(agent.primarySession.messages.length, before);
		const ok = await gw.rt.enqueueMessage({ sessionKey: "main", text: "/echo js" });
		assert.deepEqual(withRunId(ok), { ok: true, response: "You said: js", sessionKey: "main" });
	});

	test("a per-request callback is an HTTP feature: enqueueMessage and submitMessage throw a TypeError saying so, and nothing runs", async () => {
		const before = agent.primarySession.messages.length;
		const callback = { url: "https://hooks.example.com/pi" };
		for (const send of [(r) => gw.rt.enqueueMessage(r), (r) => gw.rt.submitMessage(r)]) {
			await assert.rejects(send({ sessionKey: "main", text: "/echo cb", callback }), (e) => {
				assert.ok(e instanceof TypeError, String(e));
				assert.match(e.message, /request\.callback is for HTTP clients \(POST \/sessions\/:key\/messages\)/);
				return true;
			});
		}
		assert.equal(agent.primarySession.messages.length, before);
		const ok = await gw.rt.enqueueMessage({ sessionKey: "main", text: "/echo after" });
		assert.deepEqual(withRunId(ok), { ok: true, response: "You said: after", sessionKey: "main" });
	});
});

// ---------------------------------------------------------------- queue modes (issue 13)
//
// The new field and route of issue 13 (SPEC §11, contract /work/issue13-contract.md): a bad `mode`
// is a 400 naming `mode` that reaches no agent; GET/DELETE /sessions/:key/queue on odd keys is
// answered (200, 404, 400) and creates nothing; steer/followUp/interrupt/reject storms on a busy
// REAL pi session all get exactly one answer each and leave both queues empty. After each, a
// good message to the same session still gets its answer.
// (Imports here, not at the top, so this block stays an addition.)

import { request as httpRequest } from "./support/http.mjs";
import { BAD_MODES, INVALID_MODE, MODES, queuePath, readQueue } from "./support/queue-util.mjs";
import { UUID_V7 } from "./support/runs.mjs";
import { waitFor as pollFor, within as withinMs } from "./support/wait.mjs";
import { fauxLongText } from "../lib/faux-agent.js";

const EMPTY_QUEUE = { running: null, queued: [], steering: [], followUp: [] };

/** GET and DELETE of /queue on odd keys: [what, path, status, body (exact), methods?]. */
const ODD_QUEUE_PATHS = [
	["an encoded slash as the key", "/sessions/%2F/queue", 404, { error: "Session not found: /" }],
	["an encoded slash inside the key", "/sessions/a%2Fqueue/queue", 404, { error: "Session not found: a/queue" }],
	["an encoded NUL as the key", "/sessions/%00/queue", 404, { error: "Session not found: \u0000" }],
	["dot-dot as the key", "/sessions/%2E%2E/queue", 404, { error: "Session not found: .." }],
	["decoded once: %252F", "/sessions/%252F/queue", 404, { error: "Session not found: %2F" }],
	["a key of 1,024 bytes", `/sessions/${"q".repeat(1024)}/queue`, 404, { error: `Session not found: ${"q".repeat(1024)}` }],
	["a key of 1,025 bytes", `/sessions/${"q".repeat(1025)}/queue`, 400, { error: "Invalid session key" }],
	["invalid UTF-8 in the key", "/sessions/%C3%28/queue", 400, { error: "Invalid session key" }],
	["a malformed escape", "/sessions/%ZZ/queue", 400, { error: "Invalid session key" }],
	["an empty key", "/sessions//queue", 404, { error: "Not found" }],
	["a segment after /queue", "/sessions/main/queue/x", 404, { error: "Not found" }],
	["a trailing slash after /queue", "/sessions/main/queue/", 404, { error: "Not found" }],
	["/QUEUE (routes are case-sensitive)", "/sessions/main/QUEUE", 404, { error: "Not found" }],
];

/**
 * The answer to a mode message; `what` names it. Checks the result's shape (200 ok:true, 500
 * ok:false as for every failed run, 409 Session busy only for reject); returns the JSON.
 */
function assertModeAnswer(r, { key, mode, what }) {
	const desc = `${what}: ${r.status} ${r.text.slice(0, 300)}`;
	assert.equal(typeof r.json?.ok, "boolean", desc);
	assert.equal(typeof r.json.response, "string", desc);
	assert.equal(r.json.sessionKey, key, desc);
	assert.match(String(r.json.runId), UUID_V7, `${what}: no runId in ${r.text.slice(0, 300)}`);
	if (r.status === 409) {
		assert.equal(mode, "reject", `only reject is answered 409: ${desc}`);
		assert.deepEqual(r.json, { ok: false, response: "", error: "Session busy", sessionKey: key, runId: r.json.runId });
	} else {
		assert.equal(r.status, r.json.ok ? 200 : 500, desc);
		if (!r.json.ok) assert.equal(typeof r.json.error, "string", desc);
		assert.equal(r.headers["x-run-id"], r.json.runId, `x-run-id names the answering run: ${desc}`);
	}
	return r.json;
}

describe("queue modes do not poison a session (recording doubles)", () => {
	const byKey = new Map();
	const gw = suiteGateway({ sessions: recordingSessions, byKey, setup: setupRecording });

	const calls = () => [...byKey.values()].reduce((n, s) => n + s.calls.length, 0);
	let n = 0;

	for (const mode of BAD_MODES) {
		test(`mode ${JSON.stringify(mode)}: 400 naming mode, then every session answers`, async () => {
			for (const target of targets(gw.port)) {
				const before = calls();
				await sendHostile(target, { name: `mode ${JSON.stringify(mode)}`, body: { text: "steer this", mode }, status: 400, prefix: INVALID_MODE });
				if (!target.hook) {
					await sendHostile(target, { name: `mode ${JSON.stringify(mode)} wait:false`, body: { text: "steer this", mode, wait: false }, status: 400, prefix: INVALID_MODE });
				}
				assert.equal(calls(), before, `mode ${JSON.stringify(mode)} → ${target.label}: nothing reached an agent`);
				const text = `good after mode ${++n}`;
				const answer = await sendGood(target, text);
				assert.deepEqual(answer, { ok: true, response: `echo:${text}`, sessionKey: target.key });
				assert.equal(calls(), before + 1, "exactly one prompt: the good message");
			}
			if (typeof mode === "string") {
				await assert.rejects(async () => gw.rt.enqueueMessage({ sessionKey: "main", text: "js", mode }), (e) => e instanceof Error && e.message.startsWith(INVALID_MODE));
			}
		});
	}

	test("a bad mode on /chat is a 400 naming mode, then the session answers", async () => {
		for (const key of ["main", "other"]) {
			const before = calls();
			const r = await send(gw.port, "POST", `/sessions/${key}/chat`, { body: { text: "hi", mode: "Steer" } });
			assert.equal(r.status, 400, show(r));
			assert.deepEqual(Object.keys(r.json), ["error"]);
			assert.ok(r.json.error.startsWith(INVALID_MODE), show(r));
			assert.equal(calls(), before, "nothing reached an agent");
			const answer = await sendGood(targets(gw.port).find((t) => t.key === key), `good after chat ${++n}`);
			assert.equal(answer.ok, true);
		}
	});

	test("every valid mode (and mode null) on an idle session is answered like a plain message", async () => {
		for (const target of targets(gw.port)) {
			for (const mode of [...MODES, null]) {
				const text = `mode ${mode} ${++n}`;
				const r = await send(gw.port, "POST", target.path, { headers: target.headers, body: { text, mode } });
				assert.equal(r.status, 200, `${mode} → ${target.label}: ${show(r)}`);
				assert.deepEqual(bodyWithRunId(r), { ok: true, response: `echo:${text}`, sessionKey: target.key });
				assert.equal(byKey.get(target.key).calls.at(-1).text, text);
			}
		}
	});

	test("GET and DELETE /queue on odd keys are answered, create nothing, and poison nothing", async () => {
		const sessionsBefore = gw.rt.listSessions().length;
		const wrong = [];
		for (const [what, path, status, body] of ODD_QUEUE_PATHS) {
			for (const method of ["GET", "DELETE"]) {
				const r = await send(gw.port, method, path, { timeoutMs: 10000 });
				if (r.status !== status || JSON.stringify(r.json) !== JSON.stringify(body)) {
					wrong.push(`${method} ${what} (${path.slice(0, 60)}): ${r.status} ${r.text.slice(0, 120)}, expected ${status} ${JSON.stringify(body).slice(0, 80)}`);
				}
			}
		}
		assert.deepEqual(wrong, [], "odd /queue requests get the contract's answers");
		assert.equal(gw.rt.listSessions().length, sessionsBefore, "no session was created");
		for (const target of targets(gw.port)) {
			for (const method of ["GET", "DELETE"]) {
				const r = await send(gw.port, method, queuePath(target.key));
				assert.equal(r.status, 200, `${method} ${queuePath(target.key)}: ${show(r)}`);
				assert.deepEqual(r.json, method === "GET" ? EMPTY_QUEUE : { ok: true, cleared: 0, steering: [], followUp: [] });
			}
			const q = await send(gw.port, "GET", `${queuePath(target.key)}?x=%zz&y`);
			assert.equal(q.status, 200, `the query string is ignored: ${show(q)}`);
			const text = `good after queue ${++n}`;
			assert.deepEqual(await sendGood(target, text), { ok: true, response: `echo:${text}`, sessionKey: target.key });
		}
	});
});

describe("queue-mode storms do not poison a real pi AgentSession (faux model, offline)", { timeout: 240_000 }, () => {
	/** key → the AgentSession behind it. */
	const byKey = new Map();
	const gw = suiteGateway({ sessions: realSessions(), byKey, session: { maxQueuePerSession: 64 }, setup: setupReal });

	let n = 0;
	const post = (target, body) => httpRequest(target.port, "POST", target.path, { headers: target.headers, body, timeoutMs: 30_000 });

	/** Starts `/slow <words>` on the target and waits until it is running; returns its pending answer and runId. */
	async function busyWith(target, words) {
		const slow = post(target, { text: `/slow ${words}` });
		slow.catch(() => {});
		const running = await pollFor(() => gw.rt.listRuns(target.key).find((r) => r.status === "running"), `a running run on ${target.label}`);
		return { slow, runId: running.runId };
	}

	/** Waits until both queues of the target are empty and nothing runs; then a good message must be answered. */
	async function stillAnswers(target) {
		await pollFor(async () => {
			const q = await readQueue(gw.port, target.key);
			return JSON.stringify(q) === JSON.stringify(EMPTY_QUEUE);
		}, `${target.label} to be idle with empty queues`);
		const session = byKey.get(target.key);
		assert.deepEqual([...session.getSteeringMessages()], [], `${target.label}: pi's steering queue is empty`);
		assert.deepEqual([...session.getFollowUpMessages()], [], `${target.label}: pi's follow-up queue is empty`);
		const text = `after storm ${++n}`;
		const answer = await sendGood(target, `/echo ${text}`);
		assert.deepEqual(answer, { ok: true, response: `You said: ${text}`, sessionKey: target.key });
	}

	/** `count` messages with `modes` (in turn) at once into a busy target; each gets one answer. */
	async function storm(target, modes, count, words = 20) {
		const { slow, runId } = await busyWith(target, words);
		const sent = Array.from({ length: count }, (_, i) => ({ mode: modes[i % modes.length], text: `/echo storm ${++n}` }));
		const answers = await withinMs(
			Promise.all(sent.map(({ mode, text }) => post(target, { text, mode }))),
			30_000,
			`every ${modes.join("/")} message of the storm to be answered`,
		);
		const results = answers.map((r, i) => assertModeAnswer(r, { key: target.key, mode: sent[i].mode, what: `${sent[i].mode} ${sent[i].text} → ${target.label}` }));
		const first = await withinMs(slow, 30_000, "the slow run's answer");
		assert.equal(typeof first.json?.ok, "boolean", `the slow run's caller is answered: ${first.status} ${first.text.slice(0, 200)}`);
		assert.equal(first.json.runId, runId);
		const known = new Set(gw.rt.listRuns(target.key).map((r) => r.runId));
		for (const [i, result] of results.entries()) {
			assert.ok(known.has(result.runId), `${sent[i].mode}: runId ${result.runId} is a run of ${target.key}`);
		}
		return { results, sent, first, runId };
	}

	test("a steer storm into a running run: every steer gets that run's result; the session still answers", async () => {
		for (const target of targets(gw.port)) {
			const { results, first, runId } = await storm(target, ["steer"], 10);
			for (const r of results) {
				assert.equal(r.runId, runId, "every steer joined the running run");
				assert.deepEqual(r, first.json, "…and got its result");
			}
			await stillAnswers(target);
		}
	});

	test("a followUp storm: every follow-up gets the running run's result; the session still answers", async () => {
		for (const target of targets(gw.port)) {
			const { results, first, runId } = await storm(target, ["followUp"], 10);
			for (const r of results) {
				assert.equal(r.runId, runId);
				assert.deepEqual(r, first.json);
			}
			await stillAnswers(target);
		}
	});

	test("an interrupt storm: one run each, the slow run aborted; the session still answers", async () => {
		for (const target of targets(gw.port)) {
			const { results, first, runId } = await storm(target, ["interrupt"], 10);
			assert.equal(first.json.ok, false, "the slow run was interrupted");
			assert.equal(gw.rt.getRun(target.key, runId).status, "aborted");
			const ids = new Set(results.map((r) => r.runId));
			assert.equal(ids.size, results.length, "every interrupt is a run of its own");
			assert.ok(!ids.has(runId));
			assert.ok(results.at(-1).ok || results.some((r) => r.ok), "at least one interrupt ran to its end");
			await stillAnswers(target);
		}
	});

	test("a reject storm: every one 409 naming the running run, which finishes untouched; the session still answers", async () => {
		for (const target of targets(gw.port)) {
			const before = gw.rt.listRuns(target.key).length;
			const { results, first, runId } = await storm(target, ["reject"], 20, 60);
			for (const r of results) assert.deepEqual(r, { ok: false, response: "", error: "Session busy", sessionKey: target.key, runId });
			assert.deepEqual(first.json, { ok: true, response: fauxLongText(60), sessionKey: target.key, runId }, "the running run finished normally");
			assert.equal(gw.rt.listRuns(target.key).length, before + 1, "no run for a rejected message");
			await stillAnswers(target);
		}
	});

	test("a mixed storm of every mode: each message answered once; the session still answers", async () => {
		for (const target of targets(gw.port)) {
			await storm(target, ["steer", "queue", "followUp", "interrupt", "reject"], 25);
			await stillAnswers(target);
		}
	});

	test("bad modes into a busy real session change nothing; the running run and the next message are answered", async () => {
		for (const target of targets(gw.port)) {
			const { slow, runId } = await busyWith(target, 30);
			const before = await readQueue(gw.port, target.key);
			for (const mode of ["Steer", "", 1, {}, [], "INTERRUPT"]) {
				await sendHostile(target, { name: `mode ${JSON.stringify(mode)} while busy`, body: { text: "/echo sneaky", mode }, status: 400, prefix: INVALID_MODE });
			}
			assert.deepEqual(await readQueue(gw.port, target.key), before, `${target.label}: nothing queued or steered`);
			const first = await withinMs(slow, 30_000, "the slow run");
			assert.deepEqual(first.json, { ok: true, response: fauxLongText(30), sessionKey: target.key, runId });
			await stillAnswers(target);
		}
	});
});

// ---------------------------------------------------------------- issue 14: the new routes and fields
//
// Every route and field issue 14 adds (SPEC §12, contract /work/issue14-contract.md), against REAL
// pi AgentSessions on the offline faux model, for the primary, another session and a webhook
// session: chat `messages` shapes, `file` parts and `trigger`; PATCH name; PUT model; PUT
// thinking; POST compact; the history's query string; DELETE ?purge. Each bad request is a 4xx
// whose error names the field (the SPEC's own text where it fixes one), and nothing of it runs:
// pi's session keeps its messages and entries, its runs, name, model and thinking level, and is
// the same AgentSession. After each group (and after parallel storms of all of them, idle and
// while a run streams) a good message to the same session is answered correctly.
// (Imports here, not at the top, so this block stays an addition.)

import { getHistory, INVALID_BEFORE, INVALID_FORMAT, INVALID_LIMIT, PNG_URL, startHistoryGateway, userContentText } from "./support/history-util.mjs";
import { chatTerminal, chatText, postChat } from "./support/runs.mjs";

const MISSING_CHAT = "Missing user message text";
const INVALID_TRIGGER = 'Invalid trigger: expected "submit-message" or "regenerate-message"';
const INVALID_LEVEL_14 = "Invalid level: expected one of off, minimal, low, medium, high, xhigh";
const INVALID_PURGE = "Invalid purge: expected true or false";
/** limits.maxChatBodyBytes of this suite. */
const CHAT_LIMIT = 2 * 1024 * 1024;
const FAUX_2_REF = { provider: "faux", id: "faux-2" };
/** Words of the run that streams during the busy storm (~10 s at the faux's 20 words a second). */
const SLOW_WORDS = 200;

const encKey = encodeURIComponent;
const textPart = (text) => ({ type: "text", text });
const filePart = (mediaType, url) => ({ type: "file", mediaType, url });
const dataUrl = (mime, bytes) => `data:${mime};base64,${Buffer.from(bytes).toString("base64")}`;
/** A useChat body whose last user message is `messages[2]`, with `parts`. */
const chatWith = (parts, extra = {}) => ({
	id: "np-chat",
	messages: [
		{ id: "u0", role: "user", parts: [textPart("/echo earlier")] },
		{ id: "a0", role: "assistant", parts: [textPart("You said: earlier")] },
		{ id: "u1", role: "user", parts },
	],
	trigger: "submit-message",
	...extra,
});
const userOnly = (parts) => ({ messages: [{ id: "u", role: "user", parts }] });
const deep = (n) => "[".repeat(n) + "]".repeat(n);
/** The text parts of a UI message, joined. */
const userTextOf = (m) =>
	m.parts
		.filter((p) => p.type === "text")
		.map((p) => p.text)
		.join("");

// A case: { label, method, path(key) → path, body (JSON) | raw (string sent as is), status, field
//   (text the error must contain: the field it names), error? (exact), prefix? }.
const at = (path) => (key) => `/sessions/${encKey(key)}${path}`;
const chatCase = (label, body, status, field, exact) => ({ label: `chat: ${label}`, method: "POST", path: at("/chat"), body, status, field, error: exact });
const rawChat = (label, raw, status, field, exact) => ({ ...chatCase(label, undefined, status, field, exact), raw });

/** Chat bodies whose `messages` hold no user text: the SPEC's `400 Missing user message text`. */
const CHAT_SHAPES = [
	chatCase("messages a string", { messages: "hi" }, 400, "user message", MISSING_CHAT),
	chatCase("messages an object", { messages: { role: "user", parts: [textPart("hi")] } }, 400, "user message", MISSING_CHAT),
	chatCase("messages a number", { messages: 5 }, 400, "user message", MISSING_CHAT),
	chatCase("messages null", { messages: null }, 400, "user message", MISSING_CHAT),
	chatCase("messages empty", { messages: [] }, 400, "user message", MISSING_CHAT),
	chatCase("messages of junk", { messages: [null, 5, "x", [], {}, true] }, 400, "user message", MISSING_CHAT),
	chatCase("a user message without parts", { messages: [{ role: "user" }] }, 400, "user message", MISSING_CHAT),
	chatCase("parts a string", userOnly("/echo hi"), 400, "user message", MISSING_CHAT),
	chatCase("parts an object", userOnly(textPart("/echo hi")), 400, "user message", MISSING_CHAT),
	chatCase("parts a number", userOnly(7), 400, "user message", MISSING_CHAT),
	chatCase("parts of junk", userOnly([5, null, "s", [], {}, { type: 5 }, { type: "text", text: 5 }, { type: "text" }, { type: "text", text: { t: "x" } }]), 400, "user message", MISSING_CHAT),
	chatCase("parts nested in arrays", userOnly([[textPart("/echo hi")], [[textPart("/echo hi")]]]), 400, "user message", MISSING_CHAT),
	chatCase("blank text parts", userOnly([textPart("  "), textPart("\n\t")]), 400, "user message", MISSING_CHAT),
	chatCase("role USER", { messages: [{ role: "USER", parts: [textPart("/echo hi")] }] }, 400, "user message", MISSING_CHAT),
	chatCase("role an array", { messages: [{ role: ["user"], parts: [textPart("/echo hi")] }] }, 400, "user message", MISSING_CHAT),
	chatCase("role a number", { messages: [{ role: 1, parts: [textPart("/echo hi")] }] }, 400, "user message", MISSING_CHAT),
	chatCase("only assistant messages", { messages: [{ role: "assistant", parts: [textPart("/echo hi")] }] }, 400, "user message", MISSING_CHAT),
	chatCase("20,000 assistant messages", { messages: Array.from({ length: 20_000 }, (_, i) => ({ id: `a${i}`, role: "assistant", parts: [textPart("x")] })) }, 400, "user message", MISSING_CHAT),
	chatCase("a user message of 50,000 junk parts", userOnly(Array.from({ length: 50_000 }, (_, i) => (i % 2 ? null : { type: "x" }))), 400, "user message", MISSING_CHAT),
	// (Only the last user message is materialised: nesting elsewhere is skipped, and holds no user text.)
	rawChat("messages nested 5,000 deep", `{"messages":${deep(5000)}}`, 400, "user message", MISSING_CHAT),
	rawChat("a user message after messages nested 5,000 deep", `{"messages":[${deep(5000)},{"role":"user","parts":${deep(5000)}}]}`, 400, "body", BAD_JSON),
	rawChat("parts nested 5,000 deep", `{"messages":[{"role":"user","parts":${deep(5000)}}]}`, 400, "body", BAD_JSON),
	rawChat("a duplicate messages field", '{"messages":[],"messages":[]}', 400, "body", BAD_JSON),
	rawChat("messages with a lone surrogate", '{"messages":[{"role":"user","parts":[{"type":"text","text":"\\udc00"}]}]}', 400, "body", BAD_JSON),
	rawChat("a body one byte past limits.maxChatBodyBytes", JSON.stringify({ messages: [], pad: "x".repeat(CHAT_LIMIT) }).slice(0, CHAT_LIMIT + 1), 413, "body", `Request body too large (limit ${CHAT_LIMIT} bytes)`),
	chatCase("id a number", { ...chatWith([textPart("/echo x")]), id: 5 }, 400, "Invalid id: "),
	chatCase("id an empty string", { ...chatWith([textPart("/echo x")]), id: "" }, 400, "Invalid id: "),
];

const pngUrl = (mime = "image/png") => `data:${mime};base64,${P}`;
const BIG_PNG_URL = `data:image/png;base64,${png({ padTo: MAX_IMAGE_BYTES + 1 })}`;

/** Bad `file` parts of the last user message (`messages[2]`, text at parts[0]). */
const CHAT_FILES = [
	...[
		["no mediaType", { type: "file", url: pngUrl() }],
		["mediaType 5", filePart(5, pngUrl())],
		["mediaType null", filePart(null, pngUrl())],
		["mediaType an array", filePart(["image/png"], pngUrl())],
		["mediaType empty", filePart("", pngUrl())],
		["mediaType image/svg+xml", filePart("image/svg+xml", dataUrl("image/svg+xml", "<svg xmlns='http://www.w3.org/2000/svg'/>"))],
		["mediaType text/plain", filePart("text/plain", dataUrl("text/plain", "hello"))],
		["mediaType application/pdf", filePart("application/pdf", dataUrl("application/pdf", "%PDF-1.4\n"))],
		["mediaType IMAGE/PNG", filePart("IMAGE/PNG", pngUrl("IMAGE/PNG"))],
		["mediaType with a trailing space", filePart("image/png ", pngUrl())],
		["mediaType image/bmp", filePart("image/bmp", dataUrl("image/bmp", "BM"))],
	].map(([label, part]) => chatCase(`file part: ${label}`, chatWith([textPart("/echo sneaky"), part]), 400, "messages[2].parts[1].mediaType")),
	...[
		["no url", { type: "file", mediaType: "image/png" }],
		["url 5", filePart("image/png", 5)],
		["url null", filePart("image/png", null)],
		["url an object", filePart("image/png", { href: pngUrl() })],
		["url empty", filePart("image/png", "")],
		["an https URL", filePart("image/png", "https://example.com/x.png")],
		["a file URL", filePart("image/png", "file:///etc/passwd")],
		["a data URL without ;base64", filePart("image/png", `data:image/png,${P}`)],
		["a data URL of another type", filePart("image/png", pngUrl("image/jpeg"))],
		["a data URL without a type", filePart("image/png", `data:;base64,${P}`)],
		["DATA: in capitals", filePart("image/png", `DATA:image/png;base64,${P}`)],
		[";BASE64 in capitals", filePart("image/png", `data:image/png;BASE64,${P}`)],
		["a charset before ;base64", filePart("image/png", `data:image/png;charset=utf-8;base64,${P}`)],
		["a data URL with no data", filePart("image/png", "data:image/png;base64,")],
		["non-base64 data", filePart("image/png", "data:image/png;base64,@@not*base64@@")],
		["base64 with spaces", filePart("image/png", `data:image/png;base64,${P.slice(0, 8)} ${P.slice(8)}`)],
		["base64url instead of base64", filePart("image/png", `data:image/png;base64,${Buffer.from(pngBytes()).toString("base64url").replace(/^./, "-")}`)],
		["a truncated base64 tail", filePart("image/png", `data:image/png;base64,${P.replace(/=+$/, "")}A`)],
		["one byte past limits.maxImageBytes", filePart("image/png", BIG_PNG_URL)],
		["10x limits.maxImageBytes", filePart("image/png", `data:image/png;base64,${"A".repeat(MAX_IMAGE_BYTES * 14)}`)],
		["a PNG mediaType with JPEG bytes", filePart("image/png", dataUrl("image/png", jpegBytes()))],
		["a JPEG mediaType with PNG bytes", filePart("image/jpeg", pngUrl("image/jpeg"))],
		["a GIF mediaType with text bytes", filePart("image/gif", dataUrl("image/gif", "hello, not a gif"))],
		["a WEBP mediaType with GIF bytes", filePart("image/webp", dataUrl("image/webp", gifBytes()))],
		["HTML labelled image/png", filePart("image/png", dataUrl("image/png", "<script>alert(1)</script>"))],
	].map(([label, part]) => chatCase(`file part: ${label}`, chatWith([textPart("/echo sneaky"), part]), 400, "messages[2].parts[1].url")),
	chatCase("file part: the second file is bad", chatWith([textPart("/echo sneaky"), filePart("image/png", pngUrl()), filePart("image/gif", pngUrl("image/gif"))]), 400, "messages[2].parts[2].url"),
	chatCase("file part: a bad file and no text", chatWith([filePart("image/png", "data:image/png;base64,aGVsbG8=")]), 400, "messages[2].parts[0].url"),
	chatCase("file part: a bad file in the only message", userOnly([textPart("/echo sneaky"), filePart("application/zip", dataUrl("application/zip", "PK\x03\x04"))]), 400, "messages[0].parts[1].mediaType"),
	chatCase("file part: a bad file after 50 good-text parts", chatWith([...Array.from({ length: 50 }, () => textPart("/echo sneaky")), filePart("image/png", "data:image/png;base64,!!")]), 400, "messages[2].parts[50].url"),
	chatCase("file part: a bad file next to `text` (text wins, files are still checked)", { ...chatWith([textPart("hi"), filePart("text/html", dataUrl("text/html", "<b>"))]), text: "/echo sneaky" }, 400, "messages[2].parts[1].mediaType"),
	chatCase("file part: a bad file with trigger regenerate-message", chatWith([textPart("/echo sneaky"), filePart("image/png", "x")], { trigger: "regenerate-message" }), 400, "messages[2].parts[1].url"),
	chatCase("file part: nine files (limits.maxImages is 8)", chatWith([textPart("/echo sneaky"), ...Array.from({ length: 9 }, () => filePart("image/png", pngUrl()))]), 400, "messages[2].parts"),
	chatCase("file part: 1,000 files", chatWith([textPart("/echo sneaky"), ...Array.from({ length: 1000 }, () => filePart("image/png", pngUrl()))]), 400, "messages[2].parts"),
];

/** `trigger` of a wrong type or an unknown string, on an otherwise good chat body. */
const CHAT_TRIGGERS = [5, 0, true, false, {}, [], ["regenerate-message"], "", "regenerate", "submit", "Submit-Message", "REGENERATE-MESSAGE", " regenerate-message", "regenerate-message\u0000", "resume-stream"].map((trigger) =>
	chatCase(`trigger ${JSON.stringify(trigger)}`, chatWith([textPart("/echo sneaky")], { trigger }), 400, "trigger", INVALID_TRIGGER),
);

const nameCase = (label, body, status = 400, field = "Invalid name: ", exact) => ({ label: `PATCH name: ${label}`, method: "PATCH", path: at(""), body, status, field, error: exact });
const NAME_CASES = [
	nameCase("missing", {}),
	nameCase("null", { name: null }),
	nameCase("a number", { name: 5 }),
	nameCase("true", { name: true }),
	nameCase("an object", { name: { first: "x" } }),
	nameCase("an array", { name: ["a", "b"] }),
	nameCase("an empty array", { name: [] }),
	nameCase("empty", { name: "" }),
	nameCase("whitespace", { name: " \t\n\r " }),
	nameCase("non-breaking spaces only", { name: "\u00a0\u2003" }),
	nameCase("a NUL", { name: "bad\u0000name" }),
	nameCase("a newline inside", { name: "two\nlines" }),
	nameCase("an escape sequence", { name: "\u001b[31mred" }),
	nameCase("DEL", { name: "a\u007fb" }),
	nameCase("a C1 control", { name: "a\u0085b" }),
	nameCase("201 characters", { name: "n".repeat(201) }),
	nameCase("10,000 characters", { name: "n".repeat(10_000) }),
	nameCase("10,000 emoji", { name: "😀".repeat(10_000) }),
	{ ...nameCase("a JSON array body", undefined, 400, "body", BAD_JSON), raw: '["name"]' },
	{ ...nameCase("a JSON string body", undefined, 400, "body", BAD_JSON), raw: '"name"' },
	{ ...nameCase("a lone surrogate", undefined, 400, "body", BAD_JSON), raw: '{"name":"\\ud800"}' },
	{ ...nameCase("an empty body", undefined, 400, "Invalid name: "), raw: "" },
];

const modelCase = (label, body, status = 400, field, exact) => ({ label: `PUT model: ${label}`, method: "PUT", path: at("/model"), body, status, field, error: exact });
const MODEL_CASES = [
	modelCase("an empty object", {}, 400, "Invalid provider: "),
	modelCase("no id", { provider: "faux" }, 400, "Invalid id: "),
	modelCase("no provider", { id: "faux-2" }, 400, "Invalid provider: "),
	modelCase("provider a number", { provider: 5, id: "faux-2" }, 400, "Invalid provider: "),
	modelCase("id a number", { provider: "faux", id: 2 }, 400, "Invalid id: "),
	modelCase("provider null", { provider: null, id: "faux-2" }, 400, "Invalid provider: "),
	modelCase("id an array", { provider: "faux", id: ["faux-2"] }, 400, "Invalid id: "),
	modelCase("provider an object", { provider: { name: "faux" }, id: "faux-2" }, 400, "Invalid provider: "),
	modelCase("provider empty", { provider: "", id: "faux-2" }, 400, "Invalid provider: "),
	modelCase("id empty", { provider: "faux", id: "" }, 400, "Invalid id: "),
	modelCase("id of 257 bytes", { provider: "faux", id: "i".repeat(257) }, 400, "Invalid id: "),
	modelCase("id of 129 two-byte characters (258 bytes)", { provider: "faux", id: "é".repeat(129) }, 400, "Invalid id: "),
	modelCase("provider of 100,000 bytes", { provider: "p".repeat(100_000), id: "faux-2" }, 400, "Invalid provider: "),
	modelCase("the model as one string", { model: "faux/faux-2" }, 400, "Invalid provider: "),
	modelCase("an unknown id", { provider: "faux", id: "nope" }, 404, "Model not found", "Model not found: faux/nope"),
	modelCase("an unknown provider", { provider: "nobody", id: "faux-2" }, 404, "Model not found", "Model not found: nobody/faux-2"),
	modelCase("FAUX in capitals", { provider: "FAUX", id: "faux-2" }, 404, "Model not found", "Model not found: FAUX/faux-2"),
	modelCase("an id of 256 bytes (valid, unknown)", { provider: "faux", id: "i".repeat(256) }, 404, "Model not found", `Model not found: faux/${"i".repeat(256)}`),
	modelCase("a path as the provider", { provider: "../../etc", id: "passwd" }, 404, "Model not found", "Model not found: ../../etc/passwd"),
	modelCase("a NUL in the id", { provider: "faux", id: "faux-2\u0000" }, 404, "Model not found", "Model not found: faux/faux-2\u0000"),
	{ ...modelCase("a JSON array body", undefined, 400, "body", BAD_JSON), raw: '[{"provider":"faux","id":"faux-2"}]' },
	{ ...modelCase("truncated JSON", undefined, 400, "body", BAD_JSON), raw: '{"provider":"faux","id":' },
];

const thinkingCase = (label, body, status = 400, field = "Invalid level: ", prefix = INVALID_LEVEL_14) => ({ label: `PUT thinking: ${label}`, method: "PUT", path: at("/thinking"), body, status, field, prefix });
const THINKING_CASES = [
	...[undefined, null, 5, true, {}, [], ["high"], "", "HIGH", "High", " high", "high ", "max", "none", "on", "xxhigh", "medium\u0000", "2"].map((level) =>
		thinkingCase(`level ${level === undefined ? "missing" : JSON.stringify(level)}`, level === undefined ? {} : { level }),
	),
	thinkingCase("level of 100,000 characters", { level: "h".repeat(100_000) }),
	thinkingCase("thinkingLevel instead of level", { thinkingLevel: "high" }),
	{ ...thinkingCase("a JSON string body", undefined, 400, "body", BAD_JSON), raw: '"high"' },
];

const compactCase = (label, body, field = "Invalid instructions: ") => ({ label: `POST compact: ${label}`, method: "POST", path: at("/compact"), body, status: 400, field, prefix: field });
const COMPACT_CASES = [
	compactCase("instructions a number", { instructions: 5 }),
	compactCase("instructions true", { instructions: true }),
	compactCase("instructions an object", { instructions: { focus: "x" } }),
	compactCase("instructions an array", { instructions: ["focus"] }),
	compactCase("instructions of 10,001 characters", { instructions: "i".repeat(10_001) }),
	compactCase("instructions of 10,001 emoji", { instructions: "😀".repeat(10_001) }),
	compactCase("instructions of 20,000 characters", { instructions: "i".repeat(20_000) }),
	compactCase("wait a string", { wait: "no" }, "Invalid wait"),
	compactCase("wait a number", { wait: 0 }, "Invalid wait"),
	{ ...compactCase("a JSON array body", undefined, "body"), raw: "[]", prefix: undefined, error: BAD_JSON },
	{ ...compactCase("deep nesting", undefined, "body"), raw: `{"instructions":${deep(5000)}}`, prefix: undefined, error: BAD_JSON },
];

const historyCase = (label, query, field, exact) => ({ label: `GET history: ${label}`, method: "GET", path: at(`/messages?${query}`), status: 400, field, error: exact, needsSession: exact?.startsWith("Invalid before: no message") });
const HISTORY_CASES = [
	...["0", "-1", "1001", "abc", "1e3", "+5", "1.5", "", "0x10", "99999999999999999999999", "%31", "5%00", "1,2", "Infinity", "NaN"].map((v) => historyCase(`limit=${v}`, `limit=${v}`, "Invalid limit", INVALID_LIMIT)),
	historyCase("limit given twice, the first bad", "limit=0&limit=5", "Invalid limit", INVALID_LIMIT),
	...["xml", "UI", "Pi", "", "json", "ui%00", "ui "].map((v) => historyCase(`format=${v}`, `format=${encodeURIComponent(v)}`, "Invalid format", INVALID_FORMAT)),
	historyCase("before= an unknown id", "before=nope", "Invalid before", INVALID_BEFORE("nope")),
	historyCase("before= an unknown UUID", "before=01900000-0000-7000-8000-000000000000", "Invalid before", INVALID_BEFORE("01900000-0000-7000-8000-000000000000")),
	historyCase("before= an unknown id with spaces, encoded", "before=a%20b", "Invalid before", INVALID_BEFORE("a b")),
	historyCase("before= empty", "before=", "Invalid before"),
	historyCase("before with no =", "before", "Invalid before"),
	historyCase("before=%ZZ", "before=%ZZ", "Invalid before"),
	historyCase("before= invalid UTF-8", "before=%C3%28", "Invalid before"),
	historyCase("before= 1,025 bytes", `before=${"b".repeat(1025)}`, "Invalid before"),
	historyCase("format=xml with a good limit", "format=xml&limit=5", "Invalid format", INVALID_FORMAT),
];

const DELETE_CASES = ["maybe", "TRUE", "True", "1", "0", "yes", "", "true%20", "false%00", "true;", "%00"].map((v) => ({ label: `DELETE purge=${v}`, method: "DELETE", path: at(`?purge=${v}`), status: 400, field: "purge", error: INVALID_PURGE }));
DELETE_CASES.push({ label: "DELETE purge with no =", method: "DELETE", path: at("?purge"), status: 400, field: "purge", error: INVALID_PURGE });

const ALL_14 = [...CHAT_SHAPES, ...CHAT_FILES, ...CHAT_TRIGGERS, ...NAME_CASES, ...MODEL_CASES, ...THINKING_CASES, ...COMPACT_CASES, ...HISTORY_CASES, ...DELETE_CASES];

describe("issue 14: nothing poisons a real pi AgentSession (faux model): chat messages, file parts, trigger, name, model, thinking, compact, history, delete", { timeout: 300_000 }, () => {
	/** @type {Awaited<ReturnType<typeof startHistoryGateway>>} */
	let gw;
	/** key → {name, model, thinkingLevel} as set up. */
	const settings = new Map();
	let n = 0;
	const tg = () => targets(gw.port);

	before(async () => {
		gw = await startHistoryGateway({
			config: {
				webhook: { enabled: true, secret: SECRET },
				limits: { maxImageBytes: MAX_IMAGE_BYTES, maxChatBodyBytes: CHAT_LIMIT },
				session: { maxQueuePerSession: 64 },
			},
		});
		for (const target of tg()) {
			await setupReal(target);
			// A name, the second faux model (it reasons) and a thinking level other than the default,
			// so that a bad request that changed any of them would show.
			const key = target.key;
			const named = await httpRequest(gw.port, "PATCH", `/sessions/${encKey(key)}`, { body: { name: `  np ${key}  ` } });
			assert.equal(named.status, 200, named.text);
			assert.equal(named.json.name, `np ${key}`);
			const model = await httpRequest(gw.port, "PUT", `/sessions/${encKey(key)}/model`, { body: FAUX_2_REF });
			assert.equal(model.status, 200, model.text);
			const thinking = await httpRequest(gw.port, "PUT", `/sessions/${encKey(key)}/thinking`, { body: { level: "medium" } });
			assert.equal(thinking.status, 200, thinking.text);
			settings.set(key, { name: `np ${key}`, model: FAUX_2_REF, thinkingLevel: thinking.json.thinkingLevel });
		}
	});
	after(() => gw?.close());

	/** What a bad request must not change: the AgentSession, its messages, entries and runs; name, model, thinking level. */
	async function stateOf(key) {
		const session = gw.sessions.get(key);
		const snap = await httpRequest(gw.port, "GET", `/sessions/${encKey(key)}`);
		assert.equal(snap.status, 200, snap.text);
		const { name, model, thinkingLevel } = snap.json.session;
		return {
			session,
			messages: session.messages.length,
			entries: session.sessionManager.getEntries().length,
			runs: gw.runtime.listRuns(key).length,
			settings: { name, model, thinkingLevel },
		};
	}

	function assertUnchanged(key, before, now, what) {
		assert.equal(now.session, before.session, `${what} → ${key}: the same AgentSession (not deleted, reset or replaced)`);
		assert.deepEqual(
			{ messages: now.messages, entries: now.entries, runs: now.runs, settings: now.settings },
			{ messages: before.messages, entries: before.entries, runs: before.runs, settings: settings.get(key) },
			`${what} → ${key}: nothing ran or changed`,
		);
	}

	/** A good message (on the target's own route) is answered, and reached pi as sent. */
	async function answersAfter(target, what) {
		const text = `after ${what} ${++n}`;
		const answer = await sendGood(target, `/echo ${text}`);
		assert.deepEqual(answer, { ok: true, response: `You said: ${text}`, sessionKey: target.key }, `${what}: the next good message`);
		const messages = gw.sessions.get(target.key).messages;
		assert.equal(userContentText(messages.at(-2)), `/echo ${text}`, `${what}: pi got the good message`);
		assert.equal(messages.at(-1).role, "assistant");
	}

	/** Sends case `c` to `key`; returns a description of what was wrong ("" when all is right). */
	async function tryCase(key, c) {
		let r;
		try {
			r = await httpRequest(gw.port, c.method, c.path(key), { body: c.raw ?? c.body, timeoutMs: 30_000 });
		} catch (e) {
			return `${c.label} → ${key}: no answer (${e.message})`;
		}
		const got = `${r.status} ${r.text.slice(0, 200)}`;
		if (r.status !== c.status) return `${c.label} → ${key}: expected ${c.status} naming ${JSON.stringify(c.field)}, got ${got}`;
		if (r.headers["content-type"] !== JSON_TYPE) return `${c.label} → ${key}: content-type ${r.headers["content-type"]}`;
		if (JSON.stringify(Object.keys(r.json ?? {})) !== '["error"]') return `${c.label} → ${key}: expected {error} only, got ${got}`;
		if (r.headers["x-run-id"] !== undefined) return `${c.label} → ${key}: a refusal with x-run-id`;
		const error = r.json.error;
		if (typeof error !== "string" || !error.includes(c.field)) return `${c.label} → ${key}: the error does not name ${JSON.stringify(c.field)}: ${got}`;
		if (c.error !== undefined && error !== c.error) return `${c.label} → ${key}: expected ${JSON.stringify(c.error.slice(0, 200))}, got ${got}`;
		if (c.prefix !== undefined && !error.startsWith(c.prefix)) return `${c.label} → ${key}: expected ${JSON.stringify(c.prefix)}…, got ${got}`;
		return "";
	}

	/** Every case of `cases` to every target, one after the other; then nothing changed and a good message is answered. */
	async function group(cases, what) {
		const wrong = [];
		for (const target of tg()) {
			const before = await stateOf(target.key);
			for (const c of cases) {
				const problem = await tryCase(target.key, c);
				if (problem) wrong.push(problem);
			}
			assertUnchanged(target.key, before, await stateOf(target.key), what);
			await answersAfter(target, what);
		}
		assert.deepEqual(wrong, [], `${what}: every bad request is a 4xx naming its field`);
	}

	test("chat: odd, nested, huge and non-array `messages` → 400 (the SPEC's text); nothing runs; the session answers", async () => {
		await group(CHAT_SHAPES, "chat messages shapes");
	});

	test("chat: bad `file` parts → 400 naming messages[i].parts[j].mediaType / .url (or .parts: too many); nothing runs", async () => {
		await group(CHAT_FILES, "chat file parts");
	});

	test("chat: `trigger` of a wrong type or an unknown string → 400 naming trigger; nothing runs", async () => {
		await group(CHAT_TRIGGERS, "chat trigger");
	});

	test("chat: junk parts next to good text are ignored; only the text and the valid image reach pi; the session answers", async () => {
		for (const target of tg()) {
			const before = await stateOf(target.key);
			const text = `odd parts ${++n}`;
			const junk = [5, null, "s", [], {}, { type: 5 }, { type: "text", text: 5 }, { type: "reasoning", text: "not mine" }, { type: "step-start" }, { type: "source-url", url: "https://x" }, { type: "data-x", data: deep(50) }];
			const parts = [...junk.slice(0, 5), textPart(`/echo ${text}`), ...junk.slice(5), filePart("image/png", pngUrl()), { type: "dynamic-tool", toolName: "bash", toolCallId: "t", state: "input-available", input: { command: "rm -rf /" } }];
			const r = await postChat(gw.port, target.key, chatWith(parts), { timeoutMs: 30_000 });
			assert.equal(r.status, 200, `${target.label}: ${r.status} ${r.text.slice(0, 300)}`);
			assert.equal(chatText(r.chunks), `You said: ${text}`);
			assert.equal(chatTerminal(r.chunks).type, "finish");
			const session = gw.sessions.get(target.key);
			assert.equal(session, before.session);
			assert.equal(session.messages.length, before.messages + 2, "one user message and its answer");
			const user = session.messages.at(-2);
			assert.equal(userContentText(user), `/echo ${text}`, "only the text part reached pi");
			assert.deepEqual(
				user.content.filter((b) => b.type !== "text"),
				[{ type: "image", data: P, mimeType: "image/png" }],
				"only the valid image reached pi",
			);
			await answersAfter(target, "odd parts");
		}
	});

	test("chat: regenerate-message on a session with no prior message runs it once; again, it replaces the answer; the session answers", async () => {
		const key = "np-regenerate-fresh";
		const sessionsBefore = gw.runtime.listSessions().length;
		// No user message in the body: refused, and no session is created for it.
		const none = await postChat(gw.port, key, { messages: [{ role: "assistant", parts: [textPart("x")] }], trigger: "regenerate-message" });
		assert.equal(none.status, 400, none.text);
		assert.deepEqual(none.json, { error: MISSING_CHAT });
		assert.equal(gw.runtime.getSession(key), undefined, "no session for a refused chat");
		assert.equal(gw.runtime.listSessions().length, sessionsBefore);

		const body = { id: key, messages: [{ id: "u1", role: "user", parts: [textPart("/echo regen")] }], trigger: "regenerate-message" };
		const first = await postChat(gw.port, key, body, { timeoutMs: 30_000 });
		assert.equal(first.status, 200, `${first.status} ${first.text.slice(0, 300)}`);
		assert.equal(chatText(first.chunks), "You said: regen");
		assert.equal(chatTerminal(first.chunks).type, "finish");
		const firstRun = first.headers["x-run-id"];
		let history = await getHistory(gw.port, key);
		assert.deepEqual(
			history.messages.map((m) => [m.role, m.id === firstRun ? "run" : "entry"]),
			[["user", "entry"], ["assistant", "run"]],
			`one user message and its answer: ${JSON.stringify(history.messages).slice(0, 400)}`,
		);

		const second = await postChat(gw.port, key, body, { timeoutMs: 30_000 });
		assert.equal(second.status, 200, `${second.status} ${second.text.slice(0, 300)}`);
		assert.equal(chatText(second.chunks), "You said: regen");
		const secondRun = second.headers["x-run-id"];
		history = await getHistory(gw.port, key);
		assert.deepEqual(
			history.messages.map((m) => [m.role, m.role === "user" ? userTextOf(m) : m.id]),
			[["user", "/echo regen"], ["assistant", secondRun]],
			`the regenerated answer replaced the first: ${JSON.stringify(history.messages).slice(0, 400)}`,
		);
		const target = { label: key, path: `/sessions/${encKey(key)}/messages`, key, port: gw.port };
		const answer = await sendGood(target, "/echo after regen");
		assert.deepEqual(answer, { ok: true, response: "You said: after regen", sessionKey: key });
		history = await getHistory(gw.port, key);
		assert.deepEqual(
			history.messages.map((m) => m.role),
			["user", "assistant", "user", "assistant"],
		);
	});

	test("PATCH name: non-strings, empty, whitespace, control characters, 10k characters, arrays → 400 naming name; the name stays", async () => {
		await group(NAME_CASES, "PATCH name");
	});

	test("PATCH name and PUT thinking: the edges the validators allow are accepted (trimmed, 200 characters; every level); the session answers", async () => {
		for (const target of tg()) {
			const key = target.key;
			const long = "n".repeat(200);
			let r = await httpRequest(gw.port, "PATCH", `/sessions/${encKey(key)}`, { body: { name: ` \t${long}\n ` } });
			assert.equal(r.status, 200, r.text);
			assert.deepEqual(r.json, { ok: true, sessionKey: key, name: long });
			for (const level of ["off", "minimal", "low", "medium", "high", "xhigh"]) {
				r = await httpRequest(gw.port, "PUT", `/sessions/${encKey(key)}/thinking`, { body: { level } });
				assert.equal(r.status, 200, `${level}: ${r.text}`);
				assert.equal(r.json.ok, true);
				assert.equal(typeof r.json.thinkingLevel, "string");
			}
			// Back to the suite's settings.
			r = await httpRequest(gw.port, "PATCH", `/sessions/${encKey(key)}`, { body: { name: settings.get(key).name } });
			assert.equal(r.status, 200, r.text);
			r = await httpRequest(gw.port, "PUT", `/sessions/${encKey(key)}/thinking`, { body: { level: "medium" } });
			assert.equal(r.json.thinkingLevel, settings.get(key).thinkingLevel);
			await answersAfter(target, "the edges");
		}
	});

	test("PUT model: missing fields, numbers, huge strings → 400 naming provider/id; unknown → 404; the model stays", async () => {
		const noKey = gw.agent.primarySession.modelRegistry.getAll().find((m) => m.provider === "anthropic");
		assert.ok(noKey, "pi's registry knows built-in models without credentials");
		const cases = [...MODEL_CASES, modelCase("a model without credentials", { provider: noKey.provider, id: noKey.id }, 400, "provider", `No credentials for provider ${noKey.provider}`)];
		await group(cases, "PUT model");
	});

	test("PUT thinking: wrong types and unknown levels → 400 naming level; the level stays", async () => {
		await group(THINKING_CASES, "PUT thinking");
	});

	test("POST compact: non-string or too long instructions, bad wait → 400 naming the field; no compaction runs", async () => {
		await group(COMPACT_CASES, "POST compact");
		for (const target of tg()) {
			const entries = gw.sessions.get(target.key).sessionManager.getEntries();
			assert.ok(!entries.some((e) => e.type === "compaction"), `${target.label}: no compaction entry`);
		}
	});

	test("GET history: limit 0/-1/1001/abc/1e3, before unknown/empty/%ZZ, format=xml → 400 naming the parameter; nothing is created", async () => {
		const sessionsBefore = gw.runtime.listSessions().length;
		await group(HISTORY_CASES, "GET history");
		// On a key that does not exist: the bad query is refused (a `before` that only the session could
		// know is a 404: there is no session to look in), the good one is a 404; no session is made.
		const wrong = [];
		const notFound = { status: 404, field: "Session not found", error: "Session not found: np-no-such-session" };
		for (const c of HISTORY_CASES) {
			const problem = await tryCase("np-no-such-session", c.needsSession ? { ...c, ...notFound } : c);
			if (problem) wrong.push(problem);
		}
		assert.deepEqual(wrong, []);
		const missing = await httpRequest(gw.port, "GET", "/sessions/np-no-such-session/messages?limit=5");
		assert.equal(missing.status, 404, missing.text);
		assert.equal(gw.runtime.listSessions().length, sessionsBefore, "no session was created");
		// The boundaries are accepted, and the history still matches pi's session.
		for (const target of tg()) {
			const first = await getHistory(gw.port, target.key, { limit: 1 });
			assert.equal(first.messages.length, 1);
			const all = await getHistory(gw.port, target.key, { limit: 1000, format: "pi" });
			assert.equal(all.messages.length, gw.sessions.get(target.key).messages.length);
			const page = await getHistory(gw.port, target.key, { limit: 2, before: all.messages.at(-1).id, format: "pi" });
			assert.deepEqual(page.messages, all.messages.slice(-3, -1));
		}
	});

	test("DELETE ?purge=maybe (and other non-booleans) → 400 naming purge; nothing is deleted", async () => {
		await group(DELETE_CASES, "DELETE purge");
		assert.deepEqual(gw.deleted, [], "deleteSession was never called");
		for (const target of tg()) assert.notEqual(gw.runtime.getSession(target.key), undefined, `${target.label} is still in memory`);
	});

	/**
	 * Every bad request of this block to every target at once, `times` over (one wave after the
	 * other: a wave stays below limits.maxConnections, whose excess is answered 503 by design).
	 */
	async function storm(times) {
		const wrong = [];
		for (let i = 0; i < times; i++) {
			const sent = [];
			for (const target of tg()) for (const c of ALL_14) sent.push(tryCase(target.key, c));
			assert.ok(sent.length < 1024 - 64, `a wave of ${sent.length} requests stays below the connection limit`);
			wrong.push(...(await withinMs(Promise.all(sent), 60_000, `${sent.length} bad requests to be answered`)).filter(Boolean));
		}
		return wrong;
	}

	test("a storm of every bad request in parallel on idle sessions: each refused naming its field; nothing changed; every session answers", async () => {
		const before = new Map();
		for (const target of tg()) before.set(target.key, await stateOf(target.key));
		const wrong = await storm(3);
		for (const target of tg()) {
			assertUnchanged(target.key, before.get(target.key), await stateOf(target.key), "the storm");
			await answersAfter(target, "the storm");
		}
		assert.deepEqual(wrong, [], "every bad request of the storm is a 4xx naming its field");
	});

	test("a storm of every bad request while each session streams a run: the runs finish untouched; nothing else changed; every session answers", async () => {
		const before = new Map();
		const slow = [];
		for (const target of tg()) {
			before.set(target.key, await stateOf(target.key));
			const answer = httpRequest(gw.port, "POST", `/sessions/${encKey(target.key)}/messages`, { body: { text: `/slow ${SLOW_WORDS}` }, timeoutMs: 60_000 });
			answer.catch(() => {});
			const running = await pollFor(() => gw.runtime.listRuns(target.key).find((r) => r.status === "running"), `a running run on ${target.label}`);
			slow.push({ target, answer, runId: running.runId });
		}
		const wrong = await storm(1);
		// (/slow streams for ~10 s: the storm hit running runs.)
		for (const { target, runId } of slow) assert.equal(gw.runtime.getRun(target.key, runId)?.status, "running", `${target.label}: still running after the storm`);
		for (const { target, answer, runId } of slow) {
			const r = await withinMs(answer, 60_000, `the slow run of ${target.label}`);
			assert.equal(r.status, 200, r.text.slice(0, 300));
			assert.deepEqual(r.json, { ok: true, response: fauxLongText(SLOW_WORDS), sessionKey: target.key, runId }, `${target.label}: the running run finished untouched`);
			const b = before.get(target.key);
			const now = await stateOf(target.key);
			assertUnchanged(target.key, { ...b, messages: b.messages + 2, runs: b.runs + 1 }, { ...now, entries: b.entries }, "the storm while busy");
			await answersAfter(target, "the storm while busy");
		}
		assert.deepEqual(wrong, [], "every bad request of the storm is a 4xx naming its field");
	});

	test("every bad request to a key that does not exist is refused alike (404 where only the session could tell) and creates no session", async () => {
		const key = "np-ghost";
		const sessionsBefore = gw.runtime.listSessions().length;
		const notFound = { status: 404, field: "Session not found", error: `Session not found: ${key}`, prefix: undefined };
		const wrong = [];
		for (const c of ALL_14) {
			const problem = await tryCase(key, c.needsSession || c.status === 404 ? { ...c, ...notFound } : c);
			if (problem) wrong.push(problem);
		}
		assert.deepEqual(wrong, [], "every bad request to an unknown key gets its answer");
		assert.equal(gw.runtime.getSession(key), undefined, "no session was created");
		assert.equal(gw.sessions.has(key), false, "createSession was not called");
		assert.equal(gw.runtime.listSessions().length, sessionsBefore);
	});

	test("no panic was logged", () => {
		const panics = gw.logs.filter((line) => /panic/i.test(line));
		assert.deepEqual(panics, []);
	});
});
