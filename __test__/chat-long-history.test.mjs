// A `useChat` conversation past 1 MiB of history keeps working in the example page
// (examples/chat-ui), in Debian's headless chromium, against a pi-gateway on another origin in
// front of real pi AgentSessions whose faux model answers every message with ~300 KB of text.
//
// `useChat` keeps the whole conversation, and `DefaultChatTransport` would send all of it with
// every request: after four such answers that is more than the gateway's 1 MiB body limit, and
// every later send would fail. The page sends only the new user message with the chat id
// (`prepareSendMessagesRequest`); the pi session keeps the history on the gateway's side. The
// test reads every request body the browser really sent.
// Run: npm test -- __test__/chat-long-history.test.mjs   (needs /usr/bin/chromium; fails, never skips, without it)

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { bigAnswer, startBigAnswerGateway } from "./support/browser-big-answers.mjs";
import { openChatUi } from "./support/browser-chat-ui.mjs";

const MIB = 1024 * 1024;
/** Filler characters of every answer: four answers make more than 1 MiB. */
const ANSWER_CHARS = 300_000;
const TURNS = 5;
const TOKEN = "long-history-token";
const SESSION = "long history";
/** What one request carrying one short user message (plus id, trigger, messageId) may weigh. */
const MAX_REQUEST_BYTES = 4096;

describe("a useChat conversation past 1 MiB of history, in headless chromium", () => {
	let ui;
	let page;
	let gw;
	let tab;
	const problems = [];
	/** Every POST the browser sent to the chat route: its size and parsed body. */
	const chatRequests = [];

	before(async () => {
		ui = await openChatUi(
			"pi-gateway-long-history-",
			(origin) => startBigAnswerGateway({ answerChars: ANSWER_CHARS, config: { bearerToken: TOKEN, cors: { origins: [origin] } } }),
			problems,
		);
		({ page, gw, tab } = ui);
		const chatUrl = `${gw.base}/sessions/${encodeURIComponent(SESSION)}/chat`;
		tab.on("request", (request) => {
			if (request.url() !== chatUrl || request.method() !== "POST") return;
			const raw = request.postDataBuffer() ?? Buffer.alloc(0);
			chatRequests.push({ bytes: raw.length, body: JSON.parse(raw.toString("utf8")) });
		});
	});

	after(() => ui?.close());

	it(`${TURNS} turns of ~${ANSWER_CHARS / 1000} KB answers: every send succeeds, and every request carries only the new message`, async () => {
		const query = new URLSearchParams({ gateway: gw.base, session: SESSION, token: TOKEN });
		await tab.goto(`${page.origin}/?${query}`);
		await tab.getByTestId("status").filter({ hasText: "ready" }).waitFor();

		const questions = Array.from({ length: TURNS }, (_, i) => `question number ${i + 1}`);
		const assistant = tab.locator('article[data-role="assistant"]');
		let historyChars = 0;
		for (const [i, question] of questions.entries()) {
			if (i === TURNS - 1) {
				// Before the last send, the conversation the page holds is already past 1 MiB.
				assert.ok(historyChars > MIB, `history before send ${i + 1}: ${historyChars} chars`);
			}
			await tab.getByTestId("input").fill(question);
			await tab.getByTestId("send").click();
			// The whole answer, or the page's error notice (then fail at once, saying what it showed).
			await assistant
				.nth(i)
				.locator('[data-part="text"]')
				.filter({ hasText: `[end of the answer to ${question}]` })
				.or(tab.getByTestId("error"))
				.waitFor();
			const errors = await tab.getByTestId("error").allInnerTexts();
			assert.deepEqual(errors, [], `send ${i + 1} failed, with ${historyChars} chars of history`);
			await tab.getByTestId("status").filter({ hasText: "ready" }).waitFor();
			const shown = await assistant.nth(i).locator('[data-part="text"]').innerText();
			assert.equal(shown, bigAnswer(question, ANSWER_CHARS), `answer ${i + 1} arrived whole`);
			historyChars += shown.length + question.length;
		}
		assert.ok(historyChars > 1.4 * MIB, `the conversation holds ${historyChars} chars`);
		assert.equal(await assistant.count(), TURNS);
		assert.deepEqual(
			await tab.locator('article[data-role="user"] [data-part="text"]').allInnerTexts(),
			questions,
		);

		// What the browser sent: one POST per turn, each with only the new user message.
		assert.equal(chatRequests.length, TURNS, JSON.stringify(chatRequests.map((r) => r.bytes)));
		const chatId = chatRequests[0].body.id;
		assert.equal(typeof chatId, "string");
		assert.ok(chatId.length > 0);
		for (const [i, { bytes, body }] of chatRequests.entries()) {
			assert.ok(bytes <= MAX_REQUEST_BYTES, `request ${i + 1} is ${bytes} bytes`);
			assert.equal(body.id, chatId, "the same chat id every time");
			assert.equal(body.messages.length, 1, `request ${i + 1} carries one message`);
			assert.equal(body.messages[0].role, "user");
			assert.deepEqual(
				body.messages[0].parts.filter((p) => p.type === "text").map((p) => p.text),
				[questions[i]],
			);
			assert.equal(body.trigger, "submit-message");
		}

		// The pi session holds the whole conversation: every question, every long answer, in order.
		const session = gw.sessions.get(SESSION);
		assert.ok(session, "the gateway created the session");
		const text = (m) =>
			typeof m.content === "string" ? m.content : m.content.filter((c) => c.type === "text").map((c) => c.text).join("");
		assert.deepEqual(
			session.messages.filter((m) => m.role === "user").map(text),
			questions,
		);
		assert.deepEqual(
			session.messages.filter((m) => m.role === "assistant").map(text),
			questions.map((q) => bigAnswer(q, ANSWER_CHARS)),
		);
		assert.deepEqual(problems, []);
	});
});
