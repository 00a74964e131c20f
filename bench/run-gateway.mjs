#!/usr/bin/env node
// Runs pi-gateway (this package, through its real entry ../index.js) in this process, with the
// same scripted sessions and the same flags as bench/seed/run-seed.mjs:
//
//   node bench/run-gateway.mjs [--port 0] [--bind 127.0.0.1] [--token T]
//        [--webhook] [--webhook-path /webhook] [--webhook-secret S]
//        [--max-queue 100] [--idle-minutes 30]
//        [--scenario instant | stream:N[:intervalMs[:batch]] | thinking | tool | error]
//        [--no-new-session] [--fail-create REGEX] [--exit-on-stdin-close]
//        [--max-connections N] [--buffer-events N] [--max-body-bytes N]
//
// The last three have no seed counterpart (the seed has no such limits); unset, pi-gateway's
// defaults apply (limits.maxConnections 1024, sse.bufferEvents 4096, limits.maxBodyBytes 1 MiB).
//
// Prints one line to stdout once listening: {"ready":true,"port":<port>,"pid":<pid>}.
// SIGTERM/SIGINT: runtime.stop() with a 2 s deadline, then exit 0.

import { parseArgs } from "node:util";
import { GatewayRuntime, setActiveGatewayRuntime } from "../index.js";
import { createScriptedFactory, createScriptedSession, parseScenario } from "./scripted-session.mjs";

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
			"max-connections": { type: "string" },
			"buffer-events": { type: "string" },
			"max-body-bytes": { type: "string" },
		},
	});
	return values;
}

async function main() {
	const args = parseCli(process.argv.slice(2));
	const scenario = parseScenario(args.scenario);
	const sessionOptions = { newSession: !args["no-new-session"] };
	const limits = {};
	if (args["max-connections"]) limits.maxConnections = Number(args["max-connections"]);
	if (args["max-body-bytes"]) limits.maxBodyBytes = Number(args["max-body-bytes"]);
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
		...(Object.keys(limits).length ? { limits } : {}),
		...(args["buffer-events"] ? { sse: { bufferEvents: Number(args["buffer-events"]) } } : {}),
	};
	const runtime = new GatewayRuntime({
		config,
		primarySessionKey: "main",
		primarySession: createScriptedSession("main", scenario, sessionOptions),
		createSession: createScriptedFactory(scenario, {
			...sessionOptions,
			...(args["fail-create"] ? { failKey: new RegExp(args["fail-create"]) } : {}),
		}),
		log: (message) => process.stderr.write(`[gateway] ${message}\n`),
	});
	setActiveGatewayRuntime(runtime);
	await runtime.start();

	const port = runtime.getAddress().port;
	process.stdout.write(`${JSON.stringify({ ready: true, port, pid: process.pid })}\n`);

	let stopping = false;
	const shutdown = async () => {
		if (stopping) return;
		stopping = true;
		const deadline = new Promise((r) => setTimeout(r, 2000).unref());
		await Promise.race([runtime.stop().catch(() => {}), deadline]);
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
	process.stderr.write(`run-gateway: ${error?.stack ?? error}\n`);
	process.exit(1);
});
