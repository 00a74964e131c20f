// The chat example (examples/chat-ui) decides on tool calls — the gateway's approvals (SPEC section
// 13) — in Debian's headless chromium, against a pi-gateway on another origin (approval.policy
// {bash: "ask"}, the default chat protocol) in front of real pi AgentSessions on the faux model,
// whose `/bash <command>` makes one real `bash` tool call per command.
//
// - Approve: the answer stops at the held call (the page shows the tool, its command, Approve and
//   Deny; the run waits, the command has not run); Approve sends the decision (useChat's
//   addToolApprovalResponse + sendAutomaticallyWhen), and the same answer goes on with the
//   command's output and the model's `bash said: …`. A reload shows the whole answer again.
// - Deny (with a reason): the call shows as denied, the answer says `bash failed: Denied by the
//   user: <reason>`, and the command never ran (its marker file is not on disk).
// - A reload while the call waits: the answer resumes up to the held call, with the buttons again;
//   Approve then goes on as without the reload.
// - Two held calls in one answer: nothing is sent until both are decided; then one request carries
//   both decisions, and only the approved command runs.
// - A held bash call and an allowed read in one answer (`/bash … ;; @read hello.txt`): the read's
//   part waits `input-available` (pi runs the answer's calls only after the decision); Approve
//   sends the decision at once (the page's `decisionsComplete`, where the SDK's
//   `lastAssistantMessageIsCompleteWithApprovalResponses` would wait for the read forever), and
//   both outputs and both answer lines appear.
// - A decision after the timeout (approval.timeoutMs 2000, a gateway of its own): not an error; the
//   continuation shows the call denied and the model's `bash failed: Denied: no decision within 2 s`.
// Screenshot: artifacts/chat-ui-approval.png.
// Run: node --test __test__/approvals-browser.test.mjs   (needs /usr/bin/chromium; fails, never skips, without it)

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { chatPostsOf, decisionsIn, readToolParts } from "./support/browser-approvals.mjs";
import { openChatUi, readChat, recordExchanges, waitUntilReady } from "./support/browser-chat-ui.mjs";
import { UI_TIMEOUT_MS } from "./support/browser-chromium.mjs";
import { unexpectedProblems } from "./support/browser-queue.mjs";
import { startChatGateway } from "./support/gateway.mjs";
import { HELLO_CONTENT, HELLO_FILE } from "../lib/faux-agent.js";
import { sleep, waitFor } from "./support/wait.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const ARTIFACTS = join(ROOT, "artifacts");
const TOKEN = "approvals-test-token";
/** Every test stops by itself well within this. */
const TEST_TIMEOUT_MS = 120_000;

describe("the chat example decides on tool calls (approvals), in headless chromium", { timeout: TEST_TIMEOUT_MS * 4 }, () => {
	/** @type {Partial<Awaited<ReturnType<typeof openChatUi>>> & { problems: string[], exchanges?: ReturnType<typeof recordExchanges> }} */
	const ui = { problems: [] };
	before(async () => {
		const opened = await openChatUi(
			"pi-gateway-approvals-",
			(origin) =>
				startChatGateway({
					config: { bearerToken: TOKEN, cors: { origins: [origin] }, approval: { policy: { bash: "ask" } } },
				}),
			ui.problems,
		);
		Object.assign(ui, opened);
		assert.notEqual(new URL(ui.gw.base).origin, ui.page.origin);
		ui.exchanges = recordExchanges(ui.tab, ui.gw.base);
	});
	after(() => ui.close?.());

	const chatPosts = (session) => chatPostsOf(ui.exchanges, session);
	/** A marker no other test (or run) uses: the command echoes it into a file named after it. */
	const marker = (what) => `${what}-${randomUUID().slice(0, 8)}`;
	/** The command that prints `text` and leaves `<text>.txt` in the faux workspace when it runs. */
	const teeCommand = (text) => `echo ${text} | tee ${text}.txt`;
	const fileOf = (text) => join(ui.gw.agent.cwd, `${text}.txt`);

	/** Opens the page on `session` (a new one) and waits until it is ready. */
	async function openPage(session) {
		const query = new URLSearchParams({ gateway: ui.gw.base, session, token: TOKEN });
		await ui.tab.goto(`${ui.page.origin}/?${query}`);
		await waitUntilReady(ui.tab);
	}

	/** Sends `text`; waits until the page shows `count` held calls and says so; returns the tool parts. */
	async function sendAndWaitForApprovals(text, count = 1) {
		await ui.tab.getByTestId("input").fill(text);
		await ui.tab.getByTestId("send").click();
		await ui.tab.getByTestId("status").filter({ hasText: "awaiting approval" }).waitFor({ timeout: UI_TIMEOUT_MS });
		const tools = await readToolParts(ui.tab);
		assert.equal(tools.filter((t) => t.request).length, count, JSON.stringify(tools));
		return tools;
	}

	/** The gateway's pending approvals of `session`, waited for until there are `count`. */
	const pendingOnGateway = (session, count) =>
		waitFor(() => {
			const list = ui.gw.runtime.listApprovals(session);
			return list.length === count ? list : undefined;
		}, `${count} pending approval(s) on the gateway`);

	/** The held call `index` (0-based among the page's tool parts with Approve / Deny). */
	const request = (index = 0) => ui.tab.getByTestId("approval").nth(index);

	/** The page had no problems (page errors, console errors, failed requests); forgets them for the next test. */
	function noProblems() {
		assert.deepEqual(ui.problems, []);
		ui.problems.length = 0;
	}

	it("Approve: the answer stops at the held bash call; Approve runs it and the same answer goes on with its output", async () => {
		const session = "approve";
		const text = marker("approved");
		const command = teeCommand(text);
		await openPage(session);

		const tools = await sendAndWaitForApprovals(`/bash ${command}`);
		assert.equal(tools.length, 1);
		const [held] = tools;
		assert.equal(held.toolName, "bash");
		assert.equal(held.state, "approval-requested");
		assert.equal(held.approval, "requested");
		assert.deepEqual(JSON.parse(held.input), { command });
		assert.equal(held.request.tool, "bash");
		assert.equal(held.request.command, command, "the page shows the command itself");
		assert.ok(held.request.approveEnabled && held.request.denyEnabled);
		assert.equal(held.output, undefined);

		// The gateway holds the call, the run waits, the command has not run; the page's stream ended.
		const [pending] = await pendingOnGateway(session, 1);
		assert.equal(pending.toolName, "bash");
		assert.deepEqual(pending.args, { command });
		assert.equal(held.request.approvalId, pending.approvalId, "the page's approval id is the gateway's");
		const [first] = chatPosts(session);
		assert.equal(first.status, 200);
		assert.equal(pending.runId, first.runId);
		assert.equal(held.messageId, first.runId, "the answer's message id is the run id");
		assert.equal(ui.gw.runtime.getRun(session, first.runId)?.status, "running");
		assert.equal(existsSync(fileOf(text)), false, "the command waits for the decision");
		// Nothing else can be sent meanwhile.
		await ui.tab.getByTestId("input").fill("/echo meanwhile");
		assert.equal(await ui.tab.getByTestId("send").isDisabled(), true, "Send waits for the decision");
		await ui.tab.getByTestId("input").fill("");
		await mkdir(ARTIFACTS, { recursive: true });
		await ui.tab.screenshot({ path: join(ARTIFACTS, "chat-ui-approval.png"), fullPage: true });

		await request(0).getByTestId("approve").click();
		const answer = ui.tab.locator(`article[data-role="assistant"][data-id="${first.runId}"]`);
		await answer.locator('[data-part="text"]').filter({ hasText: `bash said: ${text}` }).waitFor({ timeout: UI_TIMEOUT_MS });
		await waitUntilReady(ui.tab, { timeout: UI_TIMEOUT_MS });

		// One request carried the decision: the answer's assistant message, with the approved call.
		const posts = chatPosts(session);
		assert.equal(posts.length, 2, "the question, then the decision");
		const continuation = posts[1];
		assert.equal(continuation.status, 200);
		assert.equal(continuation.body.id, first.body.id, "the same chat");
		assert.equal(continuation.body.messages.length, 1, "only the message with the decision is sent");
		assert.equal(continuation.body.messages[0].role, "assistant");
		assert.equal(continuation.body.messages[0].id, first.runId);
		assert.deepEqual(decisionsIn(continuation.body), [[pending.toolCallId, pending.approvalId, true, undefined]]);
		assert.equal(continuation.runId, first.runId, "the continuation is the same run");

		// The page: the same answer, now with the command's output and the model's reply.
		const shown = await readChat(ui.tab);
		assert.deepEqual(
			shown.messages.map((m) => [m.role, m.id === first.runId || m.role === "user"]),
			[
				["user", true],
				["assistant", true],
			],
			"one question, one answer (the continuation went on in the same message)",
		);
		const [ran] = await readToolParts(ui.tab);
		assert.equal(ran.state, "output-available");
		assert.equal(ran.request, undefined, "no buttons once decided");
		assert.equal(ran.output.trim(), text, "the command's output");
		const texts = shown.messages[1].parts.filter((p) => p.kind === "text").map((p) => p.text);
		assert.deepEqual(texts, [`bash said: ${text}`]);
		assert.deepEqual(shown.errors, []);

		// On the gateway: the command ran once, the run succeeded, nothing waits.
		assert.equal(readFileSync(fileOf(text), "utf8").trim(), text);
		await waitFor(() => ui.gw.runtime.getRun(session, first.runId)?.status === "succeeded", "the run to succeed");
		assert.deepEqual(
			ui.gw.runtime.listRuns(session).map((r) => r.runId),
			[first.runId],
			"one run for the question and its continuation",
		);
		assert.deepEqual(ui.gw.runtime.listApprovals(session), []);

		// A reload shows the whole answer from the gateway's history.
		await ui.tab.reload();
		await waitUntilReady(ui.tab);
		await ui.tab.locator('article[data-role="assistant"] [data-part="text"]').filter({ hasText: `bash said: ${text}` }).waitFor();
		const reloaded = await readToolParts(ui.tab);
		assert.deepEqual(
			reloaded.map((t) => [t.toolName, t.state, t.output?.trim(), t.request]),
			[["bash", "output-available", text, undefined]],
		);
		assert.equal(chatPosts(session).length, 2, "a reload sends nothing");
		noProblems();
	});

	it("Deny with a reason: the call shows as denied, the answer says bash failed, and the command never ran", async () => {
		const session = "deny";
		const text = marker("denied");
		const command = teeCommand(text);
		const reason = "not on this machine";
		await openPage(session);

		await sendAndWaitForApprovals(`/bash ${command}`);
		const [pending] = await pendingOnGateway(session, 1);
		const [first] = chatPosts(session);

		await request(0).getByTestId("deny-reason").fill(reason);
		await request(0).getByTestId("deny").click();
		const answer = ui.tab.locator(`article[data-role="assistant"][data-id="${first.runId}"]`);
		await answer.locator('[data-part="text"]').filter({ hasText: "bash failed:" }).waitFor({ timeout: UI_TIMEOUT_MS });
		await waitUntilReady(ui.tab, { timeout: UI_TIMEOUT_MS });

		const posts = chatPosts(session);
		assert.equal(posts.length, 2);
		assert.equal(posts[1].status, 200);
		assert.deepEqual(decisionsIn(posts[1].body), [[pending.toolCallId, pending.approvalId, false, reason]]);

		// The page: the call denied (not an error, no output), then the model's reply to the denial.
		const [denied] = await readToolParts(ui.tab);
		assert.equal(denied.state, "output-denied");
		assert.equal(denied.approval, "denied");
		assert.match(denied.decision, new RegExp(`^denied: ${reason}`));
		assert.equal(denied.output, undefined);
		assert.equal(denied.error, undefined, "a denial is not sent as a tool error");
		assert.equal(denied.request, undefined);
		const shown = await readChat(ui.tab);
		assert.equal(shown.messages.length, 2);
		assert.deepEqual(
			shown.messages[1].parts.filter((p) => p.kind === "text").map((p) => p.text),
			[`bash failed: Denied by the user: ${reason}`],
		);
		assert.deepEqual(shown.errors, []);

		// The command never ran; the run ended normally (the model answered the denial).
		await waitFor(() => ui.gw.runtime.getRun(session, first.runId)?.status === "succeeded", "the run to succeed");
		await sleep(300);
		assert.equal(existsSync(fileOf(text)), false, "a denied command does not run");
		assert.deepEqual(ui.gw.runtime.listApprovals(session), []);
		noProblems();
	});

	it("a reload while the call waits shows it again (the answer resumes up to the held call); Approve then goes on", async () => {
		const session = "reload";
		const text = marker("reloaded");
		const command = teeCommand(text);
		await openPage(session);

		const [before] = await sendAndWaitForApprovals(`/bash ${command}`);
		const [pending] = await pendingOnGateway(session, 1);
		const [first] = chatPosts(session);

		await ui.tab.reload();
		await ui.tab.getByTestId("status").filter({ hasText: "awaiting approval" }).waitFor({ timeout: UI_TIMEOUT_MS });
		const resumes = ui.exchanges.filter((e) => e.method === "GET" && e.path.startsWith(`/sessions/${session}/chat/`) && e.path.endsWith("/stream"));
		assert.ok(
			resumes.some((e) => e.status === 200 && e.runId === first.runId),
			`the page resumed the waiting run: ${JSON.stringify(resumes)}`,
		);
		const after = await readToolParts(ui.tab);
		assert.deepEqual(
			after.map((t) => [t.messageId, t.state, t.request?.approvalId, t.request?.command]),
			[[first.runId, "approval-requested", pending.approvalId, command]],
			"the same held call, once",
		);
		assert.equal(before.request.approvalId, pending.approvalId);
		assert.deepEqual((await readChat(ui.tab)).messages.map((m) => m.role), ["user", "assistant"]);
		assert.equal(existsSync(fileOf(text)), false);

		await request(0).getByTestId("approve").click();
		const answer = ui.tab.locator(`article[data-role="assistant"][data-id="${first.runId}"]`);
		await answer.locator('[data-part="text"]').filter({ hasText: `bash said: ${text}` }).waitFor({ timeout: UI_TIMEOUT_MS });
		await waitUntilReady(ui.tab, { timeout: UI_TIMEOUT_MS });
		const posts = chatPosts(session);
		assert.equal(posts.length, 2, "the question, then the decision (after the reload)");
		assert.deepEqual(decisionsIn(posts[1].body), [[pending.toolCallId, pending.approvalId, true, undefined]]);
		assert.deepEqual(
			(await readToolParts(ui.tab)).map((t) => [t.state, t.output?.trim()]),
			[["output-available", text]],
		);
		assert.deepEqual((await readChat(ui.tab)).messages.map((m) => m.role), ["user", "assistant"]);
		await waitFor(() => ui.gw.runtime.getRun(session, first.runId)?.status === "succeeded", "the run to succeed");
		assert.equal(readFileSync(fileOf(text), "utf8").trim(), text);
		assert.deepEqual(unexpectedProblems(ui.problems, { reloaded: true }), []);
		ui.problems.length = 0;
	});

	it("two held calls in one answer: nothing is sent until both are decided; only the approved one runs", async () => {
		const session = "both";
		const yes = marker("yes");
		const no = marker("no");
		await openPage(session);

		// One assistant message with two bash calls: both held at once.
		await sendAndWaitForApprovals(`/bash ${teeCommand(yes)} ;; ${teeCommand(no)}`, 2);
		const pending = await pendingOnGateway(session, 2);
		assert.deepEqual(
			pending.map((a) => a.args.command),
			[teeCommand(yes), teeCommand(no)],
		);

		await request(0).getByTestId("approve").click();
		// The first is decided on the page, the second still waits: nothing is sent yet.
		await waitFor(async () => (await readToolParts(ui.tab))[0].state === "approval-responded", "the first decision on the page");
		await sleep(500);
		assert.equal(chatPosts(session).length, 1, "no request before every held call has its decision");
		assert.equal(ui.gw.runtime.listApprovals(session).length, 2, "both still pending on the gateway");
		assert.equal(existsSync(fileOf(yes)), false);

		await request(0).getByTestId("deny").click(); // the second (the first no longer has buttons)
		const [first] = chatPosts(session);
		const answer = ui.tab.locator(`article[data-role="assistant"][data-id="${first.runId}"]`);
		await answer.locator('[data-part="text"]').filter({ hasText: "bash failed:" }).waitFor({ timeout: UI_TIMEOUT_MS });
		await waitUntilReady(ui.tab, { timeout: UI_TIMEOUT_MS });

		const posts = chatPosts(session);
		assert.equal(posts.length, 2, "one request with both decisions");
		assert.deepEqual(decisionsIn(posts[1].body), [
			[pending[0].toolCallId, pending[0].approvalId, true, undefined],
			[pending[1].toolCallId, pending[1].approvalId, false, undefined],
		]);
		const tools = await readToolParts(ui.tab);
		assert.deepEqual(
			tools.map((t) => [t.state, t.output?.trim()]),
			[
				["output-available", yes],
				["output-denied", undefined],
			],
		);
		const shown = await readChat(ui.tab);
		assert.deepEqual(
			shown.messages[1].parts.filter((p) => p.kind === "text").map((p) => p.text),
			[`bash said: ${yes}\nbash failed: Denied by the user`],
		);
		await waitFor(() => ui.gw.runtime.getRun(session, first.runId)?.status === "succeeded", "the run to succeed");
		assert.equal(existsSync(fileOf(yes)), true, "the approved command ran");
		assert.equal(existsSync(fileOf(no)), false, "the denied one did not");
		noProblems();
	});

	it("a held bash call and an allowed read in one answer: the read waits input-available; Approve sends the decision at once and both outputs appear", async () => {
		const session = "mixed";
		const text = marker("mixed");
		const command = teeCommand(text);
		await openPage(session);

		const tools = await sendAndWaitForApprovals(`/bash ${command} ;; @read ${HELLO_FILE}`, 1);
		assert.deepEqual(
			tools.map((t) => [t.toolName, t.state, JSON.parse(t.input), t.request?.command]),
			[
				["bash", "approval-requested", { command }, command],
				["read", "input-available", { path: HELLO_FILE }, undefined],
			],
			"the bash call asks; the read waits to run, with no buttons",
		);
		const [pending] = await pendingOnGateway(session, 1);
		assert.equal(pending.toolName, "bash");
		const [first] = chatPosts(session);
		assert.equal(existsSync(fileOf(text)), false);

		await request(0).getByTestId("approve").click();
		const answer = ui.tab.locator(`article[data-role="assistant"][data-id="${first.runId}"]`);
		await answer.locator('[data-part="text"]').filter({ hasText: `read said: ${HELLO_CONTENT}` }).waitFor({ timeout: UI_TIMEOUT_MS });
		await waitUntilReady(ui.tab, { timeout: UI_TIMEOUT_MS });

		const posts = chatPosts(session);
		assert.equal(posts.length, 2, "the question, then the decision: sent by itself, though the read had no output");
		assert.equal(posts[1].status, 200);
		assert.deepEqual(decisionsIn(posts[1].body), [[pending.toolCallId, pending.approvalId, true, undefined]]);
		assert.deepEqual(
			posts[1].body.messages[0].parts.filter((p) => p.type !== "step-start").map((p) => [p.toolName, p.state]),
			[
				["bash", "approval-responded"],
				["read", "input-available"],
			],
		);
		assert.deepEqual(
			(await readToolParts(ui.tab)).map((t) => [t.toolName, t.state, t.output?.trim(), t.request]),
			[
				["bash", "output-available", text, undefined],
				["read", "output-available", HELLO_CONTENT, undefined],
			],
		);
		const shown = await readChat(ui.tab);
		assert.deepEqual(shown.messages.map((m) => m.role), ["user", "assistant"]);
		assert.deepEqual(
			shown.messages[1].parts.filter((p) => p.kind === "text").map((p) => p.text),
			[`bash said: ${text}\nread said: ${HELLO_CONTENT}`],
		);
		assert.deepEqual(shown.errors, []);
		await waitFor(() => ui.gw.runtime.getRun(session, first.runId)?.status === "succeeded", "the run to succeed");
		assert.equal(readFileSync(fileOf(text), "utf8").trim(), text, "the approved command ran");
		assert.deepEqual(ui.gw.runtime.listApprovals(session), []);
		noProblems();
	});
});

describe("the chat example after a held call timed out (approval.timeoutMs 2000), in headless chromium", { timeout: TEST_TIMEOUT_MS }, () => {
	/** @type {Partial<Awaited<ReturnType<typeof openChatUi>>> & { problems: string[], exchanges?: ReturnType<typeof recordExchanges> }} */
	const ui = { problems: [] };
	before(async () => {
		const opened = await openChatUi(
			"pi-gateway-approvals-timeout-",
			(origin) =>
				startChatGateway({
					config: { bearerToken: TOKEN, cors: { origins: [origin] }, approval: { policy: { bash: "ask" }, timeoutMs: 2000 } },
				}),
			ui.problems,
		);
		Object.assign(ui, opened);
		ui.exchanges = recordExchanges(ui.tab, ui.gw.base);
	});
	after(() => ui.close?.());

	it("a decision that comes after the timeout is not an error: the continuation shows the call denied by the timeout", async () => {
		const session = "late";
		const text = `late-${randomUUID().slice(0, 8)}`;
		const command = `echo ${text} | tee ${text}.txt`;
		const query = new URLSearchParams({ gateway: ui.gw.base, session, token: TOKEN });
		await ui.tab.goto(`${ui.page.origin}/?${query}`);
		await waitUntilReady(ui.tab);
		await ui.tab.getByTestId("input").fill(`/bash ${command}`);
		await ui.tab.getByTestId("send").click();
		await ui.tab.getByTestId("status").filter({ hasText: "awaiting approval" }).waitFor({ timeout: UI_TIMEOUT_MS });
		const [first] = chatPostsOf(ui.exchanges, session);

		// Nobody decides: the gateway denies the call after 2 s and the run ends without the page.
		const run = await waitFor(() => {
			const r = ui.gw.runtime.getRun(session, first.runId);
			return r && r.status !== "running" && r.status !== "queued" ? r : undefined;
		}, "the run to end after the timeout");
		const timedOut = "bash failed: Denied: no decision within 2 s";
		assert.equal(run.status, "succeeded", JSON.stringify(run));
		assert.equal(run.result.response, timedOut);
		assert.deepEqual(ui.gw.runtime.listApprovals(session), []);

		// The page still offers the decision; a late Approve gets the continuation, which shows what happened.
		await ui.tab.getByTestId("approve").click();
		const answer = ui.tab.locator(`article[data-role="assistant"][data-id="${first.runId}"]`);
		await answer.locator('[data-part="text"]').filter({ hasText: timedOut }).waitFor({ timeout: UI_TIMEOUT_MS });
		await waitUntilReady(ui.tab, { timeout: UI_TIMEOUT_MS });
		const posts = chatPostsOf(ui.exchanges, session);
		assert.equal(posts.length, 2);
		assert.equal(posts[1].status, 200, "a late decision is not an error");
		assert.deepEqual(
			(await readToolParts(ui.tab)).map((t) => [t.state, t.approval, t.request]),
			[["output-denied", "denied", undefined]],
		);
		const shown = await readChat(ui.tab);
		assert.deepEqual(shown.errors, []);
		assert.deepEqual(shown.messages.map((m) => m.role), ["user", "assistant"]);
		assert.equal(existsSync(join(ui.gw.agent.cwd, `${text}.txt`)), false, "the timed-out command never ran");
		assert.deepEqual(ui.problems, []);
	});
});
