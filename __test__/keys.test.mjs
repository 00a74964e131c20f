// Issue 11, "keys and names": one limit (1..=1024 bytes) for every session key — in the path,
// in a webhook body, derived from a webhook's route and sender, and through the JS API — with
// sessions that really live on disk: createSession makes a pi SessionManager with the package's
// createGatewaySessionManager(cwd, key, root) under a temporary directory, and each run appends
// its messages to it, so a file name that is too long (ENAMETOOLONG) would show. Keys of 255,
// 256, 1024 and 1025 bytes, ASCII and multibyte UTF-8. No error body carries the temp dir.
//
// Contract: /tmp/contract.md, "Webhooks" and "Validation at the door" (Keys).
// Run: npm test -- __test__/keys.test.mjs

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";

import { createGatewaySessionManager, sanitizeSessionKey } from "../index.js";
import { msg, runCleanup, send, show, startSafe } from "./support/safe-util.mjs";
import { recordingFactory, recordingSession } from "./support/sessions.mjs";
import { bodyWithRunId, withRunId } from "./support/runs.mjs";

const SECRET = "keys-hook-secret";
const BAD_KEY = { error: "Invalid session key" };

/** A key of exactly `bytes` UTF-8 bytes: `prefix`, then `unit` repeated, then ASCII filler. */
function keyOf(bytes, { unit = "k", prefix = "" } = {}) {
	let key = prefix;
	const unitBytes = Buffer.byteLength(unit);
	while (Buffer.byteLength(key) + unitBytes <= bytes) key += unit;
	while (Buffer.byteLength(key) < bytes) key += "a";
	assert.equal(Buffer.byteLength(key), bytes);
	return key;
}

const SIZES = [255, 256, 1024, 1025];
/** ASCII, 3-byte (€) and 4-byte (emoji) keys. */
const UNITS = [
	["ascii", "k"],
	["3-byte €", "€"],
	["4-byte 🔑", "🔑"],
];

const cleanup = [];
let root;
let cwd;
let sessionsRoot;
/** Every response body seen, to check that none carries the temp dir. */
const bodies = [];
/** key → the real SessionManager its session writes to. */
const managers = new Map();

/**
 * A createSession whose sessions write to a real pi SessionManager on disk. Keys starting with
 * "boom-create" fail with an error that names an absolute path; sessions of keys starting with
 * "boom-prompt" fail their prompt the same way.
 */
function diskFactory() {
	return recordingFactory((key) => {
		if (key.startsWith("boom-create")) throw new Error(`EACCES: permission denied, mkdir '${join(sessionsRoot, "gateway-sessions", "boom")}'`);
		const sessionManager = createGatewaySessionManager(cwd, key, join(sessionsRoot, "gateway-sessions"));
		managers.set(key, sessionManager);
		const behavior = { sessionManager };
		if (key.startsWith("boom-prompt")) {
			behavior.prompt = async () => {
				throw new Error(`ENOENT: no such file or directory, open '${join(sessionsRoot, "gateway-sessions", "x", "y.jsonl")}'\n    at Object.openSync (node:fs:573:3)\n    at ${join(root, "lib", "thing.js")}:10:5`);
			};
		}
		return behavior;
	});
}

/** The primary session: its session dir is <sessionsRoot>/primary, so the gateway's root is <sessionsRoot>/gateway-sessions. */
const primary = () => recordingSession("main", { sessionDir: join(sessionsRoot, "primary") });

async function post(g, path, body, headers) {
	const r = await send(g.port, "POST", path, { body, headers });
	bodies.push(r.text);
	return r;
}
async function get(g, path) {
	const r = await send(g.port, "GET", path);
	bodies.push(r.text);
	return r;
}
const hook = (g, body, route = "") => post(g, `/webhook${route}`, body, { "x-pi-webhook-secret": SECRET });

/** Asserts that `key`'s session exists, lives in a bounded directory and wrote its file there. */
function assertOnDisk(g, key) {
	const sm = managers.get(key);
	assert.ok(sm, `createSession was called for the key of ${Buffer.byteLength(key)} bytes`);
	const dir = sm.getSessionDir();
	assert.equal(dir, g.rt.getGatewaySessionDir(key), "createGatewaySessionManager and getGatewaySessionDir agree");
	assert.equal(dirname(dir), join(sessionsRoot, "gateway-sessions"), "inside the root");
	assert.ok(Buffer.byteLength(basename(dir)) <= 255, `the directory name is ${Buffer.byteLength(basename(dir))} bytes`);
	assert.ok(existsSync(dir), `${dir} exists`);
	assert.ok(
		readdirSync(dir).some((f) => f.endsWith(".jsonl")),
		`a session file was written in ${dir}`,
	);
}

before(() => {
	root = mkdtempSync(join(tmpdir(), "pi-gw-keys-"));
	cwd = join(root, "work");
	sessionsRoot = join(root, "agent", "sessions");
	cleanup.push(() => rmSync(root, { recursive: true, force: true }));
});

after(async () => {
	await runCleanup(cleanup);
});

// ---------------------------------------------------------------- names on disk

describe("sanitizeSessionKey and getGatewaySessionDir bound the file name", () => {
	test("names up to 120 characters are the seed's; longer ones are <100 chars>-<32 hex of sha256(key)>", () => {
		const seed = (k) => k.replace(/[^a-zA-Z0-9._-]/g, "_");
		for (const k of ["a", "a".repeat(119), "a".repeat(120), "x/y z€", "€".repeat(120), "webhook:route:sender"]) {
			assert.equal(sanitizeSessionKey(k), seed(k), JSON.stringify(k));
		}
		for (const [, unit] of UNITS) {
			for (const bytes of [...SIZES, 121, 2000]) {
				const k = keyOf(bytes, { unit });
				if (seed(k).length <= 120) continue;
				const name = sanitizeSessionKey(k);
				const digest = createHash("sha256").update(k, "utf8").digest("hex").slice(0, 32);
				assert.equal(name, `${seed(k).slice(0, 100)}-${digest}`, `${bytes}-byte key of ${unit}`);
				assert.match(name, /^[a-zA-Z0-9._-]{100}-[0-9a-f]{32}$/);
			}
		}
		// Keys that differ only past the first 100 characters get different names.
		const a = keyOf(1024, { unit: "k" });
		const b = `${a.slice(0, -1)}b`;
		assert.notEqual(sanitizeSessionKey(a), sanitizeSessionKey(b));
		assert.equal(sanitizeSessionKey("a".repeat(121)).length, 133);
	});
});

// ---------------------------------------------------------------- path keys

describe("keys in the path", () => {
	let g;
	before(async () => {
		g = await startSafe(cleanup, { primary: primary(), createSession: diskFactory() });
	});

	for (const [label, unit] of UNITS) {
		for (const bytes of SIZES) {
			const ok = bytes <= 1024;
			test(`a ${bytes}-byte ${label} key: ${ok ? "a real session on disk" : "400 Invalid session key"}`, async () => {
				const key = keyOf(bytes, { unit, prefix: "p-" });
				const enc = encodeURIComponent(key);
				const r = await post(g, `/sessions/${enc}/messages`, msg("hi"));
				if (!ok) {
					assert.equal(r.status, 400, show(r));
					assert.deepEqual(r.json, BAD_KEY);
					assert.equal((await get(g, `/sessions/${enc}`)).status, 400);
					assert.equal(managers.has(key), false, "no session was created");
					return;
				}
				assert.equal(r.status, 200, show(r));
				assert.deepEqual(bodyWithRunId(r), { ok: true, response: "echo:hi", sessionKey: key });
				assertOnDisk(g, key);
				const s = await get(g, `/sessions/${enc}`);
				assert.equal(s.status, 200, show(s));
				assert.equal(s.json.session.sessionKey, key);
				// A second message reaches the same session.
				const again = await post(g, `/sessions/${enc}/messages`, msg("again"));
				assert.equal(again.status, 200, show(again));
				assert.equal(again.json.response, "echo:again");
			});
		}
	}

	test("two 1024-byte keys that differ only in their last byte are two sessions in two directories", async () => {
		const a = keyOf(1024, { prefix: "twin-" });
		const b = `${a.slice(0, -1)}b`;
		for (const k of [a, b]) {
			const r = await post(g, `/sessions/${encodeURIComponent(k)}/messages`, msg(k.slice(-1)));
			assert.equal(r.status, 200, show(r));
			assertOnDisk(g, k);
		}
		assert.notEqual(managers.get(a).getSessionDir(), managers.get(b).getSessionDir());
	});

	test("errors from createSession and prompt carry no server path", async () => {
		const c = await post(g, "/sessions/boom-create-1/messages", msg("hi"));
		assert.ok(c.status >= 500, show(c));
		assert.ok(!c.text.includes(root), `createSession error leaks the path: ${c.text}`);
		assert.match(c.json.error, /<path>/, c.text);
		const p = await post(g, "/sessions/boom-prompt-1/messages", msg("hi"));
		assert.equal(p.status, 500, show(p));
		assert.ok(!p.text.includes(root), `prompt error leaks the path: ${p.text}`);
		assert.ok(!p.text.includes("node:fs"), `prompt error carries a stack: ${p.text}`);
		assert.match(p.json.error, /<path>/, p.text);
	});

	test("the JS API: empty and 1025-byte keys are refused, a 1024-byte key works", async () => {
		await assert.rejects(g.rt.enqueueMessage({ sessionKey: "", text: "hi" }));
		await assert.rejects(g.rt.enqueueMessage({ sessionKey: keyOf(1025, { prefix: "js-" }), text: "hi" }));
		await assert.rejects(g.rt.enqueueMessage({ sessionKey: keyOf(1025, { unit: "€", prefix: "js-" }), text: "hi" }));
		const key = keyOf(1024, { unit: "€", prefix: "js-" });
		const r = await g.rt.enqueueMessage({ sessionKey: key, text: "hi" });
		assert.deepEqual(withRunId(r), { ok: true, response: "echo:hi", sessionKey: key });
		assertOnDisk(g, key);
	});
});

// ---------------------------------------------------------------- webhook keys

describe("keys from webhooks", () => {
	/** allowRequestSessionKey: true, default prefix "webhook:". */
	let allow;
	/** allowRequestSessionKey unset (false). */
	let deny;

	before(async () => {
		allow = await startSafe(cleanup, {
			primary: primary(),
			createSession: diskFactory(),
			config: { webhook: { enabled: true, secret: SECRET, allowRequestSessionKey: true } },
		});
		deny = await startSafe(cleanup, {
			primary: primary(),
			createSession: diskFactory(),
			config: { webhook: { enabled: true, secret: SECRET } },
		});
	});

	for (const [label, unit] of UNITS) {
		for (const bytes of SIZES) {
			const ok = bytes <= 1024;
			test(`body sessionKey of ${bytes} bytes (${label}, "webhook:" prefix): ${ok ? "200, the session exists" : "400 Invalid sessionKey"}`, async () => {
				const key = keyOf(bytes, { unit, prefix: "webhook:" });
				const before = allow.prompts();
				const r = await hook(allow, { text: "hi", sessionKey: key });
				if (!ok) {
					assert.equal(r.status, 400, show(r));
					assert.match(r.json.error, /^Invalid sessionKey\b/);
					assert.equal(allow.prompts(), before);
					assert.equal(managers.has(key), false);
					return;
				}
				assert.equal(r.status, 200, show(r));
				assert.deepEqual(bodyWithRunId(r), { ok: true, response: "echo:hi", sessionKey: key });
				assertOnDisk(allow, key);
				assert.equal(allow.rt.getSession(key)?.sessionKey, key);
				const s = await get(allow, `/sessions/${encodeURIComponent(key)}`);
				assert.equal(s.status, 200, show(s));
				// The same session by its path.
				const m = await post(allow, `/sessions/${encodeURIComponent(key)}/messages`, msg("by path"));
				assert.equal(m.status, 200, show(m));
				assert.equal(m.json.sessionKey, key);
			});
		}
	}

	test("allowRequestSessionKey: empty, non-string, the primary and keys outside the prefix are 400", async () => {
		const before = allow.prompts();
		for (const sessionKey of ["", "main", "other", "Webhook:x", " webhook:x", "webhooks", 5, true, {}, ["webhook:x"]]) {
			const r = await hook(allow, { text: "hi", sessionKey });
			assert.equal(r.status, 400, `sessionKey ${JSON.stringify(sessionKey)}: ${show(r)}`);
			assert.match(r.json.error, /^Invalid sessionKey\b/, `sessionKey ${JSON.stringify(sessionKey)}`);
		}
		assert.equal(allow.prompts(), before, "nothing ran");
		assert.equal(allow.primary.calls.length, 0, "the primary was never reached");
		assert.equal(allow.rt.getSession(""), undefined);
		assert.equal(allow.rt.getSession("other"), undefined);
	});

	test("allowRequestSessionKey with a primary key under the prefix still cannot reach the primary", async () => {
		const g = await startSafe(cleanup, {
			primaryKey: "webhook:main",
			primary: primary(),
			createSession: diskFactory(),
			config: { webhook: { enabled: true, secret: SECRET, allowRequestSessionKey: true } },
		});
		const r = await hook(g, { text: "hi", sessionKey: "webhook:main" });
		assert.equal(r.status, 400, show(r));
		assert.match(r.json.error, /^Invalid sessionKey\b/);
		assert.equal(g.primary.calls.length, 0);
	});

	test("without allowRequestSessionKey any body sessionKey is 400; null counts as absent", async () => {
		const before = deny.prompts();
		for (const sessionKey of ["webhook:x", "main", "", keyOf(300, { prefix: "webhook:" }), 5]) {
			const r = await hook(deny, { text: "hi", sessionKey });
			assert.equal(r.status, 400, `sessionKey ${JSON.stringify(sessionKey).slice(0, 40)}: ${show(r)}`);
			assert.deepEqual(r.json, { error: "Invalid sessionKey: webhook bodies may not name a session (set webhook.allowRequestSessionKey)" });
		}
		assert.equal(deny.prompts(), before, "nothing ran");
		const r = await hook(deny, { text: "hi", sessionKey: null });
		assert.equal(r.status, 200, show(r));
		assert.equal(r.json.sessionKey, "webhook:default:default");
	});

	test("the derived key webhook:<route>:<sender>: 1024 bytes work, 1025 are 400; long routes and senders are 400", async () => {
		// "webhook:default:" is 16 bytes.
		const sender1024 = keyOf(1024 - 16, { unit: "€" });
		const ok = await hook(deny, { text: "hi", sender: sender1024 });
		assert.equal(ok.status, 200, show(ok));
		assert.equal(ok.json.sessionKey, `webhook:default:${sender1024}`);
		assert.equal(Buffer.byteLength(ok.json.sessionKey), 1024);
		assertOnDisk(deny, ok.json.sessionKey);

		const sender1025 = keyOf(1025 - 16, { unit: "€" });
		const tooLong = await hook(deny, { text: "hi", sender: sender1025 });
		assert.equal(tooLong.status, 400, show(tooLong));
		assert.match(tooLong.json.error, /^Invalid sender\b/);

		const huge = await hook(deny, { text: "hi", sender: "s".repeat(100_000) });
		assert.equal(huge.status, 400, show(huge).slice(0, 200));
		assert.match(huge.json.error, /^Invalid sender\b/);
		assert.ok(huge.text.length < 2000, `the error echoes ${huge.text.length} bytes`);

		// Route: "webhook:" + route + ":default" is route + 16 bytes.
		const route1008 = "r".repeat(1008);
		const byRoute = await hook(deny, { text: "hi" }, `/${route1008}`);
		assert.equal(byRoute.status, 200, show(byRoute));
		assert.equal(byRoute.json.sessionKey, `webhook:${route1008}:default`);
		assertOnDisk(deny, byRoute.json.sessionKey);

		const routeOver = await hook(deny, { text: "hi" }, `/${"r".repeat(1009)}`);
		assert.equal(routeOver.status, 400, show(routeOver));
		assert.match(routeOver.json.error, /^Invalid (sender|webhook route)\b/);

		const routeHuge = await hook(deny, { text: "hi" }, `/${"r".repeat(1025)}`);
		assert.equal(routeHuge.status, 400, show(routeHuge));
		assert.match(routeHuge.json.error, /^Invalid webhook route\b/);

		// A route and a sender that fit alone but not together.
		const both = await hook(deny, { text: "hi", sender: "s".repeat(600) }, `/${"r".repeat(600)}`);
		assert.equal(both.status, 400, show(both));
		assert.match(both.json.error, /^Invalid sender\b/);
		assert.equal(deny.rt.listSessions().filter((s) => Buffer.byteLength(s.sessionKey) > 1024).length, 0);
	});

	test("a custom sessionKeyPrefix names derived keys and bounds body keys", async () => {
		const g = await startSafe(cleanup, {
			primary: primary(),
			createSession: diskFactory(),
			config: { webhook: { enabled: true, secret: SECRET, allowRequestSessionKey: true, sessionKeyPrefix: "hook/" } },
		});
		const derived = await hook(g, { text: "hi", sender: "ann" }, "/gh");
		assert.equal(derived.status, 200, show(derived));
		assert.equal(derived.json.sessionKey, "hook/gh:ann");
		const named = await hook(g, { text: "hi", sessionKey: "hook/mine" });
		assert.equal(named.status, 200, show(named));
		assert.equal(named.json.sessionKey, "hook/mine");
		const outside = await hook(g, { text: "hi", sessionKey: "webhook:mine" });
		assert.equal(outside.status, 400, show(outside));
		assert.match(outside.json.error, /^Invalid sessionKey\b/);
	});
});

test("no response body carried the temp dir", () => {
	assert.ok(bodies.length > 50, `${bodies.length} bodies`);
	const leaking = bodies.filter((b) => b.includes(root) || b.includes(tmpdir() + "/pi-gw-keys"));
	assert.deepEqual(
		leaking.map((b) => b.slice(0, 200)),
		[],
	);
});
