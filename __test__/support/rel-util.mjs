// Shared helpers of the reliability tests (faults, hostile input, exactly-once, soak, and the
// safe-by-default tests through safe-util.mjs): raw HTTP/1.x over node:net with a small
// response parser (fetch would normalize what these tests need to send badly), a JSON fetch
// with a bearer token, a seeded PRNG, and an RSS sampler. The gateway starter is gateway.mjs's,
// the session doubles are sessions.mjs's, waiting is wait.mjs's.

import { connect } from "node:net";

import { sleep } from "./wait.mjs";

// ---------------------------------------------------------------- raw HTTP

/**
 * Parses as many complete HTTP/1.x responses as `buf` holds. Each is
 * `{ status, reason, version, headers: {name: value | value[]}, body: Buffer }`.
 * `noBody` (for HEAD) — a list of booleans by response index.
 */
export function parseResponses(buf, { noBody = [] } = {}) {
	const out = [];
	let pos = 0;
	for (;;) {
		const headEnd = buf.indexOf("\r\n\r\n", pos);
		if (headEnd < 0) break;
		const head = buf.subarray(pos, headEnd).toString("latin1");
		const [statusLine, ...lines] = head.split("\r\n");
		const m = /^(HTTP\/\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine);
		if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(statusLine)}`);
		const headers = {};
		for (const line of lines) {
			const i = line.indexOf(":");
			const name = line.slice(0, i).trim().toLowerCase();
			const value = line.slice(i + 1).trim();
			if (name in headers) headers[name] = [].concat(headers[name], value);
			else headers[name] = value;
		}
		const status = Number(m[2]);
		let p = headEnd + 4;
		let body = Buffer.alloc(0);
		let complete = true;
		const bodyless = noBody[out.length] || status === 204 || status === 304 || (status >= 100 && status < 200);
		if (bodyless) {
			// nothing
		} else if (/chunked/i.test(String(headers["transfer-encoding"] ?? ""))) {
			const parts = [];
			complete = false;
			for (;;) {
				const lineEnd = buf.indexOf("\r\n", p);
				if (lineEnd < 0) break;
				const size = parseInt(buf.subarray(p, lineEnd).toString("latin1"), 16);
				if (Number.isNaN(size)) throw new Error("bad chunk size");
				if (size === 0) {
					const end = buf.indexOf("\r\n\r\n", lineEnd);
					const simpleEnd = buf.subarray(lineEnd + 2, lineEnd + 4).toString("latin1") === "\r\n";
					if (simpleEnd) p = lineEnd + 4;
					else if (end >= 0) p = end + 4;
					else break;
					complete = true;
					break;
				}
				if (buf.length < lineEnd + 2 + size + 2) break;
				parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
				p = lineEnd + 2 + size + 2;
			}
			body = Buffer.concat(parts);
		} else if (headers["content-length"] !== undefined) {
			const len = Number(headers["content-length"]);
			if (buf.length < p + len) {
				complete = false;
			} else {
				body = buf.subarray(p, p + len);
				p += len;
			}
		} else {
			// Delimited by close: everything that is left.
			body = buf.subarray(p);
			p = buf.length;
		}
		out.push({ version: m[1], status, reason: m[3] ?? "", headers, body, complete });
		if (!complete) break;
		pos = p;
	}
	return out;
}

/**
 * Writes `data` (string, Buffer, or an array of them written one after another) to a fresh
 * connection and collects bytes until `expect` complete responses arrived, the server closed,
 * or `timeoutMs` passed. Resolves `{ responses, raw, closed, timedOut, error }`.
 */
export function rawExchange(port, data, { expect = 1, timeoutMs = 5000, noBody, keepOpen = false } = {}) {
	return new Promise((resolve) => {
		const socket = connect({ host: "127.0.0.1", port });
		const chunks = [];
		let closed = false;
		let error = null;
		let done = false;
		const finish = (timedOut = false) => {
			if (done) return;
			done = true;
			clearTimeout(timer);
			const raw = Buffer.concat(chunks);
			let responses = [];
			try {
				responses = parseResponses(raw, { noBody });
			} catch (e) {
				error = error ?? e;
			}
			if (!keepOpen || closed) socket.destroy();
			resolve({ responses, raw, closed, timedOut, error, socket });
		};
		const timer = setTimeout(() => finish(true), timeoutMs);
		socket.on("connect", () => {
			for (const part of [].concat(data)) socket.write(part);
		});
		socket.on("data", (d) => {
			chunks.push(d);
			if (expect > 0) {
				try {
					const rs = parseResponses(Buffer.concat(chunks), { noBody });
					if (rs.length >= expect && rs.slice(0, expect).every((r) => r.complete)) finish();
				} catch {
					// wait for more
				}
			}
		});
		socket.on("error", (e) => {
			error = e;
		});
		socket.on("close", () => {
			closed = true;
			finish();
		});
	});
}

/** `METHOD path HTTP/1.1` with Host, the given headers and body (content-length added for bodies). */
export function rawRequest(method, path, { headers = {}, body, version = "HTTP/1.1", host = true } = {}) {
	const lines = [`${method} ${path} ${version}`];
	if (host) lines.push("Host: 127.0.0.1");
	const hasLength = Object.keys(headers).some((h) => /^(content-length|transfer-encoding)$/i.test(h));
	for (const [name, value] of Object.entries(headers)) {
		for (const v of [].concat(value)) lines.push(`${name}: ${v}`);
	}
	const bodyBuf = body === undefined ? null : Buffer.isBuffer(body) ? body : Buffer.from(body);
	if (bodyBuf && !hasLength) lines.push(`Content-Length: ${bodyBuf.length}`);
	const head = Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1");
	return bodyBuf ? Buffer.concat([head, bodyBuf]) : head;
}

/** Encodes a body as HTTP/1.1 chunks of `size` bytes (with the terminating 0 chunk). */
export function chunked(body, size = 7) {
	const buf = Buffer.from(body);
	const parts = [];
	for (let i = 0; i < buf.length; i += size) {
		const piece = buf.subarray(i, i + size);
		parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n"));
	}
	parts.push(Buffer.from("0\r\n\r\n"));
	return Buffer.concat(parts);
}

export function jsonOf(response) {
	return JSON.parse(response.body.toString("utf8"));
}

/** Opens a raw socket and resolves once connected. */
export function openSocket(port) {
	return new Promise((resolve, reject) => {
		const s = connect({ host: "127.0.0.1", port });
		s.once("connect", () => resolve(s));
		s.once("error", reject);
	});
}

// ---------------------------------------------------------------- misc

/** mulberry32: a tiny seeded PRNG → () => float in [0, 1). */
export function mulberry32(seed) {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

export const MiB = 1024 * 1024;

/** RSS of this process in bytes. */
export function rss() {
	return process.memoryUsage.rss();
}

/** A `gc()` function if the runtime allows one (exposed through v8 flags), else a no-op. */
export async function getGc() {
	if (typeof globalThis.gc === "function") return globalThis.gc;
	try {
		const v8 = await import("node:v8");
		const vm = await import("node:vm");
		v8.setFlagsFromString("--expose_gc");
		const gc = vm.runInNewContext("gc");
		if (typeof gc === "function") return gc;
	} catch {
		// fall through
	}
	return () => {};
}

/** Full GC a few times with pauses so finalizers and freed native memory settle. */
export async function settleMemory(gc) {
	for (let i = 0; i < 3; i++) {
		gc();
		await sleep(50);
	}
}

/** JSON fetch with a bearer token; resolves `{ status, body, headers }`. */
export async function api(base, method, path, { token, body, headers = {} } = {}) {
	const h = { ...headers };
	if (token) h.authorization = `Bearer ${token}`;
	if (body !== undefined) h["content-type"] = "application/json";
	const res = await fetch(`${base}${path}`, {
		method,
		headers: h,
		body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
	});
	const text = await res.text();
	let json;
	try {
		json = JSON.parse(text);
	} catch {
		json = undefined;
	}
	return { status: res.status, body: json, text, headers: res.headers };
}
