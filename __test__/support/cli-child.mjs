// Shared by the CLI tests (cli, js-side-cli, js-side-cli-heap, browser-cli.mjs): the real
// `pi-gateway` command (or another node script) in a child process with HOME and TMPDIR in a
// fresh temporary folder and no inherited API keys or PI_GATEWAY_* variables, its output
// collected, its ready line read; and, for --model, an OpenAI-compatible server on 127.0.0.1
// with an agent dir whose models.json points at it.

import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { within } from "./wait.mjs";

export const BIN = fileURLToPath(new URL("../../bin/pi-gateway.js", import.meta.url));
export const READY_LINE = /^pi-gateway listening on http:\/\/([^\s]+):(\d+)$/m;
/** How long a child may take to print its address (the machine may be loaded). */
export const START_DEADLINE_MS = 30_000;
/** How long a child may take to exit after a signal. */
export const EXIT_DEADLINE_MS = 10_000;

/** A temporary folder `<prefix>…` with `home/` and `tmp/` for one child; the caller removes `root`. */
export async function makeSandbox(prefix) {
	const root = await mkdtemp(join(tmpdir(), prefix));
	const home = join(root, "home");
	const tmp = join(root, "tmp");
	await mkdir(home);
	await mkdir(tmp);
	return { root, home, tmp };
}

/** {@link makeSandbox}, removed by t.after. */
export async function sandbox(t, prefix) {
	const box = await makeSandbox(prefix);
	t.after(() => rm(box.root, { recursive: true, force: true }));
	return box;
}

/** A minimal environment for the child: no inherited API keys or PI_GATEWAY_* variables. */
export function childEnv(box, extra = {}) {
	return { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: box.home, TMPDIR: box.tmp, ...extra };
}

/**
 * Spawns `node ...argv`. `exited` resolves with `{ code, signal }`; output accumulates in
 * `out.stdout` / `out.stderr`. With `t`, the child is SIGKILLed by t.after if a test leaves it
 * running.
 */
export function spawnNode(argv, env, t) {
	const child = spawn(process.execPath, argv, { env, stdio: ["ignore", "pipe", "pipe"] });
	const out = { stdout: "", stderr: "" };
	child.stdout.setEncoding("utf8").on("data", (chunk) => (out.stdout += chunk));
	child.stderr.setEncoding("utf8").on("data", (chunk) => (out.stderr += chunk));
	const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
	t?.after(() => {
		if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
	});
	return { child, out, exited };
}

/** {@link spawnNode} of the CLI (`bin`: another copy of bin/pi-gateway.js). */
export function spawnCli(t, args, env, bin = BIN) {
	return spawnNode([bin, ...args], env, t);
}

/**
 * Resolves with `{ host, port }` once the CLI has printed its ready line and, unless `banner` is
 * false, its whole banner (which ends with "Ctrl-C"); rejects if it exits first.
 */
export function listening(proc, { banner = true } = {}) {
	return new Promise((resolve, reject) => {
		const check = () => {
			const match = READY_LINE.exec(proc.out.stdout);
			if (match && (!banner || proc.out.stdout.includes("Ctrl-C"))) resolve({ host: match[1], port: Number(match[2]) });
		};
		proc.child.stdout.on("data", check);
		proc.exited.then(({ code, signal }) => reject(new Error(`pi-gateway exited (${code ?? signal}):\n${proc.out.stderr}`)));
	});
}

/**
 * {@link spawnCli}, then waits (bounded) for its ready line and whole banner. Resolves with the
 * child (`child`, `out`, `exited`) and `{ host, port, base }`; on failure the error carries the
 * child's output.
 */
export async function startCliGateway(t, args, env, bin = BIN) {
	const proc = spawnCli(t, args, env, bin);
	try {
		const { host, port } = await within(listening(proc), START_DEADLINE_MS, "pi-gateway to print its banner");
		return { ...proc, host, port, base: `http://127.0.0.1:${port}` };
	} catch (error) {
		throw new Error(`${error.message}\nstdout:\n${proc.out.stdout}\nstderr:\n${proc.out.stderr}`);
	}
}

/** Sends a signal and waits (bounded) for the exit. */
export function stopWith(proc, signal) {
	proc.child.kill(signal);
	return within(proc.exited, EXIT_DEADLINE_MS, `pi-gateway to exit after ${signal}`);
}

/**
 * An OpenAI-compatible chat-completions endpoint on 127.0.0.1 (model `fake-1`) that streams
 * `words` as its answer to every request; closed by t.after. With `requests`, each request's
 * method, url, authorization header and body are pushed onto it.
 * @returns {Promise<import("node:http").Server>}
 */
export async function startFakeOpenAi(t, words, requests) {
	const server = createServer((req, res) => {
		let body = "";
		req.setEncoding("utf8");
		req.on("data", (chunk) => (body += chunk));
		req.on("end", () => {
			requests?.push({ method: req.method, url: req.url, authorization: req.headers.authorization, body });
			res.writeHead(200, { "content-type": "text/event-stream" });
			const chunk = (choice) =>
				`data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: "fake-1", choices: [choice] })}\n\n`;
			res.write(chunk({ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }));
			for (const word of words) {
				res.write(chunk({ index: 0, delta: { content: word }, finish_reason: null }));
			}
			res.write(chunk({ index: 0, delta: {}, finish_reason: "stop" }));
			res.end("data: [DONE]\n\n");
		});
	});
	server.listen(0, "127.0.0.1");
	await once(server, "listening");
	t.after(() => new Promise((resolve) => server.close(resolve)));
	return server;
}

/**
 * `<root>/agent` with a models.json whose provider `local` (model `fake-1`, key from
 * LOCAL_FAKE_API_KEY) is `server` (see {@link startFakeOpenAi}), and an empty `<root>/workspace`.
 */
export async function writeLocalModels(root, server) {
	const agentDir = join(root, "agent");
	const workspace = join(root, "workspace");
	await mkdir(agentDir);
	await mkdir(workspace);
	await writeFile(
		join(agentDir, "models.json"),
		JSON.stringify({
			providers: {
				local: {
					baseUrl: `http://127.0.0.1:${server.address().port}/v1`,
					api: "openai-completions",
					apiKey: "LOCAL_FAKE_API_KEY",
					models: [{ id: "fake-1" }],
				},
			},
		}),
	);
	return { agentDir, workspace };
}
