// The event-stream reader of the tests: `openSse(port, path, {headers})` over node:http,
// keeping every frame's id; `rawSse(port, path, {headers})`, the same subscription on a raw
// socket; `parseSse(text)` for a body read some other way.

import http from "node:http";
import { dechunk, rawConnect } from "./http.mjs";

/**
 * Parses SSE text into frames and the unparsed rest. A frame is
 * {id?, data?, text?, json?, event?, retry?, comment?, other?}:
 * - `id`: the `id:` value, a number when it is all digits (as the gateway sends), else the string;
 * - `data`: the parsed JSON of the `data:` lines, or their raw string when not JSON;
 * - `text`: the `data:` lines as one string, always (lines joined with "\n");
 * - `json`: the parsed JSON of `text`, or undefined when it is not JSON;
 * - `event`: the `event:` value; `retry`: the `retry:` value as a number;
 * - `comment`: a `:` line's text (trimmed); `other`: any other line, as is.
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
			else if (line.startsWith("id:")) {
				const id = line.slice(3).trim();
				frame.id = /^\d+$/.test(id) ? Number(id) : id;
			} else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
			else if (line.startsWith("event:")) frame.event = line.slice(6).trim();
			else if (/^retry:\s*\d+$/.test(line)) frame.retry = Number(line.slice(6).trim());
			else frame.other = (frame.other ?? []).concat(line);
		}
		if (data.length) {
			const raw = data.join("\n");
			frame.text = raw;
			try {
				frame.json = JSON.parse(raw);
			} catch {
				frame.json = undefined;
			}
			frame.data = frame.json === undefined ? raw : frame.json;
		}
		if (Object.keys(frame).length) frames.push(frame);
	}
	return { frames, rest };
}

/**
 * Opens GET `path` as an event stream with node:http; `headers` are sent as given (e.g.
 * `{ authorization, "last-event-id": "12" }`). Frames (see parseSse) accumulate in `frames`;
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
						w.reject(new Error(`stream ${path} ended before the ${w.what}`));
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
				/** The last `id:` received (what a client would send back as Last-Event-ID), if any. */
				get lastEventId() {
					return frames.findLast((f) => f.id !== undefined)?.id;
				},
				/** The last `retry:` received, in ms, if any. */
				get retry() {
					return frames.findLast((f) => f.retry !== undefined)?.retry;
				},
				/** The first frame (from the start) matching `pred`; `what` names it in the error. */
				waitFor(pred, ms = 10000, what = "matching frame") {
					return new Promise((res2, rej2) => {
						const w = {
							pred,
							what,
							resolve: res2,
							reject: rej2,
							timer: setTimeout(() => {
								waiters.delete(w);
								rej2(new Error(`no ${what} on ${path} within ${ms} ms`));
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
 * The body of a raw HTTP/1.1 response (latin1 text, as rawConnect collects it) after its head,
 * de-chunked when it is chunked (a last, incomplete chunk gives what it has), as UTF-8 text.
 */
function rawBody(data) {
	const headEnd = data.indexOf("\r\n\r\n");
	if (headEnd === -1) return "";
	const head = data.slice(0, headEnd).toLowerCase();
	let body = data.slice(headEnd + 4);
	if (/\r\ntransfer-encoding:[^\r]*chunked/.test(head)) body = dechunk(body).body;
	return Buffer.from(body, "latin1").toString("utf8");
}

/**
 * Subscribes to GET `path` on a raw socket (http.mjs's rawConnect), for what node:http hides:
 * the exact bytes, a reader that stops reading (`conn.socket.pause()`), a connection dropped at
 * once. Sends `headers` as given; resolves once the hello frame has arrived with the connection
 * (`data`, `socket`, `waitForData`, `closed`, `destroy`, ...) and `frames()`: the frames
 * received so far (see parseSse).
 */
export async function rawSse(port, path, { headers = {}, timeoutMs = 10000 } = {}) {
	const conn = await rawConnect(port);
	const lines = [`GET ${path} HTTP/1.1`, "Host: localhost"];
	for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
	await conn.write(`${lines.join("\r\n")}\r\n\r\n`);
	try {
		await conn.waitForData((d) => d.includes('"type":"hello"'), timeoutMs);
	} catch (error) {
		conn.destroy();
		throw error;
	}
	conn.frames = () => parseSse(rawBody(conn.data)).frames;
	return conn;
}
