// Smoke test: the seed gateway runs under tsx with scripted sessions.
//   cd /work/main && node --test bench/seed/smoke.test.mjs

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { parseStreamDelta } from "../../__test__/support/sessions.mjs";
import { seedAvailable, spawnSeed } from "./spawn-seed.mjs";

const skip = seedAvailable() ? false : "seed file not found";

/** Open GET /sessions/:key/events; `next()` resolves with the next JSON frame. */
async function openEvents(base, key) {
	const controller = new AbortController();
	const res = await fetch(`${base}/sessions/${key}/events`, { signal: controller.signal });
	assert.equal(res.status, 200);
	assert.match(res.headers.get("content-type"), /^text\/event-stream/);
	const reader = res.body.getReader();
	const decoder = new TextDecoder();
	let buffer = "";
	const frames = [];
	const next = async () => {
		for (;;) {
			if (frames.length) return frames.shift();
			const { value, done } = await reader.read();
			if (done) throw new Error("event stream ended");
			buffer += decoder.decode(value, { stream: true });
			let end;
			while ((end = buffer.indexOf("\n\n")) !== -1) {
				const frame = buffer.slice(0, end);
				buffer = buffer.slice(end + 2);
				const data = frame
					.split("\n")
					.filter((line) => line.startsWith("data:"))
					.map((line) => line.slice(5).trimStart())
					.join("\n");
				if (data) frames.push(JSON.parse(data));
			}
		}
	};
	const close = () => {
		controller.abort();
		reader.cancel().catch(() => {});
	};
	return { next, close };
}

async function postJson(base, path, body) {
	const res = await fetch(`${base}${path}`, {
		method: "POST",
		headers: { "content-type": "application/json" },
		body: JSON.stringify(body),
	});
	return { status: res.status, body: await res.json() };
}

describe("seed gateway, instant scenario", { skip, timeout: 10000 }, () => {
	let seed;
	let base;
	before(async () => {
		seed = await spawnSeed(["--scenario", "instant"], { timeoutMs: 8000 });
		base = `http://127.0.0.1:${seed.port}`;
	});
	after(() => seed?.stop());

	test("GET /health answers ok and ready", async () => {
		const res = await fetch(`${base}/health`);
		assert.equal(res.status, 200);
		assert.deepEqual(await res.json(), { ok: true, ready: true });
	});

	test("POST /sessions/a/messages replies ok", async () => {
		const { status, body } = await postJson(base, "/sessions/a/messages", { text: "hi" });
		assert.equal(status, 200);
		assert.deepEqual(body, { ok: true, response: "ok", sessionKey: "a" });
	});

	test("GET /sessions/a/events starts with hello", async () => {
		const events = await openEvents(base, "a");
		try {
			const hello = await events.next();
			assert.equal(hello.type, "hello");
			assert.equal(hello.sessionKey, "a");
			assert.equal(hello.snapshot.sessionKey, "a");
			assert.equal(hello.snapshot.messageCount, 2);
		} finally {
			events.close();
		}
	});
});

describe("seed gateway, stream scenario", { skip, timeout: 10000 }, () => {
	let seed;
	let base;
	before(async () => {
		seed = await spawnSeed(["--scenario", "stream:5"], { timeoutMs: 8000 });
		base = `http://127.0.0.1:${seed.port}`;
	});
	after(() => seed?.stop());

	test("a message yields 5 token events over SSE, in order", async () => {
		const events = await openEvents(base, "s");
		try {
			assert.equal((await events.next()).type, "hello");
			const reply = postJson(base, "/sessions/s/messages", { text: "go" });
			const tokens = [];
			let complete;
			while (!complete) {
				const event = await events.next();
				if (event.type === "token") tokens.push(event);
				if (event.type === "message_complete") complete = event;
			}
			assert.equal(tokens.length, 5);
			const parsed = tokens.map((t) => parseStreamDelta(t.delta));
			assert.deepEqual(
				parsed.map((p) => p.map((d) => d.index)),
				[[0], [1], [2], [3], [4]],
			);
			for (const t of tokens) assert.equal(t.contentIndex, 0);
			// Emit times are epoch ms, not in the future, and non-decreasing.
			const times = parsed.map((p) => p[0].emittedAt);
			assert.ok(times.every((t, i) => i === 0 || t >= times[i - 1]));
			assert.ok(times[4] <= performance.timeOrigin + performance.now());
			assert.equal(complete.text, tokens.map((t) => t.delta).join(""));
			const { status, body } = await reply;
			assert.equal(status, 200);
			assert.equal(body.response, complete.text);
		} finally {
			events.close();
		}
	});
});
