// The gateway starter of the tests, on 127.0.0.1:0:
// - `startGateway(...)`: a GatewayRuntime in this process, by default in front of the scripted
//   AgentSession double (sessions.mjs); any primary session and createSession may be given;
// - `startChatGateway(...)`: the same in front of real pi AgentSessions on the faux model;
// - `suiteGateway(...)`, `suiteChatGateway(...)`: one of them shared by the tests of a describe
//   block;
// - `baseConfig(overrides)`: the minimal valid GatewayConfig they start from.

import { after, before } from "node:test";
import { GatewayRuntime } from "../../index.js";
import { createScriptedFactory, createScriptedSession } from "./sessions.mjs";
import { SOON_MS, within } from "./wait.mjs";

/**
 * A minimal valid GatewayConfig on 127.0.0.1:0 with `overrides` merged over it (its `session`
 * and `webhook` objects field by field). Merging an already merged config changes nothing.
 */
export function baseConfig(overrides = {}) {
	const { session, webhook, ...rest } = overrides;
	return {
		bind: "127.0.0.1",
		port: 0,
		...rest,
		session: { idleMinutes: 30, maxQueuePerSession: 8, ...session },
		webhook: { enabled: false, basePath: "/webhook", ...webhook },
	};
}

/**
 * Starts a pi-gateway on 127.0.0.1, port 0.
 * - `config` is merged over {@link baseConfig};
 * - `primarySession` (default: a scripted session with `scenario` and `sessionOptions`) under
 *   `primaryKey` (default "main");
 * - `createSession` (default: a scripted factory with `scenario` and `sessionOptions` that
 *   records every session it makes in `created`; `null`: none);
 * - `t`: a test context; the gateway is then stopped (bounded) when the test ends;
 * - `log`: also called with every log line (they are collected in `logs` anyway).
 * Returns the runtime, its port and base URL, the primary session, every session ever created by
 * the default factory (for prompt counts), the scripted factory's live sessions, the log lines,
 * and `stop()` (idempotent).
 */
export async function startGateway({
	t,
	config = {},
	scenario = { kind: "instant" },
	sessionOptions = {},
	primaryKey = "main",
	primarySession,
	createSession,
	log,
} = {}) {
	const primary = primarySession ?? createScriptedSession(primaryKey, scenario, sessionOptions);
	const created = [primary];
	const scripted = createScriptedFactory(scenario, sessionOptions);
	const factory =
		createSession === null
			? undefined
			: (createSession ??
				(async (key) => {
					const s = await scripted(key);
					created.push(s);
					return s;
				}));
	const logs = [];
	const rt = new GatewayRuntime({
		config: baseConfig(config),
		primarySessionKey: primaryKey,
		primarySession: primary,
		createSession: factory,
		log: (message) => {
			logs.push(message);
			log?.(message);
		},
	});
	let stopping;
	const stop = () => (stopping ??= rt.stop());
	t?.after(() => within(stop(), SOON_MS, "the gateway to stop in cleanup"));
	await rt.start();
	const port = rt.getAddress().port;
	return {
		rt,
		port,
		base: `http://127.0.0.1:${port}`,
		primary,
		created,
		live: scripted.live,
		logs,
		/** Prompts received by every scripted session this gateway ever created. */
		prompts: () => created.reduce((n, s) => n + (s.stats?.prompts ?? 0), 0),
		stop,
	};
}

/**
 * For a describe block: one {@link startGateway} (with `options`) shared by its tests, started
 * before them and stopped (bounded) after them. Returns the gateway object at once; its fields
 * (`port`, `rt`, `prompts()`, …) are there once it has started.
 */
export function suiteGateway(options = {}) {
	const gw = {};
	before(async () => {
		Object.assign(gw, await startGateway(options));
	});
	after(async () => {
		if (gw.stop) await within(gw.stop(), SOON_MS, "stop");
	});
	return gw;
}

/**
 * For a describe block: one {@link startChatGateway} (with `options`) shared by its tests, started
 * before them and closed after them. Returns the gateway object at once; its fields (`port`,
 * `base`, `runtime`, …) are there once it has started.
 */
export function suiteChatGateway(options = {}) {
	const gw = {};
	before(async () => {
		Object.assign(gw, await startChatGateway(options));
	});
	after(async () => {
		await gw.close?.();
	});
	return gw;
}

/**
 * Starts a faux pi agent (lib/faux-agent.js) and {@link startGateway} in front of it.
 * @param {{ config?: object, faux?: object, primarySessionKey?: string, multiStep?: boolean, script?: () => { registration: any, when?: (context: any) => boolean }, scriptPrimary?: boolean, onSession?: (key: string, session: any) => void }} [options]
 *   `config` is merged over a minimal valid GatewayConfig (e.g. `{ bearerToken, cors }`).
 *   `multiStep`: sessions created through `createSession` also understand MULTI_STEP_COMMAND
 *   (chat-fixture.mjs).
 *   `script`: called once the faux agent exists; sessions created through `createSession` use
 *   its registration's model for every call (or only where `when(context)` holds). It is
 *   unregistered on close. `scriptPrimary`: the primary session uses it too.
 *   `onSession(key, session)`: called with every session handed to the gateway (primary included).
 * Returns `{ runtime, agent, port, base, sessions (key → AgentSession), close() }`.
 */
export async function startChatGateway(options = {}) {
	// Loaded here, not at the top: the scripted-session tests need neither pi nor its faux model.
	const { createFauxPiAgent } = await import("../../lib/faux-agent.js");
	const { lastUserText, MULTI_STEP_COMMAND, registerMultiStepModel } = await import("./chat-fixture.mjs");
	const agent = await createFauxPiAgent(options.faux ?? {});
	const script = options.multiStep
		? {
				registration: registerMultiStepModel(),
				when: (context) => lastUserText(context).startsWith(MULTI_STEP_COMMAND),
			}
		: options.script?.();
	/** @type {Map<string, import("@mariozechner/pi-coding-agent").AgentSession>} */
	const sessions = new Map();
	const primaryKey = options.primarySessionKey ?? "main";
	/** Every session handed to the gateway: scripted (the primary only with `scriptPrimary`), kept, announced. */
	const adopt = (key, session, scripted) => {
		if (script && scripted) {
			const model = script.registration.getModel();
			const streamFn = session.agent.streamFn;
			session.agent.streamFn = (given, context, streamOptions) =>
				streamFn(!script.when || script.when(context) ? model : given, context, streamOptions);
		}
		sessions.set(key, session);
		options.onSession?.(key, session);
		return session;
	};
	let gw;
	try {
		gw = await startGateway({
			config: { ...options.config, session: { idleMinutes: 10, maxQueuePerSession: 16, ...options.config?.session } },
			primaryKey,
			primarySession: adopt(primaryKey, agent.primarySession, options.scriptPrimary),
			createSession: async (key) => adopt(key, await agent.createSession(key), true),
		});
	} catch (error) {
		await agent.close();
		script?.registration.unregister();
		throw error;
	}
	let closed = false;
	return {
		runtime: gw.rt,
		agent,
		port: gw.port,
		base: gw.base,
		sessions,
		logs: gw.logs,
		async close() {
			if (closed) return;
			closed = true;
			try {
				await gw.stop();
			} finally {
				await agent.close();
				script?.registration.unregister();
			}
		},
	};
}
