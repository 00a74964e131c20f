// pi-gateway chat example: a minimal React page on the Vercel AI SDK's `useChat`.
//
// The page talks to `POST /sessions/:key/chat` of a pi-gateway on another origin through the
// SDK's own `DefaultChatTransport`; the gateway answers with a UI message stream, which
// `useChat` turns into `messages[].parts`. Every part the gateway sends is rendered:
// text, reasoning, and tool calls (name, input, output or error).
//
// Each request carries only the new user message (and the chat id): the pi session keeps the
// conversation on the gateway's side, and the gateway runs the last user message's text, so
// sending the whole history again would only make every request bigger (past the gateway's
// body limit, a long conversation could no longer send anything). See `lastUserMessageOnly`.
//
// Configuration comes from the query string, so one build works against any gateway:
//   ?gateway=http://127.0.0.1:3000   where the gateway listens (default shown)
//   &session=web                     the session key (default "web")
//   &token=SECRET                    the gateway's bearerToken, if it has one (dev only: a
//                                    token in a URL ends up in history; see README.md)

import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport } from "ai";
import { StrictMode, useMemo, useState } from "react";
import { createRoot } from "react-dom/client";
import { describeChatError, lastUserMessageOnly } from "./gateway.js";
import "./app.css";

const DEFAULT_GATEWAY = "http://127.0.0.1:3000";

function readConfig() {
	const params = new URLSearchParams(window.location.search);
	const gateway = (params.get("gateway") || DEFAULT_GATEWAY).replace(/\/+$/, "");
	const session = params.get("session") || "web";
	const token = params.get("token") || "";
	return { gateway, session, token };
}

function ErrorNotice({ error, gateway }) {
	const { title, detail, status } = describeChatError(error, { gateway, origin: window.location.origin });
	return (
		<div className="error" data-testid="error" data-status={status ?? ""} role="alert">
			<div className="error-title" data-field="error-title">
				{title}
			</div>
			{detail && (
				<div className="error-detail" data-field="error-detail">
					{detail}
				</div>
			)}
		</div>
	);
}

/** The text of a pi tool result (`{content:[{type:"text",text}], details}`), else its JSON. */
function toolResultText(output) {
	if (output && typeof output === "object" && Array.isArray(output.content)) {
		const text = output.content
			.filter((part) => part && part.type === "text" && typeof part.text === "string")
			.map((part) => part.text)
			.join("\n");
		if (text) return text;
	}
	return typeof output === "string" ? output : JSON.stringify(output, null, 2);
}

function ToolPart({ part }) {
	// Static tools arrive as `tool-<name>` parts, dynamic ones as `dynamic-tool` with `toolName`.
	const toolName = part.type === "dynamic-tool" ? part.toolName : part.type.slice("tool-".length);
	return (
		<div className="part-tool" data-part="tool" data-tool-name={toolName} data-state={part.state}>
			<div className="tool-head">
				tool <span data-field="tool-name">{toolName}</span> <small>({part.state})</small>
			</div>
			{part.input !== undefined && <pre data-field="tool-input">{JSON.stringify(part.input)}</pre>}
			{part.state === "output-available" && <pre data-field="tool-output">{toolResultText(part.output)}</pre>}
			{part.state === "output-error" && <pre data-field="tool-error">{part.errorText}</pre>}
		</div>
	);
}

function Part({ part, index }) {
	if (part.type === "text") {
		return (
			<p className="part-text" data-part="text">
				{part.text}
			</p>
		);
	}
	if (part.type === "reasoning") {
		return (
			<details className="part-reasoning" data-part="reasoning" open>
				<summary>reasoning</summary>
				{part.text}
			</details>
		);
	}
	// A new agent turn (after a tool call): a thin divider, except before the first one.
	if (part.type === "step-start") return index > 0 ? <hr className="step-divider" /> : null;
	if (part.type === "dynamic-tool" || part.type.startsWith("tool-")) return <ToolPart part={part} />;
	return null;
}

function App() {
	const config = useMemo(readConfig, []);
	const transport = useMemo(
		() =>
			new DefaultChatTransport({
				api: `${config.gateway}/sessions/${encodeURIComponent(config.session)}/chat`,
				headers: config.token ? { Authorization: `Bearer ${config.token}` } : undefined,
				prepareSendMessagesRequest: lastUserMessageOnly,
			}),
		[config],
	);
	const { messages, sendMessage, status, error, stop } = useChat({ transport });
	const [input, setInput] = useState("");
	const busy = status === "submitted" || status === "streaming";

	// useChat's stop() only closes this page's stream; the gateway keeps the agent running (other
	// clients may be watching). To stop the agent itself, also ask the gateway to abort the run.
	function onStop() {
		stop();
		fetch(`${config.gateway}/sessions/${encodeURIComponent(config.session)}/abort`, {
			method: "POST",
			headers: config.token ? { Authorization: `Bearer ${config.token}` } : undefined,
		}).catch(() => {});
	}

	function onSubmit(event) {
		event.preventDefault();
		const text = input.trim();
		if (!text || busy) return;
		sendMessage({ text });
		setInput("");
	}

	return (
		<main>
			<header>
				<h1>pi-gateway chat</h1>
				<span className="meta">
					{config.gateway} · session <b>{config.session}</b> · <span data-testid="status">{status}</span>
				</span>
			</header>
			<section className="messages" data-testid="messages">
				{messages.map((message) => (
					<article className="message" key={message.id} data-role={message.role}>
						<div className="role">{message.role}</div>
						{message.parts.map((part, index) => (
							<Part key={index} part={part} index={index} />
						))}
					</article>
				))}
				{error && <ErrorNotice error={error} gateway={config.gateway} />}
			</section>
			<form onSubmit={onSubmit}>
				<input
					data-testid="input"
					value={input}
					onChange={(event) => setInput(event.target.value)}
					placeholder="Ask the agent… (try: What is in hello.txt?)"
					autoFocus
				/>
				{busy ? (
					<button type="button" data-testid="stop" onClick={onStop}>
						Stop
					</button>
				) : (
					<button type="submit" data-testid="send" disabled={!input.trim()}>
						Send
					</button>
				)}
			</form>
		</main>
	);
}

createRoot(document.getElementById("root")).render(
	<StrictMode>
		<App />
	</StrictMode>,
);
