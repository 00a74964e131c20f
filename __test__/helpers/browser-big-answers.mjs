// A pi-gateway (in this process) in front of real pi AgentSessions whose faux model answers every
// message with one long text, streamed in big chunks: a few turns make a conversation of
// megabytes, which is what the long-history browser test needs. (lib/faux-agent.js's `/long`
// streams 4-character chunks, which would take a browser minutes to render at this size.)

import { registerFauxProvider, fauxAssistantMessage } from "@mariozechner/pi-ai";
import { GatewayRuntime } from "../../index.js";
import { createFauxPiAgent, FAUX_MODEL_ID, FAUX_PROVIDER } from "../../lib/faux-agent.js";

/** The last user message's text in a model context. */
function lastUserText(context) {
	const user = (context.messages ?? []).findLast((m) => m.role === "user");
	if (!user) return "";
	return typeof user.content === "string" ? user.content : user.content.map((c) => c.text ?? "").join("");
}

/**
 * The answer to `question`: a head naming the question, `size` characters of filler, and a tail
 * naming it again, so a test can check both ends arrived. Deterministic.
 * @param {string} question
 * @param {number} size
 */
export function bigAnswer(question, size) {
	const unit = "lorem ipsum dolor sit amet ";
	const filler = unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
	return `Answer to ${question}: ${filler}[end of the answer to ${question}]`;
}

/**
 * @param {{ answerChars: number, chunkChars?: number, config?: object }} options
 *   `answerChars`: filler size of every answer; `chunkChars`: size of each streamed text chunk
 *   (a multiple of 4; default 64 KiB); `config` is merged over a minimal GatewayConfig.
 */
export async function startBigAnswerGateway({ answerChars, chunkChars = 65_536, config = {} }) {
	const agent = await createFauxPiAgent();
	const tokens = Math.max(1, Math.floor(chunkChars / 4));
	const registration = registerFauxProvider({
		provider: FAUX_PROVIDER,
		models: [{ id: FAUX_MODEL_ID, name: "Faux big answers", reasoning: false }],
		tokenSize: { min: tokens, max: tokens },
	});
	const factory = (context) => {
		if (registration.getPendingResponseCount() < 16) registration.appendResponses(new Array(64).fill(factory));
		return fauxAssistantMessage(bigAnswer(lastUserText(context), answerChars));
	};
	registration.setResponses(new Array(64).fill(factory));
	const bigModel = registration.getModel();

	/** @type {Map<string, import("@mariozechner/pi-coding-agent").AgentSession>} */
	const sessions = new Map([["main", agent.primarySession]]);
	let runtime;
	try {
		runtime = new GatewayRuntime({
			config: {
				bind: "127.0.0.1",
				port: 0,
				session: { idleMinutes: 10, maxQueuePerSession: 16 },
				webhook: { enabled: false, basePath: "/webhook" },
				...config,
			},
			primarySessionKey: "main",
			primarySession: agent.primarySession,
			createSession: async (key) => {
				const session = await agent.createSession(key);
				const streamFn = session.agent.streamFn;
				session.agent.streamFn = (_model, context, streamOptions) => streamFn(bigModel, context, streamOptions);
				sessions.set(key, session);
				return session;
			},
			log: () => {},
		});
		await runtime.start();
	} catch (error) {
		await agent.close();
		registration.unregister();
		throw error;
	}
	const port = runtime.getAddress().port;
	let closed = false;
	return {
		runtime,
		port,
		base: `http://127.0.0.1:${port}`,
		sessions,
		async close() {
			if (closed) return;
			closed = true;
			try {
				await runtime.stop();
			} finally {
				await agent.close();
				registration.unregister();
			}
		},
	};
}
