// The `cluster` case of `npm run bench` (bench/run.mjs): what a subscriber on a node that does not
// own a session pays, against one on the owner, when several gateways share sessions through
// Redis (README "Running several gateways", SPEC section 15).
//
// Setup (all on 127.0.0.1, all stopped at the end, or by run.mjs's cleanup on failure):
//   - a real redis-server (Debian's /usr/bin/redis-server) on a free port, nothing persisted
//     (`--save '' --appendonly no`); absent → the case is skipped with a note, not failed;
//   - two pi-gateway processes (bench/run-gateway.mjs, scripted sessions, scenario
//     `stream:N:intervalMs`: a message streams N tokens, one per interval) sharing that Redis,
//     node ids `bench-a` / `bench-b`, a prefix unique to the run, each on a fixed free port that
//     it advertises; started through run.mjs's startImpl (probe preloaded, pinned like every
//     gateway of the bench);
//   - pinning (2+ cores and taskset): both gateways AND redis-server on the gateway core, the two
//     subscriber processes on the load core — the server side of a cluster on one core, the
//     clients on the other, as in the other cases;
//   - two bench/sse-load.mjs processes: one holds the subscribers of node A, the other those of
//     node B, so each side is measured on its own.
//
// One run (per subscriber count S): a fresh key is claimed on A (its first request, `/instant`,
// goes to A, so A takes the lease; checked in Redis), S subscribers connect to A's
// GET /sessions/:key/events and S to B's (B does not own the key: it serves the owner's log
// mirrored in the Redis Stream), then one message goes to A and streams N tokens. Each token
// carries its emit time (taken in A just before emitting it): each side's emit→receipt latency
// p50/p99, delivered events/s, and whether every subscriber got every token in order. After the
// run, one reconnect to each node with the id from before the message as Last-Event-ID, up to
// the last id: the whole id sequence (not just the tokens), no gap, nothing out of order.
// A short unreported warm-up run goes first (connections to Redis, JIT).

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cpuBetween, procCpu } from "./bench-util.mjs";
import { spawnGateway } from "./spawn-gateway.mjs";

export const REDIS_SERVER = "/usr/bin/redis-server";

/** A TCP port that was free on 127.0.0.1 a moment ago. */
function freePort() {
	return new Promise((resolve, reject) => {
		const server = net.createServer();
		server.once("error", reject);
		server.listen(0, "127.0.0.1", () => {
			const { port } = server.address();
			server.close(() => resolve(port));
		});
	});
}

/** One Redis command (words as bulk strings) on its own connection; its reply (bulk/simple/int/error). */
function redisCommand(port, words, timeoutMs = 2000) {
	return new Promise((resolve, reject) => {
		const socket = net.connect({ host: "127.0.0.1", port });
		let buf = "";
		const timer = setTimeout(() => {
			socket.destroy();
			reject(new Error(`Redis on port ${port}: no answer to ${words[0]} within ${timeoutMs} ms`));
		}, timeoutMs);
		const done = (fn, value) => {
			clearTimeout(timer);
			socket.destroy();
			fn(value);
		};
		socket.once("connect", () => {
			socket.write(`*${words.length}\r\n${words.map((w) => `$${Buffer.byteLength(String(w))}\r\n${w}\r\n`).join("")}`);
		});
		socket.setEncoding("utf8");
		socket.on("data", (d) => {
			buf += d;
			const eol = buf.indexOf("\r\n");
			if (eol === -1) return;
			const kind = buf[0];
			const line = buf.slice(1, eol);
			if (kind === "+") return done(resolve, line);
			if (kind === "-") return done(reject, new Error(`Redis ${words[0]}: ${line}`));
			if (kind === ":") return done(resolve, Number(line));
			if (kind === "$") {
				const len = Number(line);
				if (len < 0) return done(resolve, null);
				if (Buffer.byteLength(buf.slice(eol + 2)) < len + 2) return;
				return done(resolve, buf.slice(eol + 2, eol + 2 + len));
			}
			done(reject, new Error(`Redis ${words[0]}: unexpected reply ${JSON.stringify(buf.slice(0, 40))}`));
		});
		socket.once("error", (error) => done(reject, error));
	});
}

/** redis-server on a free port (pinned to `core` when given); registered in `children`. */
async function startRedis({ core, children, sleep }) {
	const dir = mkdtempSync(join(tmpdir(), "pi-bench-redis-"));
	const port = await freePort();
	const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning", "--dir", dir];
	const [cmd, argv] = core !== undefined ? ["taskset", ["-c", core, REDIS_SERVER, ...args]] : [REDIS_SERVER, args];
	const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
	let output = "";
	child.stdout.setEncoding("utf8").on("data", (d) => (output += d));
	child.stderr.setEncoding("utf8").on("data", (d) => (output += d));
	const exited = new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));
	child.once("error", (error) => (output += `\nspawn failed: ${error.message}`));
	const running = () => child.exitCode === null && child.signalCode === null;
	const stop = async () => {
		if (running()) {
			child.kill("SIGTERM");
			const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
			await exited;
			clearTimeout(timer);
		}
		rmSync(dir, { recursive: true, force: true });
	};
	const entry = { name: "redis-server", kill: stop };
	children.add(entry);
	for (let i = 0; ; i++) {
		if (!running()) throw new Error(`redis-server exited at start (${JSON.stringify(await exited)}): ${output}`);
		try {
			if ((await redisCommand(port, ["PING"], 500)) === "PONG") break;
		} catch (error) {
			if (i >= 100) throw new Error(`redis-server on port ${port} not answering PING after 10 s: ${error.message}\n${output}`);
		}
		await sleep(100);
	}
	const version = String(await redisCommand(port, ["INFO", "server"])).match(/redis_version:(\S+)/)?.[1] ?? "unknown";
	return {
		port,
		pid: child.pid, // taskset execs redis-server: same pid
		version,
		url: `redis://127.0.0.1:${port}/0`,
		command: (...words) => redisCommand(port, words),
		stop: async () => {
			children.delete(entry);
			await stop();
		},
	};
}

/**
 * Runs the case; returns its result object (kind "cluster"; `skipped` set when redis-server is
 * absent). `ctx` comes from bench/run.mjs: {params, startImpl, startSseLoad, postJson, children,
 * pinCore, gatewayArgs, log, sleep}.
 */
export async function clusterCase(ctx) {
	const { params: C, startImpl, startSseLoad, postJson, children, pinCore, gatewayArgs, log, sleep } = ctx;
	const label = `cluster: 2 gateways + Redis, ${C.tokens} tokens (/stream ${C.tokens} ${C.intervalMs} 1)`;
	if (!existsSync(REDIS_SERVER)) {
		const note = `cluster case skipped: ${REDIS_SERVER} not found (Debian package redis-server: apt-get install redis-server)`;
		log(`· ${note}`);
		return { label, kind: "cluster", skipped: note };
	}
	log(`· ${label}`);
	const prefix = `pi-bench-${process.pid}-${Date.now().toString(36)}:`;
	let redis = null;
	const nodes = [];
	const loads = [];
	try {
		redis = await startRedis({ core: pinCore, children, sleep });
		const scenario = `stream:${C.tokens}:${C.intervalMs}`;
		for (const id of ["a", "b"]) {
			const port = await freePort();
			const impl = { id: `cluster-${id}`, name: `pi-gateway node ${id.toUpperCase()}`, spawn: spawnGateway, args: gatewayArgs };
			const extra = [
				"--scenario", scenario,
				"--port", String(port),
				"--redis-url", redis.url,
				"--advertise-url", `http://127.0.0.1:${port}`,
				"--node-id", `bench-${id}`,
				"--cluster-prefix", prefix,
				"--lease-ms", String(C.leaseMs),
			];
			nodes.push(await startImpl(impl, "cluster", extra));
		}
		const [A, B] = nodes;
		for (let i = 0; i < 2; i++) loads.push(startSseLoad());
		const [loadA, loadB] = loads;

		const owner = async (key) => (await redis.command("GET", `${prefix}{lease}:${key}`)) ?? null;
		const lastId = async (node, key) => {
			const head = await loadA.call("replay", { port: node.port, key, timeoutMs: 10000 });
			if (!Number.isFinite(head.helloId)) throw new Error(`${node.name}: hello without an id for ${key}`);
			return head.helloId;
		};

		const runOnce = async (key, subs, { text, tokens, timeoutMs }) => {
			await postJson(A, `/sessions/${key}/messages`, { text: "/instant" }); // the claim: A's first request
			const lease = await owner(key);
			if (!lease?.startsWith("bench-a ")) throw new Error(`cluster: ${key} should be owned by node A after its first request there; lease: ${lease}`);
			const before = await lastId(A, key);
			const openA = await loadA.call("open", { port: A.port, key, n: subs });
			const openB = await loadB.call("open", { port: B.port, key, n: subs });
			await sleep(300);
			await loadA.call("arm", { tokens });
			await loadB.call("arm", { tokens });
			const c0 = [A.pid, B.pid, redis.pid, loadA.pid, loadB.pid].map(procCpu);
			const t0 = performance.now();
			const reply = await postJson(A, `/sessions/${key}/messages`, { text });
			const [gotA, gotB] = await Promise.all([loadA.call("collect", { timeoutMs }), loadB.call("collect", { timeoutMs })]);
			const seconds = (performance.now() - t0) / 1000;
			const c1 = [A.pid, B.pid, redis.pid, loadA.pid, loadB.pid].map(procCpu);
			await loadA.call("close");
			await loadB.call("close");
			const cpuMs = c0.map((c, i) => cpuBetween(c, c1[i]).ns / 1e6);
			// The whole id sequence of the message, as each node serves it on a reconnect.
			const after = await lastId(A, key);
			const checked = ({ id: _i, ok: _o, ...r }) => ({
				...r,
				intact: !r.timedOut && !r.missed && r.frames === after - before && r.firstId === before + 1 && r.lastId === after && !r.gaps && !r.backwards,
			});
			const reconnect = async (node) =>
				checked(await loadA.call("replay", { port: node.port, key, lastEventId: before, untilId: after, timeoutMs: 15000 }));
			const side = (got, opened, cpu, loadCpu) => {
				const { id: _i, ok: _o, ...stream } = got;
				return {
					...stream,
					openMs: opened.ms,
					nodeCpuMs: cpu,
					nodeCpuUsPerEvent: got.deliveredFrames ? (cpu * 1000) / got.deliveredFrames : NaN,
					loadCpuPct: loadCpu / 10 / seconds,
					intact: !got.timedOut && !got.missing && !got.outOfOrder && !got.disconnected && got.complete === got.subscribers,
				};
			};
			return {
				key,
				subs,
				replyOk: reply.ok,
				owner: lease.split(" ")[0],
				ownerAfter: (await owner(key))?.split(" ")[0] ?? null,
				seconds,
				idsBefore: before,
				idsAfter: after,
				ownerSide: side(gotA, openA, cpuMs[0], cpuMs[3]),
				nonOwner: side(gotB, openB, cpuMs[1], cpuMs[4]),
				redisCpuMs: cpuMs[2],
				// What a subscriber on the non-owner pays over one on the owner, same answer, same emits.
				added: { p50Ms: gotB.latencyMs.p50 - gotA.latencyMs.p50, p99Ms: gotB.latencyMs.p99 - gotA.latencyMs.p99 },
				ratio: {
					eventsPerSec: gotB.eventsPerSec / gotA.eventsPerSec,
					p50: gotB.latencyMs.p50 / gotA.latencyMs.p50,
					p99: gotB.latencyMs.p99 / gotA.latencyMs.p99,
				},
				reconnect: { owner: await reconnect(A), nonOwner: await reconnect(B) },
			};
		};

		const timeoutMs = Math.max(30000, C.tokens * C.intervalMs * 6);
		log(`  warm-up (${C.warmupTokens} tokens, 1 subscriber a node, not reported)`);
		await runOnce("cluster-warmup", 1, { text: `/stream ${C.warmupTokens} ${C.intervalMs} 1`, tokens: C.warmupTokens, timeoutMs });
		const runs = [];
		for (const subs of C.subs) {
			log(`  ${subs} subscriber${subs > 1 ? "s" : ""} on A (owner) + ${subs} on B (non-owner), ${C.tokens} tokens`);
			runs.push(await runOnce(`cluster-s${subs}`, subs, { text: "go", tokens: C.tokens, timeoutMs }));
		}
		const ok = (r) => r.ownerSide.intact && r.nonOwner.intact && r.reconnect.owner.intact && r.reconnect.nonOwner.intact && r.ownerAfter === "bench-a";
		return {
			label,
			kind: "cluster",
			redis: { version: redis.version, path: REDIS_SERVER },
			prefix,
			nodes: nodes.map((n) => ({ name: n.name, port: n.port, pid: n.pid })),
			pinned: pinCore !== undefined ? { gatewaysAndRedis: Number(pinCore) } : null,
			params: C,
			runs,
			intact: runs.every(ok),
		};
	} finally {
		for (const l of loads) await l.stop().catch(() => {});
		for (const n of nodes) await n.stop().catch(() => {});
		if (redis) await redis.stop().catch(() => {});
	}
}

/** The case's table rows through run.mjs's `add(case, metric, seed, gateway, ratio)`. */
export function clusterRows(v, add, { fmt, fmtRatio, ratio }) {
	const NA = "n/a (one node)";
	if (v.skipped) {
		add(v.label, "SKIPPED", NA, v.skipped.replace(/^cluster case skipped: /, ""));
		return;
	}
	const lat = (x) => `${fmt(x.latencyMs.p50, 2)} / ${fmt(x.latencyMs.p99, 2)}`;
	const signed = (x) => `${x >= 0 ? "+" : ""}${fmt(x, 2)}`;
	const integrity = (x) =>
		`${fmt(x.deliveredTokens)}/${fmt(x.expectedTokens)}` +
		(x.outOfOrder ? `, ${fmt(x.outOfOrder)} out of order` : ", in order") +
		(x.disconnected ? `, ${fmt(x.disconnected)} cut` : "") +
		(x.timedOut ? ", TIMED OUT" : "");
	const ids = (x) => `${fmt(x.frames)} frames, ids ${fmt(x.firstId)}–${fmt(x.lastId)}${x.intact ? ", intact" : ` — NOT INTACT (${x.gaps} gaps, ${x.backwards} back${x.missed ? ", missed" : ""})`}`;
	for (const r of v.runs) {
		const o = r.ownerSide;
		const n = r.nonOwner;
		const per = `${fmt(r.subs)} subscriber${r.subs > 1 ? "s" : ""} a node`;
		add(`cluster: subscriber on owner (node A), ${per}`, "delivered events/s", NA, fmt(o.eventsPerSec));
		add("", "emit→receipt p50 / p99 ms", NA, lat(o));
		add("", "tokens delivered (all subscribers)", NA, integrity(o));
		add("", "node A CPU µs/delivered event (emits, mirrors to Redis, serves its subscribers)", NA, fmt(o.nodeCpuUsPerEvent, 2));
		add(`cluster: subscriber on non-owner (node B), ${per}`, "delivered events/s (ratio: B ÷ A)", NA, fmt(n.eventsPerSec), fmtRatio(ratio(n.eventsPerSec, o.eventsPerSec)));
		add("", "emit→receipt p50 / p99 ms (ratio: B ÷ A, p50 / p99)", NA, lat(n), `${fmtRatio(ratio(n.latencyMs.p50, o.latencyMs.p50))} / ${fmtRatio(ratio(n.latencyMs.p99, o.latencyMs.p99))}`);
		add("", "ADDED p50 / p99 ms (non-owner − owner)", NA, `${signed(r.added.p50Ms)} / ${signed(r.added.p99Ms)}`);
		add("", "tokens delivered (all subscribers)", NA, integrity(n));
		add("", "node B CPU µs/delivered event (reads the Redis Stream, serves its subscribers)", NA, fmt(n.nodeCpuUsPerEvent, 2));
		add("", "redis-server CPU ms over the answer; owner still A", NA, `${fmt(r.redisCpuMs, 1)}; ${r.ownerAfter === "bench-a" ? "yes" : `NO (${r.ownerAfter})`}`);
		add("", "reconnect with Last-Event-ID (ids of the message): A | B", NA, `${ids(r.reconnect.owner)} | ${ids(r.reconnect.nonOwner)}`);
	}
}

/** The case's target lines {target, value, met}: delivery integrity only (latency is reported). */
export function clusterTargets(v) {
	if (!v || v.skipped) return [];
	const n = v.runs.map((r) => r.nonOwner);
	const value = v.runs
		.map((r) => `${fmt0(r.subs)} sub${r.subs > 1 ? "s" : ""}: ${fmt0(r.nonOwner.deliveredTokens)}/${fmt0(r.nonOwner.expectedTokens)} tokens, ${r.nonOwner.outOfOrder} out of order; reconnect ${r.reconnect.nonOwner.intact ? "intact" : "NOT intact"}`)
		.join("; ");
	return [
		{
			target: "cluster: every subscriber on the non-owner gets every event, in order (live and on reconnect)",
			value: v.intact ? value : `${value} (see the JSON: cases.cluster)`,
			met: v.intact && n.every((x) => x.intact),
		},
	];
}

const fmt0 = (x) => Number(x).toLocaleString("en-US");

/** The note under the report's header, when the case ran (or was skipped). */
export function clusterNote(v) {
	if (!v) return [];
	if (v.skipped) return [`Cluster: skipped: ${v.skipped.replace(/^cluster case skipped: /, "")}.`];
	const C = v.params;
	return [
		`Cluster: redis-server ${v.redis.version} (${v.redis.path}, --save '' --appendonly no, free port) and two pi-gateway processes (scripted sessions, scenario stream:${C.tokens}:${C.intervalMs}, node ids bench-a / bench-b, prefix ${v.prefix}, leaseMs ${C.leaseMs})${v.pinned ? `, all three pinned to core ${v.pinned.gatewaysAndRedis}` : ", not pinned"}; each session key claimed by node A (its first request), then ${C.subs.join(" and ")} subscriber(s) on A and as many on B (the non-owner, serving A's log mirrored in a Redis Stream), each side from its own sse-load process on the load core; one message to A streams the tokens; latency = receipt in the load process − emit time stamped in A (same clock). Ratio column: node B ÷ node A. The three server processes share one core, so B's path (Redis, then B's fan-out) competes for it with A's own fan-out: a negative added latency means B's subscribers were served before A had finished serving its own. After each answer, one reconnect to each node with the pre-message id as Last-Event-ID checks the whole id sequence. A warm-up answer of ${C.warmupTokens} tokens first (not reported).`,
	];
}
