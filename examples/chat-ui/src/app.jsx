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
// The conversation comes from the gateway: on mount (and so after a reload) the page loads the
// session's history (`GET /sessions/:key/messages?format=ui`, "Load older" pages further back) and
// hands it to `useChat({ messages })`. A reload does not lose the answer being streamed either: the
// chat has a stable id (kept in localStorage), the history ends at the running run's question, and
// `useChat({ id, resume: true })` reconnects on mount through `GET /sessions/:key/chat/:chatId/stream`,
// which replays the running answer from its start. Stop aborts the run itself
// (`POST /sessions/:key/chat/:chatId/stop`).
//
// Every part is rendered: text, reasoning, tool calls (`dynamic-tool`: name, input, output or
// error) and the user's images (`file` parts). An image is attached with the file input and sent
// as a `file` part (`sendMessage({ text, files })`). Under each answer: its tokens and cost
// (`message.metadata.usage`, from the gateway's `finish` chunk or the history) and its model. A
// model picker (`GET /models`, `PUT /sessions/:key/model`) and a thinking picker
// (`PUT /sessions/:key/thinking`) show and change the session's model and thinking level.
//
// While an answer streams, the input stays usable: a small Steer / Queue control beside it says
// what a message sent now does (the gateway's queue modes). "Steer" hands it to the running
// answer (`mode: "steer"`: the stream gets a `data-steering` part, shown as "↪ steered: …", and
// the answer goes on with it); "Queue" gives it its own run after the current one (`mode:
// "queue"`), shown in the queue panel until the current answer ends, then as its own question and
// answer (useChat's `resumeStream()` reads the chat's next run). The queue panel lists the
// gateway's queued runs and pi's pending steering / follow-up texts (`GET /sessions/:key/queue`),
// with a Clear button (`DELETE /sessions/:key/queue`). See README.md, "Sending while it answers".
//
// Tool approvals (a gateway with `approval.policy`, e.g. `pi-gateway --approve bash`): a tool call
// the gateway holds arrives as a tool part in state `approval-requested`; the page shows what it
// would run with Approve and Deny (and an optional reason), answers with useChat's
// `addToolApprovalResponse`, and `sendAutomaticallyWhen: decisionsComplete` (src/gateway.js) sends
// the decisions once every held call of the answer has one — also when the answer mixes a held call
// with one that runs without asking, which the AI SDK's own
// `lastAssistantMessageIsCompleteWithApprovalResponses` would wait for forever. The same answer
// then goes on: the tools' output, or the call shown as denied. See README.md, "Tool approvals".
//
// Configuration comes from the query string, so one build works against any gateway:
//   ?gateway=http://127.0.0.1:3000   where the gateway listens (default shown)
//   &session=web                     the session key (default "web")
//   &token=SECRET                    the gateway's bearerToken, if it has one (dev only: a
//                                    token in a URL ends up in history; see README.md)
//   &limit=50                        how many messages of history to load at once (1..1000)

import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport, generateId } from "ai";
import { StrictMode, useCallback, useEffect, useMemo, useRef, useState } from "react";
import { createRoot } from "react-dom/client";
import {
	approvalLabel,
	awaitedApprovals,
	clearQueue,
	completeFromRun,
	createSessionOnGateway,
	decisionsComplete,
	describeChatError,
	gatewayRoutes,
	HISTORY_PAGE,
	historyIsCut,
	IMAGE_TYPES,
	imageFilePart,
	isToolPart,
	lastAssistantRunId,
	lastUserMessageOnly,
	loadConversation,
	loadHistory,
	loadStartingConversation,
	messageIdsKey,
	modelKey,
	parseModelKey,
	prependOlder,
	queueHasWaiting,
	readModels,
	readQueue,
	readSessionSettings,
	rememberSession,
	saveConversation,
	sendDuringAnswer,
	sessionRemembered,
	setSessionModel,
	setSessionThinking,
	settingsOf,
	settlePending,
	showEndedRun,
	stableChatId,
	steeringLabel,
	THINKING_LEVELS,
	toolNameOf,
	usageSummary,
	withQueuedUserMessage,
} from "./gateway.js";
import "./app.css";

const DEFAULT_GATEWAY = "http://127.0.0.1:3000";

function readConfig() {
	const params = new URLSearchParams(window.location.search);
	const gateway = (params.get("gateway") || DEFAULT_GATEWAY).replace(/\/+$/, "");
	const session = params.get("session") || "web";
	const token = params.get("token") || "";
	const asked = Number(params.get("limit"));
	const limit = Number.isInteger(asked) && asked >= 1 && asked <= 1000 ? asked : HISTORY_PAGE;
	return { gateway, session, token, limit };
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
/** How often the queue panel asks the gateway while something streams or waits. */
const QUEUE_POLL_MS = 1000;
/** How long to wait before asking again about a queued run that has neither streamed nor ended. */
const PENDING_RETRY_MS = 500;
/**
 * A history cut at a run this page cannot resume (one another client started): how often it is
 * asked for again until the answer is in it, and for how long at most.
 */
const CUT_POLL_MS = 1500;
const CUT_POLL_FOR_MS = 10 * 60 * 1000;

/**
 * `DefaultChatTransport` that reports each reconnect (`onReconnect({ state: "start" })`, then
 * `{ state: "end", resumed }`), and treats a reconnect that fails as "nothing to resume": a gateway
 * without the resume route, a refused origin or a wrong token then shows its error when a message
 * is sent, not on page load. `onRun({ kind, runId })` learns which run answers each of its
 * requests (`x-run-id`; `kind` is "send" or "resume"; `runId` is null for a `204`), before
 * useChat reads the stream.
 */
class GatewayChatTransport extends DefaultChatTransport {
	constructor({ onReconnect, onRun, ...options }) {
		super({
			...options,
			fetch: async (url, init) => {
				const response = await globalThis.fetch(url, init);
				const kind = (init?.method ?? "GET").toUpperCase() === "POST" ? "send" : "resume";
				if (response.ok) onRun?.({ kind, runId: response.status === 204 ? null : response.headers.get("x-run-id") });
				return response;
			},
		});
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

/** What the agent wants to run, for a person deciding on it: a bash command as is, else the input's JSON. */
function toolInputText(input) {
	if (input && typeof input === "object" && typeof input.command === "string" && Object.keys(input).length <= 2) return input.command;
	return JSON.stringify(input, null, 2);
}

/**
 * A tool call the gateway holds for a decision (`approval-requested`): what it would run, Approve,
 * and Deny with an optional reason (the model is told it). `onDecide({ id, approved, reason })`
 * is useChat's `addToolApprovalResponse`.
 */
function ApprovalRequest({ part, toolName, onDecide }) {
	const [reason, setReason] = useState("");
	const [sent, setSent] = useState(false);
	const decide = (approved) => {
		if (sent || !onDecide) return;
		setSent(true);
		const text = reason.trim();
		onDecide({ id: part.approval.id, approved, ...(text && !approved ? { reason: text } : {}) });
	};
	return (
		<div className="approval" data-testid="approval" data-approval-id={part.approval.id} data-tool-call-id={part.toolCallId}>
			<div className="approval-question">
				The agent wants to run <b data-field="approval-tool">{toolName}</b>:
			</div>
			<pre className="approval-input" data-field="approval-input">
				{toolInputText(part.input)}
			</pre>
			<div className="approval-actions">
				<button type="button" data-testid="approve" onClick={() => decide(true)} disabled={sent || !onDecide}>
					Approve
				</button>
				<button type="button" data-testid="deny" className="deny" onClick={() => decide(false)} disabled={sent || !onDecide}>
					Deny
				</button>
				<input
					data-testid="deny-reason"
					value={reason}
					onChange={(event) => setReason(event.target.value)}
					onKeyDown={(event) => {
						if (event.key === "Enter") {
							event.preventDefault();
							decide(false);
						}
					}}
					placeholder="reason for denying (optional)"
					maxLength={2000}
					disabled={sent || !onDecide}
				/>
			</div>
		</div>
	);
}

function ToolPart({ part, onDecide }) {
	// Static tools arrive as `tool-<name>` parts, dynamic ones as `dynamic-tool` with `toolName`.
	const toolName = toolNameOf(part);
	const approval = approvalLabel(part);
	return (
		<div className="part-tool" data-part="tool" data-tool-name={toolName} data-state={part.state} data-approval={approval?.kind ?? ""}>
			<div className="tool-head">
				tool <span data-field="tool-name">{toolName}</span> <small>({part.state})</small>
			</div>
			{part.input !== undefined && <pre data-field="tool-input">{JSON.stringify(part.input)}</pre>}
			{part.state === "approval-requested" && part.approval?.id && <ApprovalRequest part={part} toolName={toolName} onDecide={onDecide} />}
			{approval && approval.kind !== "requested" && (
				<div className={`approval-decision approval-${approval.kind}`} data-field="approval-decision" data-decision={approval.kind}>
					{approval.text}
				</div>
			)}
			{part.state === "output-available" && <pre data-field="tool-output">{toolResultText(part.output)}</pre>}
			{part.state === "output-error" && <pre data-field="tool-error">{part.errorText}</pre>}
		</div>
	);
}

function Part({ part, index, onDecide }) {
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
	// An attachment of the user's message: an image (a data URL, from the page or the history).
	if (part.type === "file") {
		if (typeof part.mediaType === "string" && part.mediaType.startsWith("image/")) {
			return (
				<img
					className="part-file"
					data-part="file"
					data-media-type={part.mediaType}
					src={part.url}
					alt={part.filename ?? "attached image"}
				/>
			);
		}
		return (
			<a className="part-file" data-part="file" data-media-type={part.mediaType ?? ""} href={part.url} download={part.filename ?? true}>
				{part.filename ?? part.mediaType ?? "file"}
			</a>
		);
	}
	// A new agent turn (after a tool call): a thin divider, except before the first one.
	if (part.type === "step-start") return index > 0 ? <hr className="step-divider" /> : null;
	if (isToolPart(part)) return <ToolPart part={part} onDecide={onDecide} />;
	// A message sent with Steer (or followUp) that the gateway handed to this answer.
	if (part.type === "data-steering") {
		return (
			<div className="part-steering" data-part="steering" data-mode={part.data?.mode ?? ""}>
				{steeringLabel(part.data)}
			</div>
		);
	}
	// How a queued message's run ended when there was nothing to stream (e.g. "cancelled: Queue cleared").
	if (part.type === "data-notice") {
		return (
			<p className="part-notice" data-part="notice">
				{part.data?.text}
			</p>
		);
	}
	return null;
}

/** Under an answer: its tokens, cost and model (`metadata` from the `finish` chunk or the history). */
function UsageLine({ metadata }) {
	const usage = usageSummary(metadata);
	if (!usage) return null;
	return (
		<div
			className="usage"
			data-testid="usage"
			data-total-tokens={usage.totalTokens}
			data-cost={usage.cost ?? ""}
			data-model={usage.model}
			title="Tokens and cost of this answer (all its model calls)"
		>
			{usage.text}
		</div>
	);
}

/**
 * The session's model and thinking level: `models` from `GET /models` (null: the gateway has no
 * such route, and the bar is not shown), `settings` from the session's snapshot.
 */
function SettingsBar({ models, settings, disabled, onModel, onThinking }) {
	if (!models) return null;
	const current = modelKey(settings.model) || modelKey(models.current);
	const known = models.models.some((m) => modelKey(m) === current);
	const options = known || !current ? models.models : [...models.models, { ...parseModelKey(current), name: current }];
	const reasoning = options.find((m) => modelKey(m) === current)?.reasoning;
	const level = settings.thinkingLevel ?? "off";
	return (
		<div className="settings" data-testid="settings">
			<label>
				model{" "}
				<select data-testid="model-picker" value={current} disabled={disabled} onChange={(event) => onModel(event.target.value)}>
					{options.map((m) => (
						<option key={modelKey(m)} value={modelKey(m)}>
							{modelKey(m)}
							{m.name && m.name !== modelKey(m) ? ` (${m.name})` : ""}
						</option>
					))}
				</select>
			</label>
			<label title={reasoning === false ? "This model does not think before answering" : undefined}>
				thinking{" "}
				<select
					data-testid="thinking-picker"
					value={level}
					disabled={disabled || reasoning === false}
					onChange={(event) => onThinking(event.target.value)}
				>
					{(THINKING_LEVELS.includes(level) ? THINKING_LEVELS : [level, ...THINKING_LEVELS]).map((l) => (
						<option key={l} value={l}>
							{l}
						</option>
					))}
				</select>
			</label>
		</div>
	);
}

/** The images attached to the next message, each with a button that removes it. */
function Attachments({ files, onRemove }) {
	if (files.length === 0) return null;
	return (
		<div className="attachments" data-testid="attachments">
			{files.map((file, index) => (
				<figure key={`${index}:${file.filename}`} data-testid="attachment">
					<img src={file.url} alt={file.filename} />
					<button type="button" data-testid="attachment-remove" title={`Remove ${file.filename}`} onClick={() => onRemove(index)}>
						×
					</button>
				</figure>
			))}
		</div>
	);
}

/** A notice that is not the chat's error (history, settings, attachments): `data-testid="notice"`. */
function Notice({ error, gateway, what }) {
	if (!error) return null;
	const { title, detail, status } =
		error instanceof Error && error.statusCode === undefined && error.name === "Error"
			? { title: error.message }
			: describeChatError(error, { gateway, origin: window.location.origin });
	return (
		<div className="notice" data-testid="notice" data-what={what} data-status={status ?? ""} role="status">
			<b>{title}</b>
			{detail ? ` — ${detail}` : ""}
		</div>
	);
}

/**
 * The parts of a message in the order they are shown, each with its index in `message.parts`: a
 * user message shows its attachments first, then its text. (`sendMessage({ text, files })` puts
 * the files first; the gateway's history, like pi, the text first: either way the message looks
 * the same before and after a reload.)
 */
function shownParts(message) {
	const indexed = message.parts.map((part, index) => ({ part, index }));
	if (message.role !== "user") return indexed;
	return [...indexed.filter((p) => p.part.type === "file"), ...indexed.filter((p) => p.part.type !== "file")];
}

/** Beside the input while an answer streams: what a message sent now does. */
function ModeControl({ mode, onChange }) {
	const choices = [
		{ value: "steer", label: "Steer", title: "Into the current answer (pi reads it before its next step)" },
		{ value: "queue", label: "Queue", title: "Its own answer, after the current one" },
	];
	return (
		<div className="mode" role="radiogroup" aria-label="A message sent now" data-testid="mode">
			{choices.map((choice) => (
				<button
					key={choice.value}
					type="button"
					role="radio"
					aria-checked={mode === choice.value}
					data-testid={`mode-${choice.value}`}
					title={choice.title}
					onClick={() => onChange(choice.value)}
				>
					{choice.label}
				</button>
			))}
		</div>
	);
}

/**
 * The session's queue on the gateway: its queued runs (with the page's own text for the ones this
 * page sent) and pi's pending steering and follow-up texts; Clear empties all of it.
 */
function QueuePanel({ queue, pending, onClear, clearing }) {
	const texts = new Map(pending.map((entry) => [entry.runId, entry.text]));
	const items = [
		...queue.queued.map((run) => ({
			kind: "queued",
			runId: run.runId,
			label: texts.has(run.runId) ? texts.get(run.runId) : `message ${run.runId.slice(-8)}`,
		})),
		...queue.steering.map((text) => ({ kind: "steering", label: text })),
		...queue.followUp.map((text) => ({ kind: "followUp", label: text })),
	];
	const prefix = { queued: "queued", steering: "steering", followUp: "follow-up" };
	return (
		<aside className="queue" data-testid="queue" data-count={items.length}>
			<div className="queue-head">
				<span>Queue</span>
				<button type="button" data-testid="queue-clear" onClick={onClear} disabled={clearing || items.length === 0}>
					Clear
				</button>
			</div>
			{items.length === 0 ? (
				<div className="queue-empty">Nothing waiting</div>
			) : (
				<ol>
					{items.map((item, index) => (
						<li key={`${item.kind}:${item.runId ?? index}`} data-testid="queue-item" data-kind={item.kind} data-run-id={item.runId}>
							<small>{prefix[item.kind]}</small> <span data-field="queue-text">{item.label}</span>
						</li>
					))}
				</ol>
			)}
		</aside>
	);
}

function App() {
	const config = useMemo(readConfig, []);
	const routes = useMemo(() => gatewayRoutes(config.gateway, config.session), [config]);
	const auth = useMemo(() => (config.token ? { Authorization: `Bearer ${config.token}` } : undefined), [config]);
	// One chat id per gateway and session key (localStorage), and what this tab stored before a
	// reload (sessionStorage): the run that was streaming, the queued messages, and the messages
	// (shown only when the gateway cannot serve the history).
	const chatId = useMemo(
		() => stableChatId({ storage: webStorage("localStorage"), gateway: config.gateway, session: config.session, generateId }),
		[config],
	);
	const restored = useMemo(
		() => loadConversation({ storage: webStorage("sessionStorage"), gateway: config.gateway, session: config.session, chatId }),
		[config, chatId],
	);
	// The conversation to start with, from the gateway's history. useChat takes its initial
	// messages when it is created, so the chat is mounted once they are here.
	const [start, setStart] = useState(undefined);
	useEffect(() => {
		let cancelled = false;
		const knownBefore = sessionRemembered({ storage: webStorage("localStorage"), gateway: config.gateway, session: config.session });
		loadStartingConversation({ routes, headers: auth, session: config.session, knownBefore, limit: config.limit })
			.catch((error) => ({ source: "unavailable", messages: [], hasMore: false, error }))
			.then((loaded) => {
				if (!cancelled) setStart(loaded);
			});
		return () => {
			cancelled = true;
		};
	}, [config, routes, auth]);
	if (!start) {
		return (
			<main>
				<Header config={config} status="loading" />
				<section className="messages" data-testid="messages" />
			</main>
		);
	}
	return <ChatPage config={config} routes={routes} auth={auth} chatId={chatId} restored={restored} start={start} />;
}

function Header({ config, status }) {
	return (
		<header>
			<h1>pi-gateway chat</h1>
			<span className="meta">
				{config.gateway} · session <b>{config.session}</b> · <span data-testid="status">{status}</span>
			</span>
		</header>
	);
}

function ChatPage({ config, routes, auth, chatId, restored, start }) {
	// `history`: the page started from the gateway's history and can ask for it again (after a
	// reload during an answer that then ended, "Load older"). Otherwise it shows a new session, or
	// (the gateway could not serve a history) what this tab stored.
	const history = start.source === "history";
	const [hasMore, setHasMore] = useState(start.hasMore);
	// A history request that failed is shown, except a gateway without the route (404 / 405: an
	// older pi-gateway), where the page quietly shows what the tab stored, as it did before.
	const [historyError, setHistoryError] = useState(() =>
		start.error && start.error.statusCode !== 404 && start.error.statusCode !== 405 ? start.error : undefined,
	);
	// The run whose answer was streaming when the page went away: if it cannot be resumed (it
	// ended meanwhile), the history (or its record) shows how it ended.
	const unfinishedRun = useRef(restored.openRunId);
	// useChat reconnects on mount; until it knows whether there is an answer to resume, the page
	// says "resuming" and does not send (a send would race the resumed answer). Only that first
	// reconnect counts here: the later ones read queued answers (see "Queued answers" below).
	const [reconnect, setReconnect] = useState({ state: "start", resumed: false });
	const firstReconnectDone = useRef(false);
	const resuming = reconnect.state === "start";

	// Messages sent with "Queue" while an answer streamed, whose answers are not shown yet:
	// `[{ runId, text }]`, in the order they were sent (kept with the conversation).
	const [pending, setPending] = useState(() => restored.pending ?? []);
	const pendingRef = useRef(pending);
	pendingRef.current = pending;
	// The run the page's own stream reads (`x-run-id` of its chat POST or resume), and the run the
	// last resume read (null: the gateway had nothing to resume).
	const streamRun = useRef(undefined);
	const resumedRun = useRef(undefined);

	const setMessagesRef = useRef(() => {});
	const rememberRef = useRef(() => {});
	const transport = useMemo(
		() =>
			new GatewayChatTransport({
				api: routes.chat,
				headers: auth,
				prepareSendMessagesRequest: lastUserMessageOnly,
				// Same headers (the bearer token) as a send; the route is the gateway's, not the SDK's default.
				prepareReconnectToStreamRequest: ({ id }) => ({ api: routes.stream(id) }),
				onReconnect: (event) => {
					if (firstReconnectDone.current) return;
					if (event.state === "end") firstReconnectDone.current = true;
					setReconnect(event);
				},
				onRun: ({ kind, runId }) => {
					if (runId) {
						streamRun.current = runId;
						rememberRef.current();
					}
					if (kind !== "resume") return;
					resumedRun.current = runId;
					// A resume that reads one of the page's queued messages: show its question first
					// (before useChat adds the answer, which comes with the stream).
					const entry = runId && pendingRef.current.find((e) => e.runId === runId);
					if (entry) setMessagesRef.current((current) => withQueuedUserMessage(current, entry));
				},
			}),
		[routes, auth],
	);
	const { messages, setMessages, sendMessage, resumeStream, status, error, stop, addToolApprovalResponse } = useChat({
		id: chatId,
		// The history ends at the question of a running answer; `resume` brings the answer.
		messages: start.source === "unavailable" ? restored.messages : start.messages,
		resume: true,
		transport,
		// Tool approvals: once every call the gateway holds in the last answer has a decision
		// (addToolApprovalResponse), send them; the gateway answers with the run's continuation.
		sendAutomaticallyWhen: decisionsComplete,
	});
	setMessagesRef.current = setMessages;
	const [input, setInput] = useState("");
	const [mode, setMode] = useState("steer");
	const [sendError, setSendError] = useState(undefined);
	const [draining, setDraining] = useState(false);
	const streaming = status === "submitted" || status === "streaming";
	const busy = streaming || resuming || draining;
	// Tool calls of the last answer that wait for a decision: the run waits too, so nothing else is
	// sent until they are decided (a message sent now would only queue behind the waiting run).
	const awaiting = !busy && awaitedApprovals(messages).length > 0;
	const now = useRef({ messages, busy });
	now.current = { messages, busy };

	// This browser has talked on this session (a run answered it, or its model was set): a later
	// visit asks for its history even when the gateway holds it on disk only (see
	// loadStartingConversation).
	const remember = useCallback(
		() => rememberSession({ storage: webStorage("localStorage"), gateway: config.gateway, session: config.session }),
		[config],
	);
	rememberRef.current = remember;
	useEffect(() => {
		if (history && start.messages.length > 0) remember();
	}, [history, start, remember]);

	// A pending message is settled once its answer (an assistant message with its run id) shows.
	useEffect(() => {
		setPending((current) => settlePending(current, messages));
	}, [messages]);

	/**
	 * Loads the history again (at least as many messages as the page shows) and shows it, unless
	 * the page moved on meanwhile (a message was sent, an answer streams). Resolves with it, or
	 * undefined when it was not shown.
	 */
	const reloadHistory = useCallback(async () => {
		const before = messageIdsKey(now.current.messages);
		const limit = Math.min(1000, Math.max(config.limit, now.current.messages.length + 1));
		const fresh = await loadHistory({ routes, headers: auth, limit });
		if (messageIdsKey(now.current.messages) !== before || now.current.busy) return undefined;
		setMessages(fresh.messages);
		setHasMore(fresh.hasMore);
		return fresh;
	}, [config, routes, auth, setMessages]);

	// Nothing to resume, but an answer is missing: the stored answer was unfinished (it ended while
	// the page reloaded), or the history ends at a question (its run ended between the history and
	// the reconnect, or it is a run another client started, which this chat cannot resume). Read
	// the run's record, then show the history again (or, without a history, complete the stored
	// answer from the record); a history still cut is asked for again until its answer is in it.
	const [followCut, setFollowCut] = useState(false);
	useEffect(() => {
		if (reconnect.state !== "end") return;
		const runId = unfinishedRun.current;
		if (reconnect.resumed) {
			unfinishedRun.current = undefined;
			return;
		}
		let cancelled = false;
		(async () => {
			if (runId) {
				const response = await fetch(routes.run(runId), { headers: auth }).catch(() => undefined);
				const body = response?.ok ? await response.json().catch(() => undefined) : undefined;
				if (cancelled) return;
				const run = body?.run;
				if (run && (run.status === "queued" || run.status === "running")) return;
				unfinishedRun.current = undefined;
				if (run && !history) setMessages((current) => completeFromRun(current, run));
			}
			if (!history || cancelled) return;
			if (runId || historyIsCut(now.current.messages)) {
				const fresh = await reloadHistory().catch(() => undefined);
				if (!cancelled && fresh && historyIsCut(fresh.messages)) setFollowCut(true);
			}
		})();
		return () => {
			cancelled = true;
		};
	}, [reconnect, routes, auth, history, setMessages, reloadHistory]);
	useEffect(() => {
		if (!followCut) return;
		const started = Date.now();
		let shown = messageIdsKey(now.current.messages);
		let asking = false;
		const timer = setInterval(async () => {
			// Stop when the page moved on, when the answer is in, or after CUT_POLL_FOR_MS.
			if (messageIdsKey(now.current.messages) !== shown || Date.now() - started > CUT_POLL_FOR_MS) {
				setFollowCut(false);
				return;
			}
			if (now.current.busy || asking) return;
			asking = true;
			const fresh = await reloadHistory().catch(() => undefined);
			asking = false;
			if (!fresh) return;
			if (!historyIsCut(fresh.messages)) setFollowCut(false);
			else shown = messageIdsKey(fresh.messages); // more of it (another question), still cut: go on
		}, CUT_POLL_MS);
		return () => clearInterval(timer);
	}, [followCut, reloadHistory]);

	// "Load older": the page of history before the first message shown.
	const [loadingOlder, setLoadingOlder] = useState(false);
	async function onLoadOlder() {
		const first = messages[0]?.id;
		if (!first) return;
		setLoadingOlder(true);
		try {
			const older = await loadHistory({ routes, headers: auth, limit: config.limit, before: first });
			setMessages((current) => prependOlder(current, older.messages));
			setHasMore(older.hasMore);
			setHistoryError(undefined);
		} catch (err) {
			setHistoryError(err);
		} finally {
			setLoadingOlder(false);
		}
	}

	// Queued answers: once the current stream has ended, read the chat's next run
	// (`resumeStream()` → `GET …/chat/:chatId/stream`, the chat's oldest run that has not ended).
	// When the gateway has nothing to resume (the run ended before the page came to it), the
	// run's record shows how it ended.
	const drainingRef = useRef(false);
	const [retryTick, setRetryTick] = useState(0);
	useEffect(() => {
		if (drainingRef.current || streaming || resuming || settlePending(pending, messages).length === 0) return;
		drainingRef.current = true;
		setDraining(true);
		(async () => {
			resumedRun.current = undefined;
			await resumeStream().catch(() => {});
			if (resumedRun.current) return; // it streamed a run; the next round takes the next one
			// Nothing to resume: the pending runs have ended (a fast answer can end before the page
			// asks for it). Show each from its record: its final text, or how it ended.
			let again = false;
			for (const entry of settlePending(pendingRef.current, messages)) {
				const response = await fetch(routes.run(entry.runId), { headers: auth }).catch(() => undefined);
				if (response?.status === 404) {
					setPending((current) => current.filter((e) => e.runId !== entry.runId));
					continue;
				}
				const run = response?.ok ? (await response.json().catch(() => undefined))?.run : undefined;
				if (!run || run.status === "queued" || run.status === "running") {
					// Not ended after all (or the gateway could not say): ask again shortly, keeping the order.
					again = true;
					break;
				}
				setMessages((current) => showEndedRun(current, entry, run));
			}
			if (again) await new Promise((resolve) => setTimeout(resolve, PENDING_RETRY_MS));
		})().finally(() => {
			drainingRef.current = false;
			setDraining(false);
			setRetryTick((n) => n + 1);
		});
		return undefined;
		// `retryTick` runs this again after a round that changed nothing the deps see.
	}, [streaming, resuming, pending, messages, retryTick, resumeStream, routes, auth, setMessages]);

	// The queue panel: what waits on the gateway. It follows the gateway from the first message this
	// page sends while an answer streams (or a pending one from before a reload): on send, when a
	// stream ends, and every QUEUE_POLL_MS while something streams or waits. A page that never
	// sends during an answer makes no extra requests.
	const [queue, setQueue] = useState(undefined);
	const [following, setFollowing] = useState(() => (restored.pending ?? []).length > 0);
	const queueRequest = useRef(undefined);
	const refreshQueue = useCallback(() => {
		if (queueRequest.current) return queueRequest.current;
		queueRequest.current = readQueue({ routes, headers: auth })
			.then(setQueue, () => {})
			.finally(() => {
				queueRequest.current = undefined;
			});
		return queueRequest.current;
	}, [routes, auth]);
	const waiting = queueHasWaiting(queue) || pending.length > 0;
	useEffect(() => {
		if (following) refreshQueue();
	}, [following, status, draining, refreshQueue]);
	useEffect(() => {
		if (!following || !(busy || waiting)) return;
		const timer = setInterval(refreshQueue, QUEUE_POLL_MS);
		return () => clearInterval(timer);
	}, [following, busy, waiting, refreshQueue]);
	const [clearing, setClearing] = useState(false);
	async function onClearQueue() {
		setClearing(true);
		try {
			await clearQueue({ routes, headers: auth });
			// The cleared runs end `cancelled`: forget the ones this page was waiting for (a run that
			// already runs was not cleared and still comes).
			const running = queue?.running?.runId;
			setPending((current) => current.filter((entry) => entry.runId === running || entry.runId === streamRun.current));
			setSendError(undefined);
		} catch (err) {
			setSendError(err);
		} finally {
			setClearing(false);
			refreshQueue();
		}
	}

	// The session's model and thinking level: the models from `GET /models` (null: the gateway has
	// none to offer, and the pickers are not shown), the session's own from its snapshot — the one
	// `GET /sessions` gave on load, then `GET /sessions/:key` after each answer (the model may have
	// been changed elsewhere). A session the gateway does not have yet shows the gateway's default.
	const [models, setModels] = useState(undefined);
	const [settings, setSettings] = useState(() => settingsOf(start.snapshot));
	const [settingsError, setSettingsError] = useState(undefined);
	const [changing, setChanging] = useState(false);
	useEffect(() => {
		let cancelled = false;
		readModels({ routes, headers: auth }).then(
			(answer) => !cancelled && setModels(answer),
			() => !cancelled && setModels(null),
		);
		return () => {
			cancelled = true;
		};
	}, [routes, auth]);
	const refreshSettings = useCallback(() => {
		readSessionSettings({ routes, headers: auth }).then(setSettings, () => {});
	}, [routes, auth]);
	useEffect(() => {
		// Loaded from the gateway's disk (not in its memory when the page asked): read it now.
		if (history && !start.snapshot) refreshSettings();
	}, [history, start, refreshSettings]);
	const wasBusy = useRef(busy);
	useEffect(() => {
		// After an answer this page streamed (a run answered it, so the session exists).
		if (wasBusy.current && !busy && streamRun.current) refreshSettings();
		wasBusy.current = busy;
	}, [busy, refreshSettings]);
	async function changeSettings(change) {
		setChanging(true);
		try {
			// A key the gateway does not have yet: create the session first (it then answers the
			// first message with the model picked here).
			if (!settings.exists) await createSessionOnGateway({ routes, headers: auth });
			const answer = await change();
			remember();
			setSettings((current) => ({
				...current,
				exists: true,
				...(answer.model ? { model: answer.model } : {}),
				...(typeof answer.thinkingLevel === "string" ? { thinkingLevel: answer.thinkingLevel } : {}),
			}));
			setSettingsError(undefined);
		} catch (err) {
			setSettingsError(err);
		} finally {
			setChanging(false);
		}
	}
	const onModel = (key) => {
		const model = parseModelKey(key);
		if (model) changeSettings(() => setSessionModel({ routes, headers: auth, model }));
	};
	const onThinking = (level) => changeSettings(() => setSessionThinking({ routes, headers: auth, level }));

	// Images attached to the next message: `file` parts with a data URL (imageFilePart).
	const [attachments, setAttachments] = useState([]);
	const [attachError, setAttachError] = useState(undefined);
	async function onFiles(event) {
		const files = [...(event.target.files ?? [])];
		event.target.value = "";
		const read = await Promise.allSettled(files.map((file) => imageFilePart(file)));
		const parts = read.filter((r) => r.status === "fulfilled").map((r) => r.value);
		const failed = read.filter((r) => r.status === "rejected").map((r) => r.reason?.message ?? String(r.reason));
		if (parts.length > 0) setAttachments((current) => [...current, ...parts]);
		setAttachError(failed.length > 0 ? new Error(failed.join("; ")) : undefined);
	}

	// Store the conversation: at once when a message comes or goes or the status changes, at most
	// every SAVE_EVERY_MS while an answer streams in, and when the page goes away.
	const latest = useRef({ messages, openRunId: undefined, pending });
	latest.current = { messages, openRunId: streaming ? lastAssistantRunId(messages) : unfinishedRun.current, pending };
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
		const shape = `${status} ${messages.map((message) => message.id).join(" ")} ${pending.map((entry) => entry.runId).join(" ")}`;
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
	}, [messages, status, pending]);
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
	// is the run id), so a Stop that comes late cannot stop the next message's run. Queued
	// messages stay queued (Clear drops them).
	function onStop() {
		const runId = streaming ? lastAssistantRunId(messages) : undefined;
		stop();
		fetch(routes.stop(chatId), {
			method: "POST",
			headers: { ...auth, "content-type": "application/json" },
			body: JSON.stringify(runId ? { runId } : {}),
		}).catch(() => {});
	}

	// While an answer streams (or a queued one is being fetched): send with the chosen mode,
	// beside useChat (which reads one stream at a time).
	async function sendWhileBusy(text, chosen, files) {
		setFollowing(true);
		// The run the page's stream reads now (useChat's message id is the run id).
		const current = lastAssistantRunId(messages) ?? streamRun.current;
		try {
			const { runId } = await sendDuringAnswer({ routes, headers: auth, chatId, text, mode: chosen, messageId: generateId(), files });
			setSendError(undefined);
			remember();
			// Steered into the running answer: its stream shows the marker and the rest. Anything
			// else (queued, or a steer that came when nothing ran any more) has a run of its own.
			const intoCurrent = chosen === "steer" && runId != null && (runId === current || runId === streamRun.current);
			if (runId && !intoCurrent) {
				setPending((list) => (list.some((entry) => entry.runId === runId) ? list : [...list, { runId, text }]));
			}
		} catch (err) {
			setSendError(err);
		} finally {
			refreshQueue();
		}
	}

	function onSubmit(event) {
		event.preventDefault();
		const text = input.trim();
		const files = attachments;
		if ((!text && files.length === 0) || resuming || awaiting) return;
		setInput("");
		setAttachments([]);
		setAttachError(undefined);
		if (busy) {
			sendWhileBusy(text, mode, files);
			return;
		}
		// Nothing of this page's streams: an ordinary send (no mode: the gateway's
		// session.defaultMode applies, which on an idle session starts a run anyway). Images go as
		// `file` parts before the text (useChat's `sendMessage({ text, files })`).
		setSendError(undefined);
		sendMessage(files.length === 0 ? { text } : text ? { text, files } : { files });
	}

	const canSend = (input.trim() !== "" || attachments.length > 0) && !resuming && !awaiting;
	const lastId = messages.at(-1)?.id;
	const decide = useCallback((decision) => addToolApprovalResponse(decision), [addToolApprovalResponse]);
	return (
		<main>
			<Header config={config} status={resuming ? "resuming" : awaiting ? "awaiting approval" : status} />
			<SettingsBar models={models} settings={settings} disabled={busy || changing} onModel={onModel} onThinking={onThinking} />
			<Notice error={settingsError} gateway={config.gateway} what="settings" />
			<section className="messages" data-testid="messages">
				{hasMore && (
					<button type="button" className="load-older" data-testid="load-older" onClick={onLoadOlder} disabled={loadingOlder}>
						{loadingOlder ? "Loading…" : "Load older messages"}
					</button>
				)}
				<Notice error={historyError} gateway={config.gateway} what="history" />
				{messages.map((message) => (
					<article className="message" key={message.id} data-role={message.role} data-id={message.id}>
						<div className="role">{message.role}</div>
						{shownParts(message).map(({ part, index }) => (
							<Part key={index} part={part} index={index} onDecide={message.id === lastId && !busy ? decide : undefined} />
						))}
						{message.role === "assistant" && <UsageLine metadata={message.metadata} />}
					</article>
				))}
				{error && <ErrorNotice error={error} gateway={config.gateway} />}
				{sendError && <ErrorNotice error={sendError} gateway={config.gateway} />}
			</section>
			{following && queue && <QueuePanel queue={queue} pending={pending} onClear={onClearQueue} clearing={clearing} />}
			<Attachments files={attachments} onRemove={(index) => setAttachments((current) => current.filter((_, i) => i !== index))} />
			<Notice error={attachError} gateway={config.gateway} what="attach" />
			<form onSubmit={onSubmit}>
				{busy && !resuming && <ModeControl mode={mode} onChange={setMode} />}
				<label className="attach" title="Attach an image (PNG, JPEG, GIF or WebP)">
					<input data-testid="attach" type="file" accept={IMAGE_TYPES.join(",")} multiple onChange={onFiles} />
					<span aria-hidden="true">+ image</span>
				</label>
				<input
					data-testid="input"
					value={input}
					onChange={(event) => setInput(event.target.value)}
					placeholder={
						busy && !resuming
							? mode === "steer"
								? "Steer the current answer…"
								: "Queue a message for after this answer…"
							: awaiting
								? "Approve or deny the tool call above first"
								: "Ask the agent… (try: What is in hello.txt?)"
					}
					autoFocus
				/>
				<button type="submit" data-testid="send" disabled={!canSend}>
					{busy && !resuming ? (mode === "steer" ? "Steer" : "Queue") : "Send"}
				</button>
				{busy && (
					<button type="button" data-testid="stop" onClick={onStop}>
						Stop
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
