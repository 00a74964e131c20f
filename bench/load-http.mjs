// HTTP load process: one autocannon run, described by a JSON argument, result as one JSON line.
// Run by bench/run.mjs as a separate process (under `taskset`, on the load core).
//
//   node bench/load-http.mjs '{"url":"http://127.0.0.1:3000","path":"/health","connections":50,"duration":5}'
//
// Fields: url, path (may contain "{n}"), method (GET), body (a JSON value, sent as JSON),
// connections, duration (s) or amount (total requests), and how "{n}" is filled in:
//   mode "fixed"          no substitution
//   mode "rotate"         n = 0…keys-1 split between the connections, each cycling through its
//                         share (GET /sessions/:key over 1,000 sessions)
//   mode "perConnection"  n = the connection's index: one key per connection (POST /messages)
//   mode "unique"         n = 0,1,2,… one per request (creating sessions)
// With `probe` (the measured process's probe socket) and `pid`, the process's main-thread ELU
// and CPU time are read right before and right after the run, so they cover the load only.

import autocannon from "autocannon";
import { cpuBetween, eluBetween, probeStats, procCpu } from "./bench-util.mjs";

const spec = JSON.parse(process.argv[2]);
const mode = spec.mode ?? "fixed";
const method = spec.method ?? "GET";
const headers = spec.body === undefined ? {} : { "content-type": "application/json" };
const body = spec.body === undefined ? undefined : JSON.stringify(spec.body);
const fill = (n) => spec.path.replaceAll("{n}", String(n));

let counter = 0;
let connectionIndex = 0;
const base = { method, path: fill(0), headers, ...(body !== undefined ? { body } : {}) };
const options = {
	url: spec.url,
	connections: spec.connections,
	...(spec.amount ? { amount: spec.amount } : { duration: spec.duration }),
	timeout: spec.timeout ?? 30,
	// No per-second table, no progress bar: we print one JSON line.
	renderProgressBar: false,
	renderResultsTable: false,
	renderLatencyTable: false,
};
if (mode === "fixed") {
	options.requests = [base];
} else if (mode === "rotate") {
	// The keys are split between the connections; each cycles through its own share, prebuilt
	// once (no setupRequest), so rotating costs the load generator nothing per request.
	const all = Array.from({ length: spec.keys }, (_, n) => ({ method, path: fill(n), headers }));
	const share = Math.ceil(spec.keys / spec.connections);
	options.requests = [base];
	options.setupClient = (client) => {
		const start = (connectionIndex++ * share) % spec.keys;
		client.setRequests(all.slice(start, start + share).map((r) => ({ ...r })));
	};
} else if (mode === "unique") {
	options.requests = [{ ...base, setupRequest: (req) => ({ ...req, path: fill(counter++) }) }];
} else if (mode === "perConnection") {
	options.requests = [base];
	options.setupClient = (client) => {
		client.setRequests([{ ...base, path: fill(connectionIndex++) }]);
	};
} else {
	throw new Error(`unknown mode ${mode}`);
}

const before = spec.probe ? { stats: await probeStats(spec.probe), cpu: procCpu(spec.pid) } : null;
const ownBefore = procCpu(process.pid);
const result = await autocannon(options);
const ownAfter = procCpu(process.pid);
const after = spec.probe ? { stats: await probeStats(spec.probe), cpu: procCpu(spec.pid) } : null;

const ok = result["2xx"];
const out = {
	label: spec.label,
	connections: spec.connections,
	durationS: result.duration,
	requests: result.requests.total,
	ok,
	non2xx: result.non2xx,
	errors: result.errors,
	timeouts: result.timeouts,
	rps: ok / result.duration,
	latencyMs: { p50: result.latency.p50, p99: result.latency.p99, avg: result.latency.average },
	...(mode === "perConnection" ? { keys: connectionIndex } : {}),
	// This load process's own CPU use, % of one core: near 100 means the load generator, not
	// the gateway, set the pace.
	loadCpuPct: (cpuBetween(ownBefore, ownAfter).ns / 1e7) / result.duration,
};
if (before && after) {
	out.elu = eluBetween(before.stats, after.stats);
	const cpu = cpuBetween(before.cpu, after.cpu);
	out.cpuMs = cpu.ns / 1e6;
	out.cpuUsPerRequest = ok > 0 ? cpu.ns / 1000 / ok : NaN;
	out.cpuPct = cpu.ns / 1e7 / result.duration;
}
process.stdout.write(`${JSON.stringify(out)}\n`);
