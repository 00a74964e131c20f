// A pi-gateway (in this process) in front of real pi AgentSessions whose faux model answers every
// message with one long text, streamed in big chunks: a few turns make a conversation of
// megabytes, which is what the long-history browser test needs. (lib/faux-agent.js's `/long`
// streams 4-character chunks, which would take a browser minutes to render at this size.)

import { fauxAssistantMessage } from "@mariozechner/pi-ai";
import { lastUserText, registerFauxScript } from "./chat-fixture.mjs";
import { startChatGateway } from "./gateway.mjs";

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
	const tokens = Math.max(1, Math.floor(chunkChars / 4));
	return startChatGateway({
		config,
		script: () => ({
			registration: registerFauxScript({
				name: "Faux big answers",
				tokens,
				answer: (context) => fauxAssistantMessage(bigAnswer(lastUserText(context), answerChars)),
			}),
		}),
	});
}
