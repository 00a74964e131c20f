// Several gateways sharing sessions through Redis (issue 17, SPEC section 15), on real servers:
// Debian's redis-server and nginx, and two `pi-gateway` CLI processes on the faux model that
// share the Redis and a data dir, all on 127.0.0.1, started and stopped by each test
// (support/cluster.mjs). A missing redis-server or nginx fails the test, saying what to install.
//
// - through nginx (`hash $session_key consistent`), messages reach the session's owner; an event
//   stream on the other node carries the owner's events, the same ids and bytes, in order; a
//   client that moves between the nodes with Last-Event-ID (or ?after=) misses nothing; chat
//   streams come through the other node's forward and through nginx as they run;
// - the owner killed with SIGKILL: after the lease the other node takes the session over, loads
//   the conversation from the data dir and goes on, its event ids after the old ones; no accepted
//   message is answered twice, not even when its client retries it with the same Idempotency-Key;
// - the same Idempotency-Key sent to both nodes makes one run; a node stopped cleanly hands its
//   sessions over at once;
// - Redis stopped: sessions on their owner keep answering, /ready says "degraded", other keys get
//   503 + Retry-After; Redis back: "ok", new keys work, each session has one owner;
// - bad cluster flags: exit 2, the message names the flag; the README's nginx example is the
//   config the tests run.
// Run: node --test __test__/cluster.test.mjs

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import { describe, it } from "node:test";

import { gatewayConfig, parseCli, UsageError } from "../lib/cli.js";
import { childEnv, sandbox, spawnCli, START_DEADLINE_MS } from "./support/cli-child.mjs";
import { conversation, nginxSite, postText, startCluster } from "./support/cluster.mjs";
import { request } from "./support/http.mjs";
import { UUID_V7 } from "./support/runs.mjs";
import { openSse, parseSse } from "./support/sse.mjs";
import { sleep, waitFor, within } from "./support/wait.mjs";

/** The faux model's answer to `/echo <text>`. */
const echoed = (text) => `You said: ${text}`;
const path = (key, tail = "") => `/sessions/${encodeURIComponent(key)}${tail}`;

/** An event stream on `port`, closed at the end of the test; checked to be one, hello first. */
async function events(t, port, key, { headers = {}, query = "" } = {}) {
	const sse = await openSse(port, `${path(key, "/events")}${query}`, { headers });
	t.after(() => sse.close());
	assert.equal(sse.status, 200, `GET ${path(key, "/events")} on port ${port}: ${sse.status}`);
	assert.match(sse.headers["content-type"] ?? "", /^text\/event-stream/);
	const hello = await sse.waitFor((f) => f.json !== undefined, 10_000, "first data frame");
	assert.equal(hello.json.type, "hello", `the first event on port ${port} is hello: ${hello.text}`);
	assert.equal(hello.json.sessionKey, key);
	sse.hello = hello;
	return sse;
}

/** Waits for the `run_end` of `runId` on a stream; the frame. */
function runEnd(sse, runId, what = "stream") {
	return sse.waitFor((f) => f.json?.type === "run_end" && f.json.runId === runId, 20_000, `run_end of ${runId} on the ${what}`);
}

/** The data frames of a stream with ids in (after, upto], hello left out: `{id, text}` (text: the data line's exact bytes). */
function framesIn(sse, after, upto = Infinity) {
	return sse.frames
		.filter((f) => f.data !== undefined && f.json?.type !== "hello" && typeof f.id === "number" && f.id > after && f.id <= upto)
		.map((f) => ({ id: f.id, text: f.text }));
}

/** Asserts that the ids of `frames` strictly increase. */
function assertIncreasing(frames, what) {
	for (let i = 1; i < frames.length; i++) {
		assert.ok(frames[i].id > frames[i - 1].id, `${what}: id ${frames[i].id} after ${frames[i - 1].id}`);
	}
}

/** A 200 answer of a message: the runId (also in x-run-id), the faux answer checked. */
function answered(res, key, response, what) {
	assert.equal(res.status, 200, `${what}: ${res.status} ${res.text}`);
	assert.equal(res.json.ok, true, `${what}: ${res.text}`);
	assert.equal(res.json.sessionKey, key);
	if (response !== undefined) assert.equal(res.json.response, response, what);
	assert.match(String(res.json.runId), UUID_V7, `${what}: runId`);
	assert.equal(res.headers["x-run-id"], res.json.runId, `${what}: x-run-id repeats the runId`);
	return res.json.runId;
}

/** A 503 of a cluster that cannot serve the key now: Retry-After 1 and a JSON error. */
function unavailable(res, what) {
	assert.equal(res.status, 503, `${what}: expected 503, got ${res.status} ${res.text}`);
	assert.equal(res.headers["retry-after"], "1", `${what}: Retry-After`);
	assert.equal(typeof res.json?.error, "string", `${what}: a JSON error`);
	assert.equal(res.headers["x-run-id"], undefined, `${what}: nothing was accepted`);
}

/**
 * POST /sessions/:key/chat `{text}` on `port`, read as it streams: `{status, headers, chunks}`,
 * each chunk `{at, data}` (ms since the request, the parsed JSON or "[DONE]").
 */
function streamChat(port, key, text) {
	return new Promise((resolve, reject) => {
		const started = Date.now();
		const req = http.request(
			{ host: "127.0.0.1", port, method: "POST", path: path(key, "/chat"), headers: { "content-type": "application/json" }, agent: false },
			(res) => {
				const chunks = [];
				let buffer = "";
				res.setEncoding("utf8");
				res.on("data", (data) => {
					buffer += data;
					const parsed = parseSse(buffer);
					buffer = parsed.rest;
					for (const frame of parsed.frames) if (frame.data !== undefined) chunks.push({ at: Date.now() - started, data: frame.data });
				});
				res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, chunks }));
				res.on("error", reject);
			},
		);
		req.setTimeout(20_000, () => req.destroy(new Error(`the chat stream on port ${port} did not end within 20 s`)));
		req.on("error", reject);
		req.end(JSON.stringify({ text }));
	});
}

/** Checks a whole chat stream of `/slow <words>`: streamed as it ran (not held back), one run, ended well. */
function assertStreamedChat(chat, words, what) {
	assert.equal(chat.status, 200, what);
	assert.match(chat.headers["content-type"] ?? "", /^text\/event-stream/, what);
	assert.equal(chat.headers["x-vercel-ai-ui-message-stream"], "v1", what);
	const data = chat.chunks.map((c) => c.data);
	assert.equal(data[0]?.type, "start", `${what}: starts with start`);
	assert.match(String(data[0].messageId), UUID_V7, what);
	assert.equal(chat.headers["x-run-id"], data[0].messageId, `${what}: x-run-id is the message id`);
	assert.equal(data.at(-1), "[DONE]", `${what}: ends with [DONE]`);
	assert.equal(data.at(-2)?.type, "finish", `${what}: finish before [DONE]`);
	const deltas = chat.chunks.filter((c) => c.data?.type === "text-delta");
	assert.equal(deltas.length, words, `${what}: ${words} text deltas`);
	const done = chat.chunks.at(-1).at;
	assert.ok(done - deltas[0].at >= 400, `${what}: streamed as it ran (first delta at ${deltas[0].at} ms, [DONE] at ${done} ms)`);
	return data[0].messageId;
}

/** How many times `text` is a user message of the conversation, and how many of those got an answer. */
function timesSaid(messages, text) {
	let said = 0;
	let answers = 0;
	messages.forEach((m, i) => {
		if (m.role !== "user" || m.text !== text) return;
		said++;
		if (messages[i + 1]?.role === "assistant" && messages[i + 1].text !== "") answers++;
	});
	return { said, answers };
}

describe("several gateways sharing sessions through Redis", () => {
	it("through nginx a message reaches the session's owner; an event stream on the other node carries the owner's events in order, and a client moving between the nodes with Last-Event-ID misses nothing", async (t) => {
		const c = await startCluster(t, { nginx: true });
		const [A, B] = c.nodes;
		try {
			// The banner names the cluster; Redis's password shows nowhere.
			for (const node of c.nodes) {
				const line = node.proc.out.stdout.split("\n").find((l) => l.trim().startsWith("cluster"));
				assert.ok(line, `${node.name}'s banner has a cluster line:\n${node.proc.out.stdout}`);
				assert.match(line.trim(), new RegExp(`^cluster\\s+node ${node.nodeId}, Redis redis://127\\.0\\.0\\.1:${c.redis.port}/0\\b`));
				assert.ok(!node.output().includes(c.redis.password), `${node.name} printed the Redis password:\n${node.output()}`);
				const ready = await request(node.port, "GET", "/ready");
				assert.equal(ready.status, 200);
				assert.equal(ready.json.ok, true);
				assert.equal(ready.json.ready, true);
				assert.equal(ready.json.cluster, "ok");
				assert.equal(ready.json.nodeId, node.nodeId);
			}

			const key = "through-nginx";
			const first = await postText(c.nginx.port, key, "/echo one");
			const runIds = [answered(first, key, echoed("one"), "the first message through nginx")];
			const owner = await c.ownerOf(key);
			const other = owner === A ? B : A;
			assert.equal(await c.lease(key), `${owner.nodeId} ${owner.advertiseUrl}`, "the lease in Redis names the owner");
			const readyOwner = (await request(owner.port, "GET", "/ready")).json;
			const readyOther = (await request(other.port, "GET", "/ready")).json;
			assert.equal(readyOwner.sessions, readyOther.sessions + 1, `/ready: the owner holds one session more (${JSON.stringify({ readyOwner, readyOther })})`);

			// More messages, through nginx, straight to the other node (forwarded) and to the owner:
			// all answered by the one owner.
			runIds.push(answered(await postText(c.nginx.port, key, "/echo two"), key, echoed("two"), "through nginx again"));
			runIds.push(answered(await postText(other.port, key, "/echo three"), key, echoed("three"), "sent to the other node"));
			runIds.push(answered(await postText(owner.port, key, "/echo four"), key, echoed("four"), "sent to the owner"));
			assert.equal(new Set(runIds).size, runIds.length, "one run per message");
			assert.equal(await c.ownerOf(key), owner, "still only the owner holds the session");
			const said = (await conversation(other.port, key)).filter((m) => m.role === "user").map((m) => m.text);
			assert.deepEqual(said, ["/echo one", "/echo two", "/echo three", "/echo four"], "one conversation, in order");

			// Streams: on the owner, on the other node, through nginx; hello first on each, the same id.
			const onOwner = await events(t, owner.port, key);
			const onOther = await events(t, other.port, key);
			const viaNginx = await events(t, c.nginx.port, key);
			assert.equal(onOther.hello.id, onOwner.hello.id, "hello on the other node carries the owner's last event id");
			assert.equal(onOther.hello.json.snapshot.sessionId, onOwner.hello.json.snapshot.sessionId, "hello's snapshot is the owner's session");
			assert.equal(onOther.hello.json.snapshot.messageCount, onOwner.hello.json.snapshot.messageCount, "hello's snapshot: messageCount");
			assert.notEqual(onOther.hello.json.missed, true);

			const long = await postText(c.nginx.port, key, "/long 40");
			const longRun = answered(long, key, undefined, "/long 40 through nginx");
			const end = (await runEnd(onOwner, longRun, "owner's stream")).id;
			await runEnd(onOther, longRun, "other node's stream");
			await runEnd(viaNginx, longRun, "stream through nginx");
			const expected = framesIn(onOwner, onOwner.hello.id, end);
			assertIncreasing(expected, "the owner's stream");
			assert.equal(expected.filter((f) => JSON.parse(f.text).type === "token").length, 40, "40 tokens");
			assert.deepEqual(framesIn(onOther, onOther.hello.id, end), expected, "the other node's stream: the owner's frames, same ids and bytes, same order");
			assert.deepEqual(framesIn(viaNginx, viaNginx.hello.id, end), expected, "the stream through nginx");

			// A client on the other node leaves mid-run and comes back on the owner with Last-Event-ID.
			const moving = await events(t, other.port, key);
			const slow = postText(c.nginx.port, key, "/slow 30");
			await waitFor(() => framesIn(moving, moving.hello.id).filter((f) => JSON.parse(f.text).type === "token").length >= 5, "5 tokens on the other node");
			moving.close();
			const cut = moving.lastEventId;
			const resumed = await events(t, owner.port, key, { headers: { "last-event-id": String(cut) } });
			assert.notEqual(resumed.hello.json.missed, true, "resuming on the owner misses nothing");
			const slowRun = answered(await slow, key, undefined, "/slow 30");
			const slowEnd = (await runEnd(onOwner, slowRun, "owner's stream")).id;
			await runEnd(resumed, slowRun, "resumed stream");
			const whole = framesIn(onOwner, moving.hello.id, slowEnd);
			const pieced = [...framesIn(moving, moving.hello.id, cut), ...framesIn(resumed, cut, slowEnd)];
			assert.deepEqual(pieced, whole, `other node up to ${cut}, then the owner from Last-Event-ID ${cut}: exactly the owner's frames`);

			// And the other way: a client on the owner leaves mid-run and comes back on the other node with ?after=.
			const leaving = await events(t, owner.port, key);
			const slow2 = postText(owner.port, key, "/slow 30");
			await waitFor(() => framesIn(leaving, leaving.hello.id).filter((f) => JSON.parse(f.text).type === "token").length >= 5, "5 tokens on the owner");
			leaving.close();
			const cut2 = leaving.lastEventId;
			const back = await events(t, other.port, key, { query: `?after=${cut2}` });
			assert.notEqual(back.hello.json.missed, true, "resuming on the other node misses nothing");
			const slow2Run = answered(await slow2, key, undefined, "/slow 30 on the owner");
			const slow2End = (await runEnd(onOwner, slow2Run, "owner's stream")).id;
			await runEnd(back, slow2Run, "stream resumed on the other node");
			assert.deepEqual(
				[...framesIn(leaving, leaving.hello.id, cut2), ...framesIn(back, cut2, slow2End)],
				framesIn(onOwner, leaving.hello.id, slow2End),
				`owner up to ${cut2}, then the other node from ?after=${cut2}: exactly the owner's frames`,
			);
			// Chat streams: through the other node's forward and through nginx, as the owner streams them.
			const chatRuns = [
				assertStreamedChat(await streamChat(other.port, key, "/slow 20"), 20, "a chat stream sent to the other node"),
				assertStreamedChat(await streamChat(c.nginx.port, key, "/slow 20"), 20, "a chat stream through nginx"),
			];
			const lastEnd = (await runEnd(onOwner, chatRuns[1], "owner's stream")).id;
			// The stream on the other node followed all along.
			await runEnd(onOther, chatRuns[1], "other node's stream");
			assert.deepEqual(framesIn(onOther, onOther.hello.id, lastEnd), framesIn(onOwner, onOwner.hello.id, lastEnd), "the other node's long-lived stream");
			assert.equal(await c.ownerOf(key), owner, "the session never moved");
		} catch (error) {
			error.message += `\n${c.diagnostics()}`;
			throw error;
		}
	});

	it("the owner killed with SIGKILL: after the lease the other node takes the session over and the conversation goes on; no accepted message is answered twice", async (t) => {
		const c = await startCluster(t);
		const [A, B] = c.nodes;
		const key = "survivor";
		/** Every message sent: {text, idem, via, status?, runId?, response?, error?}. */
		const ledger = [];
		const send = async (node, text, { timeoutMs = 20_000 } = {}) => {
			const entry = { text, idem: `idem-${text.replace(/[^A-Za-z0-9]+/g, "-")}`, via: node.name };
			ledger.push(entry);
			try {
				const res = await postText(node.port, key, text, { headers: { "idempotency-key": entry.idem }, timeoutMs });
				Object.assign(entry, { status: res.status, runId: res.headers["x-run-id"], response: res.json?.response, res });
			} catch (error) {
				entry.error = error.message;
			}
			return entry;
		};
		try {
			for (const [node, text] of [[A, "/echo m1"], [B, "/echo m2"], [A, "/echo m3"]]) {
				const entry = await send(node, text);
				answered(entry.res, key, echoed(text.slice(6)), `${text} via ${node.name}`);
			}
			assert.equal(await c.ownerOf(key), A, "node A took the session (its first request)");
			const onB = await events(t, B.port, key);
			const last = (await events(t, A.port, key)).hello.id;
			await onB.waitFor((f) => f.id === last, 5000, `event ${last} mirrored to node B`);
			// The owner's own frames up to `last`: what a client resuming from before the takeover must get.
			const onA = await events(t, A.port, key, { headers: { "last-event-id": String(last - 4) } });
			await onA.waitFor((f) => f.id === last, 5000, `event ${last} replayed on node A`);

			// A run in flight on A, and a message queued behind it through B: A dies under both.
			const slow = send(A, "/slow 30");
			await onB.waitFor((f) => f.json?.type === "token" && f.id > last, 10_000, "a token of /slow on node B");
			const queued = send(B, "/echo queued-behind");
			await onB.waitFor((f) => f.json?.type === "session_state" && f.id > last && f.json.snapshot?.queueDepth >= 1, 5000, "the queued message on A");
			const killedAt = Date.now();
			await A.kill9();
			await within(Promise.all([slow, queued]), 10_000, "the requests A died under to end");
			const lost = ledger.filter((e) => e.text === "/slow 30" || e.text === "/echo queued-behind");
			for (const entry of lost) {
				assert.ok(entry.error !== undefined || entry.status === 503, `${entry.text} via ${entry.via}: a connection error or 503, got ${entry.status} ${entry.res?.text}`);
				if (entry.status === 503) unavailable(entry.res, `${entry.text} via ${entry.via}`);
			}

			// B answers 503 while A's lease lasts, then takes the session over.
			const attempts = [];
			let took;
			for (let i = 0; !took; i++) {
				assert.ok(Date.now() - killedAt < c.leaseMs + 10_000, `node B did not take the session over within ${c.leaseMs + 10_000} ms: ${JSON.stringify(attempts)}`);
				const entry = await send(B, `/echo after-kill-${i}`);
				entry.at = Date.now() - killedAt;
				attempts.push({ at: entry.at, status: entry.status, error: entry.error, body: entry.res?.text });
				assert.equal(entry.error, undefined, `node B is alive: ${entry.error}`);
				if (entry.status === 200) took = entry;
				else {
					unavailable(entry.res, `/echo after-kill-${i} via node B while A's lease lasts`);
					await sleep(100);
				}
			}
			answered(took.res, key, echoed(took.text.slice(6)), "the first message node B runs");
			assert.equal(attempts[0].status, 503, `right after the kill A's lease still holds: no takeover yet (${JSON.stringify(attempts)})`);
			assert.ok(took.at >= c.leaseMs / 3, `the takeover waited for the lease (${took.at} ms after the kill, lease ${c.leaseMs} ms)`);
			assert.equal(await c.ownerOf(key), B, "node B holds the session now");
			assert.equal(await c.lease(key), `${B.nodeId} ${B.advertiseUrl}`, "the lease names node B");

			// The conversation went on from the data dir: the earlier messages, each once.
			const history = await send(B, "/history");
			answered(history.res, key, undefined, "/history on node B");
			assert.match(history.response, /^You said \d+ things before: "\/echo m1", "\/echo m2", "\/echo m3"/, history.response);
			const accepted = ledger.filter((e) => e.status === 200);
			let messages = await conversation(B.port, key);
			for (const entry of accepted) {
				assert.deepEqual(timesSaid(messages, entry.text), { said: 1, answers: 1 }, `${entry.text}: said and answered once`);
			}
			for (const entry of ledger.filter((e) => e.status === 503 && e.text.startsWith("/echo after-kill"))) {
				assert.equal(timesSaid(messages, entry.text).said, 0, `${entry.text} (503) never reached a session`);
			}
			for (const entry of lost) {
				assert.equal(timesSaid(messages, entry.text).answers, 0, `${entry.text} (lost with node A) was not answered`);
			}
			assert.equal(new Set(accepted.map((e) => e.runId)).size, accepted.length, "one run per accepted message");

			// Event ids go on after the old ones.
			const fresh = await events(t, B.port, key);
			assert.ok(fresh.hello.id >= last, `hello's id ${fresh.hello.id} continues from ${last}`);
			const after = await send(B, "/echo after-takeover");
			const afterRun = answered(after.res, key, echoed("after-takeover"), "after the takeover");
			await runEnd(fresh, afterRun, "stream on the new owner");
			const newFrames = framesIn(fresh, fresh.hello.id);
			assert.ok(newFrames.length > 0 && newFrames.every((f) => f.id > last), `new event ids come after ${last}: ${newFrames.map((f) => f.id)}`);
			// A client resuming from before the takeover gets what it missed: the new owner's log
			// begins with the old owner's entries, read back from the stream.
			const older = await events(t, B.port, key, { headers: { "last-event-id": String(last - 3) } });
			await runEnd(older, afterRun, "stream resumed from before the takeover");
			assert.notEqual(older.hello.json.missed, true, "nothing missed across the takeover");
			assert.deepEqual(framesIn(older, last - 3, last), framesIn(onA, last - 3, last), "resumed from before the takeover: the old owner's frames");
			assert.deepEqual(framesIn(older, fresh.hello.id), framesIn(fresh, fresh.hello.id), "resumed from before the takeover: then every frame");
			// The stream that was open on B before the kill is never left silent: it follows the new
			// owner, or it has ended (its client reconnects with Last-Event-ID).
			await waitFor(() => onB.isEnded || onB.frames.some((f) => f.json?.type === "run_end" && f.json.runId === afterRun), "the stream opened on B before the kill to carry on or end", 5000);
			// A run of the dead owner is still known (run records live in Redis).
			const old = await request(B.port, "GET", path(key, `/runs/${accepted[0].runId}`));
			assert.equal(old.status, 200, `GET the run of ${accepted[0].text} after the takeover: ${old.status} ${old.text}`);
			assert.equal(old.json.run.status, "succeeded");

			// Clients retry with their Idempotency-Key: what was answered is not run again...
			const before = (await conversation(B.port, key)).length;
			for (const entry of accepted) {
				const again = await postText(B.port, key, entry.text, { headers: { "idempotency-key": entry.idem } });
				assert.equal(again.status, 200, `retry of ${entry.text}: ${again.status} ${again.text}`);
				assert.equal(again.headers["x-run-id"], entry.runId, `retry of ${entry.text}: the same run`);
				assert.equal(again.headers["idempotent-replayed"], "true", `retry of ${entry.text}: replayed`);
				assert.equal(again.json.response, entry.response, `retry of ${entry.text}: the same answer`);
			}
			assert.equal((await conversation(B.port, key)).length, before, "retries of answered messages ran nothing");
			// ...and what was lost with node A runs once (as the README says: retry with the same key).
			for (const entry of lost) {
				const again = await postText(B.port, key, entry.text, { headers: { "idempotency-key": entry.idem }, timeoutMs: 15_000 });
				assert.equal(again.status, 200, `retry of ${entry.text}, lost with node A: ${again.status} ${again.text}`);
				assert.equal(again.json.ok, true, `retry of ${entry.text}: ${again.text}`);
			}
			messages = await conversation(B.port, key);
			for (const entry of lost) assert.equal(timesSaid(messages, entry.text).answers, 1, `${entry.text}: answered once after its retry`);
			for (const entry of accepted) assert.deepEqual(timesSaid(messages, entry.text), { said: 1, answers: 1 }, `${entry.text}: still once`);

			// Node A comes back: it does not take the session back; what it gets, it forwards.
			await A.start();
			answered(await postText(A.port, key, "/echo via-restarted-a"), key, echoed("via-restarted-a"), "via the restarted node A");
			assert.equal(await c.ownerOf(key), B, "node B keeps the session");
		} catch (error) {
			error.message += `\nledger: ${JSON.stringify(ledger.map(({ res: _res, ...e }) => e), null, 1)}\n${c.diagnostics()}`;
			throw error;
		}
	});

	it("the same Idempotency-Key sent to both nodes makes one run", async (t) => {
		const c = await startCluster(t);
		const [A, B] = c.nodes;
		try {
			// At once, to both nodes, for a key nobody owns yet.
			const key = "idem-both";
			const headers = { "idempotency-key": "order-42" };
			const [ra, rb] = await Promise.all([postText(A.port, key, "/slow 10", { headers }), postText(B.port, key, "/slow 10", { headers })]);
			const runId = answered(ra, key, undefined, "via node A");
			assert.equal(answered(rb, key, undefined, "via node B"), runId, "both answers name the same run");
			assert.equal(ra.json.response, rb.json.response);
			assert.deepEqual(
				[ra.headers["idempotent-replayed"], rb.headers["idempotent-replayed"]].sort(),
				["true", undefined].sort(),
				"one answer ran it, the other joined it (idempotent-replayed: true)",
			);
			const owner = await c.ownerOf(key);
			const other = owner === A ? B : A;
			for (const node of [A, B]) {
				const runs = await request(node.port, "GET", path(key, "/runs"));
				assert.equal(runs.status, 200);
				assert.deepEqual(runs.json.runs.map((r) => r.runId), [runId], `GET /runs via ${node.name}: one run`);
			}
			assert.deepEqual(timesSaid(await conversation(A.port, key), "/slow 10"), { said: 1, answers: 1 }, "the agent ran once");

			// Again later, to each node: the same run, replayed.
			for (const node of [other, owner]) {
				const again = await postText(node.port, key, "/slow 10", { headers });
				assert.equal(answered(again, key, ra.json.response, `repeat via ${node.name}`), runId);
				assert.equal(again.headers["idempotent-replayed"], "true");
			}
			// The same key with another request: 422 on either node.
			for (const node of [A, B]) {
				const wrong = await postText(node.port, key, "/echo something else", { headers });
				assert.equal(wrong.status, 422, `another request with the key via ${node.name}: ${wrong.status} ${wrong.text}`);
				assert.equal(wrong.json.error, "Idempotency-Key reused with a different request");
			}

			// A key sent first to the node that does not own the session, then to the owner.
			const first = await postText(other.port, key, "/echo once", { headers: { "idempotency-key": "order-43" } });
			const second = await postText(owner.port, key, "/echo once", { headers: { "idempotency-key": "order-43" } });
			assert.equal(answered(second, key, echoed("once"), "via the owner"), answered(first, key, echoed("once"), "via the other node"));
			assert.equal(second.headers["idempotent-replayed"], "true");
			const messages = await conversation(owner.port, key);
			assert.deepEqual(timesSaid(messages, "/echo once"), { said: 1, answers: 1 }, "ran once");
			assert.deepEqual(timesSaid(messages, "/slow 10"), { said: 1, answers: 1 }, "still once");
			assert.equal(timesSaid(messages, "/echo something else").said, 0, "a refused request ran nothing");

			// A node that stops cleanly gives its sessions back: the other one takes them at once
			// (no lease to wait out), and the keys are still known there.
			const stopped = await owner.stop();
			assert.equal(stopped.code, 0, `${owner.name} stopped cleanly:\n${owner.output()}`);
			const t0 = Date.now();
			const next = await postText(other.port, key, "/history");
			answered(next, key, 'You said 2 things before: "/slow 10", "/echo once"', `the first message after ${owner.name} stopped`);
			assert.ok(Date.now() - t0 < c.leaseMs, `taken over at once, not after the lease (${Date.now() - t0} ms)`);
			const replay = await postText(other.port, key, "/echo once", { headers: { "idempotency-key": "order-43" } });
			assert.equal(answered(replay, key, echoed("once"), "order-43 again on the new owner"), first.json.runId);
			assert.equal(replay.headers["idempotent-replayed"], "true");
		} catch (error) {
			error.message += `\n${c.diagnostics()}`;
			throw error;
		}
	});

	it("Redis stopped: sessions keep answering on their owner, /ready says degraded, other keys get 503; Redis back: ok, new keys work, one owner per session", async (t) => {
		const c = await startCluster(t);
		const [A, B] = c.nodes;
		try {
			answered(await postText(A.port, "deg-a", "/echo a1"), "deg-a", echoed("a1"), "deg-a via A");
			answered(await postText(B.port, "deg-b", "/echo b1"), "deg-b", echoed("b1"), "deg-b via B");
			assert.equal(await c.ownerOf("deg-a"), A);
			assert.equal(await c.ownerOf("deg-b"), B);
			const stream = await events(t, A.port, "deg-a");

			await c.redis.stop();
			for (const node of [A, B]) {
				const ready = await node.ready("degraded");
				assert.equal(ready.ok, true);
				assert.equal(ready.nodeId, node.nodeId);
			}
			// Owned sessions answer, their streams go on; past the lease too.
			const a2 = answered(await postText(A.port, "deg-a", "/echo a2"), "deg-a", echoed("a2"), "deg-a on its owner, Redis down");
			await runEnd(stream, a2, "deg-a's stream on A");
			answered(await postText(B.port, "deg-b", "/echo b2"), "deg-b", echoed("b2"), "deg-b on its owner, Redis down");
			// Anything else needs Redis: 503, Retry-After 1.
			for (const [node, key] of [[A, "deg-new"], [B, "deg-new"], [B, "deg-a"], [A, "deg-b"]]) {
				unavailable(await postText(node.port, key, "/echo nope"), `${key} via ${node.name}, Redis down`);
			}
			const sse = await request(A.port, "GET", path("deg-new", "/events"));
			unavailable(sse, "GET /sessions/deg-new/events via A, Redis down");
			await sleep(c.leaseMs + 500);
			answered(await postText(A.port, "deg-a", "/echo a3"), "deg-a", echoed("a3"), "deg-a on its owner, a lease later");
			assert.equal((await request(A.port, "GET", "/ready")).json.cluster, "degraded");

			// Redis back (empty, as one without persistence restarts). Within a lease, every node
			// has renewed (or given up) what it holds.
			await c.redis.start();
			for (const node of [A, B]) await node.ready("ok");
			await sleep(c.leaseMs);
			answered(await postText(A.port, "deg-new", "/echo n1"), "deg-new", echoed("n1"), "a new key via A, Redis back");
			assert.equal(await c.ownerOf("deg-new"), A);
			answered(await postText(B.port, "deg-new", "/echo n2"), "deg-new", echoed("n2"), "the new key via B");
			answered(await postText(B.port, "deg-new-b", "/echo m1"), "deg-new-b", echoed("m1"), "a new key via B, Redis back");
			// The sessions from before Redis went away: answered from either node, one owner each.
			answered(await postText(B.port, "deg-a", "/echo a4"), "deg-a", echoed("a4"), "deg-a via B, Redis back");
			answered(await postText(A.port, "deg-a", "/echo a5"), "deg-a", echoed("a5"), "deg-a via A, Redis back");
			answered(await postText(A.port, "deg-b", "/echo b3"), "deg-b", echoed("b3"), "deg-b via A, Redis back");
			await sleep(c.leaseMs);
			answered(await postText(B.port, "deg-a", "/echo a6"), "deg-a", echoed("a6"), "deg-a via B, a lease later");
			await c.ownerOf("deg-a");
			await c.ownerOf("deg-b");
			const said = (await conversation(A.port, "deg-a")).filter((m) => m.role === "user").map((m) => m.text);
			assert.deepEqual(said, ["/echo a1", "/echo a2", "/echo a3", "/echo a4", "/echo a5", "/echo a6"], "deg-a: one conversation, each message once");
			const saidB = (await conversation(B.port, "deg-b")).filter((m) => m.role === "user").map((m) => m.text);
			assert.deepEqual(saidB, ["/echo b1", "/echo b2", "/echo b3"], "deg-b: one conversation");
		} catch (error) {
			error.message += `\n${c.diagnostics()}`;
			throw error;
		}
	});

	it("bad cluster flags or variables exit 2 with a message that names them, and never show the Redis password", async (t) => {
		const box = await sandbox(t, "pi-gateway-cluster-cli-");
		const good = ["--port", "4100", "--redis-url", "redis://127.0.0.1:6379/0", "--advertise-url", "http://127.0.0.1:4100", "--data-dir", `${box.root}/data`];
		const without = (flag) => {
			const i = good.indexOf(flag);
			return [...good.slice(0, i), ...good.slice(i + 2)];
		};
		const cases = [
			{ args: [...without("--redis-url"), "--redis-url", "http://127.0.0.1:6379"], says: "--redis-url" },
			{ args: [...without("--redis-url"), "--redis-url", "redis://:hunter2secret@127.0.0.1:6379/zero"], says: "--redis-url" },
			{ args: [...without("--redis-url"), "--redis-url", "redis://:hunter2secret@"], says: "--redis-url" },
			{ args: without("--redis-url"), env: { PI_GATEWAY_REDIS_URL: "memcached://:hunter2secret@h" }, says: "PI_GATEWAY_REDIS_URL" },
			{ args: without("--advertise-url"), says: "--advertise-url" },
			{ args: [...without("--advertise-url"), "--advertise-url", "https://127.0.0.1:4100"], says: "--advertise-url" },
			{ args: [...without("--advertise-url"), "--advertise-url", "http://127.0.0.1:4100/gw"], says: "--advertise-url" },
			{ args: [...without("--advertise-url"), "--advertise-url", "127.0.0.1:4100"], says: "--advertise-url" },
			{ args: without("--advertise-url"), env: { PI_GATEWAY_ADVERTISE_URL: "http://user:pw@h:1" }, says: "PI_GATEWAY_ADVERTISE_URL" },
			{ args: [...good, "--node-id", "gw a"], says: "--node-id" },
			{ args: [...good, "--node-id", "x".repeat(129)], says: "--node-id" },
			{ args: good, env: { PI_GATEWAY_NODE_ID: "gw/a" }, says: "PI_GATEWAY_NODE_ID" },
			{ args: [...good, "--cluster-prefix", ""], says: "--cluster-prefix" },
			{ args: [...good, "--cluster-prefix", "x".repeat(257)], says: "--cluster-prefix" },
			{ args: [...good, "--lease", "0.5"], says: "--lease" },
			{ args: [...good, "--lease", "601"], says: "--lease" },
			{ args: [...good, "--lease", "ten"], says: "--lease" },
			{ args: good, env: { PI_GATEWAY_LEASE: "-1" }, says: "PI_GATEWAY_LEASE" },
			// Another node takes a session over from the data dir: the nodes need one they share.
			{ args: [...without("--data-dir"), "--ephemeral"], says: "--ephemeral" },
			{ args: without("--data-dir"), says: "--data-dir" },
			{ args: without("--data-dir"), env: { PI_GATEWAY_EPHEMERAL: "1" }, says: "PI_GATEWAY_EPHEMERAL" },
			// The flag takes rediss://, the runtime refuses it (no TLS in this build): still exit 2, naming the flag.
			{ args: [...without("--redis-url"), "--redis-url", "rediss://:hunter2secret@127.0.0.1:6380/0"], says: "--redis-url", hint: false },
		];
		await Promise.all(
			cases.map(async ({ args, env = {}, says, hint = true }) => {
				const proc = spawnCli(t, args, childEnv(box, env));
				const { code } = await within(proc.exited, START_DEADLINE_MS, `pi-gateway ${args.join(" ")} to exit`);
				const what = `pi-gateway ${args.join(" ")} ${JSON.stringify(env)}`;
				assert.equal(code, 2, `${what}: exit 2\n${proc.out.stderr}`);
				assert.ok(proc.out.stderr.includes(says), `${what}: the message names ${says}:\n${proc.out.stderr}`);
				if (hint) assert.match(proc.out.stderr, /Run pi-gateway --help/);
				assert.ok(!`${proc.out.stdout}${proc.out.stderr}`.includes("hunter2secret"), `${what}: the password shows:\n${proc.out.stderr}`);
				assert.doesNotMatch(proc.out.stdout, /listening/);
			}),
		);
	});

	it("the README's nginx example is the config these tests run nginx with", () => {
		const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
		const section = readme.slice(readme.indexOf("## Running several gateways"));
		const block = /```nginx\n([\s\S]*?)```/.exec(section);
		assert.ok(block, "the README's \"Running several gateways\" has an nginx block");
		assert.equal(
			block[1],
			nginxSite({ listen: "80", servers: ["10.0.0.5:3000", "10.0.0.6:3000"] }),
			"the README's nginx block is support/cluster.mjs's nginxSite() with the README's addresses",
		);
	});

	it("the cluster flags build config.cluster (only what is given), and without --redis-url they only warn", () => {
		const env = {};
		const base = ["--redis-url", "redis://:pw@10.0.0.2:6379/1", "--advertise-url", "http://10.0.0.5:3000/", "--data-dir", "/srv/pi"];
		assert.deepEqual(gatewayConfig(parseCli(base, env).options).cluster, {
			redisUrl: "redis://:pw@10.0.0.2:6379/1",
			advertiseUrl: "http://10.0.0.5:3000",
		});
		const full = parseCli([...base, "--node-id", "gw-a.1:x_y", "--cluster-prefix", "team-a:", "--lease", "1.5"], env).options;
		assert.deepEqual(gatewayConfig(full).cluster, {
			redisUrl: "redis://:pw@10.0.0.2:6379/1",
			advertiseUrl: "http://10.0.0.5:3000",
			nodeId: "gw-a.1:x_y",
			prefix: "team-a:",
			leaseMs: 1500,
		});
		const fromEnv = parseCli([], {
			PI_GATEWAY_REDIS_URL: "rediss://user:pw@redis.internal:6380",
			PI_GATEWAY_ADVERTISE_URL: "http://gw-b.internal:3000",
			PI_GATEWAY_NODE_ID: "gw-b",
			PI_GATEWAY_CLUSTER_PREFIX: "p:",
			PI_GATEWAY_LEASE: "600",
			PI_GATEWAY_DATA_DIR: "/srv/pi",
		}).options;
		assert.deepEqual(gatewayConfig(fromEnv).cluster, {
			redisUrl: "rediss://user:pw@redis.internal:6380",
			advertiseUrl: "http://gw-b.internal:3000",
			nodeId: "gw-b",
			prefix: "p:",
			leaseMs: 600_000,
		});
		assert.ok(!fromEnv.cluster.redisShown.includes("pw"), fromEnv.cluster.redisShown);
		assert.equal(parseCli(["--lease", "1"], env).options.cluster, undefined);
		assert.equal(gatewayConfig(parseCli(["--node-id", "x"], env).options).cluster, undefined, "no --redis-url: no cluster");
		assert.deepEqual(parseCli(["--node-id", "x", "--lease", "3"], env).options.clusterFlagsIgnored, ["--node-id", "--lease"]);
		assert.throws(() => parseCli([...base, "--lease", "0.9994"], env), (e) => e instanceof UsageError && e.message.includes("--lease"));
		assert.equal(gatewayConfig(parseCli([...base, "--lease", "0.9996"], env).options).cluster.leaseMs, 1000, "fractions round to the millisecond");
	});
});
