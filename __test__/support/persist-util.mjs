// Shared by the persistence tests (persistence.test.mjs): the real `pi-gateway` command in a
// child process (support/cli-child.mjs: HOME and TMPDIR in a sandbox, no inherited variables),
// started again and again on one data dir; its `main()` in a child with a short idle sweep (the
// CLI has no flag for the sweep interval, and at the default 60 s an eviction takes a minute);
// and the requests the tests make.

import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { childEnv, listening, spawnNode, START_DEADLINE_MS, startCliGateway, stopWith } from "./cli-child.mjs";
import { request } from "./http.mjs";
import { bodyWithRunId } from "./runs.mjs";
import { within } from "./wait.mjs";

export { childEnv, startCliGateway };

const CLI_URL = new URL("../../lib/cli.js", import.meta.url).href;

/**
 * A child that runs the CLI's `main(argv)` as bin/pi-gateway.js does (its banner on stdout, its
 * log on stderr, SIGTERM/SIGINT stop it and set the exit code), with `session.sweepIntervalMs`
 * set to `sweepIntervalMs` through main's `configure` hook.
 */
const MAIN_CHILD = `
const { main } = await import(${JSON.stringify(CLI_URL)});
const argv = JSON.parse(process.env.PERSIST_ARGV);
const sweep = Number(process.env.PERSIST_SWEEP_MS);
process.exitCode = await main(argv, { configure: (config) => { config.session.sweepIntervalMs = sweep; } });
`;

/**
 * Starts {@link MAIN_CHILD} with `argv` and waits (bounded) for its banner. Resolves like
 * startCliGateway: the child (`child`, `out`, `exited`) and `{ host, port, base }`.
 */
export async function startMainGateway(t, argv, env, { sweepIntervalMs = 25 } = {}) {
	const proc = spawnNode(
		["--input-type=module", "-e", MAIN_CHILD],
		{ ...env, PERSIST_ARGV: JSON.stringify(argv), PERSIST_SWEEP_MS: String(sweepIntervalMs) },
		t,
	);
	try {
		const { host, port } = await within(listening(proc), START_DEADLINE_MS, "main() to print its banner");
		return { ...proc, host, port, base: `http://127.0.0.1:${port}` };
	} catch (error) {
		throw new Error(`${error.message}\nstdout:\n${proc.out.stdout}\nstderr:\n${proc.out.stderr}`);
	}
}

/** SIGTERM, then asserts a clean exit (code 0) within the deadline. */
export async function stopCleanly(gw) {
	const exit = await stopWith(gw, "SIGTERM");
	assert.deepEqual(exit, { code: 0, signal: null }, `exit after SIGTERM; stderr:\n${gw.out.stderr}`);
}

/** The dir the banner's `sessions` line names, and whether it says it is temporary. */
export function bannerSessions(stdout) {
	const line = stdout.split("\n").find((l) => /^ {2}sessions {3}/.test(l));
	assert.ok(line, `the banner has a sessions line:\n${stdout}`);
	const rest = line.replace(/^ {2}sessions {3}/, "");
	const temporary = rest.endsWith(" (temporary, removed on exit)");
	return { dir: temporary ? rest.slice(0, -" (temporary, removed on exit)".length) : rest, temporary };
}

/**
 * POST /sessions/:key/messages {text}; asserts a 200 `{ok: true}` answer with a run id and
 * returns the response text.
 */
export async function say(gw, key, text) {
	const res = await request(gw.port, "POST", `/sessions/${encodeURIComponent(key)}/messages`, { body: { text }, timeoutMs: 20_000 });
	assert.equal(res.status, 200, `POST ${key} ${JSON.stringify(text)}: ${res.text}`);
	const body = bodyWithRunId(res, `the answer to ${JSON.stringify(text)}`);
	assert.equal(body.ok, true, res.text);
	assert.equal(body.sessionKey, key);
	return body.response;
}

/** The `/history` answer the faux model gives after the user said `texts` (in that order). */
export function historyAnswer(texts) {
	return texts.length === 0 ? "You said 0 things before." : `You said ${texts.length} things before: ${texts.map((t) => JSON.stringify(t)).join(", ")}`;
}

/** The session keys in `GET /sessions`. */
export async function listedKeys(gw) {
	const res = await request(gw.port, "GET", "/sessions");
	assert.equal(res.status, 200, res.text);
	const list = Array.isArray(res.json) ? res.json : res.json.sessions;
	return list.map((s) => s.sessionKey).sort();
}

/** The `*.jsonl` session files in a dir (none when it does not exist). */
export async function sessionFiles(dir) {
	try {
		return (await readdir(dir)).filter((name) => name.endsWith(".jsonl"));
	} catch (error) {
		if (/** @type {any} */ (error).code === "ENOENT") return [];
		throw error;
	}
}

/** Where the CLI keeps the session of `key` under the sessions dir `root` (a plain key: its own name). */
export function keyDir(root, key) {
	return join(root, "gateway-sessions", key);
}
