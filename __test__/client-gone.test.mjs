// A message whose HTTP client hung up before its turn came is not run: its result would reach
// nobody. Real sockets, the real addon, scripted sessions that count their prompts.

import assert from "node:assert/strict";
import net from "node:net";
import { after, before, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { request, startGateway, waitUntil } from "./helpers/http-harness.mjs";

let gw;
before(async () => {
	gw = await startGateway({ config: { session: { maxQueuePerSession: 4 } } });
});
after(async () => {
	await gw?.stop();
});

/** Sends a complete POST on its own socket, then hangs up once the gateway has read it. */
async function sendAndHangUp(path, body) {
	const payload = JSON.stringify(body);
	const socket = net.connect(gw.port, "127.0.0.1");
	await new Promise((resolve, reject) => {
		socket.once("connect", resolve);
		socket.once("error", reject);
	});
	socket.write(
		`POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`,
	);
	await delay(30);
	socket.destroy();
}

test("queued /messages and /chat requests whose clients left are not run, and hold no queue place", async () => {
	const key = "gone";
	// A run of about 1.5 s keeps the session busy while the others queue behind it.
	const first = request(gw.port, "POST", `/sessions/${key}/messages`, { body: { text: "/stream 150 10" } });
	await waitUntil(() => gw.rt.getSession(key)?.processing, { message: "the first run to start" });
	const promptsBefore = gw.prompts();

	// Twice the queue's size of abandoned requests: none may take a place or run.
	for (let i = 0; i < 4; i++) await sendAndHangUp(`/sessions/${key}/messages`, { text: `gone ${i}` });
	for (let i = 0; i < 4; i++) await sendAndHangUp(`/sessions/${key}/chat`, { text: `gone chat ${i}` });

	// A client that stays gets a place (no 429) and its answer.
	const kept = request(gw.port, "POST", `/sessions/${key}/messages`, { body: { text: "/instant" } });
	const firstResult = await first;
	assert.equal(firstResult.status, 200, firstResult.text);
	const keptResult = await kept;
	assert.equal(keptResult.status, 200, keptResult.text);
	assert.equal(keptResult.json.ok, true);
	// Exactly one more prompt after the first run: the kept message.
	assert.equal(gw.prompts() - promptsBefore, 1, "no abandoned message was run");
	await waitUntil(() => gw.rt.getSession(key)?.queueDepth === 0 && !gw.rt.getSession(key)?.processing, {
		message: "an idle session",
	});
});
