// Measurement probe preloaded into a measured gateway process (seed or pi-gateway) with
//   NODE_OPTIONS="--import <file URL of this file>"  and  PI_BENCH_PROBE=<unix socket path>
//
// It answers a tiny HTTP control server on that unix socket — never on the gateway's own TCP
// port, so the measured routes stay untouched:
//
//   GET  /stats  → {pid, elu: {idle, active} (ms, cumulative, main thread), rss, heapUsed,
//                   heapTotal, external, cpu: process.cpuUsage()}
//   POST /gc     → runs a full garbage collection (twice), then answers /stats
//
// The server is unref()'d: it never keeps the process alive. Requests are rare (a few per
// benchmark case), so its own share of the main thread is negligible.

import { rmSync } from "node:fs";
import { createServer } from "node:http";
import { performance } from "node:perf_hooks";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

const path = process.env.PI_BENCH_PROBE;
// Children of the measured process (there are none today) must not try to bind the same path.
delete process.env.PI_BENCH_PROBE;

if (path) {
	let gc = globalThis.gc;
	if (typeof gc !== "function") {
		setFlagsFromString("--expose-gc");
		gc = runInNewContext("gc");
	}

	const stats = () => {
		const elu = performance.eventLoopUtilization();
		const mem = process.memoryUsage();
		return {
			pid: process.pid,
			elu: { idle: elu.idle, active: elu.active },
			rss: mem.rss,
			heapUsed: mem.heapUsed,
			heapTotal: mem.heapTotal,
			external: mem.external,
			cpu: process.cpuUsage(),
		};
	};

	rmSync(path, { force: true });
	const server = createServer((req, res) => {
		if (req.url === "/gc" && req.method === "POST") {
			gc();
			gc();
		}
		const body = JSON.stringify(stats());
		res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
		res.end(body);
	});
	server.on("error", (error) => process.stderr.write(`[probe] ${error.message}\n`));
	server.listen(path);
	server.unref();
	process.once("exit", () => rmSync(path, { force: true }));
}
