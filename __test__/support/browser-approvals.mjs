// Shared by the browser test of the chat example's tool approvals (approvals-browser): reading the
// tool parts the page shows (with their approval controls and decisions), and the chat requests
// the page sent. (Opening the page, the gateway and chromium: browser-chat-ui.mjs.)

/**
 * Every tool part of the page's assistant messages, in order: `messageId`, `toolName`, `state`
 * (the AI SDK part state), `approval` (the page's "requested" / "approved" / "denied", or ""),
 * `input`, `output`, `error`, `decision` (the decision line's text), and, while the call waits
 * for a decision, `request`: `{ approvalId, tool, command, approveEnabled, denyEnabled }`.
 * @param {import("playwright-core").Page} tab
 */
export function readToolParts(tab) {
	return tab.evaluate(() =>
		[...document.querySelectorAll('article[data-role="assistant"] [data-part="tool"]')].map((node) => {
			const field = (name) => node.querySelector(`[data-field="${name}"]`)?.textContent ?? undefined;
			const request = node.querySelector('[data-testid="approval"]');
			return {
				messageId: node.closest("article")?.getAttribute("data-id"),
				toolName: node.getAttribute("data-tool-name"),
				state: node.getAttribute("data-state"),
				approval: node.getAttribute("data-approval"),
				input: field("tool-input"),
				output: field("tool-output"),
				error: field("tool-error"),
				decision: field("approval-decision"),
				request: request
					? {
							approvalId: request.getAttribute("data-approval-id"),
							tool: request.querySelector('[data-field="approval-tool"]')?.textContent,
							command: request.querySelector('[data-field="approval-input"]')?.textContent,
							approveEnabled: !request.querySelector('[data-testid="approve"]')?.disabled,
							denyEnabled: !request.querySelector('[data-testid="deny"]')?.disabled,
						}
					: undefined,
			};
		}),
	);
}

/**
 * The bodies of the chat POSTs of `session` among `exchanges` (browser-chat-ui.mjs's
 * recordExchanges), parsed, each with its `status` and `runId` (`x-run-id`).
 * @param {ReturnType<typeof import("./browser-chat-ui.mjs").recordExchanges>} exchanges
 * @param {string} session
 */
export function chatPostsOf(exchanges, session) {
	return exchanges
		.filter((e) => e.method === "POST" && e.path === `/sessions/${session}/chat`)
		.map((e) => ({ status: e.status, runId: e.runId, body: JSON.parse(e.body ?? "null") }));
}

/**
 * The approval decisions a chat request body carries: for each tool part of its last message in
 * state `approval-responded`, `[toolCallId, approval.id, approved, reason]`.
 * @param {any} body
 */
export function decisionsIn(body) {
	const last = body?.messages?.at(-1);
	return (last?.parts ?? [])
		.filter((p) => p.state === "approval-responded")
		.map((p) => [p.toolCallId, p.approval?.id, p.approval?.approved, p.approval?.reason]);
}
