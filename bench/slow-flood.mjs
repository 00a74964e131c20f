#!/usr/bin/env node
// How the gateway's monitor fares while slow clients fill every connection slot.
//
//   node bench/slow-flood.mjs [--connections 1024] [--probes 200]
//
// Starts pi-gateway (bench/run-gateway.mjs, default limits: maxConnections 1024,
// reserveConnections 32), opens `--connections` sockets that each send a request head declaring
// a 100-byte body and then nothing (the slow-body attack), and while they hold their slots sends
// `--probes` sequential `GET /health` requests on fresh connections (what a load balancer's
// health check does). Prints how many probes were answered 200 and their latency. (The attackers
// themselves are cut with 408 after `limits.bodyTimeoutMs`, 30 s; __test__/slow-clients.test.mjs
// checks that.) 127.0.0.1 only; stops by itself.

import net from "node:net";
import { performance } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";
import { parseArgs } from "node:util";
import { spawnGateway } from "./spawn-gateway.mjs";

const { values } = parseArgs({
	options: {
		connections: { type: "string", default: "1024" },
		probes: { type: "string", default: "200" },
	},
});
const attackers = Number(values.connections);
const probes = Number(values.probes);

function openSlowBody(port) {
	return new Promise((resolve) => {
		const socket = net.connect(port, "127.0.0.1");
		const state = { socket, status: null };
		socket.on("data", (d) => {
			const m = /^HTTP\/1\.1 (\d{3})/.exec(d.toString("latin1"));
			if (m) state.status = Number(m[1]);
		});
		socket.on("error", () => {});
		socket.on("connect", () => {
			socket.write("POST /sessions/flood/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n");
			resolve(state);
		});
		socket.on("close", () => resolve(state));
	});
}

function probe(port) {
	return new Promise((resolve) => {
		const started = performance.now();
		const socket = net.connect(port, "127.0.0.1");
		let text = "";
		const done = (status) => {
			socket.destroy();
			resolve({ status, ms: performance.now() - started });
		};
		const timer = setTimeout(() => done(0), 5000);
		socket.on("connect", () => socket.write("GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
		socket.on("data", (d) => {
			text += d.toString("latin1");
			const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
			if (m && text.includes("\r\n\r\n")) {
				clearTimeout(timer);
				done(Number(m[1]));
			}
		});
		socket.on("error", () => {
			clearTimeout(timer);
			done(0);
		});
		socket.on("close", () => {
			clearTimeout(timer);
			done(0);
		});
	});
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

const gw = await spawnGateway(["--scenario", "instant"], { quiet: true });
const watchdog = setTimeout(() => {
	console.error("slow-flood: deadline passed, stopping");
	process.exit(1);
}, 120_000);
try {
	const held = [];
	for (let i = 0; i < attackers; i++) held.push(await openSlowBody(gw.port));
	await delay(200);
	const results = [];
	for (let i = 0; i < probes; i++) results.push(await probe(gw.port));
	const ok = results.filter((r) => r.status === 200);
	const ms = ok.map((r) => r.ms).sort((a, b) => a - b);
	console.log(`slow-body attackers holding slots: ${held.filter((s) => !s.socket.destroyed).length} of ${attackers}`);
	console.log(
		`GET /health during the flood: ${ok.length}/${probes} answered 200` +
			(ms.length ? `, p50 ${pct(ms, 50).toFixed(2)} ms, p99 ${pct(ms, 99).toFixed(2)} ms` : ""),
	);
	const others = results.filter((r) => r.status !== 200).map((r) => r.status);
	if (others.length) console.log(`other probe outcomes: ${JSON.stringify(others.slice(0, 10))}`);
	for (const s of held) s.socket.destroy();
} finally {
	clearTimeout(watchdog);
	await gw.stop();
}
