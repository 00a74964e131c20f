// SSE load process: many subscribers of one session's GET /sessions/:key/events, each on its
// own raw TCP socket speaking HTTP/1.1 (node:net with `onread`, so no stream machinery per
// read — the load process must stay much cheaper than the gateways it measures), measuring
// what arrives.
// Run by bench/run.mjs as a child with an IPC channel (under `taskset`, on the load core).
//
// Commands (process.send replies {id, ok, ...} or {id, ok:false, error}):
//   {cmd:"open",  port, key, n, batch?}        open n subscribers, resolve once each saw `hello`
//   {cmd:"arm",   tokens, pid?, windows?}      expect tokens 0..tokens-1 on every subscriber
//   {cmd:"collect", timeoutMs}                 wait until every subscriber saw message_complete
//                                              (or the timeout), reply with the measurements
//   {cmd:"openPlain", port, n, request}        open n more plain connections (no event stream):
//                                              with `request`, each sends one keep-alive
//                                              `GET /health` and stays open once answered; without,
//                                              each sends nothing (a bare TCP connection)
//   {cmd:"close"}                              destroy every subscriber and plain connection;
//                                              replies how many plain ones the server had closed
//   {cmd:"replay", port, key, lastEventId?, after?, untilId?, pid?, timeoutMs?}
//                                              one reconnect on its own socket: GET
//                                              /sessions/:key/events with `Last-Event-ID:
//                                              lastEventId` (or `?after=after`); reads until the
//                                              frame with id `untilId` (without it: until hello),
//                                              then closes; replies with timings, the ids seen and,
//                                              with `pid`, that process's CPU time from just before
//                                              the request was written to the last frame's receipt
//   {cmd:"exit"}
//
// The scripted stream (`/stream N ms batch`) puts `t<i>@<epoch ms>;` in each token's delta: the
// emit time, taken in the gateway process just before the event was emitted. Receipt time is
// taken once per socket read, on the same clock (performance.timeOrigin + performance.now()).
// A token frame is recognised by `"type":"token"`; the first `message_complete` ends a
// subscriber's run. With `windows` ([[from, to], ...], token indexes) the per-token latency is
// kept by index and, when `pid` is given, the gateway's CPU time is sampled on receipt of each
// window's first and last token (used for the long-answer case with one subscriber).
//
// Limits: node raises its own open-file soft limit to the hard limit at start; nothing pools or
// caps the sockets.

import { connect } from "node:net";
import { cpuBetween, nowMs, percentile, procCpu } from "./bench-util.mjs";

const TOKEN = '"type":"token"';
const COMPLETE = '"type":"message_complete"';
const HELLO = '"type":"hello"';
const STAMP = /t(\d+)@(\d+\.\d{3});/g;

let subs = [];
let plain = []; // {socket, closed}
let run = null; // the armed measurement

// One read buffer for every socket: `onread` hands us the bytes synchronously and we copy them
// out at once, so sharing it is safe — and it skips the stream machinery per read.
const READ_BUFFER = Buffer.alloc(256 * 1024);

/**
 * One subscriber on a raw TCP socket speaking HTTP/1.1: request by hand, response headers and
 * chunked transfer-encoding decoded here (both gateways answer SSE with chunked bodies; a body
 * without it is read as is until the connection ends).
 */
function openOne(port, key) {
	return new Promise((resolve, reject) => {
		const sub = {
			socket: null,
			head: "", // response head until the blank line
			chunked: null, // null until the head is parsed
			raw: "", // undecoded chunked bytes
			remaining: -1, // bytes left in the current chunk; -1: expecting a size line
			buf: "", // decoded SSE text not yet split into frames
			hello: false,
			next: 0,
			tokens: 0,
			done: false,
			ended: false,
		};
		let settled = false;
		const fail = (error) => {
			if (!settled) {
				settled = true;
				reject(error);
			}
		};
		const socket = connect({
			host: "127.0.0.1",
			port,
			onread: {
				buffer: READ_BUFFER,
				callback: (n, buf) => {
					try {
						onBytes(sub, buf.latin1Slice(0, n));
					} catch (error) {
						fail(error);
						socket.destroy();
						return false;
					}
					if (sub.hello && !settled) {
						settled = true;
						resolve(sub);
					}
					return true;
				},
			},
		});
		sub.socket = socket;
		socket.setNoDelay(true);
		socket.on("connect", () => {
			socket.write(
				`GET /sessions/${encodeURIComponent(key)}/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
					"Accept: text/event-stream\r\n\r\n",
			);
		});
		const onEnd = () => {
			if (sub.ended) return;
			sub.ended = true;
			if (run && run.subs.includes(sub) && !sub.done) run.disconnected++;
			fail(new Error("event stream ended before hello"));
			maybeFinish();
		};
		socket.on("end", onEnd);
		socket.on("close", onEnd);
		socket.on("error", (error) => fail(error));
	});
}

// Bytes from the socket: the response head first, then the (chunked) body.
function onBytes(sub, text) {
	if (sub.chunked === null) {
		sub.head += text;
		const end = sub.head.indexOf("\r\n\r\n");
		if (end === -1) return;
		const head = sub.head.slice(0, end);
		const status = /^HTTP\/1\.[01] (\d{3})/.exec(head);
		if (!status || status[1] !== "200") throw new Error(`events answered: ${head.split("\r\n")[0]}`);
		sub.chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head);
		text = sub.head.slice(end + 4);
		sub.head = "";
		if (!text) return;
	}
	if (!sub.chunked) return onData(sub, text);
	// Chunked transfer-encoding: <hex size>[;ext]\r\n<data>\r\n ... 0\r\n\r\n
	let raw = sub.raw ? sub.raw + text : text;
	let pos = 0;
	let data = "";
	while (pos < raw.length) {
		if (sub.remaining === -1) {
			const eol = raw.indexOf("\r\n", pos);
			if (eol === -1) break;
			const size = parseInt(raw.slice(pos, eol), 16);
			pos = eol + 2;
			if (size === 0) {
				sub.remaining = -2; // last chunk: the stream is over
				break;
			}
			sub.remaining = size;
		}
		if (sub.remaining > 0) {
			const take = Math.min(sub.remaining, raw.length - pos);
			data += raw.slice(pos, pos + take);
			pos += take;
			sub.remaining -= take;
		}
		if (sub.remaining === 0) {
			if (raw.length - pos < 2) break; // the chunk's trailing CRLF has not arrived yet
			pos += 2;
			sub.remaining = -1;
		}
	}
	sub.raw = pos < raw.length ? raw.slice(pos) : "";
	if (data) onData(sub, data);
}

function onData(sub, chunk) {
	const now = nowMs();
	let buf = sub.buf + chunk;
	let start = 0;
	for (;;) {
		const end = buf.indexOf("\n\n", start);
		if (end === -1) break;
		(sub.onFrame ?? onFrame)(sub, buf, start, end, now);
		start = end + 2;
	}
	sub.buf = start === 0 ? buf : buf.slice(start);
}

function onFrame(sub, buf, start, end, now) {
	const r = run;
	if (!sub.hello) {
		const h = buf.indexOf(HELLO, start);
		if (h !== -1 && h < end) sub.hello = true;
		return;
	}
	if (!r || sub.done) return;
	r.frames++;
	const t = buf.indexOf(TOKEN, start);
	if (t !== -1 && t < end) {
		STAMP.lastIndex = t;
		for (;;) {
			const m = STAMP.exec(buf);
			if (!m || m.index >= end) break;
			const index = Number(m[1]);
			const emitted = Number(m[2]);
			if (index !== sub.next) r.outOfOrder++;
			sub.next = index + 1;
			sub.tokens++;
			r.tokens++;
			const latency = now - emitted;
			if (r.n < r.lat.length) r.lat[r.n++] = latency;
			if (emitted < r.firstEmit) r.firstEmit = emitted;
			r.lastReceipt = now;
			if (r.byIndex && index < r.byIndex.length) {
				r.byIndex[index] = latency;
				r.emitAt[index] = emitted;
				if (r.samplePoints.has(index) && r.pid) r.cpuAt.set(index, procCpu(r.pid));
			}
		}
		return;
	}
	const c = buf.indexOf(COMPLETE, start);
	if (c !== -1 && c < end) {
		sub.done = true;
		r.complete++;
		maybeFinish();
	}
}

function maybeFinish() {
	const r = run;
	if (!r || r.finished) return;
	if (r.complete + r.disconnected >= r.subscribers) {
		r.finished = true;
		r.finishedAt = nowMs();
		r.resolve?.();
	}
}

async function open({ port, key, n, batch = 100 }) {
	const t0 = nowMs();
	for (let i = 0; i < n; i += batch) {
		const group = [];
		for (let j = i; j < Math.min(n, i + batch); j++) group.push(openOne(port, key));
		subs.push(...(await Promise.all(group)));
	}
	return { open: subs.length, ms: nowMs() - t0 };
}

function arm({ tokens, pid, windows }) {
	const live = subs.filter((s) => !s.ended);
	for (const s of live) {
		s.next = 0;
		s.tokens = 0;
		s.done = false;
	}
	run = {
		subs: live,
		subscribers: live.length,
		expected: tokens,
		lat: new Float64Array(live.length * tokens),
		n: 0,
		frames: 0,
		tokens: 0,
		outOfOrder: 0,
		complete: 0,
		disconnected: 0,
		firstEmit: Infinity,
		lastReceipt: 0,
		armedAt: nowMs(),
		finished: false,
		pid,
		windows: windows ?? null,
		byIndex: windows ? new Float64Array(tokens).fill(NaN) : null,
		emitAt: windows ? new Float64Array(tokens).fill(NaN) : null,
		samplePoints: new Set((windows ?? []).flatMap(([a, b]) => [a, b - 1])),
		cpuAt: new Map(),
	};
	run.done = new Promise((r) => (run.resolve = r));
	return { armed: live.length };
}

async function collect({ timeoutMs = 60000 }) {
	const r = run;
	if (!r) throw new Error("not armed");
	let timer;
	const timedOut = await Promise.race([
		r.done.then(() => false),
		new Promise((res) => (timer = setTimeout(() => res(true), timeoutMs))),
	]);
	clearTimeout(timer);
	run = null;
	const sorted = r.lat.subarray(0, r.n).sort();
	let missing = 0;
	for (const s of r.subs) missing += Math.max(0, r.expected - s.tokens);
	const spanMs = r.lastReceipt - r.firstEmit;
	const out = {
		timedOut,
		subscribers: r.subscribers,
		complete: r.complete,
		disconnected: r.disconnected,
		expectedTokens: r.expected * r.subscribers,
		deliveredTokens: r.tokens,
		deliveredFrames: r.frames,
		missing,
		outOfOrder: r.outOfOrder,
		spanMs,
		eventsPerSec: spanMs > 0 ? (r.tokens / spanMs) * 1000 : NaN,
		latencyMs: {
			p50: percentile(sorted, 50),
			p90: percentile(sorted, 90),
			p99: percentile(sorted, 99),
			max: sorted.length ? sorted[sorted.length - 1] : NaN,
		},
	};
	if (r.windows) {
		out.windows = r.windows.map(([a, b]) => {
			const lat = r.byIndex.slice(a, b).filter((x) => !Number.isNaN(x)).sort();
			const w = {
				from: a,
				to: b,
				latencyP50Ms: percentile(lat, 50),
				latencyP99Ms: percentile(lat, 99),
				// Main-thread time between emitting the window's first and last token.
				emitUsPerToken: ((r.emitAt[b - 1] - r.emitAt[a]) * 1000) / (b - 1 - a),
			};
			const c0 = r.cpuAt.get(a);
			const c1 = r.cpuAt.get(b - 1);
			if (c0 && c1) w.cpuUsPerToken = cpuBetween(c0, c1).ns / 1000 / (b - 1 - a);
			return w;
		});
	}
	return out;
}

/** One plain connection: bare (nothing sent) or after one answered keep-alive GET /health. */
function openPlainOne(port, request) {
	return new Promise((resolve, reject) => {
		const conn = { socket: null, closed: false };
		let got = "";
		let settled = false;
		const socket = connect({ host: "127.0.0.1", port });
		conn.socket = socket;
		socket.setNoDelay(true);
		socket.on("connect", () => {
			if (!request) {
				settled = true;
				return resolve(conn);
			}
			socket.write(`GET /health HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: keep-alive\r\n\r\n`);
		});
		socket.on("data", (d) => {
			if (settled) return;
			got += d.toString("latin1");
			const end = got.indexOf("\r\n\r\n");
			if (end === -1) return;
			const len = /\r\ncontent-length:\s*(\d+)/i.exec(got.slice(0, end));
			if (!/^HTTP\/1\.1 200/.test(got)) {
				settled = true;
				return reject(new Error(`GET /health answered: ${got.split("\r\n")[0]}`));
			}
			if (len && got.length - end - 4 < Number(len[1])) return;
			settled = true;
			resolve(conn);
		});
		const onClose = () => {
			conn.closed = true;
			if (!settled) {
				settled = true;
				reject(new Error("plain connection closed before it was ready"));
			}
		};
		socket.on("end", onClose);
		socket.on("close", onClose);
		socket.on("error", (error) => {
			if (!settled) {
				settled = true;
				reject(error);
			}
		});
	});
}

async function openPlain({ port, n, request = false, batch = 100 }) {
	const t0 = nowMs();
	let opened = 0;
	for (let i = 0; i < n; i += batch) {
		const group = [];
		for (let j = i; j < Math.min(n, i + batch); j++) group.push(openPlainOne(port, request));
		const conns = await Promise.all(group);
		plain.push(...conns);
		opened += conns.length;
	}
	return { opened, plain: plain.length, ms: nowMs() - t0 };
}

function close() {
	for (const s of subs) {
		s.ended = true;
		s.socket.destroy();
	}
	const n = subs.length;
	subs = [];
	const plainClosedByServer = plain.filter((c) => c.closed).length;
	for (const c of plain) c.socket.destroy();
	const p = plain.length;
	plain = [];
	return { closed: n, plain: p, plainClosedByServer };
}

/**
 * One reconnect (see the header): the time from writing the request to receiving the frame
 * `untilId`, what came (frames after hello, token frames, bytes), and whether the ids after
 * hello ran without a gap or a step back. Frames are read as `id: <n>\ndata: <json>`.
 */
function replay({ port, key, lastEventId, after, untilId, pid, timeoutMs = 30000 }) {
	return new Promise((resolve, reject) => {
		const query = after === undefined ? "" : `?after=${encodeURIComponent(after)}`;
		const header = lastEventId === undefined ? "" : `Last-Event-ID: ${lastEventId}\r\n`;
		const out = {
			requestAt: 0,
			helloMs: NaN,
			ms: NaN,
			helloId: null,
			missed: false,
			frames: 0, // after hello
			tokens: 0,
			firstId: null,
			lastId: null,
			gaps: 0, // id > previous + 1
			backwards: 0, // id <= previous
			bytes: 0,
			cpuNs: NaN,
			clientCpuNs: NaN, // this process, same span
			timedOut: false,
			ended: false,
		};
		let c0 = null;
		let l0 = null;
		let hello = false;
		let prev = null;
		let settled = false;
		const finish = () => {
			if (settled) return;
			settled = true;
			clearTimeout(timer);
			socket.destroy();
			if (l0) out.clientCpuNs = cpuBetween(l0, procCpu(process.pid)).ns;
			const { requestAt: _r, ...rest } = out;
			resolve(rest);
		};
		const sub = {
			head: "",
			chunked: null,
			raw: "",
			remaining: -1,
			buf: "",
			onFrame: (_sub, buf, start, end, now) => {
				let id = null;
				if (buf.startsWith("id: ", start)) {
					const nl = buf.indexOf("\n", start);
					id = Number(buf.slice(start + 4, nl === -1 || nl > end ? end : nl));
				}
				if (!hello) {
					const h = buf.indexOf(HELLO, start);
					if (h === -1 || h >= end) return; // `retry:`
					hello = true;
					out.helloId = id;
					out.helloMs = now - out.requestAt;
					const m = buf.indexOf('"missed":true', start);
					out.missed = m !== -1 && m < end;
					if (untilId === undefined || untilId === id) {
						out.ms = out.helloMs;
						if (pid) out.cpuNs = cpuBetween(c0, procCpu(pid)).ns;
						finish();
					}
					return;
				}
				out.frames++;
				const t = buf.indexOf(TOKEN, start);
				if (t !== -1 && t < end) out.tokens++;
				if (id !== null) {
					if (out.firstId === null) out.firstId = id;
					if (prev !== null && id <= prev) out.backwards++;
					else if (prev !== null && id > prev + 1) out.gaps++;
					prev = id;
					out.lastId = id;
				}
				if (id !== null && id >= untilId) {
					out.ms = now - out.requestAt;
					if (pid) out.cpuNs = cpuBetween(c0, procCpu(pid)).ns;
					finish();
				}
			},
		};
		const socket = connect({
			host: "127.0.0.1",
			port,
			onread: {
				buffer: READ_BUFFER,
				callback: (n, buf) => {
					out.bytes += n;
					try {
						onBytes(sub, buf.latin1Slice(0, n));
					} catch (error) {
						settled = true;
						clearTimeout(timer);
						socket.destroy();
						reject(error);
						return false;
					}
					return true;
				},
			},
		});
		socket.setNoDelay(true);
		socket.on("connect", () => {
			if (pid) c0 = procCpu(pid);
			l0 = procCpu(process.pid);
			out.requestAt = nowMs();
			socket.write(
				`GET /sessions/${encodeURIComponent(key)}/events${query} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
					`Accept: text/event-stream\r\n${header}\r\n`,
			);
		});
		const onEnd = () => {
			out.ended = true;
			finish();
		};
		socket.on("end", onEnd);
		socket.on("close", onEnd);
		socket.on("error", (error) => {
			if (!settled) {
				settled = true;
				clearTimeout(timer);
				reject(error);
			}
		});
		const timer = setTimeout(() => {
			out.timedOut = true;
			finish();
		}, timeoutMs);
	});
}

const handlers = { open, openPlain, arm, collect, close, replay, exit: () => setImmediate(() => process.exit(0)) };

process.on("message", async (msg) => {
	try {
		const result = await handlers[msg.cmd](msg);
		process.send({ id: msg.id, ok: true, ...result });
	} catch (error) {
		process.send({ id: msg.id, ok: false, error: String(error?.stack ?? error) });
	}
});
process.on("disconnect", () => process.exit(0));
