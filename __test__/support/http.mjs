// Plain HTTP for the tests: one request on a fresh connection (node:http), raw-socket
// exchanges, and a small HTTP/1.1 response parser. The gateway starters are in gateway.mjs,
// the event-stream reader in sse.mjs.

import http from "node:http";
import net from "node:net";
import { checkResponse } from "./openapi.mjs";

export const JSON_TYPE = "application/json; charset=utf-8";

const OPENAPI_CHECK = process.env.PI_GATEWAY_OPENAPI_CHECK !== "0";

/**
 * One HTTP request on its own connection (node:http, no keep-alive pool).
 * `body`: a string or Buffer is sent as is, anything else as JSON.
 * Resolves {status, headers, text, json}; `json` is undefined when the body is not JSON.
 * Every response is checked against the OpenAPI document (support/openapi.mjs): the promise
 * rejects with the checker's error when the status, content type or body is not what the
 * document says. `openapi: false` skips the check for one deliberate exception;
 * PI_GATEWAY_OPENAPI_CHECK=0 skips it everywhere.
 */
export function request(port, method, path, { headers = {}, body, timeoutMs = 15000, openapi = OPENAPI_CHECK } = {}) {
	return new Promise((resolve, reject) => {
		const payload =
			body === undefined ? undefined : typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body);
		const allHeaders = { ...headers };
		if (payload !== undefined && !Object.keys(allHeaders).some((h) => h.toLowerCase() === "content-type")) {
			allHeaders["content-type"] = "application/json";
		}
		const req = http.request({ host: "127.0.0.1", port, method, path, headers: allHeaders, agent: false }, (res) => {
			const chunks = [];
			res.on("data", (c) => chunks.push(c));
			res.on("error", reject);
			res.on("end", () => {
				const text = Buffer.concat(chunks).toString("utf8");
				let json;
				try {
					json = text ? JSON.parse(text) : undefined;
				} catch {
					json = undefined;
				}
				const response = { status: res.statusCode, headers: res.headers, text, json };
				if (openapi) {
					try {
						checkResponse({ method, path, ...response });
					} catch (e) {
						reject(e);
						return;
					}
				}
				resolve(response);
			});
		});
		req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer to ${method} ${path} within ${timeoutMs} ms`)));
		req.on("error", reject);
		if (payload !== undefined) req.write(payload);
		req.end();
	});
}

/** A snapshot list in key order, for before/after comparisons. */
export function sortedSessions(list) {
	return [...list].sort((a, b) => (a.sessionKey < b.sessionKey ? -1 : a.sessionKey > b.sessionKey ? 1 : 0));
}

/**
 * A raw TCP connection to the gateway. `data` accumulates everything received (latin1, so
 * byte counts are exact); `closed` resolves when the socket closes.
 */
export function rawConnect(port) {
	return new Promise((resolve, reject) => {
		const socket = net.connect({ host: "127.0.0.1", port });
		const conn = {
			socket,
			data: "",
			error: null,
			isClosed: false,
			closed: null,
			write: (text) => new Promise((r) => socket.write(text, () => r())),
			/** Resolves with `data` once `pred(data)` holds; rejects after `ms` or on close. */
			waitForData(pred, ms = 10000) {
				return new Promise((res, rej) => {
					const done = () => {
						clearTimeout(timer);
						socket.off("data", onData);
						socket.off("close", onClose);
					};
					const onData = () => {
						if (pred(conn.data)) {
							done();
							res(conn.data);
						}
					};
					const onClose = () => {
						done();
						if (pred(conn.data)) res(conn.data);
						else rej(new Error(`socket closed before the awaited data; got ${JSON.stringify(conn.data.slice(0, 300))}`));
					};
					const timer = setTimeout(() => {
						done();
						rej(new Error(`awaited data did not arrive within ${ms} ms; got ${JSON.stringify(conn.data.slice(0, 300))}`));
					}, ms);
					if (pred(conn.data)) {
						done();
						res(conn.data);
						return;
					}
					if (conn.isClosed) {
						onClose();
						return;
					}
					socket.on("data", onData);
					socket.on("close", onClose);
				});
			},
			destroy: () => socket.destroy(),
		};
		conn.closed = new Promise((r) =>
			socket.on("close", () => {
				conn.isClosed = true;
				r();
			}),
		);
		socket.setEncoding("latin1");
		socket.on("data", (chunk) => {
			conn.data += chunk;
		});
		socket.on("error", (e) => {
			conn.error = e;
		});
		socket.once("connect", () => resolve(conn));
		socket.once("error", (e) => {
			if (!socket.connecting) return;
			reject(e);
		});
	});
}

/**
 * Parses complete HTTP/1.1 responses (Content-Length or chunked bodies) from the start of
 * `text`. Returns [{status, headers (lower-cased), body}], stopping at the first incomplete one.
 */
export function parseResponses(text) {
	const out = [];
	let rest = text;
	for (;;) {
		const headEnd = rest.indexOf("\r\n\r\n");
		if (headEnd === -1) break;
		const [statusLine, ...lines] = rest.slice(0, headEnd).split("\r\n");
		const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
		if (!m) break;
		const headers = {};
		for (const line of lines) {
			const i = line.indexOf(":");
			if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
		}
		let pos = headEnd + 4;
		let body = "";
		if (headers["transfer-encoding"]?.includes("chunked")) {
			const chunks = dechunk(rest, pos);
			if (!chunks.complete) break;
			body = chunks.body;
			pos = chunks.end;
		} else {
			const len = Number(headers["content-length"] ?? 0);
			if (rest.length < pos + len) break;
			body = rest.slice(pos, pos + len);
			pos += len;
		}
		out.push({ status: Number(m[1]), headers, body });
		rest = rest.slice(pos);
	}
	return out;
}

/**
 * Reads a chunked body from `pos` of `text`. Returns `{ body, end, complete }`: `body` holds the
 * data of every chunk received, the last one even if only part of it has arrived; `complete`
 * says whether the terminating chunk has arrived, and `end` is the index just after it (else
 * just after the last whole chunk).
 */
export function dechunk(text, pos = 0) {
	let body = "";
	for (;;) {
		const lineEnd = text.indexOf("\r\n", pos);
		if (lineEnd === -1) return { body, end: pos, complete: false };
		const size = Number.parseInt(text.slice(pos, lineEnd), 16);
		if (Number.isNaN(size)) return { body, end: pos, complete: false };
		if (size === 0) {
			if (text.length < lineEnd + 4) return { body, end: pos, complete: false };
			return { body, end: lineEnd + 4, complete: true };
		}
		body += text.slice(lineEnd + 2, lineEnd + 2 + size);
		if (text.length < lineEnd + 2 + size + 2) return { body, end: pos, complete: false };
		pos = lineEnd + 2 + size + 2;
	}
}
