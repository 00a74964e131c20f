// Idempotency-Key (issue 12, SPEC §10) on POST /messages, /chat and webhooks: a repeat of the same
// request joins the first run (never a second one) and says so with `idempotent-replayed: true`;
// the same key with another request is 422; malformed keys are 400; refused requests are not
// remembered; keys expire after `idempotency.ttlMs` and the oldest is forgotten past
// `idempotency.maxKeys`.
//
// Real sockets, the real addon, the scripted session double (prompts are counted on it).
//
// Run: node --test __test__/idempotency.test.mjs

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { startGateway, suiteGateway } from "./support/gateway.mjs";
import { request } from "./support/http.mjs";
import {
	chatTerminal,
	chatText,
	getRun,
	listRuns,
	pollRun,
	pollRunEnded,
	postChat,
	postMessage,
	rawPost,
	runPath,
	UUID_V7,
	assertStartChunk,
	assertFinishChunk,
} from "./support/runs.mjs";
import { sleep, waitFor, within } from "./support/wait.mjs";

const SECRET = "idem-webhook-secret";
const MAX_QUEUE = 3;
const REUSED = { error: "Idempotency-Key reused with a different request" };
const LONG = "/stream 200 20";

const idem = (key) => ({ "idempotency-key": key });
const replayed = (r) => r.headers["idempotent-replayed"];

describe("Idempotency-Key", { timeout: 120_000 }, () => {
	const gw = suiteGateway({
		config: { session: { maxQueuePerSession: MAX_QUEUE }, webhook: { enabled: true, basePath: "/hooks", secret: SECRET } },
	});

	test("20 concurrent POSTs with one key make exactly one run and 20 identical answers, 19 of them replayed", async () => {
		const key = "idem-20";
		const before = gw.prompts();
		const body = { text: "/stream 20 10" };
		const answers = await within(
			Promise.all(Array.from({ length: 20 }, () => postMessage(gw.port, key, body, { headers: idem("twenty-1") }))),
			15_000,
			"the 20 answers",
		);
		assert.equal(gw.prompts(), before + 1, "one prompt for 20 requests");
		const runs = await listRuns(gw.port, key);
		assert.equal(runs.length, 1, "one run");
		const runId = runs[0].runId;
		for (const a of answers) {
			assert.equal(a.status, 200, a.text);
			assert.equal(a.text, answers[0].text, "the same answer, byte for byte");
			assert.equal(a.headers["x-run-id"], runId);
		}
		assert.equal(answers[0].json.ok, true);
		assert.equal(answers[0].json.runId, runId);
		assert.equal(answers[0].json.response.match(/t\d+@/g).length, 20);
		assert.equal(answers.filter((a) => replayed(a) === "true").length, 19, "19 replayed");
		assert.equal(answers.filter((a) => replayed(a) === undefined).length, 1, "the first has no replay header");
		assert.deepEqual(runs[0].result, answers[0].json);

		// A repeat after the run ended: the same answer again, still no new run.
		const late = await postMessage(gw.port, key, body, { headers: idem("twenty-1") });
		assert.equal(late.status, 200);
		assert.equal(late.text, answers[0].text);
		assert.equal(replayed(late), "true");
		assert.equal(late.headers["x-run-id"], runId);
		assert.equal(gw.prompts(), before + 1);
	});

	test("the same key with a different request is 422 and makes no run", async () => {
		const key = "idem-422";
		const first = await postMessage(gw.port, key, { text: "/instant" }, { headers: idem("k-422") });
		assert.equal(first.status, 200);
		assert.equal(replayed(first), undefined);
		const before = gw.prompts();
		const differentRequests = [
			["another body", () => postMessage(gw.port, key, { text: "/instant " }, { headers: idem("k-422") })],
			["another session", () => postMessage(gw.port, `${key}-2`, { text: "/instant" }, { headers: idem("k-422") })],
			["wait:false", () => postMessage(gw.port, key, { text: "/instant", wait: false }, { headers: idem("k-422") })],
			["/chat", () => request(gw.port, "POST", `/sessions/${key}/chat`, { body: { text: "/instant" }, headers: idem("k-422") })],
			[
				"a webhook",
				() =>
					request(gw.port, "POST", "/hooks", {
						body: { text: "/instant" },
						headers: { ...idem("k-422"), "x-pi-webhook-secret": SECRET },
					}),
			],
		];
		for (const [what, send] of differentRequests) {
			const r = await send();
			assert.equal(r.status, 422, `${what}: ${r.status} ${r.text}`);
			assert.deepEqual(r.json, REUSED, what);
			assert.equal(r.headers["content-type"], "application/json; charset=utf-8");
			assert.equal(r.headers["x-run-id"], undefined, what);
			assert.equal(replayed(r), undefined, what);
		}
		assert.equal(gw.prompts(), before, "no new run");
		assert.equal((await listRuns(gw.port, key)).length, 1);
		assert.deepEqual(await listRuns(gw.port, `${key}-2`), []);
		// The original request still replays.
		const again = await postMessage(gw.port, key, { text: "/instant" }, { headers: idem("k-422") });
		assert.equal(again.status, 200);
		assert.equal(again.text, first.text);
		assert.equal(replayed(again), "true");
	});

	test("malformed keys are 400 and make no run; 1 and 255 visible ASCII characters are fine", async () => {
		const key = "idem-bad";
		const path = `/sessions/${key}/messages`;
		const before = gw.prompts();
		const bad = [
			["empty", ""],
			["256 characters", "a".repeat(256)],
			["a space inside", "a b"],
			["a tab inside", "a\tb"],
			["non-ASCII (UTF-8 bytes)", "ключ-é"],
		];
		for (const [what, value] of bad) {
			const r = await rawPost(gw.port, path, { text: "/instant" }, [`Idempotency-Key: ${value}`]);
			assert.equal(r.status, 400, `${what}: ${r.status} ${r.text}`);
			assert.match(r.json?.error ?? "", /^Invalid Idempotency-Key: /, `${what}: ${r.text}`);
			assert.equal(r.headers["x-run-id"], undefined);
		}
		for (const route of [`/sessions/${key}/chat`, "/hooks"]) {
			const r = await rawPost(gw.port, route, { text: "/instant" }, ["Idempotency-Key: a b", `x-pi-webhook-secret: ${SECRET}`]);
			assert.equal(r.status, 400, `${route}: ${r.status} ${r.text}`);
			assert.match(r.json?.error ?? "", /^Invalid Idempotency-Key: /);
		}
		assert.equal(gw.prompts(), before, "no run for a malformed key");
		assert.deepEqual(await listRuns(gw.port, key), []);

		for (const value of ["!", "~".repeat(255), "a-Z_0.9:/+=?#[]{}"]) {
			const r = await postMessage(gw.port, key, { text: "/instant" }, { headers: idem(value) });
			assert.equal(r.status, 200, `key ${JSON.stringify(value.slice(0, 20))}: ${r.status} ${r.text}`);
			const again = await postMessage(gw.port, key, { text: "/instant" }, { headers: idem(value) });
			assert.equal(replayed(again), "true");
			assert.equal(again.json.runId, r.json.runId);
		}
		assert.equal(gw.prompts(), before + 3);
	});

	test("refused requests (400, 429) are not remembered", async () => {
		const key = "idem-refused";
		const missing = await postMessage(gw.port, key, { text: " " }, { headers: idem("k-400") });
		assert.equal(missing.status, 400);
		const ok = await postMessage(gw.port, key, { text: "/instant" }, { headers: idem("k-400") });
		assert.equal(ok.status, 200, `after a 400 the key is free: ${ok.text}`);
		assert.equal(replayed(ok), undefined);

		// Fill the queue: one running, MAX_QUEUE waiting.
		const full = "idem-full";
		const ids = [];
		for (let i = 0; i <= MAX_QUEUE; i++) {
			const r = await postMessage(gw.port, full, { text: i === 0 ? LONG : "/instant", wait: false });
			assert.equal(r.status, 202);
			ids.push(r.json.runId);
			if (i === 0) await pollRun(gw.port, full, r.json.runId, (rec) => rec.status === "running");
		}
		const refused = await postMessage(gw.port, full, { text: "/instant" }, { headers: idem("k-429") });
		assert.equal(refused.status, 429, refused.text);
		assert.equal(refused.headers["x-run-id"], undefined);
		// Cancel the queued ones first (newest first), then abort the running one.
		for (const id of [...ids].reverse()) assert.equal((await request(gw.port, "DELETE", runPath(full, id))).status, 200);
		const before = gw.prompts();
		const accepted = await postMessage(gw.port, full, { text: "/instant" }, { headers: idem("k-429") });
		assert.equal(accepted.status, 200, accepted.text);
		assert.equal(replayed(accepted), undefined, "a new run, not a replay of the refusal");
		assert.match(accepted.json.runId, UUID_V7);
		assert.equal(gw.prompts(), before + 1);
	});

	test("a wait:false repeat answers 202 with the same runId", async () => {
		const key = "idem-async";
		const before = gw.prompts();
		const body = { text: "/stream 20 10", wait: false };
		const first = await postMessage(gw.port, key, body, { headers: idem("k-async") });
		assert.equal(first.status, 202, first.text);
		assert.equal(replayed(first), undefined);
		const second = await postMessage(gw.port, key, body, { headers: idem("k-async") });
		assert.equal(second.status, 202, second.text);
		assert.equal(replayed(second), "true");
		assert.equal(second.json.runId, first.json.runId);
		assert.equal(second.json.sessionKey, key);
		assert.equal(second.headers.location, first.headers.location);
		assert.equal(second.headers["x-run-id"], first.json.runId);
		const { record } = await pollRunEnded(gw.port, key, first.json.runId);
		assert.equal(record.status, "succeeded");
		const third = await postMessage(gw.port, key, body, { headers: idem("k-async") });
		assert.equal(third.status, 202);
		assert.equal(third.json.runId, first.json.runId);
		assert.equal(third.json.status, "succeeded", "the repeat reports the run's status now");
		assert.equal(replayed(third), "true");
		assert.equal(gw.prompts(), before + 1);
		assert.equal((await listRuns(gw.port, key)).length, 1);

		// A waiting repeat of a waiting request joins the running run and gets its result.
		const waitBody = { text: "/stream 30 10" };
		const [w1, w2] = await Promise.all([
			postMessage(gw.port, key, waitBody, { headers: idem("k-wait") }),
			sleep(100).then(() => postMessage(gw.port, key, waitBody, { headers: idem("k-wait") })),
		]);
		assert.equal(w1.text, w2.text);
		assert.deepEqual([replayed(w1), replayed(w2)], [undefined, "true"]);
		assert.equal(gw.prompts(), before + 2);
	});

	test("/chat with a key: a repeat streams the same run (same start messageId, same chunks), during and after it", async () => {
		const key = "idem-chat";
		const before = gw.prompts();
		const body = { id: "chat-idem", text: "/stream 30 20" };
		const first = postChat(gw.port, key, body, { headers: idem("k-chat") });
		const runs = await waitFor(async () => {
			const list = await listRuns(gw.port, key);
			return list[0]?.status === "running" ? list : undefined;
		}, "the chat run to be running");
		const runId = runs[0].runId;
		const second = await postChat(gw.port, key, body, { headers: idem("k-chat") });
		const one = await first;
		for (const [what, r] of [
			["first", one],
			["repeat", second],
		]) {
			assert.equal(r.status, 200, `${what}: ${r.text}`);
			assert.equal(r.headers["x-run-id"], runId, what);
			assertStartChunk(r.chunks[0], runId, what);
			assertFinishChunk(chatTerminal(r.chunks), what);
			assert.equal(r.headers["x-vercel-ai-ui-message-stream"], "v1");
		}
		assert.equal(replayed(one), undefined);
		assert.equal(replayed(second), "true");
		assert.deepEqual(second.chunks, one.chunks, "the repeat streams the same chunks");
		assert.equal(chatText(one.chunks).match(/t\d+@/g).length, 30);
		const record = await getRun(gw.port, key, runId);
		assert.equal(record.result.response, chatText(one.chunks));

		const late = await postChat(gw.port, key, body, { headers: idem("k-chat") });
		assert.equal(late.status, 200);
		assert.equal(replayed(late), "true");
		assert.equal(late.headers["x-run-id"], runId);
		assert.deepEqual(late.chunks, one.chunks, "after the end, the whole run again");
		assert.equal(gw.prompts(), before + 1, "one prompt for three chat requests");
		assert.equal((await listRuns(gw.port, key)).length, 1);
	});

	test("webhooks: a repeat joins the first run; another body is 422", async () => {
		const before = gw.prompts();
		const send = (body) =>
			request(gw.port, "POST", "/hooks/deploy", { body, headers: { ...idem("k-hook"), "x-pi-webhook-secret": SECRET } });
		const body = { text: "/stream 10 10", sender: "idem" };
		const [a, b] = await Promise.all([send(body), sleep(30).then(() => send(body))]);
		assert.equal(a.status, 200, a.text);
		assert.equal(a.text, b.text);
		assert.equal(a.json.sessionKey, "webhook:deploy:idem");
		assert.match(a.json.runId, UUID_V7);
		assert.equal(a.headers["x-run-id"], a.json.runId);
		assert.equal(b.headers["x-run-id"], a.json.runId);
		assert.deepEqual([replayed(a), replayed(b)], [undefined, "true"]);
		assert.equal(gw.prompts(), before + 1);
		const other = await send({ text: "/instant", sender: "idem" });
		assert.equal(other.status, 422);
		assert.deepEqual(other.json, REUSED);
		assert.equal(gw.prompts(), before + 1);
		assert.equal((await listRuns(gw.port, "webhook:deploy:idem")).length, 1);
	});
});

describe("Idempotency-Key limits", { timeout: 60_000 }, () => {
	test("idempotency.ttlMs: after expiry the same key makes a new run", async (t) => {
		const TTL = 1000;
		const gw = await startGateway({ t, config: { idempotency: { ttlMs: TTL } } });
		const key = "ttl";
		const body = { text: "/instant" };
		const started = Date.now();
		const first = await postMessage(gw.port, key, body, { headers: idem("k-ttl") });
		const soon = await postMessage(gw.port, key, body, { headers: idem("k-ttl") });
		assert.ok(Date.now() - started < TTL, "the repeat came within the TTL (machine too slow otherwise)");
		assert.equal(replayed(soon), "true");
		assert.equal(soon.json.runId, first.json.runId);
		await sleep(TTL + 500);
		const later = await postMessage(gw.port, key, body, { headers: idem("k-ttl") });
		assert.equal(later.status, 200);
		assert.equal(replayed(later), undefined, "an expired key is new again");
		assert.notEqual(later.json.runId, first.json.runId);
		assert.equal(gw.prompts(), 2);
		// …and it is remembered again from then on.
		const again = await postMessage(gw.port, key, body, { headers: idem("k-ttl") });
		assert.equal(replayed(again), "true");
		assert.equal(again.json.runId, later.json.runId);
		// A different request under an expired key is not 422 either.
		await sleep(TTL + 500);
		const changed = await postMessage(gw.port, key, { text: "/instant " }, { headers: idem("k-ttl") });
		assert.equal(changed.status, 200, changed.text);
		assert.equal(gw.prompts(), 3);
	});

	test("idempotency.maxKeys: past it the oldest key is forgotten", async (t) => {
		const gw = await startGateway({ t, config: { idempotency: { maxKeys: 3 } } });
		const key = "max";
		const body = { text: "/instant" };
		const first = {};
		for (const k of ["k1", "k2", "k3", "k4"]) {
			const r = await postMessage(gw.port, key, body, { headers: idem(k) });
			assert.equal(r.status, 200);
			assert.equal(replayed(r), undefined);
			first[k] = r.json.runId;
		}
		assert.equal(gw.prompts(), 4);
		for (const k of ["k4", "k3", "k2"]) {
			const r = await postMessage(gw.port, key, body, { headers: idem(k) });
			assert.equal(replayed(r), "true", `${k} is still remembered`);
			assert.equal(r.json.runId, first[k]);
		}
		assert.equal(gw.prompts(), 4);
		const k1 = await postMessage(gw.port, key, body, { headers: idem("k1") });
		assert.equal(k1.status, 200);
		assert.equal(replayed(k1), undefined, "the oldest key was forgotten");
		assert.notEqual(k1.json.runId, first.k1);
		assert.equal(gw.prompts(), 5);
	});
});
