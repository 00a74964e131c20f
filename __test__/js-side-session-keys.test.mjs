// Session keys on disk (issue 11): sanitizeSessionKey keeps the seed's names up to 120 characters
// and maps longer ones to a bounded, unique name; getGatewaySessionDir, createGatewaySessionManager
// and the faux agent's createSession all go through it. Keys of 255, 256, 1024 and 1025 bytes
// (ASCII, 2-byte and 4-byte UTF-8) are checked on a real GatewayRuntime and with real pi
// SessionManagers and AgentSessions writing under a temporary root.
// Run: node --test __test__/js-side-session-keys.test.mjs

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { SessionManager } from "@mariozechner/pi-coding-agent";
import { createGatewaySessionManager, GatewayRuntime, sanitizeSessionKey } from "../index.js";
import { createFauxPiAgent } from "../lib/faux-agent.js";
import { SOON_MS, within } from "./support/wait.mjs";
import { withRunId } from "./support/runs.mjs";
import { EMPTY_USAGE } from "./support/sessions.mjs";

/** The most bytes a file name may have on Linux file systems (ext4, xfs, tmpfs: NAME_MAX). */
const NAME_MAX = 255;
const bytes = (text) => Buffer.byteLength(text, "utf8");

/** The seed's sanitizing, for comparison (gateway-runtime.ts, plus the dot-only rule). */
function seedName(key) {
	const safe = key.replace(/[^a-zA-Z0-9._-]/g, "_");
	return /^\.+$/.test(safe) ? safe.replace(/\./g, "_") : safe;
}

/** A key of exactly `n` UTF-8 bytes made of `unit` (1, 2 or 4 bytes), padded with ASCII. */
function keyOfBytes(n, unit, pad = "a") {
	const size = bytes(unit);
	const key = unit.repeat(Math.floor(n / size)) + pad.repeat(n % size);
	assert.equal(bytes(key), n);
	return key;
}

/** Every long key of the test: 255, 256, 1024 and 1025 bytes in several alphabets. */
function longKeys() {
	const keys = [];
	for (const n of [255, 256, 1024, 1025]) {
		keys.push(keyOfBytes(n, "k")); // plain ASCII: sanitized as is
		keys.push(keyOfBytes(n, "/")); // ASCII that sanitizes to "_"
		keys.push(keyOfBytes(n, "é")); // 2-byte UTF-8, one UTF-16 unit: "_" each
		keys.push(keyOfBytes(n, "ü")); // the same sanitized name as "é": only the hash tells them apart
		keys.push(keyOfBytes(n, "😀")); // 4-byte UTF-8, two UTF-16 units
		keys.push(`webhook:${keyOfBytes(n - 8, "x")}`); // a webhook-style key
	}
	// Keys that differ only after the first 100 (or 120) characters.
	keys.push(`${"p".repeat(200)}A`, `${"p".repeat(200)}B`, `${"q".repeat(121)}`, `${"q".repeat(120)}_`);
	return keys;
}

describe("sanitizeSessionKey", () => {
	it("is exactly the seed's name when that is at most 120 characters", () => {
		const keys = [
			"main",
			"demo",
			"webhook:ci:bot",
			"a/b",
			"a b\tc",
			"../etc/passwd",
			".",
			"..",
			"...",
			"é",
			"😀",
			"UPPER.lower-1_2",
			"x".repeat(119),
			"x".repeat(120),
			"/".repeat(120),
			"é".repeat(60), // 120 bytes, 60 characters
			"é".repeat(120), // 240 bytes, but 120 characters: still the seed's name
		];
		for (const key of keys) {
			assert.equal(sanitizeSessionKey(key), seedName(key), JSON.stringify(key));
			assert.ok(sanitizeSessionKey(key).length <= 120);
		}
		assert.equal(sanitizeSessionKey("."), "_");
		assert.equal(sanitizeSessionKey(".."), "__");
	});

	it("turns longer names into <first 100 characters>-<first 32 hex digits of sha256(key)>", () => {
		for (const key of ["x".repeat(121), "é".repeat(121), keyOfBytes(1024, "😀"), ".".repeat(300)]) {
			const name = sanitizeSessionKey(key);
			const digest = createHash("sha256").update(key, "utf8").digest("hex").slice(0, 32);
			assert.equal(name, `${seedName(key).slice(0, 100)}-${digest}`, JSON.stringify(key.slice(0, 20)));
			assert.equal(name.length, 133);
			assert.match(name, /^[A-Za-z0-9._-]+$/);
		}
	});
});

describe("getGatewaySessionDir and pi session files for long keys", () => {
	/** @type {Awaited<ReturnType<typeof createFauxPiAgent>>} */
	let agent;
	let root;

	before(async () => {
		root = await mkdtemp(join(tmpdir(), "pi-gateway-keys-test-"));
		agent = await createFauxPiAgent({ agentDir: join(root, "agent") });
	});
	after(async () => {
		await agent?.close();
		if (root) await rm(root, { recursive: true, force: true });
	});

	function runtime() {
		return new GatewayRuntime({
			config: {
				bind: "127.0.0.1",
				port: 0,
				session: { idleMinutes: 60, maxQueuePerSession: 4 },
				webhook: { enabled: false, basePath: "/webhook" },
			},
			primarySessionKey: "main",
			primarySession: agent.primarySession,
			createSession: (key) => agent.createSession(key),
		});
	}

	it("gives names of at most 255 bytes, distinct for distinct keys, the same for the same key", () => {
		const rt = runtime();
		const again = runtime();
		const sessionRoot = join(agent.agentDir, "sessions", "gateway-sessions");
		const seen = new Map();
		for (const key of longKeys()) {
			const dir = rt.getGatewaySessionDir(key);
			const name = basename(dir);
			assert.equal(dirname(dir), sessionRoot, "every key stays inside the gateway's session root");
			assert.ok(bytes(name) <= NAME_MAX, `${bytes(key)}-byte key: a ${bytes(name)}-byte name`);
			assert.ok(name.length <= 133);
			assert.equal(rt.getGatewaySessionDir(key), dir, "stable for the same key");
			assert.equal(again.getGatewaySessionDir(key), dir, "stable across runtimes");
			assert.equal(name, sanitizeSessionKey(key));
			const other = seen.get(name);
			assert.ok(other === undefined || other === key, `two keys share the name ${name}`);
			seen.set(name, key);
		}
		assert.equal(seen.size, new Set(longKeys()).size, "one name per distinct key");
	});

	it("a real SessionManager.create under a temporary root works for a 1024-byte key (no ENAMETOOLONG)", () => {
		const rt = runtime();
		for (const unit of ["k", "é", "😀"]) {
			const key = keyOfBytes(1024, unit);
			const dir = rt.getGatewaySessionDir(key);
			const manager = SessionManager.create(agent.cwd, dir);
			assert.equal(manager.getSessionDir(), dir);
			assert.ok(statSync(dir).isDirectory(), "pi created the session dir");
			// Write the session file: a user and an assistant message make pi flush it to disk.
			manager.appendMessage({ role: "user", content: [{ type: "text", text: "hi" }], timestamp: Date.now() });
			manager.appendMessage({
				role: "assistant",
				content: [{ type: "text", text: "hello" }],
				api: "faux",
				provider: "faux",
				model: "faux-1",
				usage: EMPTY_USAGE,
				stopReason: "stop",
				timestamp: Date.now(),
			});
			const file = manager.getSessionFile();
			assert.ok(file && existsSync(file), "the session file was written");
			assert.equal(dirname(file), dir);
			assert.match(readFileSync(file, "utf8"), /"hello"/);

			// createGatewaySessionManager (the exported helper) names the same directory.
			const viaHelper = createGatewaySessionManager(agent.cwd, key, join(agent.agentDir, "sessions", "gateway-sessions"));
			assert.equal(viaHelper.getSessionDir(), dir);
		}
	});

	it("a 1024-byte key reaches a real AgentSession through the runtime, stored in getGatewaySessionDir(key)", async (t) => {
		const rt = runtime();
		await rt.start();
		t.after(() => within(rt.stop(), SOON_MS, "rt.stop()"));
		// Keys no other test of this file used, so each directory starts empty.
		for (const key of [keyOfBytes(1024, "ö"), keyOfBytes(1024, "m"), keyOfBytes(255, "🙂", "z"), keyOfBytes(256, "ß")]) {
			const result = await within(rt.enqueueMessage({ sessionKey: key, text: "/echo long key" }), SOON_MS, "the message");
			assert.deepEqual(withRunId(result), { ok: true, response: "You said: long key", sessionKey: key });
			const dir = rt.getGatewaySessionDir(key);
			const files = readdirSync(dir).filter((name) => name.endsWith(".jsonl"));
			assert.equal(files.length, 1, `one session file in ${basename(dir)}`);
			assert.match(readFileSync(join(dir, files[0]), "utf8"), /You said: long key/);
			assert.equal(rt.getSession(key)?.messageCount, 2);
		}
	});
});
