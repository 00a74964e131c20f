// Shared helpers for the HTTP tests (http-routes, http-clients, sse, conformance):
// a gateway on 127.0.0.1:0 driven by the scripted AgentSession double, plain HTTP requests
// on fresh connections, raw-socket exchanges, and an SSE reader that keeps frame ids.

import http from "node:http";
import net from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { createScriptedFactory, createScriptedSession } from "../../bench/scripted-session.mjs";
import { GatewayRuntime } from "../../index.js";

export const JSON_TYPE = "application/json; charset=utf-8";

/**
 * Starts a pi-gateway on 127.0.0.1, port 0, with scripted sessions.
 * `config` is merged over a default config (its `session` and `webhook` objects field by field).
 * Returns the runtime, its port, every session ever created (for prompt counts) and the log lines.
 */
export async function startGateway({
	config = {},
	scenario = { kind: "instant" },
	sessionOptions = {},
	primaryKey = "main",
	createSession,
} = {}) {
	const { session, webhook, ...rest } = config;
	const fullConfig = {
		bind: "127.0.0.1",
		port: 0,
		...rest,
		session: { idleMinutes: 30, maxQueuePerSession: 8, ...session },
		webhook: { enabled: false, basePath: "/webhook", ...webhook },
	};
	const primary = createScriptedSession(primaryKey, scenario, sessionOptions);
	const created = [primary];
	const scripted = createScriptedFactory(scenario, sessionOptions);
	const factory =
		createSession ??
		(async (key) => {
			const s = await scripted(key);
			created.push(s);
			return s;
		});
	const logs = [];
	const rt = new GatewayRuntime({
		config: fullConfig,
		primarySessionKey: primaryKey,
		primarySession: primary,
		createSession: factory,
		log: (message) => logs.push(message),
	});
	await rt.start();
	const port = rt.getAddress().port;
	return {
		rt,
		port,
		base: `http://127.0.0.1:${port}`,
		primary,
		created,
		live: scripted.live,
		logs,
		/** Prompts received by every scripted session this gateway ever created. */
		prompts: () => created.reduce((n, s) => n + s.stats.prompts, 0),
		stop: () => rt.stop(),
	};
}

/**
 * One HTTP request on its own connection (node:http, no keep-alive pool).
 * `body`: a string or Buffer is sent as is, anything else as JSON.
 * Resolves {status, headers, text, json}; `json` is undefined when the body is not JSON.
 */
export function request(port, method, path, { headers = {}, body, timeoutMs = 15000 } = {}) {
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
				resolve({ status: res.statusCode, headers: res.headers, text, json });
			});
		});
		req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer to ${method} ${path} within ${timeoutMs} ms`)));
		req.on("error", reject);
		if (payload !== undefined) req.write(payload);
		req.end();
	});
}

/** Polls `fn` until it returns a truthy value; throws `message` after `timeoutMs`. */
export async function waitUntil(fn, { timeoutMs = 10000, intervalMs = 20, message = "condition" } = {}) {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const value = await fn();
		if (value) return value;
		if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}`);
		await delay(intervalMs);
	}
}

/** A snapshot list in key order, for before/after comparisons. */
export function sortedSessions(list) {
	return [...list].sort((a, b) => (a.sessionKey < b.sessionKey ? -1 : a.sessionKey > b.sessionKey ? 1 : 0));
}

/**
 * Parses SSE text into frames and the unparsed rest. A frame is
 * {id?: number, data?: any (parsed JSON, or the raw string when not JSON), comment?: string}.
 */
export function parseSse(text) {
	const frames = [];
	let rest = text;
	for (;;) {
		const end = rest.indexOf("\n\n");
		if (end === -1) break;
		const block = rest.slice(0, end);
		rest = rest.slice(end + 2);
		const frame = {};
		const data = [];
		for (const line of block.split("\n")) {
			if (line === "") continue;
			if (line.startsWith(":")) frame.comment = line.slice(1).trim();
			else if (line.startsWith("id:")) frame.id = Number(line.slice(3).trim());
			else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
			else frame.other = (frame.other ?? []).concat(line);
		}
		if (data.length) {
			const raw = data.join("\n");
			try {
				frame.data = JSON.parse(raw);
			} catch {
				frame.data = raw;
			}
		}
		if (Object.keys(frame).length) frames.push(frame);
	}
	return { frames, rest };
}

/**
 * Opens GET `path` as an event stream with node:http. Frames accumulate in `frames`;
 * `waitFor(pred)` resolves with the first frame (from the start) that matches; `ended`
 * resolves when the server ends the response (or the connection closes).
 */
export function openSse(port, path, { headers = {}, timeoutMs = 10000 } = {}) {
	return new Promise((resolve, reject) => {
		const req = http.request({ host: "127.0.0.1", port, method: "GET", path, headers, agent: false });
		const timer = setTimeout(() => {
			req.destroy();
			reject(new Error(`no response headers for ${path} within ${timeoutMs} ms`));
		}, timeoutMs);
		req.on("error", (e) => {
			clearTimeout(timer);
			reject(e);
		});
		req.on("response", (res) => {
			clearTimeout(timer);
			const frames = [];
			let buffer = "";
			let raw = "";
			const waiters = new Set();
			let endedResolve;
			const ended = new Promise((r) => (endedResolve = r));
			let isEnded = false;
			const check = () => {
				for (const w of waiters) {
					const found = frames.find(w.pred);
					if (found) {
						waiters.delete(w);
						clearTimeout(w.timer);
						w.resolve(found);
					} else if (isEnded) {
						waiters.delete(w);
						clearTimeout(w.timer);
						w.reject(new Error(`stream ${path} ended before the awaited frame`));
					}
				}
			};
			res.setEncoding("utf8");
			res.on("data", (chunk) => {
				raw += chunk;
				buffer += chunk;
				const parsed = parseSse(buffer);
				buffer = parsed.rest;
				frames.push(...parsed.frames);
				check();
			});
			const finish = (how) => {
				if (isEnded) return;
				isEnded = true;
				endedResolve(how);
				check();
			};
			res.on("end", () => finish("end"));
			res.on("close", () => finish("close"));
			res.on("error", () => finish("error"));
			resolve({
				status: res.statusCode,
				headers: res.headers,
				frames,
				get raw() {
					return raw;
				},
				get isEnded() {
					return isEnded;
				},
				ended,
				/** Data frames only, in order. */
				events: () => frames.filter((f) => f.data !== undefined),
				waitFor(pred, ms = 10000) {
					return new Promise((res2, rej2) => {
						const w = {
							pred,
							resolve: res2,
							reject: rej2,
							timer: setTimeout(() => {
								waiters.delete(w);
								rej2(new Error(`no matching frame on ${path} within ${ms} ms`));
							}, ms),
						};
						waiters.add(w);
						check();
					});
				},
				close() {
					req.destroy();
					res.destroy();
				},
			});
		});
		req.end();
	});
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
			let complete = false;
			for (;;) {
				const lineEnd = rest.indexOf("\r\n", pos);
				if (lineEnd === -1) break;
				const size = Number.parseInt(rest.slice(pos, lineEnd), 16);
				if (Number.isNaN(size)) break;
				if (size === 0) {
					if (rest.length < lineEnd + 4) break;
					pos = lineEnd + 4;
					complete = true;
					break;
				}
				if (rest.length < lineEnd + 2 + size + 2) break;
				body += rest.slice(lineEnd + 2, lineEnd + 2 + size);
				pos = lineEnd + 2 + size + 2;
			}
			if (!complete) break;
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
