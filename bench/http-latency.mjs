// Latency of one GET route, request by request: a load process run by bench/run.mjs (under
// `taskset`, on the load core), a JSON argument in, one JSON line out.
//
//   node bench/http-latency.mjs '{"url":"http://127.0.0.1:3000","path":"/sessions/a/messages?limit=1000","sequential":200,"concurrent":{"connections":8,"requests":200}}'
//
// Unlike bench/load-http.mjs (as many requests as fit in a duration), a bounded number of
// requests, each timed from writing it to the last byte of its body, over keep-alive
// connections (node:http): `warmup` requests (default 20) first, then `sequential` one after the
// other on one connection, then `concurrent.requests` spread over `concurrent.connections`
// connections, each with one request in flight. Reports per phase p50 / p90 / p99 / max / mean
// latency (ms), requests/s, and, with `pid` (and `probe`: the measured process's probe socket),
// the server's CPU µs per request (all threads, /proc) and main-thread ELU over the phase. Every
// response must be `status` (default 200); bytes per response (body) min/max; `summary`: what the
// first body holds (for a JSON body: its `format`, `messages.length`, `hasMore`,
// `session.messageCount` when present).

import { Agent, request } from "node:http";
import { cpuBetween, eluBetween, percentile, probeStats, procCpu } from "./bench-util.mjs";

const spec = JSON.parse(process.argv[2]);
const target = new URL(spec.path, spec.url);
const expectStatus = spec.status ?? 200;

function once(agent) {
	return new Promise((resolve, reject) => {
		const t0 = performance.now();
		const req = request(
			{ host: target.hostname, port: target.port, path: `${target.pathname}${target.search}`, method: "GET", agent },
			(res) => {
				const chunks = [];
				let bytes = 0;
				res.on("data", (d) => {
					bytes += d.length;
					if (!once.kept) chunks.push(d);
				});
				res.on("end", () => {
					const ms = performance.now() - t0;
					let body;
					if (!once.kept) {
						once.kept = true;
						body = Buffer.concat(chunks).toString("utf8");
					}
					resolve({ ms, bytes, status: res.statusCode, body });
				});
				res.on("error", reject);
			},
		);
		req.setTimeout(spec.timeoutMs ?? 30000, () => req.destroy(new Error(`${spec.path}: timed out`)));
		req.on("error", reject);
		req.end();
	});
}
once.kept = false;

function summarize(body) {
	try {
		const j = JSON.parse(body);
		return {
			...(typeof j.format === "string" ? { format: j.format } : {}),
			...(Array.isArray(j.messages) ? { messages: j.messages.length } : {}),
			...(typeof j.hasMore === "boolean" ? { hasMore: j.hasMore } : {}),
			...(Number.isFinite(j.session?.messageCount) ? { messageCount: j.session.messageCount } : {}),
		};
	} catch {
		return { notJson: body.slice(0, 200) };
	}
}

const statuses = {};
let minBytes = Infinity;
let maxBytes = 0;
let summary;
function record(r) {
	statuses[r.status] = (statuses[r.status] ?? 0) + 1;
	if (r.status !== expectStatus) throw new Error(`${spec.path}: status ${r.status}${r.body ? `: ${r.body.slice(0, 300)}` : ""}`);
	minBytes = Math.min(minBytes, r.bytes);
	maxBytes = Math.max(maxBytes, r.bytes);
	if (r.body !== undefined) summary = summarize(r.body);
}

/** `n` requests over `connections` keep-alive connections, one in flight on each. */
async function phase(n, connections) {
	const agent = new Agent({ keepAlive: true, maxSockets: connections });
	const before = spec.pid ? { cpu: procCpu(spec.pid), stats: spec.probe ? await probeStats(spec.probe) : null } : null;
	const times = [];
	let next = 0;
	const t0 = performance.now();
	await Promise.all(
		Array.from({ length: connections }, async () => {
			while (next < n) {
				next++;
				const r = await once(agent);
				record(r);
				times.push(r.ms);
			}
		}),
	);
	const seconds = (performance.now() - t0) / 1000;
	const after = spec.pid ? { cpu: procCpu(spec.pid), stats: spec.probe ? await probeStats(spec.probe) : null } : null;
	agent.destroy();
	const sorted = Float64Array.from(times).sort();
	return {
		requests: times.length,
		connections,
		seconds,
		rps: times.length / seconds,
		latencyMs: {
			p50: percentile(sorted, 50),
			p90: percentile(sorted, 90),
			p99: percentile(sorted, 99),
			max: sorted[sorted.length - 1],
			mean: times.reduce((a, b) => a + b, 0) / times.length,
		},
		...(before && after
			? {
					cpuUsPerRequest: cpuBetween(before.cpu, after.cpu).ns / 1000 / times.length,
					...(before.stats ? { elu: eluBetween(before.stats, after.stats) } : {}),
				}
			: {}),
	};
}

await phase(spec.warmup ?? 20, 1);
const sequential = await phase(spec.sequential ?? 200, 1);
const concurrent = spec.concurrent ? await phase(spec.concurrent.requests, spec.concurrent.connections) : null;
process.stdout.write(
	`${JSON.stringify({ label: spec.label, path: spec.path, statuses, bytes: { min: minBytes, max: maxBytes }, summary, sequential, concurrent })}\n`,
);
