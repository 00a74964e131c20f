// Stand-in for the seed's missing "./vercel-ai-stream.js" (written for the bench, not pi's file).
// It reproduces what the seed sent on POST /sessions/:key/chat (SPEC section 6, "the seed sent…"):
//   agent_start (first only)       → {type:"start"}
//   turn_start / turn_end          → {type:"start-step"} / {type:"finish-step"}
//   text_start/_delta/_end (i)     → text-start / text-delta {delta} / text-end, id "text_<i>"
//                                    (the same ids again in every step: the seed's fault)
//   thinking_start/_delta/_end (i) → reasoning-start / reasoning-delta {delta} / reasoning-end, id "reasoning_<i>"
//   toolcall_start/_delta/_end     → tool-input-start {toolCallId, toolName} /
//                                    tool-input-delta {toolCallId, inputTextDelta} /
//                                    tool-input-available {toolCallId, toolName, input}
//   tool_execution_end             → tool-output-available {toolCallId, output}, failures too
//   finishVercelStream(r, reason)  → {type:"finish", finishReason} (the seed passes "error" on abort)
//   errorVercelStream(r, message)  → {type:"error", errorText}
// then "data: [DONE]\n\n" and the response ends. Each chunk is one "data: <json>\n\n" frame.

function writeChunk(response, chunk) {
	if (response.writableEnded) return;
	response.write(`data: ${typeof chunk === "string" ? chunk : JSON.stringify(chunk)}\n\n`);
}

/** The user's text: body.text, else body.prompt, else the last user message (v5 parts or v4 content). */
export function extractUserText(body) {
	if (typeof body.text === "string" && body.text.trim()) return body.text;
	if (typeof body.prompt === "string" && body.prompt.trim()) return body.prompt;
	if (Array.isArray(body.messages)) {
		for (let i = body.messages.length - 1; i >= 0; i--) {
			const msg = body.messages[i];
			if (!msg || msg.role !== "user") continue;
			if (Array.isArray(msg.parts)) {
				for (const part of msg.parts) {
					if (part?.type === "text" && typeof part.text === "string") return part.text;
				}
			}
			if (typeof msg.content === "string" && msg.content.trim()) return msg.content;
		}
	}
	return null;
}

/** An AgentSessionEvent listener writing UI-message-stream chunks to `response`. */
export function createVercelStreamListener(response) {
	let started = false;
	return (event) => {
		if (response.writableEnded) return;
		switch (event.type) {
			case "agent_start":
				if (!started) {
					started = true;
					writeChunk(response, { type: "start" });
				}
				return;
			case "turn_start":
				writeChunk(response, { type: "start-step" });
				return;
			case "turn_end":
				writeChunk(response, { type: "finish-step" });
				return;
			case "message_update": {
				const inner = event.assistantMessageEvent;
				const i = inner.contentIndex;
				switch (inner.type) {
					case "text_start":
						writeChunk(response, { type: "text-start", id: `text_${i}` });
						return;
					case "text_delta":
						writeChunk(response, { type: "text-delta", id: `text_${i}`, delta: inner.delta });
						return;
					case "text_end":
						writeChunk(response, { type: "text-end", id: `text_${i}` });
						return;
					case "thinking_start":
						writeChunk(response, { type: "reasoning-start", id: `reasoning_${i}` });
						return;
					case "thinking_delta":
						writeChunk(response, { type: "reasoning-delta", id: `reasoning_${i}`, delta: inner.delta });
						return;
					case "thinking_end":
						writeChunk(response, { type: "reasoning-end", id: `reasoning_${i}` });
						return;
					case "toolcall_start": {
						const call = inner.partial?.content?.[i];
						writeChunk(response, { type: "tool-input-start", toolCallId: call?.id, toolName: call?.name });
						return;
					}
					case "toolcall_delta": {
						const call = inner.partial?.content?.[i];
						writeChunk(response, { type: "tool-input-delta", toolCallId: call?.id, inputTextDelta: inner.delta });
						return;
					}
					case "toolcall_end":
						writeChunk(response, {
							type: "tool-input-available",
							toolCallId: inner.toolCall.id,
							toolName: inner.toolCall.name,
							input: inner.toolCall.arguments,
						});
						return;
				}
				return;
			}
			case "tool_execution_end":
				writeChunk(response, { type: "tool-output-available", toolCallId: event.toolCallId, output: event.result });
				return;
		}
	};
}

/** Write {type:"finish", finishReason} and [DONE], then end the response. */
export function finishVercelStream(response, finishReason = "stop") {
	if (response.writableEnded) return;
	writeChunk(response, { type: "finish", finishReason });
	writeChunk(response, "[DONE]");
	response.end();
}

/** Write {type:"error", errorText} and [DONE], then end the response. */
export function errorVercelStream(response, message) {
	if (response.writableEnded) return;
	writeChunk(response, { type: "error", errorText: message });
	writeChunk(response, "[DONE]");
	response.end();
}
