// `GET /metrics` in the tests: scraping over node:http, a parser of the classic Prometheus text
// format (series "name{label=value,…}" → value), exact deltas between two scrapes, counting a
// session's events off its event stream, and `promtool check metrics` (Debian's `prometheus`
// package) on a scrape.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import http from "node:http";
import { waitFor } from "./wait.mjs";

export const CLASSIC_TYPE = "text/plain; version=0.0.4; charset=utf-8";
export const OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8";
export const OPENMETRICS_ACCEPT = "application/openmetrics-text; version=1.0.0";
/** What Prometheus 2.x sends when it scrapes. */
export const PROMETHEUS_ACCEPT =
	"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
export const PROMTOOL = "/usr/bin/promtool";

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*/;

/**
 * Parses one series `name{a="x",b="y"}` from the start of `text` (label values with the text
 * format's escapes `\\`, `\"`, `\n`). Returns `{name, labels, rest}`; throws on bad syntax.
 */
function parseSeries(text) {
	const name = NAME.exec(text)?.[0];
	if (!name) throw new Error(`no metric name in ${JSON.stringify(text)}`);
	let rest = text.slice(name.length);
	const labels = {};
	if (rest.startsWith("{")) {
		rest = rest.slice(1);
		for (;;) {
			rest = rest.replace(/^\s+/, "");
			if (rest.startsWith("}")) {
				rest = rest.slice(1);
				break;
			}
			const label = LABEL.exec(rest)?.[0];
			if (!label) throw new Error(`bad label name in ${JSON.stringify(text)}`);
			rest = rest.slice(label.length).replace(/^\s+/, "");
			if (!rest.startsWith('="')) throw new Error(`expected =" after ${label} in ${JSON.stringify(text)}`);
			rest = rest.slice(2);
			let value = "";
			for (;;) {
				if (rest === "") throw new Error(`unterminated label value in ${JSON.stringify(text)}`);
				const c = rest[0];
				if (c === '"') {
					rest = rest.slice(1);
					break;
				}
				if (c === "\\") {
					const e = rest[1];
					if (e === "n") value += "\n";
					else if (e === "\\" || e === '"') value += e;
					else throw new Error(`bad escape \\${e} in ${JSON.stringify(text)}`);
					rest = rest.slice(2);
				} else {
					value += c;
					rest = rest.slice(1);
				}
			}
			if (label in labels) throw new Error(`label ${label} twice in ${JSON.stringify(text)}`);
			labels[label] = value;
			rest = rest.replace(/^\s+/, "");
			if (rest.startsWith(",")) rest = rest.slice(1);
			else if (!rest.startsWith("}")) throw new Error(`expected , or } in ${JSON.stringify(text)}`);
		}
	}
	return { name, labels, rest };
}

/** The canonical key of a series: its name and its labels sorted by name. */
function keyOf(name, labels) {
	const names = Object.keys(labels).sort();
	if (names.length === 0) return name;
	const esc = (v) => v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
	return `${name}{${names.map((l) => `${l}="${esc(labels[l])}"`).join(",")}}`;
}

/** The canonical key of a series written as `name{label="value",…}` (labels in any order). */
export function seriesKey(selector) {
	const { name, labels, rest } = parseSeries(selector.trim());
	if (rest.trim() !== "") throw new Error(`trailing text in series ${JSON.stringify(selector)}`);
	return keyOf(name, labels);
}

/** A sample value of the text format: a float, `+Inf`, `-Inf` or `NaN`. */
function parseValue(text, line) {
	if (text === "+Inf" || text === "Inf") return Number.POSITIVE_INFINITY;
	if (text === "-Inf") return Number.NEGATIVE_INFINITY;
	if (text === "NaN") return Number.NaN;
	if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`bad value ${JSON.stringify(text)} in ${JSON.stringify(line)}`);
	return Number(text);
}

/**
 * Parses Prometheus text (the classic format; OpenMetrics text parses too, its `# UNIT` and
 * `# EOF` lines being comments). Returns `{samples, types, help, order}`: `samples` maps each
 * series' canonical key to its value, `types` and `help` map a name of a `# TYPE` / `# HELP`
 * line to its type / text. Throws on a malformed line or a series given twice.
 */
export function parseMetrics(text) {
	const samples = new Map();
	const types = new Map();
	const help = new Map();
	const labelsOf = new Map();
	for (const line of text.split("\n")) {
		if (line.trim() === "") continue;
		if (line.startsWith("#")) {
			const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
			if (m?.[1] === "TYPE") {
				assert.ok(!types.has(m[2]), `TYPE of ${m[2]} twice`);
				types.set(m[2], m[3]);
			} else if (m?.[1] === "HELP") {
				assert.ok(!help.has(m[2]), `HELP of ${m[2]} twice`);
				help.set(m[2], m[3]);
			}
			continue;
		}
		const { name, labels, rest } = parseSeries(line);
		const parts = rest.trim().split(/\s+/);
		if (parts.length < 1 || parts.length > 2 || parts[0] === "") throw new Error(`bad sample line ${JSON.stringify(line)}`);
		const key = keyOf(name, labels);
		if (samples.has(key)) throw new Error(`series ${key} given twice`);
		samples.set(key, parseValue(parts[0], line));
		labelsOf.set(key, { name, labels });
	}
	return { samples, types, help, series: labelsOf };
}

/**
 * One scrape's parsed samples. `v(series)` is its value (0 when the series is absent: a counter
 * not yet moved), `has(series)` whether it is there at all.
 */
export class Scrape {
	constructor(text) {
		this.text = text;
		Object.assign(this, parseMetrics(text));
	}

	has(selector) {
		return this.samples.has(seriesKey(selector));
	}

	v(selector) {
		return this.samples.get(seriesKey(selector)) ?? 0;
	}
}

/** A GET (or other `method`) of `/metrics` on its own connection: `{status, headers, text}`. */
export function getMetrics(port, { method = "GET", headers = {}, timeoutMs = 10_000 } = {}) {
	return new Promise((resolve, reject) => {
		const req = http.request({ host: "127.0.0.1", port, method, path: "/metrics", headers, agent: false }, (res) => {
			const chunks = [];
			res.on("data", (c) => chunks.push(c));
			res.on("error", reject);
			res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") }));
		});
		req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer to ${method} /metrics within ${timeoutMs} ms`)));
		req.on("error", reject);
		req.end();
	});
}

/** Scrapes `/metrics` in the classic format (asserting 200 and its content type) and parses it. */
export async function scrape(port, headers = {}) {
	const r = await getMetrics(port, { headers });
	assert.equal(r.status, 200, `GET /metrics: ${r.status} ${r.text.slice(0, 300)}`);
	assert.equal(r.headers["content-type"], CLASSIC_TYPE);
	return new Scrape(r.text);
}

/** Scrapes until `predicate(scrape)` holds (bounded); resolves with that scrape. */
export function scrapeUntil(port, predicate, what, timeoutMs) {
	return waitFor(
		async () => {
			const s = await scrape(port);
			return predicate(s) ? s : undefined;
		},
		what,
		timeoutMs,
		20,
	);
}

/** Every series whose value differs between two scrapes (absent counts as 0): key → after − before. */
export function deltas(before, after) {
	const out = new Map();
	for (const key of new Set([...before.samples.keys(), ...after.samples.keys()])) {
		const d = (after.samples.get(key) ?? 0) - (before.samples.get(key) ?? 0);
		if (d !== 0) out.set(key, d);
	}
	return out;
}

/** Series whose change no scripted run can predict: histogram buckets and sums, and /metrics itself. */
const UNPREDICTABLE = [/_bucket\{/, /_sum(\{|$)/, /route="\/metrics"/];

/**
 * Asserts that between `before` and `after` every series of `expected` ({series: delta}) moved by
 * exactly its delta; with `strict`, also that every other series (but histogram buckets and sums,
 * the /metrics route's own series and those matching `ignore`) did not move at all.
 */
export function assertDeltas(before, after, expected, { strict = false, ignore = [], what = "" } = {}) {
	const want = new Map();
	for (const [selector, d] of Object.entries(expected)) {
		const key = seriesKey(selector);
		want.set(key, (want.get(key) ?? 0) + d);
	}
	const got = deltas(before, after);
	const problems = [];
	for (const [key, d] of want) {
		const actual = got.get(key) ?? 0;
		if (actual !== d) problems.push(`${key}: moved by ${actual}, expected ${d} (${before.samples.get(key) ?? "absent"} → ${after.samples.get(key) ?? "absent"})`);
	}
	if (strict) {
		for (const [key, d] of got) {
			if (want.has(key) || UNPREDICTABLE.some((re) => re.test(key)) || ignore.some((re) => re.test(key))) continue;
			problems.push(`${key}: moved by ${d}, expected no change (${before.samples.get(key) ?? "absent"} → ${after.samples.get(key) ?? "absent"})`);
		}
	}
	assert.ok(problems.length === 0, `${what ? `${what}: ` : ""}metrics did not move as expected:\n  ${problems.join("\n  ")}`);
}

/** `{pi_gateway_http_requests_total{…}: n, pi_gateway_http_request_duration_seconds_count{route}: n}`. */
export function httpDelta(route, method, status, n = 1) {
	return {
		[`pi_gateway_http_requests_total{route="${route}",method="${method}",status="${status}"}`]: n,
		[`pi_gateway_http_request_duration_seconds_count{route="${route}"}`]: n,
	};
}

/** Merges delta objects, adding the deltas of a series named in several. */
export function merge(...parts) {
	const out = {};
	for (const part of parts) {
		for (const [k, d] of Object.entries(part)) {
			const key = seriesKey(k);
			out[key] = (out[key] ?? 0) + d;
		}
	}
	return out;
}

/**
 * `pi_gateway_events_total{type}` deltas for the data frames of event streams `streams` (openSse
 * readers) from frame index `from[i]` on (hello is not a logged event).
 */
export function eventDeltas(streams, from = []) {
	const out = {};
	streams.forEach((sse, i) => {
		for (const f of sse.events().slice(from[i] ?? 0)) {
			const type = f.data?.type;
			if (typeof type !== "string" || type === "hello") continue;
			const key = `pi_gateway_events_total{type="${type}"}`;
			out[key] = (out[key] ?? 0) + 1;
		}
	});
	return out;
}

/**
 * Token and cost deltas the `message_complete` events of `streams` (from `from[i]` on) carry:
 * `{tokens: {input, output, cache_read, cache_write}, cost, messages}`.
 */
export function usageOfStreams(streams, from = []) {
	const sum = { tokens: { input: 0, output: 0, cache_read: 0, cache_write: 0 }, cost: 0, messages: 0 };
	streams.forEach((sse, i) => {
		for (const f of sse.events().slice(from[i] ?? 0)) {
			if (f.data?.type !== "message_complete") continue;
			sum.messages++;
			const u = f.data.usage;
			if (!u) continue;
			sum.tokens.input += u.input ?? 0;
			sum.tokens.output += u.output ?? 0;
			sum.tokens.cache_read += u.cacheRead ?? 0;
			sum.tokens.cache_write += u.cacheWrite ?? 0;
			sum.cost += u.cost?.total ?? 0;
		}
	});
	return sum;
}

/**
 * Runs `promtool check metrics` with `text` on stdin; fails the test with promtool's output
 * when it exits non-zero, and with how to install it when it is missing (never skipped).
 * `promtool`: its path (the tests use Debian's).
 */
export function promtoolCheck(text, promtool = PROMTOOL) {
	assert.ok(
		existsSync(promtool),
		`${promtool} is missing: install Debian's \`prometheus\` package (apt-get install prometheus), which provides promtool; this test does not skip without it`,
	);
	const r = spawnSync(promtool, ["check", "metrics"], { input: text, encoding: "utf8", timeout: 10_000 });
	if (r.error) assert.fail(`running ${promtool} check metrics failed: ${r.error.message}`);
	assert.equal(
		r.status,
		0,
		`promtool check metrics exited ${r.status}${r.signal ? ` (${r.signal})` : ""}:\n${r.stdout}${r.stderr}\n--- input (first 2000 chars) ---\n${text.slice(0, 2000)}`,
	);
	return `${r.stdout}${r.stderr}`;
}
