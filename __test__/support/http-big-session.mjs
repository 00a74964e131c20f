// A minimal structural AgentSession whose prompt streams `count` text_delta events of `size`
// bytes each, one every `intervalMs`: enough data to fill every socket buffer between the
// gateway and a client that stops reading. The final message's text is short ("done"), so
// only the token frames are large.

import { randomUUID } from "node:crypto";

export class BigStreamSession {
	constructor({ count = 256, size = 64 * 1024, intervalMs = 4 } = {}) {
		this.sessionId = randomUUID();
		this.messages = [];
		this.count = count;
		this.size = size;
		this.intervalMs = intervalMs;
		this.stats = { prompts: 0, aborts: 0, disposes: 0 };
		this._listeners = new Set();
		this._aborted = false;
	}

	subscribe(listener) {
		this._listeners.add(listener);
		return () => this._listeners.delete(listener);
	}

	_emit(event) {
		for (const l of [...this._listeners]) l(event);
	}

	/** The delta of token `i`: its index, then filler up to `size` bytes. */
	static delta(i, size) {
		const head = `b${i};`;
		return head + "x".repeat(Math.max(0, size - head.length));
	}

	async prompt(text) {
		this.stats.prompts++;
		this._aborted = false;
		const user = { role: "user", content: [{ type: "text", text }], timestamp: Date.now() };
		this._emit({ type: "agent_start" });
		this._emit({ type: "turn_start" });
		this._emit({ type: "message_start", message: user });
		this.messages.push(user);
		this._emit({ type: "message_end", message: user });
		const partial = { role: "assistant", content: [], stopReason: "stop", timestamp: Date.now() };
		this._emit({ type: "message_start", message: partial });
		for (let i = 0; i < this.count && !this._aborted; i++) {
			this._emit({
				type: "message_update",
				message: partial,
				assistantMessageEvent: { type: "text_delta", contentIndex: 0, delta: BigStreamSession.delta(i, this.size), partial },
			});
			await new Promise((r) => setTimeout(r, this.intervalMs));
		}
		const final = { ...partial, content: [{ type: "text", text: "done" }], stopReason: this._aborted ? "aborted" : "stop" };
		this.messages.push(final);
		this._emit({ type: "message_end", message: final });
		this._emit({ type: "turn_end", message: final, toolResults: [] });
		this._emit({ type: "agent_end", messages: [user, final] });
	}

	async abort() {
		this.stats.aborts++;
		this._aborted = true;
	}

	dispose() {
		this.stats.disposes++;
		this._aborted = true;
		this._listeners.clear();
	}
}
