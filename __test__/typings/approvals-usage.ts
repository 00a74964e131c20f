// Issue 15 (approvals): the config, the JS API, the events and the error class, used the way the
// README shows them. If this compiles against index.d.ts, the README's examples and the types agree.
import { createFauxPiAgent } from "../../lib/faux-agent.js";
import {
	type GatewayApproval,
	type GatewayApprovalDecidedBy,
	GatewayApprovalError,
	type GatewayApprovalResolved,
	type GatewayConfig,
	type GatewayEvent,
	GatewayRuntime,
} from "../../index.js";

export async function approvals(): Promise<void> {
	const agent = await createFauxPiAgent({ ephemeral: true });
	const config: GatewayConfig = {
		bind: "127.0.0.1",
		port: 0,
		session: { idleMinutes: 30, maxQueuePerSession: 16 },
		webhook: { enabled: false, basePath: "/webhook" },
		approval: { policy: { bash: "ask", write: "ask", edit: "ask", rm: "deny", "*": "allow" }, timeoutMs: 120_000 },
		chat: { protocol: 6 },
	};
	const gateway = new GatewayRuntime({
		config,
		primarySessionKey: "main",
		primarySession: agent.primarySession,
		createSession: agent.createSession,
	});
	await gateway.start();
	await gateway.addSubscriber("demo", (event: GatewayEvent) => {
		if (event.type === "approval_request") {
			const command: unknown = event.args;
			const expires: number = event.expiresAt;
			void [command, expires, event.approvalId, event.toolCallId, event.toolName];
		} else if (event.type === "approval_resolved") {
			const by: GatewayApprovalDecidedBy = event.by;
			const why: string | undefined = event.reason;
			void [by, why, event.approved];
		}
	});
	const pending: GatewayApproval[] = gateway.listApprovals("demo");
	for (const approval of pending) {
		try {
			const done: GatewayApprovalResolved = gateway.resolveApproval("demo", approval.approvalId, {
				approved: approval.toolName !== "bash",
				reason: "not today",
			});
			void done.by;
		} catch (error) {
			if (error instanceof GatewayApprovalError && error.status === 409) void error.decided?.approved;
		}
	}
	await gateway.stop();
	await agent.close();
}
