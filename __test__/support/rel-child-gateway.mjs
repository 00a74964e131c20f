// A gateway in its own process, so a test can watch that process's memory from outside.
//
// Config comes as JSON in the env var REL_CONFIG. Sessions are structural doubles; a message
// `/big N SIZE [PACE_MS]` makes the session emit N text_delta events of SIZE characters each (the
// same string every time, so the JS side allocates almost nothing), one every PACE_MS (default:
// one per setImmediate), then end
// with the short text "done" (the final message stays small whatever N and SIZE are). Any
// other text is answered at once with "echo:<text>".
//
// Prints "PORT <n>" when listening; stops cleanly on SIGTERM or when stdin closes.

import { GatewayRuntime } from "../../index.js";

function bigSession(key) {
	const listeners = new Set();
	const emit = (e) => {
		for (const l of [...listeners]) l(e);
	};
	const session = {
		sessionId: `child-${key}`,
		messages: [],
		subscribe(l) {
			listeners.add(l);
			return () => listeners.delete(l);
		},
		async prompt(text) {
			const user = { role: "user", content: [{ type: "text", text }] };
			emit({ type: "agent_start" });
			emit({ type: "turn_start" });
			session.messages.push(user);
			emit({ type: "message_end", message: user });
			const m = /^\/big (\d+) (\d+)(?: (\d+))?$/.exec(text);
			const final = { role: "assistant", content: [{ type: "text", text: m ? "done" : `echo:${text}` }], stopReason: "stop" };
			emit({ type: "message_start", message: final });
			if (m) {
				const delta = "x".repeat(Number(m[2]));
				for (let i = 0; i < Number(m[1]); i++) {
					emit({
						type: "message_update",
						assistantMessageEvent: { type: "text_delta", contentIndex: 0, delta },
						message: final,
					});
					const pace = Number(m[3] ?? 0);
					await new Promise((r) => (pace > 0 ? setTimeout(r, pace) : setImmediate(r)));
				}
			}
			session.messages.push(final);
			emit({ type: "message_end", message: final });
			emit({ type: "turn_end", message: final, toolResults: [] });
			emit({ type: "agent_end", messages: [user, final] });
		},
		async abort() {},
		dispose() {},
	};
	return session;
}

const config = JSON.parse(process.env.REL_CONFIG ?? "{}");
const rt = new GatewayRuntime({
	config,
	primarySessionKey: "main",
	primarySession: bigSession("main"),
	createSession: async (key) => bigSession(key),
	log: () => {},
});
await rt.start();
process.stdout.write(`PORT ${rt.getAddress().port}\n`);

let stopping = false;
const stop = async () => {
	if (stopping) return;
	stopping = true;
	await rt.stop();
	process.exit(0);
};
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
