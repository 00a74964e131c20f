// Shared by the browser test of the chat example's queue modes (chat-queue-browser): reading the
// queue panel the page shows, and which of the page's problems are not its own streams cut short.
// (Opening the page, sending, reading the conversation with its steering markers, and recording
// what the browser asked the gateway: browser-chat-ui.mjs.)

/**
 * The queue panel: null while the page does not show it, else its items (`kind`: queued,
 * steering or followUp; `runId` for queued runs; `text`) and whether Clear is enabled.
 * @param {import("playwright-core").Page} tab
 */
export function readQueuePanel(tab) {
	return tab.evaluate(() => {
		const panel = document.querySelector('[data-testid="queue"]');
		if (!panel) return null;
		return {
			items: [...panel.querySelectorAll('[data-testid="queue-item"]')].map((item) => ({
				kind: item.getAttribute("data-kind"),
				runId: item.getAttribute("data-run-id") ?? undefined,
				text: item.querySelector('[data-field="queue-text"]')?.textContent,
			})),
			clearEnabled: !panel.querySelector('[data-testid="queue-clear"]')?.disabled,
		};
	});
}

/**
 * The recorded problems that are not the page's own streams cut short on purpose: the page reads
 * only the headers of a message it sends while an answer streams (it cancels the body, so the
 * browser reports the chat POST as aborted), and a reload (`reloaded`) cuts the chat POST, the
 * resume stream and a queue poll in flight.
 * @param {string[]} problems
 * @param {{ reloaded?: boolean }} [options]
 */
export function unexpectedProblems(problems, { reloaded = false } = {}) {
	const cutShort = (p) =>
		p.startsWith("requestfailed:") &&
		p.endsWith(" net::ERR_ABORTED") &&
		(p.includes("/chat ") || (reloaded && (p.includes("/stream ") || p.includes("/queue "))));
	return problems.filter((p) => !cutShort(p));
}
