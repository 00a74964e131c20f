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
//        [--replay-events N] [--replay-bytes N] [--big-sessions]
//        [--faux | --faux-memory] [--max-sessions N]
//        [--redis-url URL --advertise-url URL [--node-id ID] [--cluster-prefix P] [--lease-ms MS]]
//
// The flags from --max-connections on have no seed counterpart (the seed has no such limits);
// unset, pi-gateway's defaults apply (limits.maxConnections 1024, sse.bufferEvents 4096,
// limits.maxBodyBytes 1 MiB, events.replayEvents 4096, events.replayBytes 4 MiB).
// --big-sessions: a session key `big-<count>-<size>[-<tag>]` gets a session (BigStreamSession of
// __test__/support) whose every prompt streams <count> tokens of <size> bytes each, about one a
// millisecond — to fill the event log to its byte bound (bench/run.mjs, "log-rss").
// --faux / --faux-memory: real pi sessions on the offline faux model instead of the scripted ones
// (bench/faux-sessions.mjs: createFauxPiAgent, session files in a temporary dir / in memory), with
// sessionExists/deleteSession as the CLI passes them; --scenario and --big-sessions are then ignored.
// --max-sessions: session.maxSessions (default 1000; the primary counts).
// --redis-url, --advertise-url, --node-id, --cluster-prefix, --lease-ms: config.cluster {redisUrl,
// advertiseUrl, nodeId, prefix, leaseMs} (several gateways sharing sessions through Redis, README
// "Running several gateways"); set when --redis-url is given (--advertise-url is then required:
// give a fixed --port so that it can name it); the others unset take pi-gateway's defaults.
//
// Prints one line to stdout once listening: {"ready":true,"port":<port>,"pid":<pid>}.
// SIGTERM/SIGINT: runtime.stop() with a 2 s deadline, then exit 0.

import { parseArgs } from "node:util";
import { GatewayRuntime, setActiveGatewayRuntime } from "../index.js";
import { BigStreamSession, createScriptedFactory, createScriptedSession, parseScenario } from "../__test__/support/sessions.mjs";

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
			"replay-events": { type: "string" },
			"replay-bytes": { type: "string" },
			"big-sessions": { type: "boolean", default: false },
			faux: { type: "boolean", default: false },
			"faux-memory": { type: "boolean", default: false },
			"max-sessions": { type: "string" },
			"redis-url": { type: "string" },
			"advertise-url": { type: "string" },
			"node-id": { type: "string" },
			"cluster-prefix": { type: "string" },
			"lease-ms": { type: "string" },
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
	const clusterFlags = ["advertise-url", "node-id", "cluster-prefix", "lease-ms"].filter((f) => args[f] !== undefined);
	if (!args["redis-url"] && clusterFlags.length) throw new Error(`--${clusterFlags[0]} needs --redis-url`);
	if (args["redis-url"] && !args["advertise-url"]) throw new Error("--redis-url needs --advertise-url (how the other nodes reach this one)");
	const cluster = args["redis-url"]
		? {
				redisUrl: args["redis-url"],
				advertiseUrl: args["advertise-url"],
				...(args["node-id"] !== undefined ? { nodeId: args["node-id"] } : {}),
				...(args["cluster-prefix"] !== undefined ? { prefix: args["cluster-prefix"] } : {}),
				...(args["lease-ms"] !== undefined ? { leaseMs: Number(args["lease-ms"]) } : {}),
			}
		: null;
	const config = {
		bind: args.bind,
		port: Number(args.port),
		...(args.token ? { bearerToken: args.token } : {}),
		session: {
			idleMinutes: Number(args["idle-minutes"]),
			maxQueuePerSession: Number(args["max-queue"]),
			...(args["max-sessions"] ? { maxSessions: Number(args["max-sessions"]) } : {}),
		},
		webhook: {
			enabled: args.webhook,
			basePath: args["webhook-path"],
			...(args["webhook-secret"] ? { secret: args["webhook-secret"] } : {}),
		},
		...(Object.keys(limits).length ? { limits } : {}),
		...(args["buffer-events"] ? { sse: { bufferEvents: Number(args["buffer-events"]) } } : {}),
		...(args["replay-events"] || args["replay-bytes"]
			? {
					events: {
						...(args["replay-events"] ? { replayEvents: Number(args["replay-events"]) } : {}),
						...(args["replay-bytes"] ? { replayBytes: Number(args["replay-bytes"]) } : {}),
					},
				}
			: {}),
		...(cluster ? { cluster } : {}),
	};
	const scripted = createScriptedFactory(scenario, {
		...sessionOptions,
		...(args["fail-create"] ? { failKey: new RegExp(args["fail-create"]) } : {}),
	});
	const createSession = args["big-sessions"]
		? async (key) => {
				const m = /^big-(\d+)-(\d+)(?:-[\w.-]*)?$/.exec(key);
				return m ? new BigStreamSession({ count: Number(m[1]), size: Number(m[2]), intervalMs: 0 }) : scripted(key);
			}
		: scripted;
	// Imported only when asked for: it loads pi-coding-agent (and, through lib/faux-agent.js, index.js),
	// which the scripted cases do not need.
	const faux =
		args.faux || args["faux-memory"]
			? await (await import("./faux-sessions.mjs")).startFauxSessions(args["faux-memory"] ? "memory" : "disk")
			: null;
	if (faux) process.stderr.write(`[gateway] faux agent: ${faux.storage}\n`);
	const runtime = new GatewayRuntime({
		config,
		primarySessionKey: "main",
		...(faux
			? {
					primarySession: faux.primarySession,
					createSession: faux.createSession,
					sessionExists: faux.sessionExists,
					deleteSession: faux.deleteSession,
				}
			: { primarySession: createScriptedSession("main", scenario, sessionOptions), createSession }),
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
	process.stderr.write(`run-gateway: ${error?.stack ?? error}\n`);
	process.exit(1);
});
