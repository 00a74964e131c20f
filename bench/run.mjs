#!/usr/bin/env node
// `npm run bench` — pi-gateway against the seed gateway, side by side, in one run.
//
//   node bench/run.mjs [--quick] [--only CASES] [--load-tool wrk|autocannon] [--out bench/results/latest.json]
//
//   --only a,b,...  run only these cases (names below; groups: http = health,get-session,messages;
//                   sse / per-event = fanout,burst,long,unpaced; memory = rss-session,rss-stream;
//                   log = replay,log-rss; rss = rss-session,rss-stream,log-rss,sessions-rss;
//                   faux = history,sessions-rss; cluster), e.g.
//                   `npm run bench -- --only replay,rss,per-event`. Default: all.
//
// Each gateway runs in its own process (bench/seed/run-seed.mjs under tsx, bench/run-gateway.mjs)
// with the same scripted sessions (__test__/support/sessions.mjs), pinned to core 0 with `taskset`.
// The load comes from separate processes pinned to core 1: bench/load-http.mjs for the HTTP cases
// (wrk with one thread when installed — Debian's /usr/bin/wrk or `wrk` on PATH —, else
// autocannon; `--load-tool autocannon` forces the fallback), bench/sse-load.mjs (raw sockets) for
// the event streams. bench/probe.mjs is
// preloaded into both gateway processes (NODE_OPTIONS=--import) and answers on a unix socket
// with the main thread's event-loop utilization (ELU) and a GC on request; CPU time and RSS are
// read from /proc/<pid>. Prints one table with both and the ratio, the targets met/missed, and
// writes the JSON to bench/results/latest.json.
//
// Cases (full run; --quick shortens every one for a ~1 minute smoke run):
//   health: GET /health, 50 connections                    3 rounds × 2 s, interleaved seed/gateway
//   get-session: GET /sessions/:key over 1,000 sessions, 50 connections  "
//   messages: POST /sessions/:key/messages, instant agent, 1/16/64 connections, as many session keys as
//       connections and never two requests of one key in flight (a session runs one message at a
//       time, FIFO: one shared key would serialize); autocannon: one key per connection; wrk: a
//       pool of free keys in its Lua script (see bench/load-http.mjs)
//   fanout: SSE fan-out: 1, 100, 1,000 subscribers of one session, one answer of 1,000 tokens
//       (`/stream 1000 10 1`: a token every 10 ms tick, ~100 tokens/s); burst: 1,000 subscribers
//       with the same rate in bursts of 10 tokens (`/stream 1000 100 10`); the 1,000-subscriber
//       cases best of 2 interleaved runs
//   long: one 20,000-token answer to one subscriber (`/stream 20000 1 10`): cost per token,
//       tokens 0–1,000 against 19,000–20,000; unpaced: the same answer unpaced (`/stream 20000 0 1`)
//   rss-session, rss-stream: RSS per idle session (10,000 sessions) and per open stream (1,000
//       SSE connections, measured at 500 and at 1,000; then, with them still open, 1,000 idle
//       keep-alive connections after one GET /health and 1,000 bare TCP connections, for what a
//       connection costs without a stream); each case on a fresh pair of processes whose V8
//       young generation is capped (--max-semi-space-size=1, see MEMORY_NODE_OPTIONS)
//   replay: one session's log filled with `/stream 4096 0 1` while one subscriber reads it live
//       (seed and gateway: the live row), then (gateway only; the seed has no log) a reconnect
//       with `Last-Event-ID: <last id − 4096>` timed from the request to the last replayed frame,
//       with the gateway's CPU time over the same span; a warm-up and 7 timed reconnects, and one
//       with `?after=` instead of the header
//   log-rss: (gateway only) RSS growth of the gateway process when one session's log fills to its
//       bound: ~4,200 small tokens (the 4,096-event bound) and 3,000 tokens of 2 KiB (the 4 MiB
//       bound), each on two sessions one after the other
//   history, sessions-rss: on REAL pi sessions (createFauxPiAgent of lib/faux-agent.js, the agent
//       the CLI runs without --model; launcher flag --faux, bench/faux-sessions.mjs), not the
//       scripted ones:
//     history: GET /sessions/:key/messages?limit=1000, format ui and pi, of a session built with
//       500 `/echo` runs (1,000 messages in both formats) and of one built with 500 tool-calling
//       runs (thinking + pi's real `read` tool + text: 1,000 ui messages, 2,000 pi messages of
//       which the last 1,000 are served); also the default page (ui, limit=100) of each, to show
//       what a page costs in a long session; 20 warm-up, 200 sequential and 200 at 8 connections,
//       each timed to its last byte (bench/http-latency.mjs); p50/p99, bytes, gateway CPU. The
//       seed has no history route (no ratio): for scale, its nearest route, GET /sessions/:key
//       (a snapshot with messageCount, no messages) of the same 1,000-message session, both gateways
//     sessions-rss: RSS per real session: 1,000 sessions created with one `/echo hi` each (16
//       connections), RSS after a full GC before and after, seed and pi-gateway (session.maxSessions
//       2,000 so that none is evicted); twice, on fresh processes with MEMORY_NODE_OPTIONS: session
//       files in a temporary dir (as the CLI: --ephemeral / --data-dir), and in memory
//   cluster: (pi-gateway only; bench/cluster.mjs) a real redis-server and two pi-gateway processes
//       sharing it; a session claimed by node A, 1 and 100 subscribers on A and as many on node B
//       (the non-owner, served from the Redis Stream), one answer of 1,000 tokens (`stream:1000:10`)
//       through A: events/s and emit→receipt p50/p99 on each side, the latency B adds, and that B's
//       subscribers get every event in order; skipped with a note when /usr/bin/redis-server is absent
//
// It stops by itself: a watchdog kills everything after a deadline; any failure kills the
// children and exits 1.

import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { cpuBetween, eluBetween, httpLoadTool, probeStats, procCpu, rssBytes } from "./bench-util.mjs";
import { clusterCase, clusterNote, clusterRows, clusterTargets } from "./cluster.mjs";
import { seedAvailable, spawnSeed } from "./seed/spawn-seed.mjs";
import { spawnGateway } from "./spawn-gateway.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "..");

const { values: cli } = parseArgs({
	options: {
		quick: { type: "boolean", default: false },
		only: { type: "string" },
		"load-tool": { type: "string" },
		out: { type: "string", default: join(here, "results", "latest.json") },
	},
});
const QUICK = cli.quick;
if (cli["load-tool"] && !["wrk", "autocannon"].includes(cli["load-tool"])) {
	process.stderr.write(`--load-tool: wrk or autocannon, not ${cli["load-tool"]}\n`);
	process.exit(2);
}
// --only: which cases run.
const CASES = ["health", "get-session", "messages", "fanout", "burst", "long", "unpaced", "rss-session", "rss-stream", "replay", "log-rss", "history", "sessions-rss", "cluster"];
const GROUPS = {
	all: CASES,
	http: ["health", "get-session", "messages"],
	sse: ["fanout", "burst", "long", "unpaced"],
	"per-event": ["fanout", "burst", "long", "unpaced"],
	memory: ["rss-session", "rss-stream"],
	log: ["replay", "log-rss"],
	rss: ["rss-session", "rss-stream", "log-rss", "sessions-rss"],
	faux: ["history", "sessions-rss"],
	cluster: ["cluster"],
};
const SELECTED = new Set();
for (const name of (cli.only ?? "all").split(",").map((x) => x.trim()).filter(Boolean)) {
	const names = GROUPS[name] ?? (CASES.includes(name) ? [name] : null);
	if (!names) {
		process.stderr.write(`--only: unknown case ${name} (cases: ${CASES.join(", ")}; groups: ${Object.keys(GROUPS).join(", ")})\n`);
		process.exit(2);
	}
	for (const n of names) SELECTED.add(n);
}
const want = (...names) => names.some((n) => SELECTED.has(n));

// The HTTP load generator of the measured cases (creating sessions always uses autocannon).
const LOAD_TOOL = httpLoadTool(cli["load-tool"]);
const LOAD_NAME = LOAD_TOOL.name;

// ---------------------------------------------------------------- parameters

const P = QUICK
	? {
			rounds: 1,
			httpSeconds: 1,
			warmupSeconds: 0.3,
			getSessions: 1000,
			messageConcurrency: [1, 16, 64],
			fanout: [1, 100, 1000],
			fanoutTokens: 100,
			fanoutInterval: 10,
			sseRounds: 1,
			burst: null,
			longTokens: 3000,
			longPace: [1, 10],
			unpaced: false,
			idleSessions: 2000,
			streams: 1000,
			replayEvents: 4096,
			replayRounds: 3,
			logSmallTokens: 4200,
			logBig: { count: 3000, size: 2048 },
			logSessions: 1,
			historyRuns: 500,
			historyRequests: { warmup: 10, sequential: 100, concurrent: 100, connections: 8 },
			fauxSessions: 1000,
			cluster: { subs: [1, 100], tokens: 200, intervalMs: 10, warmupTokens: 20, leaseMs: 10000, budgetMs: 60_000 },
			watchdogMs: 240_000,
		}
	: {
			rounds: 3,
			httpSeconds: 2,
			warmupSeconds: 1,
			getSessions: 1000,
			messageConcurrency: [1, 16, 64],
			fanout: [1, 100, 1000],
			fanoutTokens: 1000,
			fanoutInterval: 10,
			sseRounds: 2,
			burst: 10,
			longTokens: 20000,
			longPace: [1, 10],
			unpaced: true,
			idleSessions: 10000,
			streams: 1000,
			replayEvents: 4096,
			replayRounds: 7,
			logSmallTokens: 4200,
			logBig: { count: 3000, size: 2048 },
			logSessions: 2,
			historyRuns: 500,
			historyRequests: { warmup: 20, sequential: 200, concurrent: 200, connections: 8 },
			fauxSessions: 1000,
			cluster: { subs: [1, 100], tokens: 1000, intervalMs: 10, warmupTokens: 50, leaseMs: 10000, budgetMs: 90_000 },
			watchdogMs: 600_000,
		};
const LOAD_CONNECTIONS = 50;
// pi-gateway closes connections past limits.maxConnections (default 1024); the seed has no cap.
// 1,000 subscribers plus the load's own connections need a little more.
const GATEWAY_ARGS = ["--max-connections", "4096"];

// ---------------------------------------------------------------- process bookkeeping

const children = new Set(); // {name, kill(): Promise|void}
let cleaning = null;

async function cleanup() {
	if (cleaning) return cleaning;
	cleaning = (async () => {
		await Promise.all(
			[...children].map(async (c) => {
				try {
					await c.kill();
				} catch {
					// already gone
				}
			}),
		);
		children.clear();
		rmSync(probeDir, { recursive: true, force: true });
	})();
	return cleaning;
}

async function fail(error) {
	process.stderr.write(`\nbench failed: ${error?.stack ?? error}\n`);
	await cleanup();
	process.exit(1);
}

process.on("SIGINT", () => fail(new Error("interrupted")));
process.on("SIGTERM", () => fail(new Error("terminated")));
process.on("unhandledRejection", (error) => fail(error));
const WATCHDOG_MS = P.watchdogMs + (want("cluster") ? P.cluster.budgetMs : 0);
const watchdog = setTimeout(() => fail(new Error(`watchdog: the run took longer than ${WATCHDOG_MS / 1000} s`)), WATCHDOG_MS);
watchdog.unref();

const probeDir = mkdtempSync(join(tmpdir(), "pi-bench-"));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => process.stderr.write(`${msg}\n`);

// ---------------------------------------------------------------- CPU pinning

const taskset = (() => {
	try {
		execFileSync("taskset", ["-V"], { stdio: "ignore" });
		return true;
	} catch {
		return false;
	}
})();
const ncpu = cpus().length;
const PIN = taskset && ncpu >= 2 ? { gateway: "0", load: "1" } : null;
if (PIN) execFileSync("taskset", ["-a", "-cp", PIN.load, String(process.pid)], { stdio: "ignore" });

function pin(pid, core) {
	if (PIN) execFileSync("taskset", ["-a", "-cp", core, String(pid)], { stdio: "ignore" });
}

/** argv for a load process: under `taskset -c <load core>` when pinning. */
function loadCommand(args) {
	return PIN ? ["taskset", ["-c", PIN.load, process.execPath, ...args]] : [process.execPath, args];
}

// ---------------------------------------------------------------- the two gateways

const IMPLS = [
	{ id: "seed", name: "seed", spawn: spawnSeed, args: [] },
	{ id: "gateway", name: "pi-gateway", spawn: spawnGateway, args: GATEWAY_ARGS },
];

async function startImpl(impl, tag, extraArgs = [], nodeOptions = "") {
	const probe = join(probeDir, `${impl.id}-${tag}.sock`);
	const env = {
		...process.env,
		NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} ${nodeOptions} --import=${pathToFileURL(join(here, "probe.mjs")).href}`.trim(),
		PI_BENCH_PROBE: probe,
	};
	// Pinned from birth, not only after it: a child inherits the affinity of the thread that
	// forks it, so the gateway's runtime sees one core when it sizes its thread pools. The
	// spawn (the fork) happens synchronously inside impl.spawn(), before its first await.
	if (PIN) execFileSync("taskset", ["-cp", PIN.gateway, String(process.pid)], { stdio: "ignore" });
	let spawning;
	try {
		spawning = impl.spawn(["--scenario", "instant", ...impl.args, ...extraArgs], { timeoutMs: 30000, env });
	} finally {
		if (PIN) execFileSync("taskset", ["-cp", PIN.load, String(process.pid)], { stdio: "ignore" });
	}
	const server = await spawning;
	const entry = { name: `${impl.id} (${tag})`, kill: () => server.stop() };
	children.add(entry);
	pin(server.pid, PIN?.gateway); // every thread, whatever it inherited
	// The probe binds its socket before the launcher's main module runs; wait for it anyway.
	for (let i = 0; ; i++) {
		try {
			await probeStats(probe);
			break;
		} catch (error) {
			if (i > 50) throw new Error(`${impl.name}: probe not answering: ${error.message}`);
			await sleep(100);
		}
	}
	return {
		...impl,
		port: server.port,
		pid: server.pid,
		url: `http://127.0.0.1:${server.port}`,
		probe,
		stop: async () => {
			children.delete(entry);
			await server.stop();
		},
	};
}

/**
 * Both gateways; `extraArgs` {seed?: [...], gateway?: [...]} adds launcher flags, `nodeOptions`
 * node flags for both (through NODE_OPTIONS).
 */
async function startPair(tag, extraArgs = {}, nodeOptions = "") {
	const out = {};
	for (const impl of IMPLS) out[impl.id] = await startImpl(impl, tag, extraArgs[impl.id], nodeOptions);
	return out;
}

// The memory cases run both processes with V8's young generation capped at 1 MiB semi-spaces.
// Left alone, V8 grows it (to 16 MiB semi-spaces, 32 MiB committed) as soon as a process
// allocates quickly — creating sessions, opening streams — and gives it back seconds later, so
// tens of MiB that depend on neither the count nor the implementation land in (or leave) a
// before/after RSS difference: a fresh seed "costs" 16 KiB per stream, one that has run a while
// 6 KiB. A capped young generation is the same constant before and after.
const MEMORY_NODE_OPTIONS = "--max-semi-space-size=1";

async function stopPair(pair) {
	await Promise.all(Object.values(pair).map((s) => s.stop()));
}

// ---------------------------------------------------------------- load processes

/** Runs `script` (a file of bench/) on the load core with `spec`; resolves with the JSON line it prints last. */
function runLoadProcess(script, spec) {
	return new Promise((resolveRun, reject) => {
		const name = script.replace(/\.mjs$/, "");
		const [cmd, args] = loadCommand([join(here, script), JSON.stringify(spec)]);
		const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"], cwd: repoRoot });
		const entry = { name, kill: () => child.kill("SIGKILL") };
		children.add(entry);
		let out = "";
		child.stdout.setEncoding("utf8").on("data", (d) => (out += d));
		child.on("error", reject);
		child.on("exit", (code, signal) => {
			children.delete(entry);
			if (code !== 0) return reject(new Error(`${name} exited with ${code ?? signal} for ${spec.label ?? spec.path}`));
			try {
				resolveRun(JSON.parse(out.trim().split("\n").pop()));
			} catch {
				reject(new Error(`${name} printed no result: ${out}`));
			}
		});
	});
}

/** One load run (wrk or autocannon) in its own process (bench/load-http.mjs). */
const runHttpLoad = (spec) => runLoadProcess("load-http.mjs", spec);

/** One bounded latency run (bench/http-latency.mjs) in its own process. */
const runLatency = (spec) => runLoadProcess("http-latency.mjs", spec);

/** The SSE load process (bench/sse-load.mjs), driven over IPC. */
function startSseLoad() {
	const [cmd, args] = loadCommand([join(here, "sse-load.mjs")]);
	const child = spawn(cmd, args, { stdio: ["ignore", "inherit", "inherit", "ipc"], cwd: repoRoot });
	const entry = { name: "sse-load", kill: () => child.kill("SIGKILL") };
	children.add(entry);
	const pending = new Map();
	let nextId = 1;
	child.on("message", (msg) => {
		const p = pending.get(msg.id);
		if (!p) return;
		pending.delete(msg.id);
		msg.ok ? p.resolve(msg) : p.reject(new Error(`sse-load: ${msg.error}`));
	});
	child.on("exit", (code, signal) => {
		children.delete(entry);
		for (const p of pending.values()) p.reject(new Error(`sse-load exited (${code ?? signal})`));
		pending.clear();
	});
	const call = (cmd, args = {}) =>
		new Promise((resolveCall, reject) => {
			const id = nextId++;
			pending.set(id, { resolve: resolveCall, reject });
			child.send({ id, cmd, ...args });
		});
	return {
		pid: child.pid,
		call,
		stop: async () => {
			if (child.exitCode === null && child.signalCode === null) {
				const exited = new Promise((r) => child.once("exit", r));
				child.send({ cmd: "exit" });
				const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
				await exited;
				clearTimeout(timer);
			}
		},
	};
}

async function postJson(server, path, body) {
	const res = await fetch(`${server.url}${path}`, {
		method: "POST",
		headers: { "content-type": "application/json" },
		body: JSON.stringify(body),
	});
	const text = await res.text();
	if (res.status !== 200) throw new Error(`${server.name} POST ${path} → ${res.status} ${text}`);
	return JSON.parse(text);
}

// ---------------------------------------------------------------- cases

const results = { cases: {} };

/**
 * An HTTP case: a warm-up per gateway, then `rounds` measured runs per gateway interleaved
 * ABBA-style (seed, gateway, gateway, seed, …) so drifting background load hits both alike.
 * Keeps every round; the table shows each gateway's best round (highest req/s).
 */
async function httpCase(pair, id, label, spec) {
	log(`· ${label}`);
	for (const impl of IMPLS) {
		const s = pair[impl.id];
		await runHttpLoad({ ...spec, tool: LOAD_NAME, url: s.url, duration: P.warmupSeconds, label: `${label} warm-up` });
	}
	const rounds = { seed: [], gateway: [] };
	for (let r = 0; r < P.rounds; r++) {
		const order = r % 2 === 0 ? IMPLS : [...IMPLS].reverse();
		for (const impl of order) {
			const s = pair[impl.id];
			const out = await runHttpLoad({ ...spec, tool: LOAD_NAME, url: s.url, duration: P.httpSeconds, probe: s.probe, pid: s.pid, label });
			rounds[impl.id].push(out);
		}
	}
	const best = (list) => list.reduce((a, b) => (b.rps > a.rps ? b : a));
	results.cases[id] = { label, kind: "http", spec, rounds, seed: best(rounds.seed), gateway: best(rounds.gateway) };
}

/** Create `n` sessions `<prefix><i>` with one instant message each (autocannon, unique keys). */
async function createSessions(server, prefix, n) {
	const out = await runHttpLoad({
		url: server.url,
		path: `/sessions/${prefix}{n}/messages`,
		method: "POST",
		body: { text: "hi" },
		mode: "unique",
		amount: n,
		connections: 32,
		label: `create ${n} sessions`,
	});
	if (out.ok !== n) throw new Error(`${server.name}: creating ${n} sessions: ${JSON.stringify(out)}`);
	return out;
}

async function httpPhase() {
	log(`HTTP cases (${LOAD_NAME} ${LOAD_TOOL.version})`);
	const pair = await startPair("http");
	try {
		if (want("health")) await httpCase(pair, "health", "GET /health", { path: "/health", connections: LOAD_CONNECTIONS });

		if (want("get-session")) {
			for (const impl of IMPLS) await createSessions(pair[impl.id], "s", P.getSessions);
			await httpCase(pair, "getSession", `GET /sessions/:key (${P.getSessions} sessions)`, {
				path: "/sessions/s{n}",
				mode: "rotate",
				keys: P.getSessions,
				connections: LOAD_CONNECTIONS,
			});
		}

		for (const c of want("messages") ? P.messageConcurrency : []) {
			await httpCase(pair, `messages${c}`, `POST /messages c=${c}`, {
				path: "/sessions/m{n}/messages",
				method: "POST",
				body: { text: "hi" },
				mode: "perConnection",
				connections: c,
			});
		}
	} finally {
		await stopPair(pair);
	}
}

/**
 * One SSE run against one gateway: `subs` subscribers of a fresh session, one message `text`
 * streaming `tokens` tokens. Gateway CPU (all threads) and main-thread ELU are taken from just
 * before the message is posted until the last subscriber saw message_complete.
 */
async function sseRun(server, load, { key, subs, text, tokens, windows, timeoutMs }) {
	await postJson(server, `/sessions/${key}/messages`, { text: "hi" });
	const opened = await load.call("open", { port: server.port, key, n: subs });
	await sleep(300);
	await load.call("arm", { tokens, pid: server.pid, windows });
	const s0 = await probeStats(server.probe);
	const c0 = procCpu(server.pid);
	const l0 = procCpu(load.pid);
	const t0 = performance.now();
	const reply = await postJson(server, `/sessions/${key}/messages`, { text });
	const got = await load.call("collect", { timeoutMs });
	const seconds = (performance.now() - t0) / 1000;
	const c1 = procCpu(server.pid);
	const l1 = procCpu(load.pid);
	const s1 = await probeStats(server.probe);
	await load.call("close");
	await sleep(300);
	const cpu = cpuBetween(c0, c1);
	const { id: _id, ok: _ok, ...stream } = got;
	return {
		...stream,
		openMs: opened.ms,
		replyOk: reply.ok,
		elu: eluBetween(s0, s1),
		cpuMs: cpu.ns / 1e6,
		cpuStatMs: cpu.statNs / 1e6,
		cpuUsPerEvent: got.deliveredFrames ? cpu.ns / 1000 / got.deliveredFrames : NaN,
		seconds,
		cpuPct: cpu.ns / 1e7 / seconds,
		loadCpuPct: cpuBetween(l0, l1).ns / 1e7 / seconds,
	};
}

async function ssePhase() {
	log("SSE cases (raw-socket subscribers)");
	const pair = await startPair("sse");
	const load = startSseLoad();
	try {
		// `rounds` > 1: interleaved (ABBA) runs, each gateway's run with the lowest p99 shown;
		// every run is kept in the JSON.
		const runCase = async (id, label, opts, rounds = 1) => {
			log(`· ${label}`);
			const out = { label, kind: "sse", opts, rounds: { seed: [], gateway: [] } };
			for (let r = 0; r < rounds; r++) {
				// Alternate which gateway goes first from run to run and case to case.
				const flip = (Object.keys(results.cases).length + r) % 2 === 1;
				for (const impl of flip ? [...IMPLS].reverse() : IMPLS) {
					out.rounds[impl.id].push(await sseRun(pair[impl.id], load, { ...opts, key: `${id}r${r}` }));
				}
			}
			for (const impl of IMPLS) {
				out[impl.id] = out.rounds[impl.id].reduce((a, b) => (b.latencyMs.p99 < a.latencyMs.p99 ? b : a));
			}
			results.cases[id] = out;
		};
		const T = P.fanoutTokens;
		const fanTimeout = Math.max(60000, T * P.fanoutInterval * 6);
		for (const subs of want("fanout") ? P.fanout : []) {
			await runCase(`fanout${subs}`, `SSE ${subs} subscriber${subs > 1 ? "s" : ""}, ${T} tokens`, {
				subs,
				tokens: T,
				text: `/stream ${T} ${P.fanoutInterval} 1`,
				timeoutMs: fanTimeout,
			}, subs === P.fanout.at(-1) ? P.sseRounds : 1);
		}
		if (P.burst && want("burst")) {
			const subs = P.fanout.at(-1);
			await runCase(`fanout${subs}burst`, `SSE ${subs} subscribers, ${T} tokens in bursts of ${P.burst}`, {
				subs,
				tokens: T,
				text: `/stream ${T} ${P.fanoutInterval * P.burst} ${P.burst}`,
				timeoutMs: fanTimeout,
			}, P.sseRounds);
		}
		const L = P.longTokens;
		// Contiguous 1,000-token windows over the whole answer: the first and last are reported,
		// and a robust line (Theil–Sen) through all of them says whether the cost per token grows.
		const windows = Array.from({ length: Math.floor(L / 1000) }, (_, i) => [i * 1000, (i + 1) * 1000]);
		if (want("long")) {
			await runCase("long", `SSE 1 subscriber, one ${L}-token answer`, {
				subs: 1,
				tokens: L,
				text: `/stream ${L} ${P.longPace[0]} ${P.longPace[1]}`,
				windows,
				timeoutMs: 120000,
			});
		}
		if (P.unpaced && want("unpaced")) {
			await runCase("longUnpaced", `SSE 1 subscriber, ${L} tokens unpaced`, {
				subs: 1,
				tokens: L,
				text: `/stream ${L} 0 1`,
				windows,
				timeoutMs: 60000,
			});
		}
	} finally {
		await load.stop();
		await stopPair(pair);
	}
}

/**
 * Memory growth per unit between two settledMemory() readings: `rss` (the raw RSS growth),
 * `heapUsed` (live V8 objects), `heapTotal` (V8's committed heap) and `steady` = RSS growth less
 * the growth of V8's committed heap plus that of its live objects: the cost without V8's
 * heap-sizing decisions (a fresh Node process commits several MiB of young generation as soon
 * as it allocates quickly, and gives it back seconds later; a process that has run a while has
 * already committed it), i.e. the native memory plus the JS objects the units hold.
 */
function perUnit(before, after, n) {
	const d = (f) => (after[f] - before[f]) / n;
	return { rss: d("rss"), heapUsed: d("heapUsed"), heapTotal: d("heapTotal"), steady: d("rss") - d("heapTotal") + d("heapUsed") };
}

/** RSS and V8 heap of a measured process after a full GC (and a short settle). */
async function settledMemory(server) {
	await probeStats(server.probe, { gc: true });
	await sleep(200);
	const st = await probeStats(server.probe, { gc: true });
	await sleep(100);
	return { rss: rssBytes(server.pid), heapUsed: st.heapUsed, heapTotal: st.heapTotal, external: st.external };
}

async function memoryPhase() {
	log("Memory cases");
	// Each case on a fresh pair of processes (with MEMORY_NODE_OPTIONS), so that what one case
	// allocated and freed is not reused by the next.
	const load = startSseLoad();
	let pair = null;
	try {
		const sessions = { label: `RSS per idle session (${P.idleSessions} sessions)`, kind: "memory" };
		const streams = { label: `RSS per open stream (${P.streams} SSE connections)`, kind: "memory", streams: true };
		if (want("rss-session")) pair = await startPair("memory-sessions", {}, MEMORY_NODE_OPTIONS);
		for (const impl of pair ? IMPLS : []) {
			const s = pair[impl.id];
			log(`· ${impl.name}: ${P.idleSessions} idle sessions`);
			const before = await settledMemory(s);
			await createSessions(s, "idle", P.idleSessions);
			await sleep(200);
			const after = await settledMemory(s);
			const ready = await (await fetch(`${s.url}/ready`)).json();
			sessions[impl.id] = {
				before,
				after,
				sessions: ready.sessions,
				per: perUnit(before, after, P.idleSessions),
				bytesPer: (after.rss - before.rss) / P.idleSessions,
			};
		}
		if (pair) await stopPair(pair);
		pair = null;
		if (want("rss-stream")) pair = await startPair("memory-streams", {}, MEMORY_NODE_OPTIONS);
		for (const impl of pair ? IMPLS : []) {
			const s = pair[impl.id];
			// Opened in two halves, measured after each: the per-stream cost over 0 → N/2 and
			// N/2 → N says whether it is linear (and the total keeps the historical number).
			log(`· ${impl.name}: ${P.streams} open streams`);
			await postJson(s, "/sessions/streams/messages", { text: "hi" });
			const before = await settledMemory(s);
			const half = Math.floor(P.streams / 2);
			const opened1 = await load.call("open", { port: s.port, key: "streams", n: half });
			await sleep(300);
			const mid = await settledMemory(s);
			const opened2 = await load.call("open", { port: s.port, key: "streams", n: P.streams - half });
			await sleep(300);
			const after = await settledMemory(s);
			const open = opened2.open; // the load's running total
			// For comparison, with the streams still open (nothing freed, so nothing reused): as
			// many idle keep-alive connections that made one GET /health, then as many bare TCP
			// connections that sent nothing yet (both well within pi-gateway's 10 s header timeout).
			await load.call("openPlain", { port: s.port, n: P.streams, request: true });
			await sleep(300);
			const afterKeepAlive = await settledMemory(s);
			await load.call("openPlain", { port: s.port, n: P.streams, request: false });
			await sleep(300);
			const afterBare = await settledMemory(s);
			const closed = await load.call("close");
			await sleep(300);
			streams[impl.id] = {
				before,
				mid,
				after,
				afterKeepAlive,
				afterBare,
				half,
				openHalf: opened1.open,
				open,
				plainClosedByServer: closed.plainClosedByServer,
				per: perUnit(before, after, P.streams),
				perFirstHalf: perUnit(before, mid, half),
				perSecondHalf: perUnit(mid, after, P.streams - half),
				perKeepAlive: perUnit(after, afterKeepAlive, P.streams),
				perBare: perUnit(afterKeepAlive, afterBare, P.streams),
				bytesPer: (after.rss - before.rss) / P.streams,
			};
		}
		if (want("rss-session")) results.cases.rssSession = sessions;
		if (want("rss-stream")) results.cases.rssStream = streams;
	} finally {
		await load.stop();
		if (pair) await stopPair(pair);
	}
}

const median = (xs) => {
	const v = xs.filter(Number.isFinite).sort((p, q) => p - q);
	if (!v.length) return NaN;
	const m = v.length >> 1;
	return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

/**
 * replay: fill one session's log with a `/stream N 0 1` answer while one subscriber reads it
 * live (both gateways; the live row), then reconnect to the gateway with the id N events back.
 */
async function replayCase(pair, load) {
	const N = P.replayEvents;
	const key = "replay";
	log(`· live: ${N} tokens unpaced to 1 subscriber (the log's fill)`);
	const live = { label: `live: ${fmt(N)} tokens unpaced to 1 subscriber`, kind: "sse", opts: { text: `/stream ${N} 0 1` }, rounds: { seed: [], gateway: [] } };
	for (const impl of IMPLS) {
		const r = await sseRun(pair[impl.id], load, { key, subs: 1, text: `/stream ${N} 0 1`, tokens: N, timeoutMs: 60000 });
		live.rounds[impl.id].push(r);
		live[impl.id] = r;
	}
	results.cases.replayLive = live;

	const g = pair.gateway;
	log(`· pi-gateway: reconnect replaying ${N} events (${P.replayRounds} timed + 1 warm-up)`);
	// A plain connect: hello's id is the last id in the log.
	const head = await load.call("replay", { port: g.port, key, timeoutMs: 10000 });
	if (head.helloId === null || !Number.isFinite(head.helloId)) throw new Error(`pi-gateway: hello without an id: ${JSON.stringify(head)}`);
	const lastId = head.helloId;
	const from = lastId - N;
	const once = (how) =>
		load.call("replay", { port: g.port, key, ...(how === "query" ? { after: from } : { lastEventId: from }), untilId: lastId, pid: g.pid, timeoutMs: 30000 });
	const runs = [];
	await once("header"); // warm-up
	await sleep(100);
	for (let i = 0; i < P.replayRounds; i++) {
		runs.push(await once("header"));
		await sleep(100);
	}
	const query = await once("query");
	const intact = (r) =>
		!r.timedOut && !r.missed && r.frames === N && r.firstId === from + 1 && r.lastId === lastId && !r.gaps && !r.backwards;
	results.cases.replay = {
		label: `reconnect replaying ${fmt(N)} logged events`,
		kind: "replay",
		events: N,
		lastId,
		from,
		runs,
		query,
		ms: median(runs.map((r) => r.ms)),
		msMin: Math.min(...runs.map((r) => r.ms)),
		msMax: Math.max(...runs.map((r) => r.ms)),
		helloMs: median(runs.map((r) => r.helloMs)),
		cpuMs: median(runs.map((r) => r.cpuNs / 1e6)),
		intact: runs.every(intact) && intact(query),
	};
}

/**
 * log-rss: the gateway's RSS growth when one session's log fills to its bound; small tokens
 * (the event-count bound) and 2 KiB tokens (the byte bound), each on P.logSessions sessions in
 * turn (the first pays for any one-time growth; the next shows the marginal cost).
 */
async function logRssCase(g, load) {
	const out = { label: "RSS of one session's full log", kind: "logRss", variants: [] };
	const variants = [
		{
			id: "small",
			label: `${fmt(P.logSmallTokens)} tokens of ~25 B (4,096-event bound)`,
			keys: Array.from({ length: P.logSessions }, (_, i) => `logsmall${i}`),
			text: `/stream ${P.logSmallTokens} 0 1`,
			create: (s, key) => postJson(s, `/sessions/${key}/messages`, { text: "hi" }),
		},
		{
			id: "big",
			label: `${fmt(P.logBig.count)} tokens of ${fmt(P.logBig.size)} B (4 MiB bound)`,
			keys: Array.from({ length: P.logSessions }, (_, i) => `big-${P.logBig.count}-${P.logBig.size}-${i}`),
			text: "go",
			// A BigStreamSession streams on every prompt: create the session by connecting to its
			// event stream (which does) instead of with a message.
			create: (s, key) => load.call("replay", { port: s.port, key, timeoutMs: 10000 }),
		},
	];
	for (const v of variants) {
		log(`· pi-gateway: log RSS, ${v.label}`);
		const sessions = [];
		for (const key of v.keys) {
			await v.create(g, key);
			const before = await settledMemory(g);
			const t0 = performance.now();
			await postJson(g, `/sessions/${key}/messages`, { text: v.text });
			const fillMs = performance.now() - t0;
			await sleep(200);
			const after = await settledMemory(g);
			// What the log holds: a reconnect from id 0 gets every frame still logged (missed: true
			// once the oldest were dropped), up to the last id (hello's id on a plain connect).
			const head = await load.call("replay", { port: g.port, key, timeoutMs: 10000 });
			const content = await load.call("replay", { port: g.port, key, lastEventId: 0, untilId: head.helloId, timeoutMs: 10000 });
			sessions.push({
				key,
				fillMs,
				rssBefore: before.rss,
				rssAfter: after.rss,
				rssGrowth: after.rss - before.rss,
				heapUsedGrowth: after.heapUsed - before.heapUsed,
				heapTotalGrowth: after.heapTotal - before.heapTotal,
				externalGrowth: after.external - before.external,
				logFrames: content.frames,
				logMissed: content.missed,
				logFirstId: content.firstId,
				logLastId: content.lastId,
				logTimedOut: content.timedOut,
				// Bytes the reconnect read less those of a plain connect (response head, `retry:`,
				// hello): the logged frames as sent, plus chunked framing (~8 B a frame).
				logBytes: content.bytes - head.bytes,
			});
		}
		out.variants.push({ id: v.id, label: v.label, sessions });
	}
	results.cases.logRss = out;
}

async function logPhase() {
	log("Event log cases");
	const pair = await startPair("log", { gateway: ["--big-sessions"] });
	const load = startSseLoad();
	try {
		if (want("replay")) await replayCase(pair, load);
		if (want("log-rss")) await logRssCase(pair.gateway, load);
	} finally {
		await load.stop();
		await stopPair(pair);
	}
}

// ---------------------------------------------------------------- real pi sessions (faux model)

// The sessions of the history case: each built with P.historyRuns runs, one after the other.
const HISTORY_SESSIONS = [
	{
		id: "echo",
		key: "hist-echo",
		label: "/echo runs",
		text: (i) => `/echo message number ${i} of the history benchmark`,
		// 2 messages a run in both formats (user, assistant)
		total: (runs) => 2 * runs,
		seedToo: true,
	},
	{
		id: "tools",
		key: "hist-tools",
		label: "tool-calling runs (thinking + read tool + text)",
		text: (i) => `what does the workspace file say? (question ${i})`,
		// ui: user + one assistant a run; pi: user, assistant (thinking, tool call), tool result, assistant
		total: (runs, format) => (format === "ui" ? 2 : 4) * runs,
		seedToo: false,
	},
];
// What is asked of each: the whole 1,000 messages in both formats, and the default page (100) of
// the same session, which shows whether a page costs what it holds or what the session holds.
const HISTORY_QUERIES = [
	{ id: "ui", format: "ui", limit: 1000 },
	{ id: "pi", format: "pi", limit: 1000 },
	{ id: "ui100", format: "ui", limit: 100 },
];

/**
 * history: GET /sessions/:key/messages?limit=1000 (ui and pi) of 1,000-message real sessions on
 * pi-gateway; the seed's nearest route (GET /sessions/:key) of the same session on both, for scale.
 */
async function historyPhase() {
	log("History (real pi sessions on the faux model)");
	const pair = await startPair("history", { seed: ["--faux"], gateway: ["--faux"] });
	const R = P.historyRequests;
	const latencySpec = (server, path, label) => ({
		url: server.url,
		path,
		label,
		warmup: R.warmup,
		sequential: R.sequential,
		concurrent: { connections: R.connections, requests: R.concurrent },
		pid: server.pid,
		probe: server.probe,
	});
	try {
		const out = { label: "History: GET /sessions/:key/messages", kind: "history", runs: P.historyRuns, requests: R, sessions: [] };
		for (const hs of HISTORY_SESSIONS) {
			const built = {};
			for (const impl of hs.seedToo ? IMPLS : IMPLS.filter((i) => i.id === "gateway")) {
				log(`· ${impl.name}: ${P.historyRuns} ${hs.label} on ${hs.key}`);
				const server = pair[impl.id];
				const t0 = performance.now();
				for (let i = 0; i < P.historyRuns; i++) {
					const reply = await postJson(server, `/sessions/${hs.key}/messages`, { text: hs.text(i) });
					if (!reply.ok) throw new Error(`${server.name}: run ${i} on ${hs.key}: ${JSON.stringify(reply)}`);
				}
				const snapshot = await (await fetch(`${server.url}/sessions/${hs.key}`)).json();
				built[impl.id] = { ms: performance.now() - t0, messageCount: snapshot.session?.messageCount };
			}
			const formats = {};
			for (const q of HISTORY_QUERIES) {
				log(`· pi-gateway: history of ${hs.key}, format=${q.format}&limit=${q.limit}`);
				const g = pair.gateway;
				const r = await runLatency(latencySpec(g, `/sessions/${hs.key}/messages?format=${q.format}&limit=${q.limit}`, `history ${hs.id} ${q.id}`));
				const total = hs.total(P.historyRuns, q.format);
				const expected = { messages: Math.min(q.limit, total), hasMore: total > q.limit };
				const intact = r.summary?.messages === expected.messages && r.summary?.hasMore === expected.hasMore && r.summary?.format === q.format;
				formats[q.id] = { ...r, query: q, total, expected, intact };
			}
			out.sessions.push({ id: hs.id, key: hs.key, label: hs.label, built, formats });
		}
		// The seed's nearest route, for scale: the snapshot of the same 1,000-message session.
		const near = HISTORY_SESSIONS.find((x) => x.seedToo);
		out.nearest = { key: near.key };
		for (const impl of IMPLS) {
			log(`· ${impl.name}: GET /sessions/${near.key} (snapshot), for scale`);
			out.nearest[impl.id] = await runLatency(latencySpec(pair[impl.id], `/sessions/${near.key}`, `snapshot ${near.key}`));
		}
		results.cases.history = out;
	} finally {
		await stopPair(pair);
	}
}

// sessions-rss: the storage variants, each on a fresh pair of processes.
const FAUX_STORAGE = [
	{ id: "disk", flag: "--faux", label: "session files in a temp dir, as the CLI" },
	{ id: "memory", flag: "--faux-memory", label: "in memory (SessionManager.inMemory)" },
];

/** sessions-rss: RSS per real pi session (one `/echo hi` each), seed and pi-gateway. */
async function sessionsRssPhase() {
	log("RSS of real pi sessions (faux model)");
	const N = P.fauxSessions;
	const out = { label: `RSS per real pi session (${fmt(N)} sessions, 1 /echo each)`, kind: "fauxRss", sessions: N, variants: [] };
	for (const variant of FAUX_STORAGE) {
		// maxSessions: the primary counts, so the default 1000 would evict one of these.
		const pair = await startPair(
			`faux-rss-${variant.id}`,
			{ seed: [variant.flag], gateway: [variant.flag, "--max-sessions", String(2 * N)] },
			MEMORY_NODE_OPTIONS,
		);
		try {
			const v = { id: variant.id, label: variant.label };
			for (const impl of IMPLS) {
				const s = pair[impl.id];
				log(`· ${impl.name}: ${fmt(N)} real sessions, ${variant.label}`);
				const before = await settledMemory(s);
				const t0 = performance.now();
				const load = await runHttpLoad({
					url: s.url,
					path: `/sessions/faux${variant.id}{n}/messages`,
					method: "POST",
					body: { text: "/echo hi" },
					mode: "unique",
					amount: N,
					connections: 16,
					label: `create ${N} real sessions`,
				});
				const createMs = performance.now() - t0;
				if (load.ok !== N) throw new Error(`${s.name}: creating ${N} real sessions: ${JSON.stringify(load)}`);
				await sleep(200);
				const after = await settledMemory(s);
				const ready = await (await fetch(`${s.url}/ready`)).json();
				v[impl.id] = { before, after, sessions: ready.sessions, createMs, per: perUnit(before, after, N), bytesPer: (after.rss - before.rss) / N };
			}
			out.variants.push(v);
		} finally {
			await stopPair(pair);
		}
	}
	results.cases.sessionsRss = out;
}

// ---------------------------------------------------------------- report

const fmt = (n, digits = 0) =>
	n === undefined || n === null || Number.isNaN(n)
		? "—"
		: Number(n).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const ratio = (g, s) => (Number.isFinite(g) && Number.isFinite(s) && s !== 0 ? g / s : NaN);
const fmtRatio = (r) => (Number.isFinite(r) ? `${r >= 10 ? fmt(r, 1) : fmt(r, 2)}×` : "—");
const kib = (b) => fmt(b / 1024, 1);
const mib = (b, digits = 1) => fmt(b / 1048576, digits);

/**
 * A Theil–Sen line (median of the pairwise slopes, so one noisy window cannot tilt it) through a
 * per-window metric, x = the window's middle token: its value at the last window over its value
 * at the first. 1 = flat.
 */
function trend(windows, field) {
	const pts = (windows ?? []).filter((w) => Number.isFinite(w[field])).map((w) => [(w.from + w.to) / 2, w[field]]);
	if (pts.length < 2) return NaN;
	const median = (xs) => {
		const v = [...xs].sort((p, q) => p - q);
		const m = v.length >> 1;
		return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
	};
	const slopes = [];
	for (let i = 0; i < pts.length; i++) {
		for (let j = i + 1; j < pts.length; j++) slopes.push((pts[j][1] - pts[i][1]) / (pts[j][0] - pts[i][0]));
	}
	const slope = median(slopes);
	const intercept = median(pts.map(([x, y]) => y - slope * x));
	const at = (x) => intercept + slope * x;
	return at(pts.at(-1)[0]) / at(pts[0][0]);
}

/** Notes for the memory and event-log cases, when they ran. */
function extraNotes() {
	const c = results.cases;
	const out = [];
	if (c.rssSession || c.rssStream) {
		out.push(
			`Memory: each case on a fresh pair of processes started with NODE_OPTIONS=${MEMORY_NODE_OPTIONS} (V8's young generation capped, so its growth and shrinking — tens of MiB, unrelated to the count — stay out of the differences); RSS (VmRSS) and V8 heap after a full GC, before and after. "Without V8 heap sizing" = ΔRSS − ΔV8 committed heap + ΔV8 live objects.`,
		);
	}
	if (c.replay) {
		out.push(
			`Replay: the log of one session filled by /stream ${P.replayEvents} 0 1 with one live subscriber (the "live" row, both gateways); then reconnects with Last-Event-ID: <hello id − ${P.replayEvents}> on a fresh socket (1 warm-up + ${P.replayRounds} timed), timed in the load process from writing the request to the frame with the log's last id; gateway CPU over that span (/proc). The seed keeps no log, so it has no replay and no ratio.`,
		);
	}
	if (c.logRss) {
		out.push(
			"Log RSS: the gateway process's RSS after a full GC, before and after one session's answer fills its log to the bound (events.replayEvents 4096 / replayBytes 4 MiB, the defaults); small tokens from the scripted session, 2 KiB tokens from BigStreamSession. The growth includes the session's own transcript (JS) and allocator slack; the seed keeps no log.",
		);
	}
	if (c.history) {
		const R = c.history.requests;
		out.push(
			`History: real pi sessions (createFauxPiAgent, session files in a temp dir) built with ${fmt(c.history.runs)} runs each, one after the other; ?limit=1000 in both formats, and the default page (ui, limit=100); per query ${fmt(R.warmup)} warm-up requests, then ${fmt(R.sequential)} sequential on one keep-alive connection and ${fmt(R.concurrent)} over ${fmt(R.connections)} connections (bench/http-latency.mjs, on the load core), each timed from the request to its body's last byte; gateway CPU (all threads) per response over the phase. The seed has no history route: no ratio; its nearest route, GET /sessions/:key (a snapshot: messageCount, no messages), of the same session is shown for scale.`,
		);
	}
	if (c.sessionsRss) {
		out.push(
			`Real-session RSS: ${fmt(c.sessionsRss.sessions)} sessions created with one "/echo hi" each (autocannon, 16 connections) on real pi sessions (createFauxPiAgent) in a fresh pair of processes per storage variant, NODE_OPTIONS=${MEMORY_NODE_OPTIONS}; RSS and V8 heap after a full GC before and after; pi-gateway with session.maxSessions ${fmt(2 * c.sessionsRss.sessions)} (default 1000; the primary counts), the seed has no cap. Both launchers load lib/faux-agent.js, which imports pi-gateway's index.js (the addon), also into the seed: a constant, not per session.`,
		);
	}
	out.push(...clusterNote(c.cluster));
	return out;
}

function buildTable() {
	const rows = []; // [case, metric, seed, gateway, ratio]
	const c = results.cases;
	const add = (label, metric, s, g, r = "") => rows.push([label, metric, s, g, r]);

	for (const [id, v] of Object.entries(c)) {
		if (v.kind === "http") {
			const s = v.seed;
			const g = v.gateway;
			add(v.label, "req/s", fmt(s.rps), fmt(g.rps), fmtRatio(ratio(g.rps, s.rps)));
			// wrk measures latency in µs, autocannon in whole ms.
			const d = LOAD_NAME === "wrk" ? 2 : 0;
			add("", "latency p50 / p99 ms", `${fmt(s.latencyMs.p50, d)} / ${fmt(s.latencyMs.p99, d)}`, `${fmt(g.latencyMs.p50, d)} / ${fmt(g.latencyMs.p99, d)}`);
			add("", "server CPU µs/request", fmt(s.cpuUsPerRequest, 1), fmt(g.cpuUsPerRequest, 1), fmtRatio(ratio(g.cpuUsPerRequest, s.cpuUsPerRequest)));
			add("", "req/s per core (1e6 / CPU µs per request)", fmt(1e6 / s.cpuUsPerRequest), fmt(1e6 / g.cpuUsPerRequest), fmtRatio(ratio(s.cpuUsPerRequest, g.cpuUsPerRequest)));
			add("", "main-thread ELU", fmt(s.elu, 3), fmt(g.elu, 3));
			add("", "CPU % of a core: server / load", `${fmt(s.cpuPct)} / ${fmt(s.loadCpuPct)}`, `${fmt(g.cpuPct)} / ${fmt(g.loadCpuPct)}`);
			const bad = [s, g].map((x) => x.non2xx + x.errors + x.timeouts);
			if (bad[0] || bad[1]) add("", "non-2xx + errors + timeouts", fmt(bad[0]), fmt(bad[1]));
			const fallbacks = [s, g].map((x) => x.keyFallbacks ?? 0);
			if (fallbacks[0] || fallbacks[1]) add("", "requests sent on a busy key (wrk pool ran dry)", fmt(fallbacks[0]), fmt(fallbacks[1]));
		} else if (v.kind === "sse") {
			const s = v.seed;
			const g = v.gateway;
			add(v.label, "delivered events/s", fmt(s.eventsPerSec), fmt(g.eventsPerSec), fmtRatio(ratio(g.eventsPerSec, s.eventsPerSec)));
			add("", "emit→receipt p50 / p99 ms", `${fmt(s.latencyMs.p50, 2)} / ${fmt(s.latencyMs.p99, 2)}`, `${fmt(g.latencyMs.p50, 2)} / ${fmt(g.latencyMs.p99, 2)}`);
			add("", "server CPU µs/delivered event", fmt(s.cpuUsPerEvent, 2), fmt(g.cpuUsPerEvent, 2), fmtRatio(ratio(g.cpuUsPerEvent, s.cpuUsPerEvent)));
			add("", "main-thread ELU", fmt(s.elu, 3), fmt(g.elu, 3));
			add("", "CPU % of a core: server / load", `${fmt(s.cpuPct)} / ${fmt(s.loadCpuPct)}`, `${fmt(g.cpuPct)} / ${fmt(g.loadCpuPct)}`);
			const integrity = (x) =>
				`${fmt(x.deliveredTokens)}/${fmt(x.expectedTokens)}` +
				(x.outOfOrder ? `, ${fmt(x.outOfOrder)} out of order` : "") +
				(x.disconnected ? `, ${fmt(x.disconnected)} cut` : "") +
				(x.timedOut ? ", TIMED OUT" : "");
			add("", "tokens delivered", integrity(s), integrity(g));
			if (v.opts.windows) {
				const unpaced = / 0 1$/.test(v.opts.text);
				const [sf, sl] = [s.windows?.[0] ?? {}, s.windows?.at(-1) ?? {}];
				const [gf, gl] = [g.windows?.[0] ?? {}, g.windows?.at(-1) ?? {}];
				const span = (w) => `${fmt(w.from)}–${fmt(w.to)}`;
				const pair = (a, b, d = 2) => `${fmt(a, d)} → ${fmt(b, d)}`;
				add("", `CPU µs/token, tokens ${span(gf)} → ${span(gl)}`, pair(sf.cpuUsPerToken, sl.cpuUsPerToken), pair(gf.cpuUsPerToken, gl.cpuUsPerToken));
				add("", "  trend late/early (Theil–Sen, all windows)", fmtRatio(trend(s.windows, "cpuUsPerToken")), fmtRatio(trend(g.windows, "cpuUsPerToken")));
				if (unpaced) {
					add("", "main thread µs/token emitted, first → last", pair(sf.emitUsPerToken, sl.emitUsPerToken), pair(gf.emitUsPerToken, gl.emitUsPerToken));
				}
				add("", "latency p50 ms, first → last window", pair(sf.latencyP50Ms, sl.latencyP50Ms), pair(gf.latencyP50Ms, gl.latencyP50Ms));
			}
			if (id === "replayLive") {
				add("", "first emit → last receipt ms", fmt(s.spanMs, 1), fmt(g.spanMs, 1), fmtRatio(ratio(g.spanMs, s.spanMs)));
				add("", "server CPU ms, whole answer", fmt(s.cpuMs, 1), fmt(g.cpuMs, 1), fmtRatio(ratio(g.cpuMs, s.cpuMs)));
			}
		} else if (v.kind === "memory") {
			const s = v.seed;
			const g = v.gateway;
			const unit = v.streams ? "stream" : "session";
			add(v.label, `KiB per ${unit}: RSS growth`, kib(s.per.rss), kib(g.per.rss), fmtRatio(ratio(g.per.rss, s.per.rss)));
			add("", "  without V8 heap sizing (ΔRSS − ΔV8 committed + ΔV8 used)", kib(s.per.steady), kib(g.per.steady), fmtRatio(ratio(g.per.steady, s.per.steady)));
			add("", "  of it V8 heap used", kib(s.per.heapUsed), kib(g.per.heapUsed));
			add("", "RSS MiB: before → after", `${mib(s.before.rss)} → ${mib(s.after.rss)}`, `${mib(g.before.rss)} → ${mib(g.after.rss)}`);
			add("", "V8 heap committed MiB: before → after", `${mib(s.before.heapTotal)} → ${mib(s.after.heapTotal)}`, `${mib(g.before.heapTotal)} → ${mib(g.after.heapTotal)}`);
			if (v.streams) {
				const both = (x) => `${kib(x.rss)} | ${kib(x.steady)}`;
				add("", `KiB per stream, streams 0–${fmt(s.half)} | ${fmt(s.half)}–${fmt(P.streams)}`, `${kib(s.perFirstHalf.rss)} | ${kib(s.perSecondHalf.rss)}`, `${kib(g.perFirstHalf.rss)} | ${kib(g.perSecondHalf.rss)}`);
				add("", `then ${fmt(P.streams)} idle keep-alive conns (1 GET /health), KiB each: RSS | w/o V8 sizing`, both(s.perKeepAlive), both(g.perKeepAlive), fmtRatio(ratio(g.perKeepAlive.steady, s.perKeepAlive.steady)));
				add("", `then ${fmt(P.streams)} bare TCP conns (no request), KiB each: RSS | w/o V8 sizing`, both(s.perBare), both(g.perBare), fmtRatio(ratio(g.perBare.steady, s.perBare.steady)));
				add("", "streams open (saw hello); plain conns the server closed", `${fmt(s.open)}; ${fmt(s.plainClosedByServer)}`, `${fmt(g.open)}; ${fmt(g.plainClosedByServer)}`);
			}
		} else if (v.kind === "replay") {
			const runs = v.runs;
			const NA = "n/a (no replay)";
			add(`${v.label} (Last-Event-ID, 1 client)`, `request → last replayed frame ms, median (min–max) of ${runs.length}`, NA, `${fmt(v.ms, 2)} (${fmt(v.msMin, 2)}–${fmt(v.msMax, 2)})`, "n/a");
			add("", "request → hello ms, median", NA, fmt(v.helloMs, 2));
			const frames = median(runs.map((r) => r.frames));
			add("", "gateway CPU ms per replay, median (µs per frame)", NA, `${fmt(v.cpuMs, 2)} (${fmt((v.cpuMs * 1000) / frames, 2)})`);
			const r0 = runs[0] ?? {};
			add(
				"",
				"frames after hello / expected; ids; missed",
				NA,
				`${fmt(r0.frames)}/${fmt(v.events)}; ${fmt(r0.firstId)}–${fmt(r0.lastId)}${r0.gaps || r0.backwards ? `, ${r0.gaps} gaps, ${r0.backwards} back` : ", in order"}; ${r0.missed ? "MISSED" : "no"}${v.intact ? "" : " — NOT INTACT (see JSON)"}`,
			);
			add("", "client (load process) CPU ms per replay, median", NA, fmt(median(runs.map((r) => r.clientCpuNs / 1e6)), 2));
			add("", "of them token frames", NA, fmt(r0.tokens));
			add("", "bytes read; throughput", NA, `${fmt(r0.bytes / 1024)} KiB; ${fmt(r0.bytes / 1048.576 / v.ms, 0)} MiB/s`);
			const q = v.query;
			add("", "same with ?after= (1 run): ms; CPU ms", NA, `${fmt(q.ms, 2)}; ${fmt(q.cpuNs / 1e6, 2)}`);
		} else if (v.kind === "history") {
			const NA = "n/a (no such route)";
			const R = v.requests;
			const lat = (x) => `${fmt(x.latencyMs.p50, 2)} / ${fmt(x.latencyMs.p99, 2)}`;
			for (const hs of v.sessions) {
				const b = hs.built;
				add(
					`${v.label}: ${fmt(v.runs)} ${hs.label}`,
					`setup: ${fmt(v.runs)} runs, s (snapshot messageCount)`,
					b.seed ? `${fmt(b.seed.ms / 1000, 1)} (${fmt(b.seed.messageCount)})` : "not built",
					`${fmt(b.gateway.ms / 1000, 1)} (${fmt(b.gateway.messageCount)})`,
				);
				for (const q of HISTORY_QUERIES) {
					const x = hs.formats[q.id];
					const conc = x.concurrent;
					add(`  ?format=${q.format}&limit=${q.limit} (of ${fmt(x.total)})`, `sequential p50 / p99 ms (${fmt(x.sequential.requests)} requests)`, NA, lat(x.sequential), "n/a");
					add("", `c=${fmt(conc.connections)}: p50 / p99 ms; req/s (${fmt(conc.requests)} requests)`, NA, `${lat(conc)}; ${fmt(conc.rps)}`);
					add("", "KiB per response; messages (hasMore)", NA, `${kib(x.bytes.max)}${x.bytes.min !== x.bytes.max ? ` (min ${kib(x.bytes.min)})` : ""}; ${fmt(x.summary?.messages)} (${x.summary?.hasMore})${x.intact ? "" : ` — EXPECTED ${fmt(x.expected.messages)} (${x.expected.hasMore})`}`);
					add("", `gateway CPU ms per response: sequential | c=${fmt(conc.connections)}; ELU (sequential)`, NA, `${fmt(x.sequential.cpuUsPerRequest / 1000, 2)} | ${fmt(conc.cpuUsPerRequest / 1000, 2)}; ${fmt(x.sequential.elu, 3)}`);
				}
			}
			const s = v.nearest.seed;
			const g = v.nearest.gateway;
			add(`  for scale: GET /sessions/${v.nearest.key} (the seed's nearest route: snapshot, no messages)`, `sequential p50 / p99 ms (${fmt(s.sequential.requests)} requests)`, lat(s.sequential), lat(g.sequential));
			add("", `c=${fmt(R.connections)}: p50 / p99 ms; req/s`, `${lat(s.concurrent)}; ${fmt(s.concurrent.rps)}`, `${lat(g.concurrent)}; ${fmt(g.concurrent.rps)}`);
			add("", "bytes per response; messageCount", `${fmt(s.bytes.max)}; ${fmt(s.summary?.messageCount)}`, `${fmt(g.bytes.max)}; ${fmt(g.summary?.messageCount)}`);
			add("", "server CPU µs per response (sequential)", fmt(s.sequential.cpuUsPerRequest, 1), fmt(g.sequential.cpuUsPerRequest, 1));
		} else if (v.kind === "fauxRss") {
			let first = true;
			for (const variant of v.variants) {
				const s = variant.seed;
				const g = variant.gateway;
				add(first ? `${v.label}: ${variant.label}` : `  ${variant.label}`, "KiB per session: RSS growth", kib(s.per.rss), kib(g.per.rss), fmtRatio(ratio(g.per.rss, s.per.rss)));
				add("", "  without V8 heap sizing (ΔRSS − ΔV8 committed + ΔV8 used)", kib(s.per.steady), kib(g.per.steady), fmtRatio(ratio(g.per.steady, s.per.steady)));
				add("", "  of it V8 heap used", kib(s.per.heapUsed), kib(g.per.heapUsed));
				add("", "RSS MiB: before → after", `${mib(s.before.rss)} → ${mib(s.after.rss)}`, `${mib(g.before.rss)} → ${mib(g.after.rss)}`);
				add("", "sessions held after (/ready, primary included); creation s", `${fmt(s.sessions)}; ${fmt(s.createMs / 1000, 1)}`, `${fmt(g.sessions)}; ${fmt(g.createMs / 1000, 1)}`);
				first = false;
			}
		} else if (v.kind === "cluster") {
			clusterRows(v, add, { fmt, fmtRatio, ratio });
		} else if (v.kind === "logRss") {
			const NA = "n/a (no log)";
			let first = true;
			for (const variant of v.variants) {
				const ss = variant.sessions;
				const all = (f) => ss.map(f).join(" | ");
				add(first ? `${v.label}: ${variant.label}` : `  ${variant.label}`, `RSS growth MiB${ss.length > 1 ? ` (${ss.length} sessions in turn)` : ""}`, NA, all((x) => mib(x.rssGrowth, 2)), "n/a");
				add("", "of it V8 heap MiB: used / committed", NA, all((x) => `${mib(x.heapUsedGrowth, 2)} / ${mib(x.heapTotalGrowth, 2)}`));
				add("", "log: frames; MiB as sent", NA, all((x) => `${fmt(x.logFrames)}${x.logMissed ? "" : " (none dropped)"}; ${mib(x.logBytes, 2)}`));
				add("", "fill time ms", NA, all((x) => fmt(x.fillMs)));
				first = false;
			}
		}
		void id;
	}
	const header = ["case", "metric", "seed", "pi-gateway", "gw/seed"];
	const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
	const line = (r) =>
		r.map((cell, i) => (i >= 2 ? String(cell).padStart(widths[i]) : String(cell).padEnd(widths[i]))).join("  ").trimEnd();
	return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

function evaluateTargets() {
	const c = results.cases;
	const t = [];
	const add = (target, value, met) => t.push({ target, value, met: Boolean(met) });
	const r = (g, s) => ratio(g, s);
	// A throughput ratio means little when the load generator itself ran out of CPU: say so.
	// (Over loopback the sender's CPU also carries the kernel's delivery of what it sends, so a
	// server and a load generator that cost about the same per request saturate together.)
	const bound = (v) => {
		const { loadCpuPct: load, cpuPct: server } = v.gateway;
		if (!(load >= 80)) return "";
		const where = `${LOAD_NAME} at ${fmt(load)}%, the gateway at ${fmt(server)}% of its core`;
		return server >= 90 ? `; ${where}: both saturated` : `; ${where}: load-bound`;
	};
	const rps = (v, target, min) => {
		const x = r(v.gateway.rps, v.seed.rps);
		const byCpu = r(v.seed.cpuUsPerRequest, v.gateway.cpuUsPerRequest);
		add(target, `${fmtRatio(x)} (by server CPU per request: ${fmtRatio(byCpu)}${bound(v)})`, x >= min);
	};
	if (c.health) rps(c.health, "GET /health req/s ≥ 2.3× the seed", 2.3);
	if (c.getSession) rps(c.getSession, "GET /sessions/:key req/s ≥ 2× the seed", 2);
	for (const n of P.messageConcurrency) {
		const v = c[`messages${n}`];
		if (v) rps(v, `POST /messages c=${n} req/s ≥ 1.5× the seed`, 1.5);
	}
	const big = c[`fanout${P.fanout.at(-1)}`];
	if (big) {
		const x = r(big.gateway.cpuUsPerEvent, big.seed.cpuUsPerEvent);
		add(`SSE ${P.fanout.at(-1)} subscribers: gateway CPU/event ≤ 1/5 of the seed's`, fmtRatio(x), x <= 0.2);
		add(`SSE ${P.fanout.at(-1)} subscribers: gateway p99 ≤ 5 ms`, `${fmt(big.gateway.latencyMs.p99, 2)} ms`, big.gateway.latencyMs.p99 <= 5);
		const intact = (x) => !x.missing && !x.outOfOrder && !x.disconnected && !x.timedOut;
		const fan = Object.values(c).filter((v) => v.kind === "sse" && !/ 0 1$/.test(v.opts.text));
		add(
			"SSE (all paced cases): nothing dropped or reordered (gateway)",
			fan.every((v) => v.rounds.gateway.every(intact)) ? "all delivered, in order" : "losses (see the table / JSON)",
			fan.every((v) => v.rounds.gateway.every(intact)),
		);
	}
	if (c.long?.gateway.windows) {
		const x = trend(c.long.gateway.windows, "cpuUsPerToken");
		add(
			`flat per-token cost (gateway CPU/token over a ${fmt(P.longTokens)}-token answer, Theil–Sen trend late/early ≤ 1.25×)`,
			fmtRatio(x),
			x <= 1.25 && c.long.gateway.deliveredTokens === c.long.gateway.expectedTokens,
		);
	}
	// Met only when both measures agree: the raw RSS growth, and the growth without V8's
	// heap-sizing decisions (which favour whichever process had not yet grown its heap).
	const mem = (v, target) => {
		const raw = r(v.gateway.per.rss, v.seed.per.rss);
		const steady = r(v.gateway.per.steady, v.seed.per.steady);
		add(target, `${fmtRatio(raw)} raw, ${fmtRatio(steady)} without V8 heap sizing`, raw <= 1 && steady <= 1);
	};
	if (c.rssSession) mem(c.rssSession, "RSS per idle session ≤ the seed's");
	if (c.rssStream) mem(c.rssStream, "RSS per open stream ≤ the seed's");
	if (c.replay) {
		add(
			`reconnect with Last-Event-ID ${fmt(P.replayEvents)} events back: every frame, in order, none missed (gateway)`,
			c.replay.intact ? `${fmt(c.replay.runs.length + 1)} of ${fmt(c.replay.runs.length + 1)} reconnects intact` : "NOT intact (see the JSON: cases.replay)",
			c.replay.intact,
		);
	}
	if (c.logRss) {
		// The log's own bounds, seen from outside: frames replayed from id 0, and their bytes as sent
		// (each frame also carries its `id: n` line and chunked framing, so allow 32 B a frame).
		const ss = c.logRss.variants.flatMap((v) => v.sessions);
		const within = ss.every((x) => x.logFrames <= 4096 && x.logBytes <= 4 * 1048576 + 32 * x.logFrames && !x.logTimedOut);
		add(
			"each full log within its bounds (≤ 4,096 frames, ≤ 4 MiB + framing) (gateway)",
			ss.map((x) => `${fmt(x.logFrames)} frames / ${mib(x.logBytes, 2)} MiB`).join(", "),
			within,
		);
	}
	if (c.history) {
		const all = c.history.sessions.flatMap((hs) => HISTORY_QUERIES.map((q) => hs.formats[q.id]));
		add(
			"history: every response 200 with the messages and hasMore expected (gateway)",
			all.map((x) => `${x.summary?.format}/${fmt(x.query.limit)}: ${fmt(x.summary?.messages)} (${x.summary?.hasMore})`).join(", "),
			all.every((x) => x.intact && Object.keys(x.statuses).join() === "200"),
		);
	}
	if (c.sessionsRss) {
		const held = c.sessionsRss.variants.flatMap((v) => IMPLS.map((i) => v[i.id].sessions));
		add(
			`sessions-rss: all ${fmt(c.sessionsRss.sessions)} sessions (+ the primary) held, none evicted`,
			held.map((n) => fmt(n)).join(", "),
			held.every((n) => n === c.sessionsRss.sessions + 1),
		);
	}
	for (const x of clusterTargets(c.cluster)) add(x.target, x.value, x.met);
	if (c.health) {
		add("main-thread ELU ≤ 0.05 during GET /health (gateway)", fmt(c.health.gateway.elu, 3), c.health.gateway.elu <= 0.05);
	}
	return t;
}

// ---------------------------------------------------------------- main

async function main() {
	// Every case but cluster (pi-gateway only) runs the seed too.
	if (want(...CASES.filter((n) => n !== "cluster")) && !seedAvailable()) throw new Error("the seed gateway is not available (set PI_GATEWAY_SEED)");
	const started = Date.now();
	results.env = {
		date: new Date().toISOString(),
		node: process.version,
		cpu: cpus()[0]?.model,
		cpus: ncpu,
		loadavgBefore: loadavg(),
		pinning: PIN ? { gateways: Number(PIN.gateway), load: Number(PIN.load) } : null,
		quick: QUICK,
		httpLoadTool: { name: LOAD_NAME, version: LOAD_TOOL.version, ...(LOAD_TOOL.path ? { path: LOAD_TOOL.path, threads: 1 } : {}) },
	};
	results.params = { ...P, loadConnections: LOAD_CONNECTIONS, gatewayArgs: GATEWAY_ARGS, only: [...SELECTED] };
	log(
		PIN
			? `pinning: gateway processes on core ${PIN.gateway}, load generators on core ${PIN.load} (taskset)`
			: `pinning: none (${taskset ? `${ncpu} CPU` : "taskset not found"}) — gateways and load share the CPUs`,
	);

	if (want(...GROUPS.http)) await httpPhase();
	if (want(...GROUPS.sse)) await ssePhase();
	if (want(...GROUPS.memory)) await memoryPhase();
	if (want(...GROUPS.log)) await logPhase();
	if (want("history")) await historyPhase();
	if (want("sessions-rss")) await sessionsRssPhase();
	if (want("cluster")) {
		log("Cluster (two gateways sharing a Redis)");
		results.cases.cluster = await clusterCase({
			params: P.cluster,
			startImpl,
			startSseLoad,
			postJson,
			children,
			pinCore: PIN?.gateway,
			gatewayArgs: GATEWAY_ARGS,
			log,
			sleep,
		});
	}

	results.env.loadavgAfter = loadavg();
	results.env.seconds = (Date.now() - started) / 1000;
	results.targets = evaluateTargets();

	const table = buildTable();
	const targets = results.targets.map((t) => `  ${t.met ? "met   " : "MISSED"}  ${t.target}: ${t.value}`).join("\n");
	const la = (a) => a.map((x) => x.toFixed(2)).join(" ");
	const notes = [
		`pi-gateway vs seed — node ${process.version}, ${ncpu} × ${results.env.cpu}, HTTP load: ${LOAD_NAME} ${LOAD_TOOL.version}${QUICK ? ", --quick" : ""}`,
		PIN
			? `Pinned with taskset: each gateway process (from its spawn, all threads) on core ${PIN.gateway}; ${LOAD_NAME} / SSE load processes on core ${PIN.load}.`
			: `NOT pinned (${taskset ? `only ${ncpu} CPU` : "taskset not found"}): gateways and load generators share the CPUs.`,
		...(cli.only ? [`Only: ${[...SELECTED].join(", ")} (--only ${cli.only}).`] : []),
		...(!want(...GROUPS.http) ? [] : [LOAD_NAME === "wrk"
			? `HTTP load: wrk ${LOAD_TOOL.version} (${LOAD_TOOL.path}), 1 thread, Lua script; ${P.httpSeconds} s per run after a ${Math.max(1, Math.ceil(P.warmupSeconds))} s warm-up (wrk counts whole seconds), best of ${P.rounds} interleaved run(s); GET /sessions/:key cycles through the keys request by request; POST /messages: as many keys as connections, never two requests of one key in flight (a pool of free keys).`
			: `HTTP load: autocannon ${LOAD_TOOL.version}, ${P.httpSeconds} s per run after a ${P.warmupSeconds} s warm-up, best of ${P.rounds} interleaved run(s); POST /messages: one session key per connection.`]),
		...(!want(...GROUPS.sse) ? [] : [`SSE: /stream ${P.fanoutTokens} ${P.fanoutInterval} 1 (a token per ${P.fanoutInterval} ms tick)${P.sseRounds > 1 ? `, ${P.fanout.at(-1)}-subscriber cases best (lowest p99) of ${P.sseRounds} interleaved runs` : ""}${P.burst ? `; bursts: /stream ${P.fanoutTokens} ${P.fanoutInterval * P.burst} ${P.burst}` : ""}; long: /stream ${P.longTokens} ${P.longPace.join(" ")}${P.unpaced ? `, unpaced: /stream ${P.longTokens} 0 1` : ""}.`]),
		"CPU = all threads of the gateway process (/proc/<pid>/task/*/schedstat); ELU = the Node main thread's performance.eventLoopUtilization().",
		`gw/seed: gateway ÷ seed (above 1 is better for req/s and events/s; below 1 is better for CPU, latency and KiB). A load % near 100 means ${LOAD_NAME}, not the server, set the pace.`,
		`pi-gateway runs with ${GATEWAY_ARGS.join(" ")} (the seed has no connection cap); other limits at their defaults (sse.bufferEvents 4096).`,
		...extraNotes(),
		`Load average before / after: ${la(results.env.loadavgBefore)} / ${la(results.env.loadavgAfter)} (other work on this machine skews every number).`,
	];
	const report = `\n${notes.join("\n")}\n\n${table}\n\nTargets (reported, not asserted):\n${targets}\n`;
	process.stdout.write(report);
	results.table = table;

	mkdirSync(dirname(cli.out), { recursive: true });
	writeFileSync(cli.out, `${JSON.stringify(results, null, 2)}\n`);
	process.stdout.write(`\nJSON: ${cli.out}  (${results.env.seconds.toFixed(0)} s)\n`);
}

try {
	await main();
	await cleanup();
	clearTimeout(watchdog);
	process.exit(0);
} catch (error) {
	await fail(error);
}
