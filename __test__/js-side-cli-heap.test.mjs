// The CLI frees what the gateway evicts (issue 11): 5,000 sessions created, each answering one
// message, and evicted leave the heap where it started.
//
// Each case runs the real CLI entry point, `main()` of lib/cli.js, in a child process started
// with --expose-gc (so the heap is measured after full collections) and with HOME and TMPDIR in a
// fresh temporary folder. `main()` builds its agent exactly as `pi-gateway` does; the only change
// is `session.sweepIntervalMs: 25` (through main's `configure` hook, the CLI has no flag for it),
// with `--idle-minutes 0`, so an idle session is evicted within ~25 ms. The sessions are driven
// through the runtime main() publishes (getActiveGatewayRuntime(), the gateway's own
// enqueueMessage: the same Rust path as HTTP, without an HTTP client's own heap in the picture).
//
// Tolerance: after a warm-up of 300 sessions, the heap (after gc) must come back to less than
// HEAP_TOLERANCE_BYTES = 6 MB above where it was before the 5,000 (under 1.3 KB per session;
// keeping the AgentSessions, as the CLI did, costs over 10 KB each, more than 50 MB in all).
// Each case is bounded: 60 s for the child.
// Run: node --test __test__/js-side-cli-heap.test.mjs

import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { describe, it } from "node:test";
import { childEnv, sandbox as sandboxFor, spawnNode, startFakeOpenAi, writeLocalModels } from "./support/cli-child.mjs";

const SESSIONS = 5000;
const WARM_UP = 300;
const HEAP_TOLERANCE_BYTES = 6 * 1024 * 1024;
const CHILD_DEADLINE_MS = 60_000;

const CLI_URL = new URL("../lib/cli.js", import.meta.url).href;
const INDEX_URL = new URL("../index.js", import.meta.url).href;

/**
 * The child: runs main() with the given argv, drives WARM_UP then SESSIONS sessions (16 at a
 * time, one message each), waits until only the primary session is left, and prints one JSON
 * line with the heap before and after. Ends main() with SIGINT, as a user would.
 */
const CHILD = `
import { setTimeout as sleep } from "node:timers/promises";
import { Writable } from "node:stream";
const { main } = await import(${JSON.stringify(CLI_URL)});
const { getActiveGatewayRuntime } = await import(${JSON.stringify(INDEX_URL)});
const argv = JSON.parse(process.env.HEAP_ARGV);
const text = process.env.HEAP_TEXT;
const expected = process.env.HEAP_EXPECT;
const sessions = Number(process.env.HEAP_SESSIONS);
const warmUp = Number(process.env.HEAP_WARM_UP);
const tolerance = Number(process.env.HEAP_TOLERANCE);
let log = "";
const sink = new Writable({ write(chunk, _encoding, callback) { log += chunk; callback(); } });
const exit = main(argv, {
	env: process.env,
	stdout: sink,
	stderr: sink,
	configure: (config) => { config.session.sweepIntervalMs = 25; },
});
const started = Date.now();
while (!getActiveGatewayRuntime()) {
	if (Date.now() - started > 20000) throw new Error("main() did not start a gateway: " + log);
	await sleep(10);
}
const rt = getActiveGatewayRuntime();
async function heapUsed() {
	for (let i = 0; i < 4; i++) {
		globalThis.gc();
		await sleep(10);
	}
	return process.memoryUsage().heapUsed;
}
async function run(prefix, n) {
	let next = 0;
	const worker = async () => {
		while (next < n) {
			const key = prefix + "-" + next++;
			const result = await rt.enqueueMessage({ sessionKey: key, text });
			if (!result.ok || result.response !== expected) throw new Error(key + ": " + JSON.stringify(result));
		}
	};
	await Promise.all(Array.from({ length: 16 }, worker));
	while (rt.listSessions().length > 1) await sleep(25);
}
await run("warm", warmUp);
const before = await heapUsed();
const t0 = Date.now();
await run("s", sessions);
const runMs = Date.now() - t0;
const listed = rt.listSessions().map((s) => s.sessionKey);
// Eviction leaves the registry at once; the JS side releases and disposes right after. Wait
// (bounded) for the heap to come back.
let after = await heapUsed();
const settleStarted = Date.now();
while (after - before >= tolerance && Date.now() - settleStarted < 15000) {
	await sleep(250);
	after = await heapUsed();
}
const evictions = (log.match(/evicted idle session s-/g) ?? []).length;
process.stdout.write(JSON.stringify({ before, after, runMs, listed, evictions }) + "\\n");
process.kill(process.pid, "SIGINT");
const code = await exit;
process.stdout.write(JSON.stringify({ code }) + "\\n");
`;

const sandbox = (t) => sandboxFor(t, "pi-gateway-heap-test-");

/** Runs the child; resolves with its two JSON lines and its exit. */
function runChild(t, env) {
	const { child, out } = spawnNode(["--expose-gc", "--input-type=module", "-e", CHILD], env, t);
	return new Promise((resolve, reject) => {
		const timer = setTimeout(() => {
			child.kill("SIGKILL");
			reject(new Error(`the child did not finish within ${CHILD_DEADLINE_MS} ms; stdout:\n${out.stdout}\nstderr:\n${out.stderr}`));
		}, CHILD_DEADLINE_MS);
		child.on("exit", (code, signal) => {
			clearTimeout(timer);
			const lines = out.stdout.trim().split("\n").filter(Boolean);
			let report;
			let end;
			try {
				report = JSON.parse(lines[0]);
				end = JSON.parse(lines[1]);
			} catch {
				reject(new Error(`child exited ${code ?? signal} without its report; stdout:\n${out.stdout}\nstderr:\n${out.stderr}`));
				return;
			}
			resolve({ report, end, code, signal, stderr: out.stderr });
		});
	});
}

function checkReport(t, { report, end, code, signal, stderr }) {
	const mb = (n) => (n / 1024 / 1024).toFixed(2);
	t.diagnostic(
		`${SESSIONS} sessions in ${report.runMs} ms; heap before ${mb(report.before)} MB, after ${mb(report.after)} MB ` +
			`(growth ${mb(report.after - report.before)} MB, tolerance ${mb(HEAP_TOLERANCE_BYTES)} MB)`,
	);
	assert.deepEqual({ code, signal, end }, { code: 0, signal: null, end: { code: 0 } }, stderr);
	assert.deepEqual(report.listed, ["main"], "every session but the primary was evicted");
	assert.equal(report.evictions, SESSIONS, "the log names each of the 5,000 evictions");
	assert.ok(
		report.after - report.before < HEAP_TOLERANCE_BYTES,
		`the heap grew by ${mb(report.after - report.before)} MB for ${SESSIONS} evicted sessions (tolerance ${mb(HEAP_TOLERANCE_BYTES)} MB)`,
	);
}

/** The child's environment: main()'s argv, the message text and the answer it expects. */
function heapEnv(box, argv, text, expect, extra = {}) {
	return childEnv(box, {
		...extra,
		HEAP_ARGV: JSON.stringify(argv),
		HEAP_TEXT: text,
		HEAP_EXPECT: expect,
		HEAP_SESSIONS: String(SESSIONS),
		HEAP_WARM_UP: String(WARM_UP),
		HEAP_TOLERANCE: String(HEAP_TOLERANCE_BYTES),
	});
}

describe("the CLI frees the sessions the gateway evicts", () => {
	it("faux model (the default): 5,000 sessions created and evicted leave the heap within 6 MB of where it started", async (t) => {
		const box = await sandbox(t);
		const result = await runChild(t, heapEnv(box, ["--port", "0", "--idle-minutes", "0"], "/echo hi", "You said: hi"));
		checkReport(t, result);
		assert.deepEqual((await readdir(box.tmp)).filter((n) => n.startsWith("pi-gateway")), [], "temporary dirs removed");
	});

	it("--model (a real provider on a local OpenAI-compatible server): 5,000 sessions leave the heap within 6 MB", async (t) => {
		const box = await sandbox(t);
		// An OpenAI-compatible chat-completions endpoint on 127.0.0.1 that streams a fixed answer.
		const server = await startFakeOpenAi(t, ["fixed answer"]);
		const { agentDir, workspace } = await writeLocalModels(box.root, server);
		const argv = ["--port", "0", "--idle-minutes", "0", "--model", "local/fake-1", "--agent-dir", agentDir, "--cwd", workspace];
		const result = await runChild(t, heapEnv(box, argv, "hi", "fixed answer", { LOCAL_FAKE_API_KEY: "key-from-env" }));
		checkReport(t, result);
	});
});
