// Tests of the `pi-gateway` command (bin/pi-gateway.js, lib/cli.js): each spawns the real CLI in a
// child process with HOME and TMPDIR pointed at a fresh temporary folder (so nothing touches the
// real home or pi's ~/.pi), talks to it over 127.0.0.1 with the curl binary and fetch, and stops it
// with a signal.
// Run: node --test __test__/cli.test.mjs

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdir, readdir } from "node:fs/promises";
import { createServer as createNetServer } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
	childEnv,
	EXIT_DEADLINE_MS,
	READY_LINE,
	sandbox as sandboxFor,
	spawnCli,
	START_DEADLINE_MS,
	startCliGateway,
	startFakeOpenAi,
	stopWith,
	writeLocalModels,
} from "./support/cli-child.mjs";
import { openSse } from "./support/sse.mjs";
import { waitFor, within } from "./support/wait.mjs";
import { assertNoRunId, withRunId } from "./support/runs.mjs";
import { jsonLogLines, startWebhookReceiver, webhookSecret } from "./support/cli-ops.mjs";
import { Webhook } from "standardwebhooks";
import { gatewayConfig, OPTIONS, parseCli, UsageError, WEBHOOK_EVENTS } from "../lib/cli.js";

const CURL = "/usr/bin/curl";
/** The faux model's answer to the default prompt (lib/faux-agent.js: `hello.txt says: <HELLO_CONTENT>`). */
const FAUX_ANSWER = "hello.txt says: Hello from the pi-gateway workspace.";

/** A temporary folder with `home/` and `tmp/` for one child; removed by t.after. */
const sandbox = (t) => sandboxFor(t, "pi-gateway-cli-test-");

/** Runs the CLI to completion (for --help and bad usage). */
async function runCli(t, args, env) {
	const proc = spawnCli(t, args, env);
	const { code, signal } = await within(proc.exited, START_DEADLINE_MS, `pi-gateway ${args.join(" ")} to exit`);
	return { code, signal, ...proc.out };
}

/** Runs curl; resolves with the body and the HTTP status (written last by -w). */
function curl(args, options = {}) {
	return new Promise((resolve, reject) => {
		execFile(CURL, ["-s", "-w", "\n%{http_code}", ...args], { timeout: 30_000, ...options }, (error, stdout) => {
			if (error && error.killed) return reject(new Error(`curl ${args.join(" ")} timed out`));
			const cut = stdout.lastIndexOf("\n");
			resolve({ status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut), exitCode: error?.code ?? 0 });
		});
	});
}

/** POSTs `body` (JSON text) to `url` with curl; `args` adds curl arguments (e.g. `-H` headers). */
function curlPost(url, body, args = []) {
	return curl(["-X", "POST", url, ...args, "-H", "content-type: application/json", "-d", body]);
}

/** Runs one line of the banner through /bin/sh, as a user pasting it would. */
function sh(line, env = {}) {
	return new Promise((resolve, reject) => {
		execFile("/bin/sh", ["-c", line], { timeout: 30_000, env: { PATH: process.env.PATH, ...env } }, (error, stdout, stderr) => {
			if (error) return reject(new Error(`sh -c ${line} failed: ${error.message}\n${stderr}`));
			resolve(stdout);
		});
	});
}

/** The banner line holding `fragment` (trimmed). */
function bannerLine(stdout, fragment) {
	const line = stdout.split("\n").find((l) => l.includes(fragment));
	assert.ok(line, `the banner has a line with ${JSON.stringify(fragment)}:\n${stdout}`);
	return line.trim();
}

/** The session's event stream (sse.mjs's reader), closed by t.after; checked to be one. */
async function openEvents(t, gw, key) {
	const events = await openSse(gw.port, `/sessions/${key}/events`);
	t.after(() => events.close());
	assert.equal(events.status, 200);
	assert.match(events.headers["content-type"] ?? "", /^text\/event-stream/);
	return events;
}

/** The payload of the first data frame matching `predicate`. */
async function next(events, predicate, what) {
	return (await events.waitFor((f) => f.json !== undefined && predicate(f.json), 20_000, what)).json;
}

/** The fresh temporary dirs the gateway would leave behind in `dir`. */
async function leftovers(dir) {
	return (await readdir(dir)).filter((name) => name.startsWith("pi-gateway"));
}

describe("pi-gateway CLI", () => {
	it("serves the faux agent: the printed commands work, SSE streams the answer's tokens, and SIGINT exits 0", async (t) => {
		const box = await sandbox(t);
		// No --agent-dir: the default temporary agent dir must land in TMPDIR and be removed on exit;
		// --ephemeral: so must the sessions dir (without it, conversations are kept in HOME: see
		// persistence.test.mjs).
		const gw = await startCliGateway(t, ["--port", "0", "--ephemeral"], childEnv(box));
		assert.equal(gw.host, "127.0.0.1");
		assert.ok(gw.port > 0, "--port 0 prints the port actually bound");

		// The printed message command, pasted into a shell.
		const messageLine = bannerLine(gw.out.stdout, "/sessions/demo/messages");
		assert.match(messageLine, /^curl -s -X POST http:\/\/127\.0\.0\.1:\d+\/sessions\/demo\/messages /);
		const pasted = JSON.parse(await sh(messageLine));
		assert.deepEqual(withRunId(pasted), { ok: true, response: FAUX_ANSWER, sessionKey: "demo" });

		// SSE: the answer arrives as token events while a message is sent with curl.
		const events = await openEvents(t, gw, "demo");
		const hello = await next(events, (f) => f.type === "hello", "the hello frame");
		assert.equal(hello.sessionKey, "demo");
		assert.equal(events.events()[0].json.type, "hello", "hello comes first");
		const sent = curlPost(`${gw.base}/sessions/demo/messages`, JSON.stringify({ text: "What is in hello.txt now?" }));
		const complete = await next(
			events,
			(f) => f.type === "message_complete" && f.text === FAUX_ANSWER,
			"message_complete with the faux answer",
		);
		assert.equal(complete.sessionKey, "demo");
		const frames = events.events().map((f) => f.json);
		const tokens = frames.filter((f) => f.type === "token");
		assert.ok(tokens.length > 1, "the answer is streamed in several token events");
		assert.ok(
			tokens.map((f) => f.delta).join("").includes(FAUX_ANSWER),
			`token deltas concatenate to the answer: ${JSON.stringify(tokens.map((f) => f.delta).join(""))}`,
		);
		assert.ok(frames.some((f) => f.type === "tool_start" && f.toolName === "read"), "the real read tool ran");
		const result = await sent;
		assert.equal(result.status, 200);
		assert.deepEqual(withRunId(JSON.parse(result.body)), { ok: true, response: FAUX_ANSWER, sessionKey: "demo" });

		// The printed chat command streams a UI message stream that ends with [DONE].
		const chat = await sh(bannerLine(gw.out.stdout, "/sessions/demo/chat"));
		const chunks = chat
			.split("\n\n")
			.map((block) => block.trim())
			.filter((block) => block.startsWith("data: "))
			.map((block) => block.slice(6));
		assert.equal(chunks[chunks.length - 1], "[DONE]");
		const parsed = chunks.slice(0, -1).map((c) => JSON.parse(c));
		assert.equal(parsed[0].type, "start");
		assert.ok(parsed.some((c) => c.type === "text-delta"));
		// The finish chunk carries the run's usage and model (issue 14's messageMetadata).
		const finish = parsed[parsed.length - 1];
		const usage = finish.messageMetadata?.usage;
		assert.ok(usage && usage.input > 0 && usage.output > 0, `the faux model reports usage: ${JSON.stringify(finish)}`);
		assert.deepEqual(finish, {
			type: "finish",
			finishReason: "stop",
			messageMetadata: { usage, model: { provider: "faux", id: "faux-1" }, stopReason: "stop" },
		});

		// The printed events command names the same stream.
		assert.equal(bannerLine(gw.out.stdout, "/sessions/demo/events"), `curl -N ${gw.base}/sessions/demo/events`);

		const exit = await stopWith(gw, "SIGINT");
		assert.deepEqual(exit, { code: 0, signal: null }, `exit after SIGINT; stderr:\n${gw.out.stderr}`);
		assert.equal(await within(events.ended, 5000, "the SSE stream to end when the gateway stops"), "end", "the stream ends, not breaks");
		assert.doesNotMatch(gw.out.stderr, /still running|Error|panic/i, "a clean stop leaves nothing open");
		assert.deepEqual(await leftovers(box.tmp), [], "the temporary agent dir and workspace are removed");
		assert.deepEqual(await readdir(box.home), [], "nothing is written to HOME");
	});

	it("SIGTERM with an SSE client and a slow message pending exits 0 promptly and answers the message 'Gateway stopped'", async (t) => {
		const box = await sandbox(t);
		const agentDir = join(box.root, "agent");
		const gw = await startCliGateway(t, ["--port", "0", "--agent-dir", agentDir], childEnv(box));
		const events = await openEvents(t, gw, "demo");
		await next(events, (f) => f.type === "hello", "the hello frame");

		// /slow 600 streams for ~30 s at 20 tokens/s: far longer than the exit deadline.
		const pending = curlPost(`${gw.base}/sessions/demo/messages`, '{"text":"/slow 600"}');
		await next(events, (f) => f.type === "token", "the slow run to stream its first token");

		const started = Date.now();
		const exit = await stopWith(gw, "SIGTERM");
		assert.deepEqual(exit, { code: 0, signal: null }, `exit after SIGTERM; stderr:\n${gw.out.stderr}`);
		assert.ok(Date.now() - started < EXIT_DEADLINE_MS, "it did not wait for the run to finish");

		const result = await within(pending, EXIT_DEADLINE_MS, "the pending curl to get its answer");
		const body = JSON.parse(result.body);
		assert.equal(body.ok, false);
		assert.equal(body.error, "Gateway stopped");
		assert.equal(body.sessionKey, "demo");
		assert.equal(await within(events.ended, 5000, "the SSE stream to end cleanly"), "end", "the stream ends, not breaks");
		assert.doesNotMatch(gw.out.stderr, /still running/);
	});

	it("--help exits 0 and lists every flag with its environment variable and default", async (t) => {
		const box = await sandbox(t);
		const { code, stdout } = await runCli(t, ["--help"], childEnv(box));
		assert.equal(code, 0);
		const flags = {
			"--bind": "PI_GATEWAY_BIND",
			"--port": "PI_GATEWAY_PORT",
			"--token": "PI_GATEWAY_TOKEN",
			"--webhook": "PI_GATEWAY_WEBHOOK",
			"--webhook-path": "PI_GATEWAY_WEBHOOK_PATH",
			"--webhook-secret": "PI_GATEWAY_WEBHOOK_SECRET",
			"--idle-minutes": "PI_GATEWAY_IDLE_MINUTES",
			"--max-queue": "PI_GATEWAY_MAX_QUEUE",
			"--max-sessions": "PI_GATEWAY_MAX_SESSIONS",
			"--default-mode": "PI_GATEWAY_DEFAULT_MODE",
			"--cors": "PI_GATEWAY_CORS",
			"--model": "PI_GATEWAY_MODEL",
			"--agent-dir": "PI_GATEWAY_AGENT_DIR",
			"--data-dir": "PI_GATEWAY_DATA_DIR",
			"--ephemeral": "PI_GATEWAY_EPHEMERAL",
			"--cwd": "PI_GATEWAY_CWD",
			"--approve": "PI_GATEWAY_APPROVE",
			"--deny": "PI_GATEWAY_DENY",
			"--approval-timeout": "PI_GATEWAY_APPROVAL_TIMEOUT",
			"--log-format": "PI_GATEWAY_LOG_FORMAT",
			"--log-level": "PI_GATEWAY_LOG_LEVEL",
			"--metrics-public": "PI_GATEWAY_METRICS_PUBLIC",
			"--notify-url": "PI_GATEWAY_NOTIFY_URL",
			"--notify-secret": "PI_GATEWAY_NOTIFY_SECRET",
			"--notify-events": "PI_GATEWAY_NOTIFY_EVENTS",
			"--notify-retries": "PI_GATEWAY_NOTIFY_RETRIES",
			"--callback-hosts": "PI_GATEWAY_CALLBACK_HOSTS",
			"--callback-secret": "PI_GATEWAY_CALLBACK_SECRET",
		};
		for (const [flag, env] of Object.entries(flags)) {
			assert.match(stdout, new RegExp(`${flag}(\\s|$)`, "m"), `help mentions ${flag}`);
			assert.ok(stdout.includes(env), `help mentions ${env}`);
		}
		// Every option of the table, whatever this list names.
		for (const option of OPTIONS) {
			assert.match(stdout, new RegExp(`--${option.name}(\\s|$)`, "m"), `help mentions --${option.name}`);
			if (option.env) assert.ok(stdout.includes(`env: ${option.env}`), `help mentions ${option.env}`);
		}
		assert.ok(stdout.includes("$XDG_DATA_HOME/pi-gateway") && stdout.includes("~/.local/share/pi-gateway"), "help names the default sessions dir");
		for (const def of ["127.0.0.1", "3000", "/webhook", "30", "16", "1000", "queue", "text", "info"]) {
			assert.ok(stdout.includes(`(default: ${def})`), `help shows the default ${def}`);
		}
		// Secrets on the command line show up in ps: the help says to prefer the variable.
		for (const name of ["token", "webhook-secret", "notify-secret", "callback-secret"]) {
			const help = OPTIONS.find((o) => o.name === name)?.help ?? "";
			assert.match(help, /prefer the env var/, `--${name}'s help says the variable is the better way`);
		}
		assert.doesNotMatch(stdout, READY_LINE, "--help does not start a gateway");
	});

	it("a bad flag, a bad value or an unknown model exits 2 with a message that names it", async (t) => {
		const box = await sandbox(t);
		const cases = [
			{ args: ["--bogus"], env: {}, says: "--bogus" },
			{ args: ["--port", "70000"], env: {}, says: "--port" },
			{ args: ["--port", "0", "--bind", "not-an-ip"], env: {}, says: "--bind" },
			{ args: ["--port", "0"], env: { PI_GATEWAY_MAX_QUEUE: "0" }, says: "PI_GATEWAY_MAX_QUEUE" },
			{ args: ["--port", "0", "--cors", "ftp://x"], env: {}, says: "--cors" },
			{ args: ["--port", "0", "--default-mode", "Steer"], env: {}, says: "--default-mode" },
			{ args: ["--port", "0"], env: { PI_GATEWAY_DEFAULT_MODE: "later" }, says: "PI_GATEWAY_DEFAULT_MODE" },
			{ args: ["--port", "0", "--model", "nosuch-provider/some-model"], env: {}, says: 'Unknown model "nosuch-provider/some-model"' },
			{ args: ["--port", "0", "--max-sessions", "0"], env: {}, says: "--max-sessions" },
			{ args: ["--port", "0", "--max-sessions", "1.5"], env: {}, says: "--max-sessions" },
			{ args: ["--port", "0"], env: { PI_GATEWAY_MAX_SESSIONS: "1000001" }, says: "PI_GATEWAY_MAX_SESSIONS" },
			{ args: ["--port", "0", "--ephemeral", "--data-dir", "/tmp/x"], env: {}, says: "--ephemeral and --data-dir exclude each other" },
			{ args: ["--port", "0"], env: { PI_GATEWAY_EPHEMERAL: "1", PI_GATEWAY_DATA_DIR: "/tmp/x" }, says: "PI_GATEWAY_EPHEMERAL and PI_GATEWAY_DATA_DIR exclude each other" },
			{ args: ["--port", "0"], env: { PI_GATEWAY_EPHEMERAL: "maybe" }, says: "PI_GATEWAY_EPHEMERAL" },
			{ args: ["--port", "0", "--data-dir", " "], env: {}, says: "--data-dir" },
			{ args: ["--port", "0", "--approve", "bash", "--deny", "write,bash"], env: {}, says: '"bash" is in both --approve and --deny' },
			{ args: ["--port", "0"], env: { PI_GATEWAY_APPROVE: "*", PI_GATEWAY_DENY: "*" }, says: '"*" is in both PI_GATEWAY_APPROVE and PI_GATEWAY_DENY' },
			{ args: ["--port", "0", "--approve", " , "], env: {}, says: "--approve" },
			{ args: ["--port", "0", "--deny", "rm -rf"], env: {}, says: "--deny" },
			{ args: ["--port", "0", "--approve", "bash", "--approval-timeout", "0"], env: {}, says: "--approval-timeout" },
			{ args: ["--port", "0", "--approve", "bash"], env: { PI_GATEWAY_APPROVAL_TIMEOUT: "86401" }, says: "PI_GATEWAY_APPROVAL_TIMEOUT" },
			{ args: ["--port", "0", "--approve", "bash", "--approval-timeout", "soon"], env: {}, says: "--approval-timeout" },
			// Issue 16's flags.
			{ args: ["--port", "0", "--log-format", "xml"], env: {}, says: "--log-format" },
			{ args: ["--port", "0"], env: { PI_GATEWAY_LOG_FORMAT: "JSON" }, says: "PI_GATEWAY_LOG_FORMAT" },
			{ args: ["--port", "0", "--log-level", "verbose"], env: {}, says: "--log-level" },
			{ args: ["--port", "0"], env: { PI_GATEWAY_METRICS_PUBLIC: "maybe" }, says: "PI_GATEWAY_METRICS_PUBLIC" },
			{ args: ["--port", "0", "--notify-url", "ftp://hooks.example/x"], env: { PI_GATEWAY_NOTIFY_SECRET: webhookSecret() }, says: "--notify-url" },
			{ args: ["--port", "0", "--notify-url", "http://hooks.example/x"], env: {}, says: "--notify-url needs a signing secret" },
			{ args: ["--port", "0", "--notify-secret", webhookSecret()], env: {}, says: "--notify-secret" },
			{ args: ["--port", "0", "--notify-url", "http://hooks.example/x", "--notify-secret", "whsec_dG9vc2hvcnQ="], env: {}, says: "--notify-secret" },
			{ args: ["--port", "0", "--notify-url", "http://hooks.example/x"], env: { PI_GATEWAY_NOTIFY_SECRET: "not-a-whsec" }, says: "PI_GATEWAY_NOTIFY_SECRET" },
			{ args: ["--port", "0", "--notify-events", "run.succeeded,run.done"], env: {}, says: "--notify-events" },
			{ args: ["--port", "0", "--notify-retries", "5,soon"], env: {}, says: "--notify-retries" },
			{ args: ["--port", "0"], env: { PI_GATEWAY_NOTIFY_RETRIES: "86401" }, says: "PI_GATEWAY_NOTIFY_RETRIES" },
			{ args: ["--port", "0", "--callback-hosts", "https://hooks.example", "--callback-secret", webhookSecret()], env: {}, says: "--callback-hosts" },
			{ args: ["--port", "0", "--callback-hosts", "hooks.example"], env: {}, says: "--callback-hosts allows callbacks, which are signed" },
			{ args: ["--port", "0", "--callback-hosts", "hooks.example", "--callback-secret", "whsec_!!"], env: {}, says: "--callback-secret" },
		];
		await Promise.all(
			cases.map(async ({ args, env, says }) => {
				const { code, stdout, stderr } = await runCli(t, args, childEnv(box, env));
				assert.equal(code, 2, `${args.join(" ")} exits 2; stderr:\n${stderr}`);
				assert.ok(stderr.includes(says), `${args.join(" ")}: stderr names ${says}:\n${stderr}`);
				assert.doesNotMatch(stdout, READY_LINE);
				for (const secret of [...args, ...Object.values(env)].filter((word) => word.startsWith("whsec_"))) {
					assert.ok(!stderr.includes(secret), `a usage error never shows a secret:\n${stderr}`);
				}
			}),
		);
	});

	it("--token requires a bearer token on the API: without it 401, with it 200, and the printed command carries it", async (t) => {
		const box = await sandbox(t);
		// The flag wins over PI_GATEWAY_TOKEN.
		const gw = await startCliGateway(
			t,
			["--port", "0", "--token", "secret", "--agent-dir", join(box.root, "agent")],
			childEnv(box, { PI_GATEWAY_TOKEN: "from-env" }),
		);
		const url = `${gw.base}/sessions`;
		const none = await curl([url]);
		assert.equal(none.status, 401);
		assert.deepEqual(JSON.parse(none.body), { error: "Unauthorized" });
		assert.equal((await curl([url, "-H", "authorization: Bearer from-env"])).status, 401, "the flag wins over the env");
		const message = await curlPost(`${gw.base}/sessions/demo/messages`, '{"text":"/echo hi"}');
		assert.equal(message.status, 401, "messages need the token too");
		assert.equal((await curl([url, "-H", "authorization: Bearer secret"])).status, 200);
		assert.equal((await curl([`${gw.base}/health`])).status, 200, "/health needs no token");
		// /metrics needs the token (without --metrics-public); /openapi.json never does.
		assert.equal((await curl([`${gw.base}/metrics`])).status, 401, "/metrics needs the token");
		assert.equal((await curl([`${gw.base}/metrics`, "-H", "authorization: Bearer secret"])).status, 200);
		assert.equal((await curl([`${gw.base}/openapi.json`])).status, 200, "/openapi.json needs no token");
		assert.equal(
			bannerLine(gw.out.stdout, "/metrics"),
			`metrics    GET ${gw.base}/metrics (Prometheus; bearer token required (--metrics-public: without))`,
		);

		const line = bannerLine(gw.out.stdout, "/sessions/demo/messages");
		assert.ok(line.includes("authorization: Bearer secret"), line);
		assert.deepEqual(withRunId(JSON.parse(await sh(line))), { ok: true, response: FAUX_ANSWER, sessionKey: "demo" });

		assert.deepEqual(await stopWith(gw, "SIGINT"), { code: 0, signal: null });
	});

	it("--default-mode reject: a message without mode to a busy session is refused with 409; one with mode queue waits its turn", async (t) => {
		const box = await sandbox(t);
		const gw = await startCliGateway(t, ["--port", "0", "--default-mode", "reject", "--agent-dir", join(box.root, "agent")], childEnv(box));
		const url = `${gw.base}/sessions/demo/messages`;
		const slow = curlPost(url, '{"text":"/slow 40"}');
		// Busy once the slow run is running.
		await waitFor(async () => JSON.parse((await curl([`${gw.base}/sessions/demo`])).body).session?.processing === true, "the slow run to start");
		const refused = await curlPost(url, '{"text":"/echo now"}');
		assert.equal(refused.status, 409, refused.body);
		assert.equal(JSON.parse(refused.body).error, "Session busy");
		const queued = await curlPost(url, '{"text":"/echo later","mode":"queue"}');
		assert.equal(queued.status, 200, queued.body);
		assert.equal(JSON.parse(queued.body).response, "You said: later");
		assert.equal((await slow).status, 200);
		assert.deepEqual(await stopWith(gw, "SIGINT"), { code: 0, signal: null });
	});

	it("is configured by PI_GATEWAY_* variables: token, CORS, webhook path and secret, queue bound", async (t) => {
		const box = await sandbox(t);
		const env = childEnv(box, {
			PI_GATEWAY_PORT: "0",
			PI_GATEWAY_BIND: "127.0.0.1",
			PI_GATEWAY_TOKEN: "env-token",
			PI_GATEWAY_CORS: "http://app.example, http://localhost:5173",
			PI_GATEWAY_WEBHOOK: "1",
			PI_GATEWAY_WEBHOOK_PATH: "/hooks",
			PI_GATEWAY_WEBHOOK_SECRET: "hook-secret",
			PI_GATEWAY_MAX_QUEUE: "1",
			PI_GATEWAY_IDLE_MINUTES: "5",
			PI_GATEWAY_AGENT_DIR: join(box.root, "agent"),
		});
		const gw = await startCliGateway(t, [], env);
		const auth = ["-H", "authorization: Bearer env-token"];
		assert.equal((await curl([`${gw.base}/sessions`])).status, 401);
		assert.equal((await curl([`${gw.base}/sessions`, ...auth])).status, 200);

		// The token from the environment is printed as a variable reference, never in clear.
		const line = bannerLine(gw.out.stdout, "/sessions/demo/messages");
		assert.ok(!gw.out.stdout.includes("env-token"), "the banner does not print a token taken from the env");
		assert.deepEqual(withRunId(JSON.parse(await sh(line, { PI_GATEWAY_TOKEN: "env-token" }))), {
			ok: true,
			response: FAUX_ANSWER,
			sessionKey: "demo",
		});

		// CORS for a listed origin.
		const cors = await curl(["-D", "-", "-o", "/dev/null", `${gw.base}/health`, "-H", "origin: http://localhost:5173"]);
		assert.match(cors.body, /access-control-allow-origin: http:\/\/localhost:5173/i);

		// Webhook on the configured path, secret required, no bearer token.
		const hook = (secret) =>
			curlPost(`${gw.base}/hooks/ci`, '{"text":"/echo from ci","sender":"bot"}', secret ? ["-H", `x-pi-webhook-secret: ${secret}`] : []);
		assert.equal((await hook("wrong")).status, 401);
		const hooked = await hook("hook-secret");
		assert.equal(hooked.status, 200);
		assert.deepEqual(withRunId(JSON.parse(hooked.body)), { ok: true, response: "You said: from ci", sessionKey: "webhook:ci:bot" });

		// PI_GATEWAY_MAX_QUEUE=1: one running, one queued, the next is refused with 429.
		const post = (text) => curlPost(`${gw.base}/sessions/q/messages`, JSON.stringify({ text }), auth);
		const snapshot = async () => {
			const r = await curl([`${gw.base}/sessions/q`, ...auth]);
			return r.status === 200 ? JSON.parse(r.body).session : undefined;
		};
		const running = post("/slow 600");
		await waitFor(async () => (await snapshot())?.processing === true, "the slow run to start", 20_000, 50);
		const queued = post("/echo queued");
		await waitFor(async () => (await snapshot())?.queueDepth === 1, "the second message to queue", 20_000, 50);
		const refused = await post("/echo refused");
		assert.equal(refused.status, 429);
		assert.equal(JSON.parse(refused.body).ok, false);
		assertNoRunId(JSON.parse(refused.body), "the 429");

		assert.deepEqual(await stopWith(gw, "SIGTERM"), { code: 0, signal: null });
		for (const pending of [running, queued]) {
			const body = JSON.parse((await within(pending, EXIT_DEADLINE_MS, "a pending message")).body);
			assert.equal(body.ok, false);
			assert.equal(body.error, "Gateway stopped");
			withRunId(body, "a message pending at stop");
		}
	});

	it("--model runs a real pi session on a provider from <agent-dir>/models.json with its key from the environment", async (t) => {
		const box = await sandbox(t);
		// An OpenAI-compatible chat-completions endpoint on 127.0.0.1 that streams a fixed answer.
		const requests = [];
		const server = await startFakeOpenAi(t, ["Hello ", "from ", "the ", "fake ", "model."], requests);
		server.unref();

		const { agentDir, workspace } = await writeLocalModels(box.root, server);
		const gw = await startCliGateway(
			t,
			["--port", "0", "--model", "local/fake-1", "--agent-dir", agentDir, "--cwd", workspace],
			childEnv(box, { LOCAL_FAKE_API_KEY: "key-from-env" }),
		);
		assert.match(gw.out.stdout, /model\s+local\/fake-1/);
		const result = await curlPost(`${gw.base}/sessions/demo/messages`, '{"text":"hi"}');
		assert.equal(result.status, 200, result.body);
		assert.deepEqual(withRunId(JSON.parse(result.body)), { ok: true, response: "Hello from the fake model.", sessionKey: "demo" });
		assert.equal(requests.length, 1);
		assert.equal(requests[0].url, "/v1/chat/completions");
		assert.equal(requests[0].authorization, "Bearer key-from-env", "the key comes from the environment variable");
		assert.equal(JSON.parse(requests[0].body).model, "fake-1");

		assert.deepEqual(await stopWith(gw, "SIGINT"), { code: 0, signal: null });
		assert.ok((await readdir(join(agentDir, "sessions"))).includes("gateway-sessions"), "sessions are kept in --agent-dir");
		assert.deepEqual(await readdir(box.home), [], "nothing is written to HOME");
	});

	it("--model with a known model but no API key exits 1 naming the variable to set", async (t) => {
		const box = await sandbox(t);
		const { code, stdout, stderr } = await runCli(t, ["--port", "0", "--model", "openai/gpt-4o-mini"], childEnv(box));
		assert.equal(code, 1, stderr);
		assert.match(stderr, /No API key for provider "openai"/);
		assert.ok(stderr.includes("OPENAI_API_KEY"), stderr);
		assert.doesNotMatch(stdout, READY_LINE);
		assert.deepEqual(await leftovers(box.tmp), [], "the temporary agent dir is removed");
	});

	it("a busy port exits 1 with a message naming the address", async (t) => {
		const box = await sandbox(t);
		const blocker = createNetServer();
		blocker.listen(0, "127.0.0.1");
		await once(blocker, "listening");
		t.after(() => new Promise((resolve) => blocker.close(resolve)));
		const port = blocker.address().port;
		const { code, stdout, stderr } = await runCli(t, ["--port", String(port)], childEnv(box));
		assert.equal(code, 1, stderr);
		assert.ok(stderr.includes(`127.0.0.1:${port}`), stderr);
		assert.doesNotMatch(stdout, READY_LINE);
		assert.deepEqual(await leftovers(box.tmp), [], "the temporary dirs are removed");
	});
	it("--approve, --deny and --approval-timeout (or PI_GATEWAY_APPROVE, _DENY, _APPROVAL_TIMEOUT) become config.approval", () => {
		const approval = (argv, env = {}) => gatewayConfig(parseCli(argv, env).options).approval;
		assert.equal(approval([]), undefined, "no flag: no approval config, every tool runs as before");
		assert.deepEqual(approval(["--approve", "bash,write"]), { policy: { bash: "ask", write: "ask" } });
		assert.deepEqual(approval(["--approve", " bash , write,bash ,"]), { policy: { bash: "ask", write: "ask" } }, "trimmed, each once");
		assert.deepEqual(approval(["--approve", "bash", "--deny", "*"]), { policy: { bash: "ask", "*": "deny" } });
		assert.deepEqual(approval(["--deny", "write,edit"]), { policy: { write: "deny", edit: "deny" } });
		assert.deepEqual(
			approval([], { PI_GATEWAY_APPROVE: "read", PI_GATEWAY_DENY: "write", PI_GATEWAY_APPROVAL_TIMEOUT: "2.5" }),
			{ policy: { read: "ask", write: "deny" }, timeoutMs: 2500 },
		);
		assert.deepEqual(approval(["--approve", "bash"], { PI_GATEWAY_APPROVE: "read" }), { policy: { bash: "ask" } }, "the flag wins over the variable");
		assert.deepEqual(approval(["--approve", "bash", "--approval-timeout", "86400"]), { policy: { bash: "ask" }, timeoutMs: 86_400_000 });
		assert.deepEqual(approval(["--approve", "bash", "--approval-timeout", "0.001"]), { policy: { bash: "ask" }, timeoutMs: 1 });
		assert.deepEqual(approval(["--approval-timeout", "30"]), { timeoutMs: 30_000 }, "a timeout alone is passed on (and warned about)");
		for (const [argv, env, says] of [
			[["--approve", "bash", "--deny", "bash"], {}, '"bash" is in both --approve and --deny'],
			[["--approve", "bash"], { PI_GATEWAY_DENY: "write,bash" }, '"bash" is in both --approve and PI_GATEWAY_DENY'],
			[["--approve", ","], {}, "Invalid --approve"],
			[["--deny", "a\tb"], {}, "Invalid --deny"],
			[["--approve", "x".repeat(129)], {}, "at most 128 bytes"],
			[["--approval-timeout=-1"], {}, "Invalid --approval-timeout"],
			[["--approval-timeout", "0.0004"], {}, "Invalid --approval-timeout"],
			[["--approval-timeout", "Infinity"], {}, "Invalid --approval-timeout"],
			[[], { PI_GATEWAY_APPROVAL_TIMEOUT: "2m" }, "Invalid PI_GATEWAY_APPROVAL_TIMEOUT"],
		]) {
			assert.throws(
				() => parseCli(argv, env),
				(error) => error instanceof UsageError && error.message.includes(says),
				`${JSON.stringify(argv)} ${JSON.stringify(env)} is a usage error naming ${says}`,
			);
		}
		assert.doesNotThrow(() => parseCli(["--approve", "x".repeat(128), "--deny", "mcp.server:tool-1"], {}));
	});

	it("--approve bash: a bash call waits until it is approved over HTTP, then runs; --deny read refuses read at once", async (t) => {
		const box = await sandbox(t);
		const workspace = join(box.root, "workspace");
		await mkdir(workspace);
		const gw = await startCliGateway(
			t,
			["--port", "0", "--ephemeral", "--cwd", workspace, "--approve", "bash", "--deny", "read", "--approval-timeout", "60"],
			childEnv(box),
		);
		assert.equal(bannerLine(gw.out.stdout, "approvals"), "approvals  ask: bash  deny: read  timeout: 60 s");
		const approvalsUrl = `${gw.base}/sessions/demo/approvals`;
		const getJson = async (url) => {
			const answer = await curl([url]);
			assert.equal(answer.status, 200, `GET ${url}: ${answer.body}`);
			return JSON.parse(answer.body);
		};

		// The command writes a file, so whether it ran shows on disk.
		const ranFile = join(workspace, "ran.txt");
		const accepted = await curlPost(`${gw.base}/sessions/demo/messages`, JSON.stringify({ text: "/bash echo hi | tee ran.txt", wait: false }));
		assert.equal(accepted.status, 202, accepted.body);
		const { runId } = JSON.parse(accepted.body);
		const { approvals } = await waitFor(
			async () => {
				const body = await getJson(approvalsUrl);
				return body.approvals.length > 0 ? body : undefined;
			},
			"the bash call to wait for a decision",
			20_000,
			50,
		);
		assert.equal(approvals.length, 1, JSON.stringify(approvals));
		const [pending] = approvals;
		assert.equal(pending.sessionKey, "demo");
		assert.equal(pending.runId, runId);
		assert.equal(pending.toolName, "bash");
		assert.deepEqual(pending.args, { command: "echo hi | tee ran.txt" });
		assert.equal(typeof pending.approvalId, "string");
		assert.equal(typeof pending.toolCallId, "string");
		assert.equal(pending.expiresAt - pending.requestedAt, 60_000, "--approval-timeout 60 is 60 s");

		// It waits: the run is still running, the command has not run.
		await new Promise((resolve) => setTimeout(resolve, 300));
		assert.equal(JSON.parse((await curl([`${gw.base}/sessions/demo/runs/${runId}`])).body).run.status, "running");
		assert.equal(existsSync(ranFile), false, "the command did not run before the decision");
		assert.deepEqual((await getJson(approvalsUrl)).approvals, approvals, "still pending");

		const decide = (id, body) => curlPost(`${approvalsUrl}/${id}`, JSON.stringify(body));
		const approved = await decide(pending.approvalId, { approved: true });
		assert.equal(approved.status, 200, approved.body);
		assert.deepEqual(JSON.parse(approved.body), { ok: true, approvalId: pending.approvalId, approved: true, by: "client" });

		const run = await waitFor(
			async () => {
				const body = JSON.parse((await curl([`${gw.base}/sessions/demo/runs/${runId}`])).body);
				return body.run?.status !== "running" && body.run?.status !== "queued" ? body.run : undefined;
			},
			"the approved run to end",
			20_000,
			50,
		);
		assert.equal(run.status, "succeeded", JSON.stringify(run));
		assert.equal(run.result.response, "bash said: hi");
		assert.equal(existsSync(ranFile), true, "the approved command ran");
		assert.deepEqual((await getJson(approvalsUrl)).approvals, []);
		const again = await decide(pending.approvalId, { approved: false });
		assert.equal(again.status, 409, again.body);
		assert.equal(JSON.parse(again.body).approved, true, "the decision stands");
		assert.equal((await decide("no-such-approval", { approved: true })).status, 404);

		// --deny read: the default question's read call is refused at once; nothing waits.
		const denied = await curlPost(`${gw.base}/sessions/demo/messages`, JSON.stringify({ text: "What is in hello.txt?" }));
		assert.equal(denied.status, 200, denied.body);
		assert.equal(JSON.parse(denied.body).response, "hello.txt says: Denied by policy");
		assert.deepEqual((await getJson(approvalsUrl)).approvals, []);

		assert.deepEqual(await stopWith(gw, "SIGINT"), { code: 0, signal: null });
	});

	it("--log-*, --metrics-public, --notify-* and --callback-* (or their PI_GATEWAY_* variables) become logFormat/logLevel, config.metrics and config.webhooks", () => {
		const parse = (argv, env = {}) => parseCli(argv, env).options;
		const config = (argv, env = {}) => gatewayConfig(parse(argv, env));
		const secret = webhookSecret();
		const other = webhookSecret();

		const plain = parse([]);
		assert.equal(plain.logFormat, "text");
		assert.equal(plain.logLevel, "info");
		assert.equal("metrics" in config([]), false, "no flag: no metrics config");
		assert.equal("webhooks" in config([]), false, "no flag: no webhooks config");
		assert.deepEqual([parse(["--log-format", "json", "--log-level", "debug"]).logFormat, parse(["--log-level", "debug"]).logLevel], ["json", "debug"]);
		const fromEnv = parse([], { PI_GATEWAY_LOG_FORMAT: "json", PI_GATEWAY_LOG_LEVEL: "warn" });
		assert.deepEqual([fromEnv.logFormat, fromEnv.logLevel], ["json", "warn"]);
		assert.equal(parse(["--log-level", "error"], { PI_GATEWAY_LOG_LEVEL: "debug" }).logLevel, "error", "the flag wins over the variable");

		assert.deepEqual(config(["--metrics-public"]).metrics, { public: true });
		assert.deepEqual(config([], { PI_GATEWAY_METRICS_PUBLIC: "1" }).metrics, { public: true });
		assert.equal("metrics" in config([], { PI_GATEWAY_METRICS_PUBLIC: "0" }), false);

		assert.deepEqual(config(["--notify-url", "https://hooks.example/pi?k=1", "--notify-secret", secret]).webhooks, {
			outbound: [{ url: "https://hooks.example/pi?k=1", secret }],
		});
		assert.deepEqual(
			config([], {
				PI_GATEWAY_NOTIFY_URL: "http://127.0.0.1:8080",
				PI_GATEWAY_NOTIFY_SECRET: secret,
				PI_GATEWAY_NOTIFY_EVENTS: " run.failed, run.succeeded ,run.failed",
				PI_GATEWAY_NOTIFY_RETRIES: "0.25, 1.5,60",
				PI_GATEWAY_CALLBACK_HOSTS: "Hooks.Example.com, *.example.org,127.0.0.1,[::1]",
				PI_GATEWAY_CALLBACK_SECRET: other,
			}).webhooks,
			{
				outbound: [{ url: "http://127.0.0.1:8080/", secret, events: ["run.failed", "run.succeeded"] }],
				allowedHosts: ["hooks.example.com", "*.example.org", "127.0.0.1", "[::1]"],
				callbackSecret: other,
				retryScheduleMs: [250, 1500, 60_000],
			},
		);
		assert.deepEqual(config(["--notify-retries", "none"]).webhooks, { retryScheduleMs: [] }, '"none": one attempt only');
		assert.deepEqual(config(["--notify-events", WEBHOOK_EVENTS.join(",")]).webhooks, undefined, "events without a URL reach no config (and are warned about)");
		assert.deepEqual(config(["--callback-secret", other]).webhooks, { callbackSecret: other });
		assert.deepEqual(config(["--notify-retries", "0.001,86400"]).webhooks.retryScheduleMs, [1, 86_400_000]);
		// Padded base64 and the longest key pass.
		const padded = "whsec_" + Buffer.alloc(16, 7).toString("base64");
		assert.ok(padded.endsWith("=="));
		assert.equal(parse(["--callback-secret", padded]).callbackSecret, padded);
		assert.equal(parse(["--callback-secret", "whsec_" + Buffer.alloc(64, 1).toString("base64")]).callbackSecret.length, 6 + 88);

		for (const [argv, env, says] of [
			[["--log-format", ""], {}, "Invalid --log-format"],
			[["--log-level", "INFO"], {}, "Invalid --log-level"],
			[[], { PI_GATEWAY_LOG_LEVEL: "trace" }, "Invalid PI_GATEWAY_LOG_LEVEL"],
			[["--notify-url", "not a url", "--notify-secret", secret], {}, "Invalid --notify-url"],
			[["--notify-url", "https://user:pw@hooks.example/", "--notify-secret", secret], {}, "credentials"],
			[["--notify-url", "https://hooks.example/#x", "--notify-secret", secret], {}, "fragment"],
			[["--notify-url", `https://hooks.example/${"a".repeat(2048)}`, "--notify-secret", secret], {}, "longer than 2048 bytes"],
			[["--notify-url", "https://hooks.example/"], {}, "--notify-url needs a signing secret"],
			[[], { PI_GATEWAY_NOTIFY_URL: "https://hooks.example/" }, "PI_GATEWAY_NOTIFY_URL needs a signing secret"],
			[["--notify-secret", secret], {}, "--notify-secret signs deliveries to --notify-url"],
			[["--notify-url", "https://hooks.example/", "--notify-secret", secret.slice(6)], {}, 'expected "whsec_"'],
			[["--notify-url", "https://hooks.example/", "--notify-secret", "whsec_" + Buffer.alloc(15).toString("base64")], {}, "16 to 64 bytes, got 15"],
			[["--notify-url", "https://hooks.example/", "--notify-secret", "whsec_" + Buffer.alloc(65).toString("base64")], {}, "16 to 64 bytes, got 65"],
			[["--notify-url", "https://hooks.example/", "--notify-secret", `${secret}*`], {}, "not valid base64"],
			[["--notify-url", "https://hooks.example/", "--notify-secret", ""], {}, "Invalid --notify-secret: must not be empty"],
			[["--notify-events", ","], {}, "Invalid --notify-events"],
			[["--notify-events", "run.Succeeded"], {}, 'not "run.Succeeded"'],
			[["--notify-retries", "5,,30"], {}, "Invalid --notify-retries"],
			[["--notify-retries", "0"], {}, "Invalid --notify-retries"],
			[["--notify-retries", "0.0004"], {}, "Invalid --notify-retries"],
			[["--notify-retries=-5"], {}, "Invalid --notify-retries"],
			[["--notify-retries", "1m"], {}, "Invalid --notify-retries"],
			[["--notify-retries", Array(21).fill("1").join(",")], {}, "at most 20"],
			[["--callback-hosts", "hooks.example:443", "--callback-secret", other], {}, "Invalid --callback-hosts"],
			[["--callback-hosts", "*.", "--callback-secret", other], {}, "Invalid --callback-hosts"],
			[["--callback-hosts", "a b", "--callback-secret", other], {}, "Invalid --callback-hosts"],
			[["--callback-hosts", " , ", "--callback-secret", other], {}, "Invalid --callback-hosts"],
			[["--callback-hosts", "hooks.example"], {}, "--callback-hosts allows callbacks, which are signed"],
			[[], { PI_GATEWAY_CALLBACK_HOSTS: "hooks.example" }, "PI_GATEWAY_CALLBACK_HOSTS allows callbacks"],
			[["--callback-secret", "whsec_"], {}, "Invalid --callback-secret"],
		]) {
			assert.throws(
				() => parseCli(argv, env),
				(error) => {
					assert.ok(error instanceof UsageError, String(error));
					assert.ok(error.message.includes(says), `${JSON.stringify(argv)} ${JSON.stringify(env)}: ${error.message} names ${says}`);
					for (const word of [...argv, ...Object.values(env)]) {
						if (word.startsWith("whsec_") && word.length > 6) assert.ok(!error.message.includes(word), `never shows the secret: ${error.message}`);
					}
					return true;
				},
			);
		}
	});

	it("--log-format json --log-level debug: every stderr line is a JSON {time, level, message}, with access lines and sessionKey; --metrics-public serves /metrics without the token", async (t) => {
		const box = await sandbox(t);
		const gw = await startCliGateway(
			t,
			// --max-sessions 2 (the primary session counts): a third key evicts one, a line about a session.
			["--port", "0", "--ephemeral", "--log-format", "json", "--log-level", "debug", "--metrics-public", "--max-sessions", "2", "--approval-timeout", "5"],
			childEnv(box, { PI_GATEWAY_TOKEN: "tok" }),
		);
		const auth = ["-H", "authorization: Bearer tok"];
		assert.equal(bannerLine(gw.out.stdout, "/metrics"), `metrics    GET ${gw.base}/metrics (Prometheus; public, no token needed)`);
		assert.equal(bannerLine(gw.out.stdout, "/openapi.json"), `openapi    GET ${gw.base}/openapi.json (OpenAPI 3.1 description of the API; no token needed)`);
		assert.equal(bannerLine(gw.out.stdout, "logs "), "logs       json on stderr, level debug and above");

		assert.equal((await curl([`${gw.base}/health`])).status, 200);
		const metrics = await curl([`${gw.base}/metrics`]);
		assert.equal(metrics.status, 200, "--metrics-public: /metrics without the token");
		assert.match(metrics.body, /^# (HELP|TYPE) pi_gateway_/m);
		assert.equal((await curl([`${gw.base}/sessions`])).status, 401, "the rest of the API still needs the token");
		const openapi = await curl([`${gw.base}/openapi.json`]);
		assert.equal(openapi.status, 200);
		assert.match(JSON.parse(openapi.body).openapi, /^3\.1\./);

		for (const key of ["a", "b"]) {
			const sent = await curlPost(`${gw.base}/sessions/${key}/messages`, '{"text":"/echo hi"}', auth);
			assert.equal(sent.status, 200, sent.body);
		}
		// b's session evicts a's: a line about session a.
		const lines = () => gw.out.stderr.split("\n").filter(Boolean);
		await waitFor(() => lines().some((line) => line.includes('"sessionKey":"a"') && line.includes("evicted")), "the line about session a's eviction", 10_000, 20);

		assert.deepEqual(await stopWith(gw, "SIGINT"), { code: 0, signal: null });
		const entries = jsonLogLines(gw.out.stderr);

		// The CLI's own lines: a warning (--approval-timeout without --approve) and the stop.
		const warning = entries.find((e) => e.message.startsWith("--approval-timeout has no effect"));
		assert.equal(warning?.level, "warn", `the CLI's warning is a warn line:\n${gw.out.stderr}`);
		assert.ok(entries.some((e) => e.level === "info" && e.message === "SIGINT received, stopping"), gw.out.stderr);
		assert.equal(entries.at(-1)?.message, "stopped");

		// The gateway's access lines, at debug.
		const access = (method, path, status) =>
			entries.find((e) => e.level === "debug" && new RegExp(`^${method} ${path.replace(/[/.]/g, "\\$&")} ${status} \\d+\\.\\dms$`).test(e.message));
		assert.ok(access("GET", "/health", 200), `an access line for GET /health:\n${gw.out.stderr}`);
		assert.ok(access("GET", "/metrics", 200), `an access line for GET /metrics:\n${gw.out.stderr}`);
		assert.ok(access("GET", "/sessions", 401), `an access line for the refused GET /sessions:\n${gw.out.stderr}`);
		assert.ok(access("POST", "/sessions/b/messages", 200), `an access line for the message:\n${gw.out.stderr}`);

		const evicted = entries.find((e) => e.sessionKey === "a" && e.message.includes("evicted"));
		assert.ok(evicted, `a line about session a's eviction carries its sessionKey:\n${gw.out.stderr}`);
		assert.equal(evicted.level, "info");
		assert.match(evicted.message, /evicted session a\b/);
		assert.ok(!gw.out.stderr.includes("pi-gateway: "), "no text line slips through");
	});

	it("--notify-url with PI_GATEWAY_NOTIFY_SECRET: a run's end is POSTed, signed per Standard Webhooks; --notify-retries and --notify-events apply", async (t) => {
		const box = await sandbox(t);
		// The first delivery fails: the retry after 0.2 s carries the same webhook-id.
		const receiver = await startWebhookReceiver(t, [500]);
		const secret = webhookSecret();
		const gw = await startCliGateway(
			t,
			["--port", "0", "--ephemeral", "--notify-url", receiver.url, "--notify-events", "run.succeeded", "--notify-retries", "0.2,0.2"],
			childEnv(box, { PI_GATEWAY_NOTIFY_SECRET: secret }),
		);
		assert.equal(bannerLine(gw.out.stdout, "notify"), `notify     POST ${receiver.url} on run.succeeded (signed per Standard Webhooks with the --notify-secret key)`);
		assert.equal(bannerLine(gw.out.stdout, "a failed delivery"), "a failed delivery is retried after 0.2 s, 0.2 s, then given up");
		assert.ok(!gw.out.stdout.includes(secret.slice(6)), "the banner never shows the secret");

		// A run that ends aborted is not one of --notify-events.
		const slow = await curlPost(`${gw.base}/sessions/demo/messages`, '{"text":"/slow 600","wait":false}');
		assert.equal(slow.status, 202, slow.body);
		await waitFor(async () => JSON.parse((await curl([`${gw.base}/sessions/demo`])).body).session?.processing === true, "the slow run to start", 20_000, 20);
		assert.equal((await curlPost(`${gw.base}/sessions/demo/abort`, "{}")).status, 200);

		const sent = await curlPost(`${gw.base}/sessions/demo/messages`, '{"text":"/echo done"}');
		assert.equal(sent.status, 200, sent.body);
		const { runId } = JSON.parse(sent.body);
		await waitFor(() => receiver.deliveries.length >= 2, `the delivery and its retry (got ${receiver.deliveries.length})`, 15_000, 20);
		await new Promise((resolve) => setTimeout(resolve, 500));
		assert.equal(receiver.deliveries.length, 2, "one failed delivery, one retry that succeeded; nothing for the aborted run");

		const verifier = new Webhook(secret);
		const [first, retry] = receiver.deliveries;
		for (const delivery of receiver.deliveries) {
			assert.equal(delivery.method, "POST");
			assert.equal(delivery.url, "/hooks/pi");
			assert.match(delivery.headers["content-type"] ?? "", /^application\/json/);
			const payload = verifier.verify(delivery.body, delivery.headers);
			assert.deepEqual(payload, JSON.parse(delivery.body), "verify() returns the signed body");
			assert.throws(() => new Webhook(webhookSecret()).verify(delivery.body, delivery.headers), "another secret does not verify");
		}
		assert.equal(first.headers["webhook-id"], retry.headers["webhook-id"], "a retry keeps its webhook-id");
		assert.match(String(first.headers["webhook-id"]), /^msg_/);
		assert.ok(retry.at - first.at >= 150, `the retry waited ~0.2 s (${retry.at - first.at} ms)`);
		const body = JSON.parse(retry.body);
		assert.equal(body.type, "run.succeeded");
		assert.ok(!Number.isNaN(Date.parse(body.timestamp)), body.timestamp);
		assert.equal(body.data.runId, runId);
		assert.equal(body.data.sessionKey, "demo");
		assert.equal(body.data.status, "succeeded");

		assert.deepEqual(await stopWith(gw, "SIGINT"), { code: 0, signal: null });
		assert.doesNotMatch(gw.out.stderr, /given up|refused|dropped/i, gw.out.stderr);
	});
});
