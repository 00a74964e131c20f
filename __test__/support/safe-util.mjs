// Helpers of the "safe by default" tests (issue 11): safe-guard, slow-clients, no-poison, keys.
//
// - `startSafe(cleanup, ...)`: gateway.mjs's startGateway with the recording session doubles of
//   sessions.mjs (`recordingSession`, `recordingFactory`), whose stop() is pushed onto `cleanup`
//   (run it from an `after` hook with `runCleanup`).
// - `send(port, ...)`: one raw HTTP/1.1 exchange with full control of Host, Origin, Sec-Fetch-*
//   and Content-Type (node:http and fetch add or normalise these).
// - `png()`, `jpegBytes()`, `gifBytes()`, `webpBytes()`: image payloads; `png()` is a real
//   1×1 PNG (signature, IHDR, IDAT, IEND with correct CRCs).
// - `curl(args)`: the curl binary, status and body.

import { execFile } from "node:child_process";
import { connect } from "node:net";
import { deflateSync } from "node:zlib";

import { startGateway } from "./gateway.mjs";
import { parseResponses, rawExchange, rawRequest } from "./rel-util.mjs";
import { allCalls, recordingFactory, recordingSession } from "./sessions.mjs";

// ---------------------------------------------------------------- gateway

/**
 * gateway.mjs's startGateway with recording sessions (the primary and a factory by default);
 * pushes its stop() onto `cleanup`. Returns { rt, port, base, primary, factory, logs, stop, prompts() }.
 */
export async function startSafe(cleanup, { config = {}, primary, createSession, primaryKey = "main" } = {}) {
	const primarySession = primary ?? recordingSession(primaryKey);
	const factory = createSession ?? recordingFactory();
	const gw = await startGateway({ config, primarySession, createSession: factory, primaryKey });
	cleanup.push(gw.stop);
	return {
		...gw,
		primary: primarySession,
		factory,
		/** Prompt calls on the primary and on every session the factory made. */
		prompts: () => primarySession.calls.length + (factory.created ? allCalls(factory.created).length : 0),
	};
}

/** Runs every cleanup function, last first, and empties the list; errors are collected and rethrown. */
export async function runCleanup(cleanup) {
	const errors = [];
	while (cleanup.length) {
		const fn = cleanup.pop();
		try {
			await fn();
		} catch (e) {
			errors.push(e);
		}
	}
	if (errors.length) throw errors[0];
}

// ---------------------------------------------------------------- raw requests

/**
 * Builds one raw request. `host`: the Host header value (false: none). `body`: a string or
 * Buffer sent as is, or a value sent as JSON. `contentType`: the Content-Type header (default
 * `application/json` when a non-string body is given, none otherwise; null: none).
 */
export function build(method, path, { host, headers = {}, body, contentType, version } = {}) {
	const all = {};
	if (host !== false && host !== undefined) all.Host = host;
	const payload = body === undefined ? undefined : typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body);
	const type = contentType === undefined ? (body !== undefined && typeof body !== "string" && !Buffer.isBuffer(body) ? "application/json" : undefined) : contentType;
	if (type) all["Content-Type"] = type;
	Object.assign(all, headers);
	return rawRequest(method, path, { headers: all, body: payload, host: false, version });
}

/**
 * Sends one request on a fresh connection (Host defaults to `127.0.0.1:<port>`) and resolves
 * { status, headers, text, json, closed, ms, responses, raw } for the first complete response
 * (status 0 when none came). `opts.data` sends those bytes instead of building a request.
 */
export async function send(port, method, path, opts = {}) {
	const data = opts.data ?? build(method, path, { host: `127.0.0.1:${port}`, ...opts });
	const started = Date.now();
	const r = await rawExchange(port, data, { expect: opts.expect ?? 1, timeoutMs: opts.timeoutMs ?? 10000, noBody: opts.noBody });
	const ms = Date.now() - started;
	const first = r.responses[0];
	const text = first ? first.body.toString("utf8") : "";
	let json;
	try {
		json = text ? JSON.parse(text) : undefined;
	} catch {
		json = undefined;
	}
	return {
		status: first?.status ?? 0,
		headers: first?.headers ?? {},
		text,
		json,
		closed: r.closed,
		timedOut: r.timedOut,
		ms,
		responses: r.responses,
		raw: r.raw.toString("latin1"),
	};
}

/** `{ text }` as a JSON body. */
export const msg = (text, extra = {}) => ({ text, ...extra });

/** A short description of a response for assertion messages. */
export function show(r) {
	return `${r.status} ${JSON.stringify(r.text.slice(0, 300))}`;
}

// ---------------------------------------------------------------- images

const CRC_TABLE = (() => {
	const t = new Uint32Array(256);
	for (let n = 0; n < 256; n++) {
		let c = n;
		for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
		t[n] = c >>> 0;
	}
	return t;
})();

function crc32(buf) {
	let c = 0xffffffff;
	for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
	return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
	const len = Buffer.alloc(4);
	len.writeUInt32BE(data.length);
	const td = Buffer.concat([Buffer.from(type, "latin1"), data]);
	const crc = Buffer.alloc(4);
	crc.writeUInt32BE(crc32(td));
	return Buffer.concat([len, td, crc]);
}

export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * A real PNG of `width`×1 RGB pixels (default 1×1, red), as bytes. `padTo` appends a
 * private ancillary chunk (`prVt`) so the file is exactly `padTo` bytes (≥ the plain size + 12).
 */
export function pngBytes({ width = 1, padTo } = {}) {
	const ihdr = Buffer.alloc(13);
	ihdr.writeUInt32BE(width, 0);
	ihdr.writeUInt32BE(1, 4);
	ihdr[8] = 8; // bit depth
	ihdr[9] = 2; // colour type: RGB
	ihdr[10] = 0;
	ihdr[11] = 0;
	ihdr[12] = 0;
	const row = Buffer.alloc(1 + 3 * width);
	for (let i = 0; i < width; i++) row[1 + 3 * i] = 0xff;
	const parts = [PNG_SIGNATURE, pngChunk("IHDR", ihdr), pngChunk("IDAT", deflateSync(row))];
	const plain = Buffer.concat([...parts, pngChunk("IEND", Buffer.alloc(0))]);
	if (padTo !== undefined) {
		const extra = padTo - plain.length - 12;
		if (extra < 0) throw new Error(`pngBytes: cannot pad to ${padTo} (plain size ${plain.length})`);
		parts.push(pngChunk("prVt", Buffer.alloc(extra, 0x61)));
	}
	parts.push(pngChunk("IEND", Buffer.alloc(0)));
	return Buffer.concat(parts);
}

/** The base64 of a real 1×1 PNG (see pngBytes). */
export function png(options) {
	return pngBytes(options).toString("base64");
}

/** Bytes that start with the JPEG signature (SOI + APP0 JFIF). */
export function jpegBytes() {
	return Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0xff, 0xd9]);
}

/** A 1×1 GIF89a. */
export function gifBytes() {
	return Buffer.from("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==", "base64");
}

/** Bytes that start with the WEBP signature (RIFF....WEBPVP8 ). */
export function webpBytes() {
	const body = Buffer.concat([Buffer.from("WEBPVP8 ", "latin1"), Buffer.alloc(10)]);
	const size = Buffer.alloc(4);
	size.writeUInt32LE(body.length);
	return Buffer.concat([Buffer.from("RIFF", "latin1"), size, body]);
}

// ---------------------------------------------------------------- curl

/** Runs /usr/bin/curl with `args` plus `-w '\n%{http_code}'`; resolves { status, text, json }. */
export function curl(args) {
	return new Promise((resolve, reject) => {
		execFile(
			"/usr/bin/curl",
			["-s", "--max-time", "15", "--noproxy", "*", "-w", "\n%{http_code}", ...args],
			{ encoding: "utf8" },
			(error, stdout, stderr) => {
				if (error) {
					reject(new Error(`curl ${args.join(" ")} failed: ${error.message} ${stderr}`));
					return;
				}
				const i = stdout.lastIndexOf("\n");
				const text = stdout.slice(0, i);
				let json;
				try {
					json = JSON.parse(text);
				} catch {
					json = undefined;
				}
				resolve({ status: Number(stdout.slice(i + 1)), text, json });
			},
		);
	});
}

// ---------------------------------------------------------------- raw connections

/**
 * Opens a raw TCP connection to 127.0.0.1:`port`. Resolves once connected with
 * { socket, openedAt, closedAt (null while open), raw() (bytes so far, latin1),
 * responses() (parsed complete responses), waitResponses(n, ms), waitClose(ms), write(data), destroy() }.
 * `waitResponses` resolves with the responses (or rejects after `ms` / on close without them);
 * `waitClose` resolves with the close time (or rejects after `ms`).
 */
export function connectRaw(port) {
	return new Promise((resolve, reject) => {
		const socket = connect({ host: "127.0.0.1", port });
		const chunks = [];
		const conn = {
			socket,
			openedAt: 0,
			closedAt: null,
			raw: () => Buffer.concat(chunks).toString("latin1"),
			responses: () => {
				try {
					return parseResponses(Buffer.concat(chunks)).filter((r) => r.complete);
				} catch {
					return [];
				}
			},
			write: (data) => new Promise((r) => (socket.destroyed ? r() : socket.write(data, () => r()))),
			destroy: () => socket.destroy(),
			waitResponses(n, ms) {
				return new Promise((res, rej) => {
					const check = () => {
						const rs = conn.responses();
						if (rs.length >= n) {
							done();
							res(rs);
							return true;
						}
						if (conn.closedAt !== null) {
							done();
							rej(new Error(`closed after ${rs.length} of ${n} responses; got ${JSON.stringify(conn.raw().slice(0, 300))}`));
							return true;
						}
						return false;
					};
					const timer = setTimeout(() => {
						done();
						rej(new Error(`${n} responses did not arrive within ${ms} ms; got ${JSON.stringify(conn.raw().slice(0, 300))}`));
					}, ms);
					const done = () => {
						clearTimeout(timer);
						socket.off("data", check);
						socket.off("close", check);
					};
					if (check()) return;
					socket.on("data", check);
					socket.on("close", check);
				});
			},
			waitClose(ms) {
				return new Promise((res, rej) => {
					if (conn.closedAt !== null) return res(conn.closedAt);
					const timer = setTimeout(() => rej(new Error(`the connection was still open after ${ms} ms; got ${JSON.stringify(conn.raw().slice(0, 300))}`)), ms);
					socket.once("close", () => {
						clearTimeout(timer);
						res(conn.closedAt);
					});
				});
			},
		};
		socket.on("data", (d) => chunks.push(d));
		socket.on("error", () => {});
		socket.on("close", () => {
			conn.closedAt = Date.now();
		});
		socket.once("connect", () => {
			conn.openedAt = Date.now();
			resolve(conn);
		});
		socket.once("error", (e) => {
			if (!conn.openedAt) reject(e);
		});
	});
}
