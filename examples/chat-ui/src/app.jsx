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
// A reload does not lose the answer being streamed: the chat has a stable id (kept in
// localStorage), the messages are kept in sessionStorage, and `useChat({ id, resume: true })`
// reconnects on mount through `GET /sessions/:key/chat/:chatId/stream`, which replays the running
// answer from its start. Stop aborts the run itself (`POST /sessions/:key/chat/:chatId/stop`).
//
// Configuration comes from the query string, so one build works against any gateway:
//   ?gateway=http://127.0.0.1:3000   where the gateway listens (default shown)
//   &session=web                     the session key (default "web")
//   &token=SECRET                    the gateway's bearerToken, if it has one (dev only: a
//                                    token in a URL ends up in history; see README.md)

import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport, generateId } from "ai";
import { StrictMode, useEffect, useMemo, useRef, useState } from "react";
import { createRoot } from "react-dom/client";
import {
	completeFromRun,
	describeChatError,
	gatewayRoutes,
	lastAssistantRunId,
	lastUserMessageOnly,
	loadConversation,
	saveConversation,
	stableChatId,
} from "./gateway.js";
import "./app.css";

const DEFAULT_GATEWAY = "http://127.0.0.1:3000";

function readConfig() {
	const params = new URLSearchParams(window.location.search);
	const gateway = (params.get("gateway") || DEFAULT_GATEWAY).replace(/\/+$/, "");
	const session = params.get("session") || "web";
	const token = params.get("token") || "";
	return { gateway, session, token };
}

/** `window[name]`, or null where storage is disabled (reading it can throw). */
function webStorage(name) {
	try {
		return window[name] ?? null;
	} catch {
		return null;
	}
}

/** How often, at most, the conversation is stored while an answer streams in (and on pagehide). */
const SAVE_EVERY_MS = 1000;

/**
 * `DefaultChatTransport` that reports each reconnect (`onReconnect({ state: "start" })`, then
 * `{ state: "end", resumed }`), and treats a reconnect that fails as "nothing to resume": a gateway
 * without the resume route, a refused origin or a wrong token then shows its error when a message
 * is sent, not on page load.
 */
class GatewayChatTransport extends DefaultChatTransport {
	constructor({ onReconnect, ...options }) {
		super(options);
		this.onReconnect = onReconnect;
	}

	async reconnectToStream(options) {
		this.onReconnect?.({ state: "start" });
		let stream = null;
		try {
			stream = await super.reconnectToStream(options);
		} catch (error) {
			if (error?.name !== "AbortError") console.warn("pi-gateway chat: could not resume the answer:", error);
		} finally {
			this.onReconnect?.({ state: "end", resumed: stream != null });
		}
		return stream;
	}
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
	const routes = useMemo(() => gatewayRoutes(config.gateway, config.session), [config]);
	const auth = useMemo(() => (config.token ? { Authorization: `Bearer ${config.token}` } : undefined), [config]);
	// One chat id per gateway and session key (localStorage), and this tab's conversation
	// (sessionStorage), as the page left it before a reload.
	const chatId = useMemo(
		() => stableChatId({ storage: webStorage("localStorage"), gateway: config.gateway, session: config.session, generateId }),
		[config],
	);
	const restored = useMemo(
		() => loadConversation({ storage: webStorage("sessionStorage"), gateway: config.gateway, session: config.session, chatId }),
		[config, chatId],
	);
	// The run whose answer was streaming when the page went away: if it cannot be resumed (it
	// ended meanwhile), its record completes the stored part of the answer.
	const unfinishedRun = useRef(restored.openRunId);
	// useChat reconnects on mount; until it knows whether there is an answer to resume, the page
	// says "resuming" and does not send (a send would race the resumed answer).
	const [reconnect, setReconnect] = useState({ state: "start", resumed: false });
	const resuming = reconnect.state === "start";
	const transport = useMemo(
		() =>
			new GatewayChatTransport({
				api: routes.chat,
				headers: auth,
				prepareSendMessagesRequest: lastUserMessageOnly,
				// Same headers (the bearer token) as a send; the route is the gateway's, not the SDK's default.
				prepareReconnectToStreamRequest: ({ id }) => ({ api: routes.stream(id) }),
				onReconnect: setReconnect,
			}),
		[routes, auth],
	);
	const { messages, setMessages, sendMessage, status, error, stop } = useChat({
		id: chatId,
		messages: restored.messages,
		resume: true,
		transport,
	});
	const [input, setInput] = useState("");
	const streaming = status === "submitted" || status === "streaming";
	const busy = streaming || resuming;

	// Nothing to resume, but the stored answer was unfinished: it ended while the page reloaded.
	// Complete it from the run's record (best effort; the gateway keeps ended runs for an hour).
	useEffect(() => {
		if (reconnect.state !== "end") return;
		const runId = unfinishedRun.current;
		if (!runId || reconnect.resumed) {
			unfinishedRun.current = undefined;
			return;
		}
		let cancelled = false;
		fetch(routes.run(runId), { headers: auth })
			.then((response) => (response.ok ? response.json() : undefined))
			.then((body) => {
				if (cancelled || !body?.run) return;
				if (body.run.status === "queued" || body.run.status === "running") return;
				unfinishedRun.current = undefined;
				setMessages((current) => completeFromRun(current, body.run));
			})
			.catch(() => {});
		return () => {
			cancelled = true;
		};
	}, [reconnect, routes, auth, setMessages]);

	// Store the conversation: at once when a message comes or goes or the status changes, at most
	// every SAVE_EVERY_MS while an answer streams in, and when the page goes away.
	const latest = useRef({ messages, openRunId: undefined });
	latest.current = { messages, openRunId: streaming ? lastAssistantRunId(messages) : unfinishedRun.current };
	const save = useRef(() => {});
	save.current = () =>
		saveConversation({
			storage: webStorage("sessionStorage"),
			gateway: config.gateway,
			session: config.session,
			chatId,
			...latest.current,
		});
	const saved = useRef({ shape: "", timer: undefined });
	useEffect(() => {
		const shape = `${status} ${messages.map((message) => message.id).join(" ")}`;
		if (shape !== saved.current.shape) {
			saved.current.shape = shape;
			clearTimeout(saved.current.timer);
			saved.current.timer = undefined;
			save.current();
		} else if (saved.current.timer === undefined) {
			saved.current.timer = setTimeout(() => {
				saved.current.timer = undefined;
				save.current();
			}, SAVE_EVERY_MS);
		}
	}, [messages, status]);
	useEffect(() => {
		const onPageHide = () => save.current();
		window.addEventListener("pagehide", onPageHide);
		return () => {
			window.removeEventListener("pagehide", onPageHide);
			clearTimeout(saved.current.timer);
		};
	}, []);

	// useChat's stop() only closes this page's stream; the gateway keeps the agent running (a
	// client that goes away must not stop it, or a reload would). To stop the agent itself, also
	// ask the gateway to stop this chat's run — the one whose answer is streaming (its message id
	// is the run id), so a Stop that comes late cannot stop the next message's run.
	function onStop() {
		const runId = streaming ? lastAssistantRunId(messages) : undefined;
		stop();
		fetch(routes.stop(chatId), {
			method: "POST",
			headers: { ...auth, "content-type": "application/json" },
			body: JSON.stringify(runId ? { runId } : {}),
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
					{config.gateway} · session <b>{config.session}</b> · <span data-testid="status">{resuming ? "resuming" : status}</span>
				</span>
			</header>
			<section className="messages" data-testid="messages">
				{messages.map((message) => (
					<article className="message" key={message.id} data-role={message.role} data-id={message.id}>
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
