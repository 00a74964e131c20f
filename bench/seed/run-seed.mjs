#!/usr/bin/env node
// Runs the SEED gateway (the unchanged TypeScript file) in this process, with scripted sessions.
//
//   node bench/seed/run-seed.mjs [--port 0] [--bind 127.0.0.1] [--token T]
//        [--webhook] [--webhook-path /webhook] [--webhook-secret S]
//        [--max-queue 100] [--idle-minutes 30]
//        [--scenario instant | stream:N[:intervalMs[:batch]] | thinking | tool | error]
//        [--no-new-session] [--fail-create REGEX] [--exit-on-stdin-close]
//        [--faux | --faux-memory]
//
// --no-new-session: sessions without newSession() (as pi 0.73's AgentSession; the seed's reset of
// the primary then fails). --fail-create: createSession rejects for keys matching REGEX.
// --faux / --faux-memory: real pi sessions on the offline faux model (bench/faux-sessions.mjs, the
// same ones bench/run-gateway.mjs takes with the same flags; session files in a temporary dir / in
// memory) instead of the scripted ones; --scenario is then ignored. The seed has no
// sessionExists/deleteSession options and no session cap.
//
// The seed is read from $PI_GATEWAY_SEED, else <repo>/../shared/seed/gateway-runtime.ts. It is
// copied into a fresh temp dir beside the modules it imports (./vercel-ai-stream.js: our stand-in;
// ./session-manager.js: a re-export of pi-coding-agent's SessionManager by absolute URL;
// ./agent-session.js is imported for types only, which tsx erases, so no file is needed) and
// loaded with tsx's tsImport — one process, this one, is the seed gateway.
//
// Prints one line to stdout once listening: {"ready":true,"port":<port>,"pid":<pid>}.
// SIGTERM/SIGINT: runtime.stop() with a 2 s deadline (the seed's stop() never returns while an
// SSE client is connected), then exit 0.

import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { createScriptedFactory, createScriptedSession, parseScenario } from "../../__test__/support/sessions.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "..", "..");

/** Where the seed .ts lives ($PI_GATEWAY_SEED overrides). */
export function seedPath() {
	return process.env.PI_GATEWAY_SEED || resolve(repoRoot, "..", "shared", "seed", "gateway-runtime.ts");
}

// Copy the seed and its sibling modules into a temp dir; returns {dir, entry}.
function stageSeed() {
	const src = seedPath();
	if (!existsSync(src)) throw new Error(`seed not found: ${src} (set PI_GATEWAY_SEED)`);
	const dir = mkdtempSync(join(tmpdir(), "pi-seed-"));
	process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
	writeFileSync(join(dir, "package.json"), '{"type":"module"}\n');
	const entry = join(dir, "gateway-runtime.ts");
	copyFileSync(src, entry);
	copyFileSync(join(here, "vercel-ai-stream.js"), join(dir, "vercel-ai-stream.js"));
	// The seed sat in pi-coding-agent's src/core/, beside session-manager: import that module
	// directly (lighter than the package index), falling back to the package entry.
	const pkgEntry = import.meta.resolve("@mariozechner/pi-coding-agent");
	const core = new URL("./core/session-manager.js", pkgEntry);
	const target = existsSync(fileURLToPath(core)) ? core.href : pkgEntry;
	writeFileSync(join(dir, "session-manager.js"), `export { SessionManager } from ${JSON.stringify(target)};\n`);
	return { dir, entry };
}

function parseCli(argv) {
	const { values } = parseArgs({
		args: argv,
		options: {
			port: { type: "string", default: "0" },
			bind: { type: "string", default: "127.0.0.1" },
			token: { type: "string" },
			webhook: { type: "boolean", default: false },
			"webhook-path": { type: "string", default: "/webhook" },
			"webhook-secret": { type: "string" },
			"max-queue": { type: "string", default: "100" },
			"idle-minutes": { type: "string", default: "30" },
			scenario: { type: "string", default: "instant" },
			"no-new-session": { type: "boolean", default: false },
			"fail-create": { type: "string" },
			"exit-on-stdin-close": { type: "boolean", default: false },
			faux: { type: "boolean", default: false },
			"faux-memory": { type: "boolean", default: false },
		},
	});
	return values;
}

async function main() {
	const args = parseCli(process.argv.slice(2));
	const { entry } = stageSeed();
	const { tsImport } = await import("tsx/esm/api");
	const seed = await tsImport(pathToFileURL(entry).href, import.meta.url);

	const scenario = parseScenario(args.scenario);
	const sessionOptions = { newSession: !args["no-new-session"] };
	const config = {
		bind: args.bind,
		port: Number(args.port),
		...(args.token ? { bearerToken: args.token } : {}),
		session: { idleMinutes: Number(args["idle-minutes"]), maxQueuePerSession: Number(args["max-queue"]) },
		webhook: {
			enabled: args.webhook,
			basePath: args["webhook-path"],
			...(args["webhook-secret"] ? { secret: args["webhook-secret"] } : {}),
		},
	};
	// Imported only when asked for: it loads pi-coding-agent (and, through lib/faux-agent.js, index.js),
	// which the scripted cases do not need.
	const faux =
		args.faux || args["faux-memory"]
			? await (await import("../faux-sessions.mjs")).startFauxSessions(args["faux-memory"] ? "memory" : "disk")
			: null;
	if (faux) process.stderr.write(`[seed] faux agent: ${faux.storage}\n`);
	const runtime = new seed.GatewayRuntime({
		config,
		primarySessionKey: "main",
		primarySession: faux ? faux.primarySession : createScriptedSession("main", scenario, sessionOptions),
		createSession: faux
			? faux.createSession
			: createScriptedFactory(scenario, {
					...sessionOptions,
					...(args["fail-create"] ? { failKey: new RegExp(args["fail-create"]) } : {}),
				}),
		log: (message) => process.stderr.write(`[seed] ${message}\n`),
	});
	seed.setActiveGatewayRuntime(runtime);
	await runtime.start();

	// The seed's getAddress() echoes the configured port; its private `server` knows the real one.
	const port = runtime.server?.address()?.port ?? runtime.getAddress().port;
	process.stdout.write(`${JSON.stringify({ ready: true, port, pid: process.pid })}\n`);

	let stopping = false;
	const shutdown = async () => {
		if (stopping) return;
		stopping = true;
		const deadline = new Promise((r) => setTimeout(r, 2000).unref());
		await Promise.race([(async () => {
			await runtime.stop().catch(() => {});
			await faux?.close().catch(() => {});
		})(), deadline]);
		process.exit(0);
	};
	process.on("SIGTERM", shutdown);
	process.on("SIGINT", shutdown);
	if (args["exit-on-stdin-close"]) {
		// Lets a parent that dies without signalling take us down with it.
		process.stdin.on("end", shutdown).on("error", shutdown).resume();
	}
}

main().catch((error) => {
	process.stderr.write(`run-seed: ${error?.stack ?? error}\n`);
	process.exit(1);
});
