// Foundation: configuration errors, binding, and what keeps the Node process alive.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { createRequire } from "node:module";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { GatewayRuntime } from "../index.js";
import { createScriptedSession, createScriptedFactory } from "./support/sessions.mjs";

const indexUrl = new URL("../index.js", import.meta.url).href;
const scriptedUrl = new URL("./support/sessions.mjs", import.meta.url).href;

function config(overrides = {}) {
	return {
		bind: "127.0.0.1",
		port: 0,
		session: { idleMinutes: 30, maxQueuePerSession: 8 },
		webhook: { enabled: false, basePath: "/webhook" },
		...overrides,
	};
}

function runtime(cfg = config()) {
	return new GatewayRuntime({
		config: cfg,
		primarySessionKey: "main",
		primarySession: createScriptedSession("main", { kind: "instant" }),
		createSession: createScriptedFactory({ kind: "instant" }),
	});
}

/** Runs an ES module snippet in a child process; resolves with its exit and output. */
function child(body, { deadlineMs = 15000 } = {}) {
	const source = `import { GatewayRuntime } from ${JSON.stringify(indexUrl)};
import { createScriptedSession, createScriptedFactory } from ${JSON.stringify(scriptedUrl)};
const rt = new GatewayRuntime({
  config: { bind: "127.0.0.1", port: 0, session: { idleMinutes: 30, maxQueuePerSession: 8 }, webhook: { enabled: false, basePath: "/webhook" } },
  primarySessionKey: "main",
  primarySession: createScriptedSession("main", { kind: "instant" }),
  createSession: createScriptedFactory({ kind: "instant" }),
});
${body}`;
	return new Promise((resolve) => {
		const proc = spawn(process.execPath, ["--input-type=module", "-e", source], { stdio: ["ignore", "pipe", "pipe"] });
		let stdout = "";
		let stderr = "";
		proc.stdout.on("data", (d) => (stdout += d));
		proc.stderr.on("data", (d) => (stderr += d));
		const started = Date.now();
		const timer = setTimeout(() => proc.kill("SIGKILL"), deadlineMs);
		proc.on("exit", (code, signal) => {
			clearTimeout(timer);
			resolve({ code, signal, stdout, stderr, ms: Date.now() - started, timedOut: signal === "SIGKILL" });
		});
	});
}

test("a bad config throws an error that names the field", () => {
	const cases = [
		[{ port: 70000 }, /config\.port/],
		[{ port: -1 }, /config\.port/],
		[{ port: 1.5 }, /config\.port/],
		[{ bind: "not-an-address" }, /config\.bind/],
		[{ session: { idleMinutes: -1, maxQueuePerSession: 8 } }, /config\.session\.idleMinutes/],
		[{ webhook: { enabled: true, basePath: "hooks" } }, /config\.webhook\.basePath/],
		[{ session: { idleMinutes: 1, maxQueuePerSession: 0 } }, /maxQueuePerSession/],
		[{ limits: { maxBodyBytes: "lots" } }, /config\.limits\.maxBodyBytes/],
	];
	for (const [patch, message] of cases) {
		assert.throws(() => runtime(config(patch)), message, JSON.stringify(patch));
	}
	assert.throws(() => new GatewayRuntime({}), TypeError);
	assert.throws(
		() => new GatewayRuntime({ config: config(), primarySessionKey: "main", primarySession: {}, createSession: () => {} }),
		/primarySession has no prompt\(\) method/,
	);
});

test("port 0 binds a free port that getAddress reports, and /health and /ready answer", async () => {
	const rt = runtime(config({ bearerToken: "tok" }));
	await rt.start();
	try {
		const { bind, port } = rt.getAddress();
		assert.equal(bind, "127.0.0.1");
		assert.ok(port > 0 && port < 65536);
		assert.equal(rt.isReady(), true);
		const health = await fetch(`http://127.0.0.1:${port}/health`);
		assert.equal(health.status, 200);
		assert.equal(health.headers.get("content-type"), "application/json; charset=utf-8");
		assert.deepEqual(await health.json(), { ok: true, ready: true });
		const head = await fetch(`http://127.0.0.1:${port}/health`, { method: "HEAD" });
		assert.equal(head.status, 200);
		assert.equal(await head.text(), "");
		const noAuth = await fetch(`http://127.0.0.1:${port}/ready`);
		assert.equal(noAuth.status, 401);
		assert.deepEqual(await noAuth.json(), { error: "Unauthorized" });
		const ready = await fetch(`http://127.0.0.1:${port}/ready`, { headers: { authorization: "Bearer tok" } });
		assert.equal(ready.status, 200);
		assert.deepEqual(await ready.json(), { ok: true, ready: true, sessions: 1 });
	} finally {
		await rt.stop();
	}
	assert.equal(rt.isReady(), false);
});

test("start on a busy port rejects with an error naming the address", async () => {
	const blocker = createServer();
	await new Promise((r) => blocker.listen(0, "127.0.0.1", r));
	const port = blocker.address().port;
	try {
		const rt = runtime(config({ port }));
		await assert.rejects(rt.start(), new RegExp(`127\\.0\\.0\\.1:${port}`));
		assert.equal(rt.isReady(), false);
		await rt.stop();
	} finally {
		blocker.close();
	}
});

test("start and stop twice in one process both work", async () => {
	const rt = runtime();
	for (let round = 0; round < 2; round++) {
		await rt.start();
		const { port } = rt.getAddress();
		const res = await fetch(`http://127.0.0.1:${port}/health`);
		assert.deepEqual(await res.json(), { ok: true, ready: true });
		await rt.stop();
		await assert.rejects(fetch(`http://127.0.0.1:${port}/health`));
	}
});

test("a started gateway keeps Node alive, and after stop() the process exits on its own", async () => {
	const r = await child(`
await rt.start();
const { port } = rt.getAddress();
// Nothing else is pending: only the gateway keeps the process alive now.
setTimeout(async () => {
  const res = await fetch("http://127.0.0.1:" + port + "/health");
  console.log("alive", res.status);
  await rt.stop();
  console.log("stopped");
}, 1000).unref();
`);
	assert.equal(r.timedOut, false, `hung: ${r.stdout} ${r.stderr}`);
	assert.equal(r.code, 0, r.stderr);
	assert.match(r.stdout, /alive 200/);
	assert.match(r.stdout, /stopped/);
});

test("process.exit() with the gateway running exits cleanly", async () => {
	const r = await child(`
await rt.start();
const { port } = rt.getAddress();
// (A string body without a content type goes out as text/plain, which the gateway refuses with 415.)
const sent = await fetch("http://127.0.0.1:" + port + "/sessions/a/messages", {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ text: "hi" }),
});
console.log("message", sent.status);
const es = fetch("http://127.0.0.1:" + port + "/sessions/a/events");
await es;
console.log("exiting");
process.exit(0);
`);
	assert.equal(r.timedOut, false, `hung: ${r.stdout} ${r.stderr}`);
	assert.equal(r.signal, null, `died by signal ${r.signal}: ${r.stderr}`);
	assert.equal(r.code, 0, r.stderr);
	assert.match(r.stdout, /message 200/);
	assert.match(r.stdout, /exiting/);
	assert.doesNotMatch(r.stderr, /panic|FATAL|Segmentation/i);
});

test("a never-started gateway does not keep Node alive", async () => {
	const r = await child(`console.log("constructed", typeof rt.start);`, { deadlineMs: 10000 });
	assert.equal(r.timedOut, false);
	assert.equal(r.code, 0, r.stderr);
});

test("a panic inside a native export becomes a JS error and the process lives", () => {
	const require = createRequire(import.meta.url);
	const native = require(fileURLToPath(new URL("../native.cjs", import.meta.url)));
	assert.throws(() => native.testPanic("deliberate"), /deliberate/);
	assert.equal(1 + 1, 2);
});
