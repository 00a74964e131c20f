// Issue 13 (queue modes): the new API, used the way the README shows it. If this compiles
// against index.d.ts, the README's queue-mode examples and the new types agree.
import type { AgentSession } from "@mariozechner/pi-coding-agent";
import {
	type GatewayAgentSession,
	type GatewayConfig,
	type GatewayEvent,
	type GatewayMessageMode,
	type GatewayMessageResult,
	type GatewayQueue,
	GatewayRuntime,
	type GatewaySubmittedRun,
} from "../../index.js";

export const modesConfig: GatewayConfig = {
	bind: "127.0.0.1",
	port: 0,
	session: { idleMinutes: 30, maxQueuePerSession: 8, defaultMode: "followUp" },
	webhook: { enabled: false, basePath: "/webhook" },
};

/** pi's AgentSession still fits the session shape, steer() and followUp() included. */
export function fits(session: AgentSession): GatewayAgentSession {
	return session;
}

export async function doubleText(gateway: GatewayRuntime): Promise<GatewayMessageResult[]> {
	const first = gateway.enqueueMessage({ sessionKey: "demo", text: "Refactor utils.ts" });
	// While it runs: correct it, add a task for afterwards, or refuse to wait.
	const steered = await gateway.submitMessage({ sessionKey: "demo", text: "Use the other file", mode: "steer" });
	const how: "steer" | "followUp" | undefined = steered.delivered;
	const later = gateway.enqueueMessage({ sessionKey: "demo", text: "Then run the tests", mode: "followUp" });
	const busy = await gateway.enqueueMessage({ sessionKey: "demo", text: "Now?", mode: "reject" });
	if (!busy.ok && busy.error === "Session busy") console.log("busy with run", busy.runId, how);
	const queue: GatewayQueue | undefined = gateway.getQueue("demo");
	const pending: string[] = queue ? [...queue.steering, ...queue.followUp] : [];
	console.log(queue?.running?.runId, queue?.queued.length, pending);
	const modes: GatewayMessageMode[] = ["queue", "steer", "followUp", "interrupt", "reject"];
	await gateway.addSubscriber("demo", (event: GatewayEvent) => {
		if (event.type === "queue_update") console.log(event.steering, event.followUp, modes);
	});
	gateway.clearQueue("demo");
	return Promise.all([first, later]);
}
