// The `pi-gateway` command: parses flags and environment variables, builds the agent (pi's
// offline faux model by default, a real model with `--model provider/id`), starts a
// GatewayRuntime on it, prints where it listens and what to paste, and stops gracefully on
// SIGINT/SIGTERM (a second signal exits at once).
//
// Exit codes: 0 after a clean stop or --help/--version; 1 when the gateway cannot start (the
// API key is missing, the port is busy, the agent fails to load) or stops with an error;
// 2 for a usage error (unknown flag, bad value, unknown model); 130/143 when a second
// SIGINT/SIGTERM forces the exit.
//
// Isolation: unless --agent-dir says otherwise, pi's agent directory (auth.json, models.json,
// settings.json, extensions) is a new temporary directory, removed on exit, so the gateway never
// reads or writes the user's ~/.pi. A real model then takes its key from the environment
// (ANTHROPIC_API_KEY, OPENAI_API_KEY, ...); `--agent-dir ~/.pi/agent` reuses what `pi` itself
// has (logins, custom models, settings, extensions).
//
// Conversations: pi session files in the sessions dir (the primary session in DIR/primary, the
// others in DIR/gateway-sessions/<sanitized key>), printed at start. Each session continues the
// most recent file of its dir, so a key's conversation survives idle eviction and restarts. The
// dir: --data-dir; else <agent-dir>/sessions with --agent-dir (where they were before); else
// $XDG_DATA_HOME/pi-gateway, or ~/.local/share/pi-gateway. --ephemeral: a temporary dir removed
// on exit instead (nothing survives a restart).
//
// Approvals: --approve TOOLS holds each call of those tools until a person decides (the gateway's
// approval.policy "ask"), --deny TOOLS refuses them at once ("deny"), --approval-timeout SECONDS
// is how long a call waits (approval.timeoutMs). Printed at start when set.
//
// Operating it: --log-format json writes every stderr line after the flags are read as one JSON
// object ({time, level, message}, and sessionKey/runId on the gateway's lines about one);
// --log-level debug adds an access line per request. GET /metrics needs the bearer token unless
// --metrics-public; GET /openapi.json never does. Outbound webhooks (the gateway POSTing signed
// events out) are --notify-url/--notify-secret/--notify-events/--notify-retries, and per-request
// callbacks --callback-hosts/--callback-secret: the --webhook* flags are inbound webhooks (others
// POSTing messages in), config `webhook`; these build config `webhooks`.
//
// Several gateways (config `cluster`, SPEC section 15): --redis-url names the Redis the nodes
// share (leases, event logs, runs, idempotency keys), --advertise-url how the other nodes reach
// this one (required with --redis-url), --node-id its name (default: a UUIDv7 made at start, so
// the banner can print it), --cluster-prefix the start of every Redis key, --lease SECONDS how
// long a dead node's sessions wait before another node takes them over. A node that takes a
// session over loads it from the data dir, so a cluster needs one every node shares: --redis-url
// without an explicit --data-dir (or PI_GATEWAY_DATA_DIR), or with --ephemeral, is a usage error.
// The other cluster flags without --redis-url only warn (they have no effect).

import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { isIP } from "node:net";
import { homedir, tmpdir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { parseArgs } from "node:util";

/** Exit code of a usage error (bad flag or value). */
export const EXIT_USAGE = 2;
/** Exit code of a start-up or shutdown failure. */
export const EXIT_FAILURE = 1;

/** The session key the printed commands use. */
const DEMO_SESSION = "demo";
/** Session key of the gateway's primary session (the one pi's own session dir holds). */
const PRIMARY_SESSION_KEY = "main";
/** The values of `--default-mode` (`session.defaultMode`). */
const MODES = ["queue", "steer", "followUp", "interrupt", "reject"];

/** Largest `session.idleMinutes` the gateway accepts (the API's bound, 10^7). */
const MAX_IDLE_MINUTES = 10_000_000;
/** Bounds of `session.maxSessions`. */
const MAX_SESSIONS = 1_000_000;
/** The gateway's default `approval.timeoutMs` (printed in the banner when no --approval-timeout is given). */
const DEFAULT_APPROVAL_TIMEOUT_MS = 120_000;
/** Largest `--approval-timeout` in seconds (the gateway's `approval.timeoutMs` bound: one day). */
const MAX_APPROVAL_TIMEOUT_S = 86_400;
/** Longest tool name a policy may name (the gateway's bound, in UTF-8 bytes). */
const MAX_TOOL_NAME_BYTES = 128;
/** The optional peer dependency that holds pi's AgentSession. */
export const PEER_PACKAGE = "@mariozechner/pi-coding-agent";
/** How long after a clean stop we wait for Node to exit on its own before forcing it. */
const EXIT_GRACE_MS = 5000;
/** The values of `--log-format` (the runtime's `logFormat`). */
const LOG_FORMATS = ["text", "json"];
/** The values of `--log-level` (the runtime's `logLevel`), least first. */
const LOG_LEVELS = ["debug", "info", "warn", "error"];
/** The events an outbound webhook can carry (`webhooks.outbound[].events`). */
export const WEBHOOK_EVENTS = ["run.succeeded", "run.failed", "run.aborted", "run.cancelled", "approval.requested"];
/** The gateway's default `webhooks.retryScheduleMs` (printed in the banner when no --notify-retries is given). */
const DEFAULT_RETRY_SCHEDULE_MS = [5_000, 30_000, 120_000, 600_000, 3_600_000];
/** Most retries `webhooks.retryScheduleMs` may hold. */
const MAX_RETRIES = 20;
/** Longest wait before one retry, in seconds (the gateway's bound: one day). */
const MAX_RETRY_DELAY_S = 86_400;
/** Longest webhook URL the gateway takes, in bytes. */
const MAX_WEBHOOK_URL_BYTES = 2048;
/** Most `webhooks.allowedHosts` entries. */
const MAX_CALLBACK_HOSTS = 256;
/** Decoded length bounds of a `whsec_` signing key, in bytes. */
const MIN_KEY_BYTES = 16;
const MAX_KEY_BYTES = 64;
/** The gateway's default `cluster.prefix`. */
const DEFAULT_CLUSTER_PREFIX = "pi-gateway:";
/** Longest `cluster.prefix`, in bytes (the gateway's bound). */
const MAX_CLUSTER_PREFIX_BYTES = 256;
/** The gateway's default `cluster.leaseMs`. */
const DEFAULT_LEASE_MS = 10_000;
/** Bounds of `--lease`, in seconds (`cluster.leaseMs` 1000 to 600000). */
const MIN_LEASE_S = 1;
const MAX_LEASE_S = 600;
/** Longest `cluster.nodeId`, in bytes. */
const MAX_NODE_ID_BYTES = 128;
/** Longest `cluster.redisUrl` and `cluster.advertiseUrl` the gateway takes, in bytes. */
const MAX_REDIS_URL_BYTES = 2048;
const MAX_ADVERTISE_URL_BYTES = 512;
/** The flag (and variable) behind each `config.cluster` field, for the runtime's own refusals. */
const CLUSTER_CONFIG_FLAGS = {
	redisUrl: "--redis-url / PI_GATEWAY_REDIS_URL",
	advertiseUrl: "--advertise-url / PI_GATEWAY_ADVERTISE_URL",
	nodeId: "--node-id / PI_GATEWAY_NODE_ID",
	prefix: "--cluster-prefix / PI_GATEWAY_CLUSTER_PREFIX",
	leaseMs: "--lease / PI_GATEWAY_LEASE",
};
/** The cluster flags that mean nothing without --redis-url. */
const CLUSTER_ONLY_FLAGS = ["advertise-url", "node-id", "cluster-prefix", "lease"];

/**
 * Every option: its flag, its environment variable, its default and its help line. The help
 * text, the environment lookup and the tests all read this one table.
 */
export const OPTIONS = [
	{ name: "bind", type: "string", env: "PI_GATEWAY_BIND", def: "127.0.0.1", arg: "ADDR", help: "IP address to listen on (\"localhost\", \"0.0.0.0\", \"::\" ...)" },
	{ name: "port", type: "string", env: "PI_GATEWAY_PORT", def: "3000", arg: "N", help: "TCP port; 0 picks a free port (printed at start)" },
	{ name: "token", type: "string", env: "PI_GATEWAY_TOKEN", def: undefined, arg: "TOKEN", help: "require 'Authorization: Bearer TOKEN' on every route but /health, /openapi.json and inbound webhooks (and /metrics with --metrics-public) (prefer the env var: flags show up in ps)" },
	{ name: "webhook", type: "boolean", env: "PI_GATEWAY_WEBHOOK", def: false, help: "enable inbound webhooks: others POST <webhook-path>[/route] {text, sender?} into session webhook:<route>:<sender> (--no-webhook disables; for the gateway POSTing out, see --notify-url)" },
	{ name: "webhook-path", type: "string", env: "PI_GATEWAY_WEBHOOK_PATH", def: "/webhook", arg: "PATH", help: "base path of inbound webhooks" },
	{ name: "webhook-secret", type: "string", env: "PI_GATEWAY_WEBHOOK_SECRET", def: undefined, arg: "SECRET", help: "required x-pi-webhook-secret header of inbound webhooks; with --webhook and no secret, a random one is generated and printed at start (prefer the env var: flags show up in ps)" },
	{ name: "webhook-session-keys", type: "boolean", env: "PI_GATEWAY_WEBHOOK_SESSION_KEYS", def: false, help: "let an inbound webhook body name its session (sessionKey, only keys starting with \"webhook:\")" },
	{ name: "notify-url", type: "string", env: "PI_GATEWAY_NOTIFY_URL", def: undefined, arg: "URL", help: "outbound webhook: POST a signed event (Standard Webhooks) to this http(s) URL when a run ends or a tool call waits for approval; needs --notify-secret" },
	{ name: "notify-secret", type: "string", env: "PI_GATEWAY_NOTIFY_SECRET", def: undefined, arg: "whsec_...", help: "signing secret of --notify-url: \"whsec_\" and 16 to 64 base64-encoded bytes, as the receiver's Standard Webhooks library takes it (prefer the env var: flags show up in ps)" },
	{ name: "notify-events", type: "string", env: "PI_GATEWAY_NOTIFY_EVENTS", def: undefined, arg: "EVENTS", help: `comma-separated events --notify-url receives, of ${WEBHOOK_EVENTS.join(", ")}; default: all of them` },
	{ name: "notify-retries", type: "string", env: "PI_GATEWAY_NOTIFY_RETRIES", def: undefined, arg: "SECONDS,...", help: `when to retry a delivery that failed (non-2xx, no answer in 10 s, no connection): comma-separated waits in seconds, 0.001 to ${MAX_RETRY_DELAY_S} each (fractions allowed), at most ${MAX_RETRIES}; "none": one attempt only; also for callbacks (the gateway's default: 5,30,120,600,3600)` },
	{ name: "callback-hosts", type: "string", env: "PI_GATEWAY_CALLBACK_HOSTS", def: undefined, arg: "HOSTS", help: "hosts a message's per-request callback {url} may name, comma-separated: hooks.example.com, *.example.com (any subdomain), '*' (any public host), an IP address; private and loopback addresses only when listed exactly; needs --callback-secret" },
	{ name: "callback-secret", type: "string", env: "PI_GATEWAY_CALLBACK_SECRET", def: undefined, arg: "whsec_...", help: "signing secret (\"whsec_...\") of per-request callbacks; without it callbacks are refused (prefer the env var: flags show up in ps)" },
	{ name: "idle-minutes", type: "string", env: "PI_GATEWAY_IDLE_MINUTES", def: "30", arg: "N", help: "dispose sessions idle for N minutes (fractions allowed; 0: at the next sweep once idle; the primary session is kept)" },
	{ name: "max-queue", type: "string", env: "PI_GATEWAY_MAX_QUEUE", def: "16", arg: "N", help: "queued messages per session before 429" },
	{ name: "max-sessions", type: "string", env: "PI_GATEWAY_MAX_SESSIONS", def: "1000", arg: "N", help: `sessions held in memory at once, 1 to ${MAX_SESSIONS}: a new one past it evicts the least recently active idle session (its conversation stays stored); none idle: 503` },
	{ name: "default-mode", type: "string", env: "PI_GATEWAY_DEFAULT_MODE", def: "queue", arg: "MODE", help: "what a message without 'mode' does while its session is busy: queue, steer, followUp, interrupt or reject" },
	{ name: "cors", type: "string", env: "PI_GATEWAY_CORS", def: undefined, arg: "ORIGINS", help: "allow browsers from these origins: '*' or comma-separated (https://a.example,http://localhost:5173); off by default" },
	{ name: "allowed-hosts", type: "string", env: "PI_GATEWAY_ALLOWED_HOSTS", def: undefined, arg: "HOSTS", help: "comma-separated host names the Host header may carry besides loopback ones (e.g. gw.example,gw.internal); on a non-loopback bind, setting it turns the Host check on" },
	{ name: "model", type: "string", env: "PI_GATEWAY_MODEL", def: undefined, arg: "PROVIDER/ID", help: "a real model from pi's registry (e.g. anthropic/claude-sonnet-4-5, openai/gpt-4o-mini), with its API key in the environment; default: pi-ai's offline faux model" },
	{ name: "agent-dir", type: "string", env: "PI_GATEWAY_AGENT_DIR", def: undefined, arg: "DIR", help: "pi agent dir (auth.json, models.json, settings.json); default: a new temporary dir removed on exit, so ~/.pi is never touched" },
	{ name: "data-dir", type: "string", env: "PI_GATEWAY_DATA_DIR", def: undefined, arg: "DIR", help: "where conversations are kept (DIR/primary, DIR/gateway-sessions/<key>), so they continue after idle eviction and restarts; default: <agent-dir>/sessions with --agent-dir, else $XDG_DATA_HOME/pi-gateway or ~/.local/share/pi-gateway (printed at start)" },
	{ name: "ephemeral", type: "boolean", env: "PI_GATEWAY_EPHEMERAL", def: false, help: "keep conversations in a temporary dir removed on exit instead: nothing survives a restart" },
	{ name: "cwd", type: "string", env: "PI_GATEWAY_CWD", def: undefined, arg: "DIR", help: "workspace the agent's tools run in; default: the current dir with --model, a temporary dir holding hello.txt for the faux model" },
	{ name: "approve", type: "string", env: "PI_GATEWAY_APPROVE", def: undefined, arg: "TOOLS", help: "comma-separated tools (e.g. bash,write; '*' for every tool not named elsewhere) whose calls wait for a person's decision (GET/POST /sessions/:key/approvals, or the chat stream's approval request); off by default" },
	{ name: "deny", type: "string", env: "PI_GATEWAY_DENY", def: undefined, arg: "TOOLS", help: "comma-separated tools ('*': every tool not named elsewhere) whose calls are refused at once (the model is told \"Denied by policy\")" },
	{ name: "approval-timeout", type: "string", env: "PI_GATEWAY_APPROVAL_TIMEOUT", def: undefined, arg: "SECONDS", help: `how long a tool call waits for a decision before it is denied, 0.001 to ${MAX_APPROVAL_TIMEOUT_S} (fractions allowed; the gateway's default: 120)` },
	{ name: "metrics-public", type: "boolean", env: "PI_GATEWAY_METRICS_PUBLIC", def: false, help: "serve GET /metrics (Prometheus) without the bearer token, e.g. to a scraper on a private network; by default it needs --token like the API" },
	{ name: "log-format", type: "string", env: "PI_GATEWAY_LOG_FORMAT", def: "text", arg: "FORMAT", help: "stderr log lines: text (\"pi-gateway: message\") or json (one {time, level, message, sessionKey?, runId?} object a line)" },
	{ name: "log-level", type: "string", env: "PI_GATEWAY_LOG_LEVEL", def: "info", arg: "LEVEL", help: "least level logged: debug (adds an access line per HTTP request), info, warn or error" },
	{ name: "redis-url", type: "string", env: "PI_GATEWAY_REDIS_URL", def: undefined, arg: "URL", help: "run as one node of several gateways sharing sessions through this Redis (redis://[user:password@]host[:port][/db], or rediss:// for TLS): each session is owned by one node, the others forward its requests there and serve its event stream; needs --advertise-url and a --data-dir every node shares (prefer the env var when the URL holds a password: flags show up in ps)" },
	{ name: "advertise-url", type: "string", env: "PI_GATEWAY_ADVERTISE_URL", def: undefined, arg: "URL", help: "with --redis-url: how the other nodes reach this one, http://host:port (e.g. http://10.0.0.5:3000)" },
	{ name: "node-id", type: "string", env: "PI_GATEWAY_NODE_ID", def: undefined, arg: "ID", help: "with --redis-url: this node's name in Redis, 1 to 128 of A-Z a-z 0-9 . _ : - (default: a new UUIDv7 at each start, printed)" },
	{ name: "cluster-prefix", type: "string", env: "PI_GATEWAY_CLUSTER_PREFIX", def: DEFAULT_CLUSTER_PREFIX, arg: "PREFIX", help: "with --redis-url: the start of every Redis key the gateways write (one prefix per cluster sharing a Redis)" },
	{ name: "lease", type: "string", env: "PI_GATEWAY_LEASE", def: "10", arg: "SECONDS", help: `with --redis-url: how long a node's hold on a session lasts without renewal, ${MIN_LEASE_S} to ${MAX_LEASE_S} (fractions allowed): when a node dies, its sessions move to another node after this long` },
	{ name: "help", short: "h", type: "boolean", help: "print this help and exit" },
	{ name: "version", type: "boolean", help: "print the version and exit" },
];

/** A bad flag or value: printed with a hint, exit code 2. */
export class UsageError extends Error {
	constructor(message) {
		super(message);
		this.name = "UsageError";
	}
}

/** The gateway cannot start for a reason the user can fix (no key, ...): exit code `code`. */
export class StartupError extends Error {
	constructor(message, code = EXIT_FAILURE) {
		super(message);
		this.name = "StartupError";
		this.code = code;
	}
}

export function helpText() {
	const lines = [
		"Usage: pi-gateway [options]",
		"",
		"Runs pi coding-agent sessions behind HTTP (JSON, SSE, Vercel AI SDK chat stream, webhooks).",
		"Without --model it runs offline on pi-ai's faux model: no API key, no network.",
		"",
		"Options (each also read from its environment variable; a flag wins over the variable):",
	];
	for (const option of OPTIONS) {
		const flag = `${option.short ? `-${option.short}, ` : "    "}--${option.name}${option.arg ? ` ${option.arg}` : ""}`;
		lines.push(`  ${flag}`);
		let detail = option.help;
		if (option.def !== undefined && option.def !== false) detail += ` (default: ${option.def})`;
		lines.push(`        ${detail}`);
		if (option.env) lines.push(`        env: ${option.env}`);
	}
	lines.push(
		"",
		"Boolean variables accept 1/true/yes/on and 0/false/no/off.",
		"",
		"Examples:",
		"  pi-gateway --port 0",
		"  ANTHROPIC_API_KEY=... pi-gateway --model anthropic/claude-sonnet-4-5 --cwd ./my-project",
		"  PI_GATEWAY_TOKEN=s3cret pi-gateway --bind 0.0.0.0 --model openai/gpt-4o-mini",
		"  pi-gateway --agent-dir ~/.pi/agent --model anthropic/claude-sonnet-4-5   # reuse pi's logins and models",
		"  pi-gateway --data-dir ./conversations   # or --ephemeral: forget everything on exit",
		"  pi-gateway --approve bash,write,edit --approval-timeout 300   # these tools' calls wait for a decision (5 minutes at most)",
		"  PI_GATEWAY_NOTIFY_SECRET=whsec_... pi-gateway --notify-url https://hooks.example/pi --notify-events run.succeeded,run.failed",
		"  pi-gateway --log-format json --log-level debug   # JSON lines on stderr, one access line per request",
		"  PI_GATEWAY_REDIS_URL=redis://10.0.0.2:6379/0 pi-gateway --bind 0.0.0.0 --advertise-url http://10.0.0.5:3000 --data-dir /shared/pi   # one node of several",
		"",
		"Exit codes: 0 stopped cleanly, 1 could not start, 2 usage error; Ctrl-C twice forces the exit.",
	);
	return `${lines.join("\n")}\n`;
}

function packageVersion() {
	try {
		const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
		return String(pkg.version);
	} catch {
		return "unknown";
	}
}

function parseBooleanEnv(name, text) {
	const value = text.trim().toLowerCase();
	if (["1", "true", "yes", "on"].includes(value)) return true;
	if (["0", "false", "no", "off"].includes(value)) return false;
	throw new UsageError(`Invalid ${name}=${JSON.stringify(text)}: expected 1/true/yes/on or 0/false/no/off`);
}

/**
 * Parses argv and env into validated options.
 * @param {string[]} argv  the arguments after `node bin/pi-gateway.js`
 * @param {Record<string, string | undefined>} env
 * @returns {{ help: true } | { version: true } | { options: CliOptions }}
 * @throws {UsageError}
 */
export function parseCli(argv, env = process.env) {
	const spec = {};
	for (const option of OPTIONS) {
		spec[option.name] = { type: option.type };
		if (option.short) spec[option.name].short = option.short;
	}
	let parsed;
	try {
		parsed = parseArgs({ args: argv, options: spec, strict: true, allowPositionals: false, allowNegative: true });
	} catch (error) {
		throw new UsageError(error instanceof Error ? error.message : String(error));
	}
	const values = parsed.values;
	if (values.help) return { help: true };
	if (values.version) return { version: true };

	/** @type {Record<string, { value: any, source: "flag" | "env" | "default" }>} */
	const raw = {};
	for (const option of OPTIONS) {
		if (!option.env) continue;
		const name = option.name;
		const where = `--${name}`;
		if (values[name] !== undefined) {
			raw[name] = { value: values[name], source: "flag", where };
			continue;
		}
		const fromEnv = env[option.env];
		if (fromEnv !== undefined && fromEnv !== "") {
			const value = option.type === "boolean" ? parseBooleanEnv(option.env, fromEnv) : fromEnv;
			raw[name] = { value, source: "env", where: option.env };
			continue;
		}
		raw[name] = { value: option.def, source: "default", where };
	}

	const text = (name) => raw[name].value;
	const where = (name) => raw[name].where;
	const bad = (name, expected) =>
		new UsageError(`Invalid ${where(name)} ${JSON.stringify(String(raw[name].value))}: expected ${expected}`);

	const bind = String(text("bind")).trim();
	const bare = bind.startsWith("[") && bind.endsWith("]") ? bind.slice(1, -1) : bind;
	if (bind !== "localhost" && isIP(bare) === 0) throw bad("bind", 'an IP address or "localhost"');

	const portText = String(text("port")).trim();
	if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw bad("port", "an integer from 0 to 65535");
	const port = Number(portText);

	const idleText = String(text("idle-minutes")).trim();
	const idleMinutes = Number(idleText);
	if (idleText === "" || !Number.isFinite(idleMinutes) || idleMinutes < 0 || idleMinutes > MAX_IDLE_MINUTES) {
		throw bad("idle-minutes", `a number of minutes from 0 to ${MAX_IDLE_MINUTES}`);
	}

	const queueText = String(text("max-queue")).trim();
	if (!/^\d+$/.test(queueText) || Number(queueText) < 1 || Number(queueText) > 1_000_000) {
		throw bad("max-queue", "an integer from 1 to 1000000");
	}
	const maxQueue = Number(queueText);

	const sessionsText = String(text("max-sessions")).trim();
	if (!/^\d+$/.test(sessionsText) || Number(sessionsText) < 1 || Number(sessionsText) > MAX_SESSIONS) {
		throw bad("max-sessions", `an integer from 1 to ${MAX_SESSIONS}`);
	}
	// Only a value given reaches the config; the gateway's own default applies otherwise.
	const maxSessions = raw["max-sessions"].source === "default" ? undefined : Number(sessionsText);

	const defaultMode = String(text("default-mode")).trim();
	if (!MODES.includes(defaultMode)) throw bad("default-mode", MODES.join(", "));

	const token = optionalSecret(raw.token);
	const webhookSecret = optionalSecret(raw["webhook-secret"]);

	let webhookPath = String(text("webhook-path")).trim();
	if (!webhookPath.startsWith("/") || /[\s?#]/.test(webhookPath)) {
		throw bad("webhook-path", 'a path starting with "/" (no spaces, "?" or "#")');
	}
	if (webhookPath.length > 1) webhookPath = webhookPath.replace(/\/+$/, "") || "/";

	let cors;
	if (raw.cors.value !== undefined) {
		const items = String(raw.cors.value)
			.split(",")
			.map((item) => item.trim())
			.filter(Boolean);
		if (items.length === 0) throw bad("cors", "'*' or comma-separated origins such as https://app.example");
		if (items.includes("*")) {
			cors = "*";
		} else {
			cors = items.map((item) => {
				let url;
				try {
					url = new URL(item);
				} catch {
					throw bad("cors", `'*' or origins such as https://app.example (not ${JSON.stringify(item)})`);
				}
				const origin = item.replace(/\/+$/, "");
				if (!/^https?:$/.test(url.protocol) || url.origin !== origin) {
					throw bad("cors", `'*' or origins such as https://app.example (scheme://host[:port], not ${JSON.stringify(item)})`);
				}
				return origin;
			});
		}
	}

	let allowedHosts;
	if (raw["allowed-hosts"].value !== undefined) {
		allowedHosts = String(raw["allowed-hosts"].value)
			.split(",")
			.map((item) => item.trim().toLowerCase())
			.filter(Boolean)
			// The Host header carries an IPv6 address in brackets.
			.map((item) => (isIP(item) === 6 ? `[${item}]` : item));
		const wrong = allowedHosts.find((host) => !/^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\])$/.test(host));
		if (allowedHosts.length === 0 || wrong !== undefined) {
			throw bad(
				"allowed-hosts",
				`comma-separated host names or addresses without scheme or port (gw.example,10.0.0.5${wrong === undefined ? "" : `; not ${JSON.stringify(wrong)}`})`,
			);
		}
	}

	let model;
	if (raw.model.value !== undefined) {
		const spec = String(raw.model.value).trim();
		const slash = spec.indexOf("/");
		if (slash <= 0 || slash === spec.length - 1) throw bad("model", "PROVIDER/ID, e.g. anthropic/claude-sonnet-4-5");
		model = { spec, provider: spec.slice(0, slash), id: spec.slice(slash + 1) };
	}

	let cwd;
	if (raw.cwd.value !== undefined) {
		cwd = resolve(String(raw.cwd.value));
		let isDir = false;
		try {
			isDir = statSync(cwd).isDirectory();
		} catch {
			// reported below
		}
		if (!isDir) throw bad("cwd", "an existing directory");
	}
	const agentDir = raw["agent-dir"].value !== undefined ? resolve(expandHome(String(raw["agent-dir"].value), env)) : undefined;

	// Where conversations live. --ephemeral and --data-dir exclude each other; given one as a flag
	// and the other as a variable, the flag wins (as a flag wins over its own variable).
	let ephemeral = Boolean(raw.ephemeral.value);
	const dataEntry = raw["data-dir"];
	let dataDir;
	let dataDirSource;
	if (dataEntry.value !== undefined) {
		const dirText = String(dataEntry.value).trim();
		if (dirText === "") throw bad("data-dir", "a directory");
		if (ephemeral && raw.ephemeral.source === dataEntry.source) {
			throw new UsageError(`${raw.ephemeral.where} and ${dataEntry.where} exclude each other: keep one`);
		}
		if (ephemeral && dataEntry.source === "flag") ephemeral = false;
		if (!ephemeral) {
			dataDir = resolve(expandHome(dirText, env));
			dataDirSource = dataEntry.source;
		}
	}
	if (!ephemeral && dataDir === undefined) {
		if (agentDir !== undefined) {
			dataDir = join(agentDir, "sessions");
			dataDirSource = "agent-dir";
		} else {
			dataDir = defaultDataDir(env);
			dataDirSource = "default";
		}
	}

	// Approvals: --approve (ask) and --deny (deny) name tools; a tool in both is a usage error.
	const approve = toolList(raw.approve);
	const deny = toolList(raw.deny);
	const both = approve?.find((tool) => deny?.includes(tool));
	if (both !== undefined) {
		throw new UsageError(`${JSON.stringify(both)} is in both ${raw.approve.where} and ${raw.deny.where}: a tool is either asked about or denied`);
	}
	let approvalTimeoutMs;
	if (raw["approval-timeout"].value !== undefined) {
		const secondsText = String(raw["approval-timeout"].value).trim();
		const seconds = Number(secondsText);
		approvalTimeoutMs = Math.round(seconds * 1000);
		if (secondsText === "" || !Number.isFinite(seconds) || approvalTimeoutMs < 1 || seconds > MAX_APPROVAL_TIMEOUT_S) {
			throw bad("approval-timeout", `a number of seconds from 0.001 to ${MAX_APPROVAL_TIMEOUT_S}`);
		}
	}

	const logFormat = String(text("log-format")).trim();
	if (!LOG_FORMATS.includes(logFormat)) throw bad("log-format", LOG_FORMATS.join(" or "));
	const logLevel = String(text("log-level")).trim();
	if (!LOG_LEVELS.includes(logLevel)) throw bad("log-level", LOG_LEVELS.join(", "));

	// Outbound webhooks: one configured target (--notify-*), and per-request callbacks (--callback-*).
	const notifySecret = signingSecret(raw["notify-secret"]);
	let notifyUrl;
	if (raw["notify-url"].value !== undefined) notifyUrl = webhookUrl(raw["notify-url"]);
	if (notifyUrl !== undefined && notifySecret === undefined) {
		throw new UsageError(`${where("notify-url")} needs a signing secret: add --notify-secret whsec_... (better: PI_GATEWAY_NOTIFY_SECRET)`);
	}
	if (notifySecret !== undefined && notifyUrl === undefined) {
		throw new UsageError(`${where("notify-secret")} signs deliveries to --notify-url (or PI_GATEWAY_NOTIFY_URL), which is not set`);
	}
	let notifyEvents;
	if (raw["notify-events"].value !== undefined) {
		const names = String(raw["notify-events"].value)
			.split(",")
			.map((name) => name.trim())
			.filter(Boolean);
		const unknown = names.find((name) => !WEBHOOK_EVENTS.includes(name));
		if (names.length === 0 || unknown !== undefined) {
			throw bad("notify-events", `comma-separated events of ${WEBHOOK_EVENTS.join(", ")}${unknown === undefined ? "" : ` (not ${JSON.stringify(unknown)})`}`);
		}
		notifyEvents = [...new Set(names)];
	}
	let retryScheduleMs;
	if (raw["notify-retries"].value !== undefined) {
		const scheduleText = String(raw["notify-retries"].value).trim();
		const expected = `comma-separated waits in seconds, each from 0.001 to ${MAX_RETRY_DELAY_S} (e.g. 5,30,120), at most ${MAX_RETRIES}, or "none"`;
		if (scheduleText.toLowerCase() === "none") {
			retryScheduleMs = [];
		} else {
			const items = scheduleText.split(",").map((item) => item.trim());
			if (items.length > MAX_RETRIES) throw bad("notify-retries", `${expected}; got ${items.length}`);
			retryScheduleMs = items.map((item) => {
				const seconds = Number(item);
				const ms = Math.round(seconds * 1000);
				if (item === "" || !Number.isFinite(seconds) || ms < 1 || seconds > MAX_RETRY_DELAY_S) {
					throw bad("notify-retries", `${expected} (not ${JSON.stringify(item)})`);
				}
				return ms;
			});
		}
	}
	const callbackSecret = signingSecret(raw["callback-secret"]);
	let callbackHosts;
	if (raw["callback-hosts"].value !== undefined) {
		const items = String(raw["callback-hosts"].value)
			.split(",")
			.map((item) => item.trim().toLowerCase())
			.filter(Boolean);
		const expected = "comma-separated hosts without scheme or port: hooks.example.com, *.example.com, '*', 10.0.0.5 or [::1]";
		const wrong = items.find((item) => !isHostPattern(item));
		if (items.length === 0 || wrong !== undefined) {
			throw bad("callback-hosts", `${expected}${wrong === undefined ? "" : ` (not ${JSON.stringify(wrong)})`}`);
		}
		if (items.length > MAX_CALLBACK_HOSTS) throw bad("callback-hosts", `at most ${MAX_CALLBACK_HOSTS} hosts; got ${items.length}`);
		callbackHosts = [...new Set(items)];
		if (callbackSecret === undefined) {
			throw new UsageError(
				`${where("callback-hosts")} allows callbacks, which are signed: add --callback-secret whsec_... (better: PI_GATEWAY_CALLBACK_SECRET)`,
			);
		}
	}

	const cluster = clusterOptions(raw, { ephemeral, dataDirSource });

	return {
		options: {
			bind,
			port,
			token,
			tokenFromEnv: raw.token.source === "env",
			webhook: Boolean(raw.webhook.value),
			webhookPath,
			webhookSecret,
			webhookSecretGenerated: false,
			webhookSessionKeys: Boolean(raw["webhook-session-keys"].value),
			idleMinutes,
			maxQueue,
			maxSessions,
			defaultMode,
			cors,
			allowedHosts,
			model,
			agentDir,
			cwd,
			ephemeral,
			dataDir,
			dataDirSource,
			approve,
			deny,
			approvalTimeoutMs,
			logFormat,
			logLevel,
			metricsPublic: Boolean(raw["metrics-public"].value),
			notifyUrl,
			notifySecret,
			notifyEvents,
			retryScheduleMs,
			callbackHosts,
			callbackSecret,
			cluster,
			clusterFlagsIgnored: cluster === undefined ? CLUSTER_ONLY_FLAGS.filter((name) => raw[name].source !== "default").map((name) => raw[name].where) : [],
		},
	};
}

/**
 * The cluster options (`--redis-url` and the flags that go with it), or undefined without
 * `--redis-url`. A node that takes a session over loads it from the data dir, so a cluster needs
 * a dir every node shares, named on purpose: `--ephemeral`, or no `--data-dir` /
 * PI_GATEWAY_DATA_DIR (the per-user default dir, or `<agent-dir>/sessions`), is a usage error.
 * @param {Record<string, { value: any, source: string, where: string }>} raw
 * @param {{ ephemeral: boolean, dataDirSource: string | undefined }} storage
 * @returns {{ redisUrl: string, redisShown: string, advertiseUrl: string, nodeId?: string, prefix?: string, leaseMs?: number } | undefined}
 */
function clusterOptions(raw, { ephemeral, dataDirSource }) {
	const entry = raw["redis-url"];
	if (entry.value === undefined) return undefined;
	const { url: redisUrl, shown: redisShown } = parseRedisUrl(entry);

	const advertise = raw["advertise-url"];
	if (advertise.value === undefined) {
		throw new UsageError(
			`${entry.where} needs --advertise-url http://host:port (or PI_GATEWAY_ADVERTISE_URL): the address the other nodes reach this one at`,
		);
	}
	const advertiseUrl = parseAdvertiseUrl(advertise);

	if (ephemeral) {
		throw new UsageError(
			`${raw.ephemeral.where} cannot be used with ${entry.where}: another node takes a session over by loading its conversation from the data dir, so the nodes need one they share (--data-dir DIR)`,
		);
	}
	if (dataDirSource !== "flag" && dataDirSource !== "env") {
		throw new UsageError(
			`${entry.where} needs --data-dir DIR (or PI_GATEWAY_DATA_DIR): a dir every node shares (the same path on a shared filesystem), where a node taking a session over finds its conversation`,
		);
	}

	let nodeId;
	const idEntry = raw["node-id"];
	if (idEntry.value !== undefined) {
		nodeId = String(idEntry.value).trim();
		if (!/^[A-Za-z0-9._:-]+$/.test(nodeId) || nodeId.length > MAX_NODE_ID_BYTES) {
			throw new UsageError(
				`Invalid ${idEntry.where} ${JSON.stringify(String(idEntry.value))}: expected 1 to ${MAX_NODE_ID_BYTES} characters of A-Z a-z 0-9 . _ : -`,
			);
		}
	}

	const prefixEntry = raw["cluster-prefix"];
	const prefix = String(prefixEntry.value);
	if (prefix === "" || Buffer.byteLength(prefix) > MAX_CLUSTER_PREFIX_BYTES || /[\s\u0000-\u001f\u007f]/.test(prefix)) {
		throw new UsageError(
			`Invalid ${prefixEntry.where} ${JSON.stringify(prefix)}: expected 1 to ${MAX_CLUSTER_PREFIX_BYTES} bytes without spaces or control characters (e.g. "pi-gateway:" or "team-a:")`,
		);
	}

	const leaseEntry = raw.lease;
	const leaseText = String(leaseEntry.value).trim();
	const seconds = Number(leaseText);
	const leaseMs = Math.round(seconds * 1000);
	if (leaseText === "" || !Number.isFinite(seconds) || leaseMs < MIN_LEASE_S * 1000 || leaseMs > MAX_LEASE_S * 1000) {
		throw new UsageError(
			`Invalid ${leaseEntry.where} ${JSON.stringify(String(leaseEntry.value))}: expected a number of seconds from ${MIN_LEASE_S} to ${MAX_LEASE_S} (fractions allowed)`,
		);
	}

	/** @type {{ redisUrl: string, redisShown: string, advertiseUrl: string, nodeId?: string, prefix?: string, leaseMs?: number }} */
	const cluster = { redisUrl, redisShown, advertiseUrl };
	if (nodeId !== undefined) cluster.nodeId = nodeId;
	// Only a value given reaches the config; the gateway's own defaults apply otherwise.
	if (prefixEntry.source !== "default") cluster.prefix = prefix;
	if (leaseEntry.source !== "default") cluster.leaseMs = leaseMs;
	return cluster;
}

/**
 * `--redis-url`: `redis://` or `rediss://`, a host, an optional port (not 0), an optional
 * database number as the path, no fragment. The error never quotes the URL (it may hold a
 * password); `shown` is the URL without its password, for the banner.
 * @param {{ value: any, where: string }} entry
 * @returns {{ url: string, shown: string }}
 */
function parseRedisUrl(entry) {
	const text = String(entry.value).trim();
	const expected = "expected redis://[user:password@]host[:port][/db] or rediss://... (TLS)";
	const fail = (why) => new UsageError(`Invalid ${entry.where}: ${why}`);
	if (text === "") throw fail(expected);
	if (Buffer.byteLength(text) > MAX_REDIS_URL_BYTES) throw fail(`longer than ${MAX_REDIS_URL_BYTES} bytes; ${expected}`);
	let url;
	try {
		url = new URL(text);
	} catch {
		throw fail(`not a URL; ${expected}`);
	}
	if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
		throw fail(`the scheme is ${JSON.stringify(url.protocol.replace(/:$/, ""))}; ${expected}`);
	}
	if (url.hostname === "") throw fail(`no host; ${expected}`);
	if (url.port === "0") throw fail(`port 0; ${expected}`);
	if (!/^(?:\/\d{0,5})?$/.test(url.pathname)) throw fail(`the path must be a database number (/0, /1, ...); ${expected}`);
	if (url.hash !== "" || text.includes("#")) throw fail(`must not carry a #fragment; ${expected}`);
	return { url: text, shown: redactRedisUrl(url) };
}

/** A Redis URL without its password (`redis://user@host:port/db`), for the banner. */
function redactRedisUrl(url) {
	const user = url.username ? `${url.username}@` : "";
	const secret = url.password ? " (password hidden)" : "";
	return `${url.protocol}//${user}${url.host}${url.pathname === "/" ? "" : url.pathname}${url.search ? "?..." : ""}${secret}`;
}

/**
 * `--advertise-url`: `http://host[:port]` with nothing after it (the nodes talk plain HTTP on
 * their private network); returned as its origin (`http://10.0.0.5:3000`).
 * @param {{ value: any, where: string }} entry
 */
function parseAdvertiseUrl(entry) {
	const text = String(entry.value).trim();
	const fail = (why) =>
		new UsageError(`Invalid ${entry.where} ${JSON.stringify(text)}: ${why}; expected http://host:port, how the other nodes reach this one`);
	if (Buffer.byteLength(text) > MAX_ADVERTISE_URL_BYTES) throw fail(`longer than ${MAX_ADVERTISE_URL_BYTES} bytes`);
	let url;
	try {
		url = new URL(text);
	} catch {
		throw fail("not a URL");
	}
	if (url.protocol !== "http:") throw fail("plain http:// only (the nodes talk on their private network)");
	if (url.hostname === "") throw fail("no host");
	if (url.username !== "" || url.password !== "") throw fail("must not carry credentials (user@host)");
	if (url.port === "0") throw fail("port 0");
	if (url.pathname !== "/" || url.search !== "" || url.hash !== "" || /[?#]/.test(text) || /^http:\/\/[^/]+\/./i.test(text)) {
		throw fail("no path, query or fragment");
	}
	return url.origin;
}

/** A new UUIDv7 (RFC 9562: 48 bits of Unix milliseconds, then random bits), the default node id. */
export function uuidv7() {
	const bytes = randomBytes(16);
	let ms = Date.now();
	for (let i = 5; i >= 0; i--) {
		bytes[i] = ms % 256;
		ms = Math.floor(ms / 256);
	}
	bytes[6] = (bytes[6] & 0x0f) | 0x70;
	bytes[8] = (bytes[8] & 0x3f) | 0x80;
	const hex = bytes.toString("hex");
	return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * A Standard Webhooks signing secret (`whsec_` and standard base64, padded or not, of 16 to 64
 * bytes), or undefined when the option is not set. The error never shows the secret.
 * @param {{ value: any, where: string }} entry
 * @returns {string | undefined}
 */
function signingSecret(entry) {
	const value = optionalSecret(entry);
	if (value === undefined) return undefined;
	const secret = value.trim();
	const fail = (why) => new UsageError(`Invalid ${entry.where}: ${why} (generate one: node -e 'console.log("whsec_" + crypto.randomBytes(24).toString("base64"))')`);
	if (!secret.startsWith("whsec_")) throw fail('expected "whsec_" followed by base64, as Standard Webhooks secrets are written');
	const encoded = secret.slice("whsec_".length);
	const key = Buffer.from(encoded, "base64");
	// Buffer.from skips what is not base64: encoding back must give the same text.
	const canonical = key.toString("base64");
	if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded) || (encoded.includes("=") ? canonical !== encoded : canonical.replace(/=+$/, "") !== encoded)) {
		throw fail('the part after "whsec_" is not valid base64');
	}
	if (key.length < MIN_KEY_BYTES || key.length > MAX_KEY_BYTES) {
		throw fail(`the key must decode to ${MIN_KEY_BYTES} to ${MAX_KEY_BYTES} bytes, got ${key.length}`);
	}
	return secret;
}

/**
 * An outbound webhook URL: absolute http(s), a host, no credentials, no fragment, port not 0, at
 * most 2048 bytes. Returns it normalized (percent-encoded, host lowercased) as the gateway takes it.
 * @param {{ value: any, where: string }} entry
 */
function webhookUrl(entry) {
	const text = String(entry.value).trim();
	const fail = (why) => new UsageError(`Invalid ${entry.where} ${JSON.stringify(text)}: ${why}`);
	let url;
	try {
		url = new URL(text);
	} catch {
		throw fail("expected an absolute http:// or https:// URL");
	}
	if (url.protocol !== "http:" && url.protocol !== "https:") throw fail("expected an http:// or https:// URL");
	if (url.hostname === "") throw fail("no host");
	if (url.username !== "" || url.password !== "") throw fail("must not carry credentials (user@host)");
	if (url.hash !== "" || text.includes("#")) throw fail("must not carry a #fragment");
	if (url.port === "0") throw fail("port 0");
	if (Buffer.byteLength(url.href) > MAX_WEBHOOK_URL_BYTES) throw fail(`longer than ${MAX_WEBHOOK_URL_BYTES} bytes`);
	return url.href;
}

/** Whether `item` (lowercased) is a `webhooks.allowedHosts` entry: `*`, `*.name`, a name or an IP address. */
function isHostPattern(item) {
	if (item === "*") return true;
	const name = item.startsWith("*.") ? item.slice(2) : item;
	if (name !== item) return isHostName(name);
	if (item.startsWith("[") && item.endsWith("]")) return isIP(item.slice(1, -1)) === 6;
	return isIP(item) !== 0 || isHostName(item);
}

/** A DNS name: dot-separated labels of letters, digits, "-" and "_", 1 to 63 each, 253 in all (a trailing dot allowed). */
function isHostName(text) {
	const name = text.endsWith(".") ? text.slice(0, -1) : text;
	return name.length > 0 && name.length <= 253 && name.split(".").every((label) => /^[a-z0-9_-]{1,63}$/.test(label));
}

/**
 * The tool names of `--approve` / `--deny` (comma-separated, trimmed, each once), or undefined
 * when the option is not set. A name: 1 to 128 bytes without spaces or control characters, or
 * `*` (every tool not named elsewhere).
 * @param {{ value: any, where: string }} entry
 * @returns {string[] | undefined}
 */
function toolList(entry) {
	if (entry.value === undefined) return undefined;
	const names = String(entry.value)
		.split(",")
		.map((name) => name.trim())
		.filter(Boolean);
	const expected = "comma-separated tool names such as bash,write (or '*': every tool not named elsewhere)";
	if (names.length === 0) throw new UsageError(`Invalid ${entry.where} ${JSON.stringify(String(entry.value))}: expected ${expected}`);
	for (const name of names) {
		if (/[\s\u0000-\u001f\u007f]/.test(name) || Buffer.byteLength(name) > MAX_TOOL_NAME_BYTES) {
			const shown = name.length > 40 ? `${name.slice(0, 37)}...` : name;
			throw new UsageError(
				`Invalid ${entry.where}: ${JSON.stringify(shown)} is not a tool name (no spaces or control characters, at most ${MAX_TOOL_NAME_BYTES} bytes); expected ${expected}`,
			);
		}
	}
	return [...new Set(names)];
}

/**
 * `approval.policy` for parsed options: `ask` for the `--approve` tools, `deny` for the `--deny`
 * ones; undefined when neither names a tool.
 * @param {{ approve?: string[], deny?: string[] }} options
 * @returns {Record<string, "ask" | "deny"> | undefined}
 */
export function approvalPolicy(options) {
	if (!options.approve?.length && !options.deny?.length) return undefined;
	/** @type {Record<string, "ask" | "deny">} */
	const policy = {};
	for (const tool of options.approve ?? []) policy[tool] = "ask";
	for (const tool of options.deny ?? []) policy[tool] = "deny";
	return policy;
}

/**
 * The default sessions dir: `$XDG_DATA_HOME/pi-gateway` (an absolute XDG_DATA_HOME only, as the
 * XDG spec says), else `~/.local/share/pi-gateway`.
 */
export function defaultDataDir(env = process.env) {
	const xdg = env.XDG_DATA_HOME;
	if (xdg && isAbsolute(xdg)) return join(xdg, "pi-gateway");
	return join(env.HOME || homedir(), ".local", "share", "pi-gateway");
}

/** @typedef {NonNullable<ReturnType<typeof parseCli>["options"]>} CliOptions */

function optionalSecret(entry) {
	if (entry.value === undefined) return undefined;
	const value = String(entry.value);
	if (value.trim() === "") throw new UsageError(`Invalid ${entry.where}: must not be empty`);
	if (/[\r\n]/.test(value)) throw new UsageError(`Invalid ${entry.where}: must be one line`);
	return value;
}

function expandHome(path, env) {
	if (path === "~" || path.startsWith("~/")) {
		const home = env.HOME || process.env.HOME;
		if (home) return join(home, path.slice(1));
	}
	return path;
}

/** A random webhook secret: 24 bytes from the system's CSPRNG, base64url (32 characters). */
export function generateWebhookSecret() {
	return randomBytes(24).toString("base64url");
}

/** The `GatewayConfig` for parsed options. */
export function gatewayConfig(options) {
	/** @type {Record<string, any>} */
	const config = {
		bind: options.bind,
		port: options.port,
		session: { idleMinutes: options.idleMinutes, maxQueuePerSession: options.maxQueue },
		webhook: { enabled: options.webhook, basePath: options.webhookPath },
	};
	if (options.token !== undefined) config.bearerToken = options.token;
	if (options.webhookSecret !== undefined) config.webhook.secret = options.webhookSecret;
	if (options.webhookSessionKeys) config.webhook.allowRequestSessionKey = true;
	if (options.defaultMode !== undefined && options.defaultMode !== "queue") config.session.defaultMode = options.defaultMode;
	if (options.maxSessions !== undefined) config.session.maxSessions = options.maxSessions;
	if (options.cors !== undefined) config.cors = { origins: options.cors };
	if (options.allowedHosts !== undefined) config.allowedHosts = options.allowedHosts;
	const policy = approvalPolicy(options);
	if (policy !== undefined || options.approvalTimeoutMs !== undefined) {
		config.approval = {};
		if (policy !== undefined) config.approval.policy = policy;
		if (options.approvalTimeoutMs !== undefined) config.approval.timeoutMs = options.approvalTimeoutMs;
	}
	if (options.metricsPublic) config.metrics = { public: true };
	const webhooks = {};
	if (options.notifyUrl !== undefined && options.notifySecret !== undefined) {
		const target = { url: options.notifyUrl, secret: options.notifySecret };
		if (options.notifyEvents !== undefined) target.events = options.notifyEvents;
		webhooks.outbound = [target];
	}
	if (options.callbackHosts !== undefined) webhooks.allowedHosts = options.callbackHosts;
	if (options.callbackSecret !== undefined) webhooks.callbackSecret = options.callbackSecret;
	if (options.retryScheduleMs !== undefined) webhooks.retryScheduleMs = options.retryScheduleMs;
	if (Object.keys(webhooks).length > 0) config.webhooks = webhooks;
	if (options.cluster !== undefined) {
		const { redisUrl, advertiseUrl, nodeId, prefix, leaseMs } = options.cluster;
		config.cluster = { redisUrl, advertiseUrl };
		if (nodeId !== undefined) config.cluster.nodeId = nodeId;
		if (prefix !== undefined) config.cluster.prefix = prefix;
		if (leaseMs !== undefined) config.cluster.leaseMs = leaseMs;
	}
	return config;
}

// ---------------------------------------------------------------------------------------------
// Agents: each is { primarySession, createSession(key), sessionExists(key), deleteSession(key),
// cwd, agentDir, label, close() }.

/** True when `error` says that the package `name` itself (not one of its files) cannot be found. */
function isMissingPackage(error, name) {
	if (!error || typeof error !== "object") return false;
	const code = /** @type {any} */ (error).code;
	if (code !== "ERR_MODULE_NOT_FOUND" && code !== "MODULE_NOT_FOUND") return false;
	const message = String(/** @type {any} */ (error).message ?? "");
	return message.includes(`'${name}'`) || message.includes(`"${name}"`);
}

/**
 * Runs `load` (an import of pi-coding-agent, or of a module that imports it); when the optional
 * peer dependency (or pi-ai, which comes with it) is not installed, throws a StartupError that
 * says what to install instead of a stack trace. Any other failure is rethrown as is.
 * @template T
 * @param {() => Promise<T>} load
 * @returns {Promise<T>}
 */
export async function importPeer(load) {
	try {
		return await load();
	} catch (error) {
		if (isMissingPackage(error, PEER_PACKAGE) || isMissingPackage(error, "@mariozechner/pi-ai")) {
			throw new StartupError(
				`${PEER_PACKAGE} (pi's coding agent, an optional peer dependency) is not installed: install @mariozechner/pi-coding-agent, e.g. npm install ${PEER_PACKAGE}`,
			);
		}
		throw error;
	}
}

/**
 * Real pi sessions on a real model, with pi's own model registry and auth.
 *
 * Everything pi reads comes from `agentDir` (auth.json, models.json, settings.json,
 * extensions) and from the workspace `cwd` (project .pi settings and extensions, AGENTS.md);
 * API keys from the environment work as in `pi` itself. Before anything starts, the model
 * must exist in the registry and have credentials, or this throws a StartupError.
 *
 * Sessions are stored under `sessionDir` (default `<agentDir>/sessions`) in the layout of
 * `gatewaySessionStore` (lib/faux-agent.js); each continues the most recent session file of its
 * directory. The model is the one asked for, also for a continued session (as `pi --model`
 * does); the thinking level is restored.
 *
 * @param {{ model: { spec: string, provider: string, id: string }, cwd: string, agentDir: string, sessionDir?: string, say?: (message: string) => void }} options
 *   `say`: where a warning goes (the CLI's log writer; default: `pi-gateway: ...` on stderr)
 */
export async function createModelPiAgent({ model: wanted, cwd, agentDir, sessionDir, say = (message) => process.stderr.write(`pi-gateway: ${message}\n`) }) {
	const pi = await importPeer(() => import("@mariozechner/pi-coding-agent"));
	const { openGatewaySessionManager } = await import("../index.js");
	const { closeSessions, gatewaySessionStore, trackSession } = await import("./faux-agent.js");
	const authStorage = pi.AuthStorage.create(join(agentDir, "auth.json"));
	const modelRegistry = pi.ModelRegistry.create(authStorage, join(agentDir, "models.json"));
	const loadError = modelRegistry.getError();
	if (loadError) say(`warning: ${join(agentDir, "models.json")}: ${loadError}`);

	const model = resolveModel(modelRegistry, wanted);
	await checkModelAuth(modelRegistry, model);

	const settingsManager = pi.SettingsManager.create(cwd, agentDir);
	const store = gatewaySessionStore(sessionDir ?? join(agentDir, "sessions"));
	/** The live sessions: the gateway disposes what it evicts, and trackSession drops it from here. */
	/** @type {Set<any>} */
	const sessions = new Set();
	let closed = false;

	async function newSession(sessionManager) {
		if (closed) throw new Error("the agent is closed");
		const { session } = await pi.createAgentSession({
			cwd,
			agentDir,
			model,
			authStorage,
			modelRegistry,
			settingsManager,
			sessionManager,
		});
		return trackSession(sessions, session);
	}

	const primarySession = await newSession(pi.SessionManager.continueRecent(cwd, store.primaryDir));
	return {
		primarySession,
		// The key's conversation continues (the session dir the runtime's getGatewaySessionDir(key) names).
		createSession: (key) => newSession(openGatewaySessionManager(cwd, key, store.keysRoot)),
		sessionExists: (key) => store.sessionExists(key),
		deleteSession: (key) => store.deleteSession(key),
		cwd,
		agentDir,
		sessionDir: store.root,
		label: `${model.provider}/${model.id}`,
		async close() {
			if (closed) return;
			closed = true;
			await closeSessions(sessions);
		},
	};
}

/**
 * Finds `provider/id` in pi's registry (built-in models plus the agent dir's models.json).
 * The provider matches case-insensitively; the id exactly, then case-insensitively; a whole
 * "provider/id" that is itself an id (OpenRouter style) matches too.
 */
export function resolveModel(modelRegistry, wanted) {
	const all = modelRegistry.getAll();
	const providers = [...new Set(all.map((m) => m.provider))].sort();
	const provider = providers.find((p) => p.toLowerCase() === wanted.provider.toLowerCase());
	if (provider) {
		const ofProvider = all.filter((m) => m.provider === provider);
		const found =
			ofProvider.find((m) => m.id === wanted.id) ??
			ofProvider.find((m) => m.id.toLowerCase() === wanted.id.toLowerCase());
		if (found) return found;
		const whole = all.find((m) => m.id.toLowerCase() === wanted.spec.toLowerCase());
		if (whole) return whole;
		const ids = ofProvider.map((m) => m.id).sort();
		const shown = ids.slice(0, 30).join(", ") + (ids.length > 30 ? `, ... (${ids.length} in all)` : "");
		throw new StartupError(`Unknown model "${wanted.spec}": provider "${provider}" has ${shown}`, EXIT_USAGE);
	}
	const whole = all.find((m) => m.id.toLowerCase() === wanted.spec.toLowerCase());
	if (whole) return whole;
	throw new StartupError(
		`Unknown model "${wanted.spec}": no provider "${wanted.provider}". Known providers: ${providers.join(", ")}` +
			" (custom providers go in <agent-dir>/models.json)",
		EXIT_USAGE,
	);
}

/** API-key variables of the common providers, for the error message (pi-ai knows the rest). */
const KEY_HINTS = {
	anthropic: "ANTHROPIC_API_KEY",
	openai: "OPENAI_API_KEY",
	google: "GEMINI_API_KEY",
	groq: "GROQ_API_KEY",
	xai: "XAI_API_KEY",
	openrouter: "OPENROUTER_API_KEY",
	mistral: "MISTRAL_API_KEY",
	deepseek: "DEEPSEEK_API_KEY",
	cerebras: "CEREBRAS_API_KEY",
	"vercel-ai-gateway": "AI_GATEWAY_API_KEY",
};

/** Fails like pi's own AgentSession would on the first prompt, but before the gateway starts. */
export async function checkModelAuth(modelRegistry, model) {
	const variable = KEY_HINTS[model.provider];
	const how =
		(variable ? `Set ${variable} in the environment` : `Set the API key variable of provider "${model.provider}" in the environment`) +
		", or run with --agent-dir pointing at a pi agent dir that has credentials for it (e.g. --agent-dir ~/.pi/agent after `pi /login`).";
	if (!modelRegistry.hasConfiguredAuth(model)) {
		throw new StartupError(`No API key for provider "${model.provider}" (model ${model.provider}/${model.id}). ${how}`);
	}
	let auth;
	try {
		auth = await modelRegistry.getApiKeyAndHeaders(model);
	} catch (error) {
		auth = { ok: false, error: error instanceof Error ? error.message : String(error) };
	}
	if (!auth.ok) {
		throw new StartupError(`Cannot authenticate provider "${model.provider}": ${auth.error}. ${how}`);
	}
	if (!auth.apiKey && !(auth.headers && Object.keys(auth.headers).length)) {
		throw new StartupError(`No API key for provider "${model.provider}" (model ${model.provider}/${model.id}). ${how}`);
	}
}

// ---------------------------------------------------------------------------------------------
// The banner.

/** `120 s`, `1.5 s`: milliseconds as seconds. */
function formatSeconds(ms) {
	return `${Number((ms / 1000).toFixed(3))} s`;
}

/** `5 s`, `2 min`, `1 h`, `0.25 s`: a retry delay as the banner shows it. */
function formatDelay(ms) {
	if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
	if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000} min`;
	return formatSeconds(ms);
}

/** A webhook URL without its query (which may hold a token), for the banner. */
function redactUrl(text) {
	const url = new URL(text);
	return `${url.origin}${url.pathname}${url.search ? "?..." : ""}`;
}

/** Quotes a word for a POSIX shell. */
export function shellQuote(word) {
	return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Whether a bind address is loopback only ("localhost", 127.x.y.z, ::1). */
function isLoopbackBind(bind) {
	return isLoopbackHost(bind.replace(/^\[(.*)\]$/, "$1"));
}

/** Whether a host name or address is loopback ("localhost", 127.x.y.z, ::1). */
function isLoopbackHost(host) {
	const name = host.toLowerCase();
	return name === "localhost" || name.endsWith(".localhost") || name === "::1" || (isIP(name) === 4 && name.startsWith("127."));
}

/** The host to put in URLs for a bind address (wildcards become loopback). */
function urlHost(bind) {
	const bare = bind.startsWith("[") && bind.endsWith("]") ? bind.slice(1, -1) : bind;
	if (bare === "0.0.0.0") return "127.0.0.1";
	if (bare === "::") return "[::1]";
	return isIP(bare) === 6 ? `[${bare}]` : bare;
}

/**
 * What the CLI prints once listening. The first line is machine-readable:
 * `pi-gateway listening on http://BIND:PORT` (the bind address as given, so 0.0.0.0 stays
 * 0.0.0.0); the commands below it use loopback for wildcard binds. The `sessions` line names the
 * dir conversations are kept in (with " (temporary, removed on exit)" under --ephemeral).
 */
export function banner({ options, port, agent, agentDirIsTemp, sessionDirIsTemp = false }) {
	const host = urlHost(options.bind);
	const bare = options.bind.replace(/^\[(.*)\]$/, "$1");
	const listenHost = isIP(bare) === 6 ? `[${bare}]` : bare;
	const base = `http://${host}:${port}`;
	const auth =
		options.token === undefined
			? ""
			: options.tokenFromEnv
				? ` -H "authorization: Bearer $PI_GATEWAY_TOKEN"`
				: ` -H ${shellQuote(`authorization: Bearer ${options.token}`)}`;
	const json = " -H 'content-type: application/json'";
	const question = options.model ? "Which files are in your working directory?" : "What is in hello.txt?";
	const lines = [
		`pi-gateway listening on http://${listenHost}:${port}`,
		`  model      ${agent.label}${options.model ? "" : " (offline faux model; use --model provider/id for a real one)"}`,
		`  workspace  ${agent.cwd}`,
		`  agent dir  ${agent.agentDir}${agentDirIsTemp ? " (temporary, removed on exit)" : ""}`,
		`  sessions   ${agent.sessionDir}${sessionDirIsTemp ? " (temporary, removed on exit)" : ""}`,
		`  auth       ${
			options.token === undefined
				? "none (--token or PI_GATEWAY_TOKEN to require a bearer token)"
				: options.tokenFromEnv
					? "bearer token required (the commands below read $PI_GATEWAY_TOKEN from your shell)"
					: "bearer token required"
		}`,
	];
	if (options.webhook) {
		const secret = options.webhookSecretGenerated
			? `(x-pi-webhook-secret: ${options.webhookSecret}, generated for this run; --webhook-secret or PI_GATEWAY_WEBHOOK_SECRET sets one)`
			: options.webhookSecret
				? "(x-pi-webhook-secret required)"
				: "(no secret)";
		lines.push(`  webhook    POST ${base}${options.webhookPath} ${secret}`);
		if (options.webhookSessionKeys) lines.push(`             a body may name its session: sessionKey starting with "webhook:"`);
	}
	const metricsAuth =
		options.token === undefined ? "" : options.metricsPublic ? "; public, no token needed" : "; bearer token required (--metrics-public: without)";
	lines.push(`  metrics    GET ${base}/metrics (Prometheus${metricsAuth})`);
	lines.push(`  openapi    GET ${base}/openapi.json (OpenAPI 3.1 description of the API${options.token === undefined ? "" : "; no token needed"})`);
	if (options.notifyUrl !== undefined) {
		const events = options.notifyEvents?.join(", ") ?? "every event";
		lines.push(`  notify     POST ${redactUrl(options.notifyUrl)} on ${events} (signed per Standard Webhooks with the --notify-secret key)`);
	}
	if (options.callbackSecret !== undefined) {
		lines.push(
			options.callbackHosts?.length
				? `  callbacks  a message's callback {url} may name ${options.callbackHosts.join(", ")} (signed with the --callback-secret key)`
				: "  callbacks  on, but every callback is refused until --callback-hosts names the hosts they may reach",
		);
	}
	if (options.notifyUrl !== undefined || options.callbackSecret !== undefined) {
		const schedule = options.retryScheduleMs ?? DEFAULT_RETRY_SCHEDULE_MS;
		lines.push(
			schedule.length === 0
				? "             a failed delivery is not retried"
				: `             a failed delivery is retried after ${schedule.map(formatDelay).join(", ")}, then given up`,
		);
	}
	if (options.cluster !== undefined) {
		const cluster = options.cluster;
		const node = cluster.nodeId === undefined ? "a new id" : `${cluster.nodeId}${cluster.nodeIdGenerated ? " (generated; --node-id sets one)" : ""}`;
		lines.push(`  cluster    node ${node}, Redis ${cluster.redisShown}`);
		lines.push(
			`             reached at ${cluster.advertiseUrl}; lease ${formatSeconds(cluster.leaseMs ?? DEFAULT_LEASE_MS)}; Redis keys start with ${JSON.stringify(cluster.prefix ?? DEFAULT_CLUSTER_PREFIX)}`,
		);
	}
	if (options.logFormat !== "text" || options.logLevel !== "info") lines.push(`  logs       ${options.logFormat} on stderr, level ${options.logLevel} and above`);
	if (options.allowedHosts !== undefined) lines.push(`  hosts      ${options.allowedHosts.join(", ")} (besides loopback names)`);
	if (options.cors !== undefined) lines.push(`  cors       ${options.cors === "*" ? "*" : options.cors.join(", ")}`);
	const policy = approvalPolicy(options);
	if (policy !== undefined) {
		const pieces = [];
		if (options.approve?.length) pieces.push(`ask: ${options.approve.join(",")}`);
		if (options.deny?.length) pieces.push(`deny: ${options.deny.join(",")}`);
		pieces.push(`timeout: ${formatSeconds(options.approvalTimeoutMs ?? DEFAULT_APPROVAL_TIMEOUT_MS)}`);
		lines.push(`  approvals  ${pieces.join("  ")}`);
		if (options.approve?.length) {
			lines.push(`             GET /sessions/<key>/approvals lists the waiting calls; POST /sessions/<key>/approvals/<approvalId> {"approved":true} decides`);
		}
	}
	lines.push(
		"",
		"Send a message and wait for the answer:",
		`  curl -s -X POST ${base}/sessions/${DEMO_SESSION}/messages${json}${auth} -d ${shellQuote(JSON.stringify({ text: question }))}`,
		"Watch the session's events (SSE) in another terminal:",
		`  curl -N ${base}/sessions/${DEMO_SESSION}/events${auth}`,
		"Stream a reply as a Vercel AI SDK UI message stream:",
		`  curl -N -X POST ${base}/sessions/${DEMO_SESSION}/chat${json}${auth} -d '{"text":"hi"}'`,
		"",
		"Ctrl-C stops the gateway (twice: at once).",
	);
	return `${lines.join("\n")}\n`;
}

// ---------------------------------------------------------------------------------------------
// main

/**
 * Runs the CLI. Resolves with the exit code once the gateway has stopped (or could not start);
 * the caller sets `process.exitCode` and lets Node exit by itself.
 * @param {string[]} argv
 * @param {{
 *   env?: Record<string, string | undefined>,
 *   stdout?: NodeJS.WritableStream,
 *   stderr?: NodeJS.WritableStream,
 *   configure?: (config: Record<string, any>) => void,
 * }} [io]
 *   `configure`, for tests that run the CLI in-process: may change the GatewayConfig built from
 *   the flags before the runtime gets it (e.g. a short `session.sweepIntervalMs`).
 *   Once the flags are read, main sets `io.say` to its log writer (see {@link logWriter}), so
 *   the caller's last lines follow --log-format too.
 */
export async function main(argv, io = {}) {
	const env = io.env ?? process.env;
	const stdout = io.stdout ?? process.stdout;
	const stderr = io.stderr ?? process.stderr;

	let parsed;
	try {
		parsed = parseCli(argv, env);
	} catch (error) {
		if (!(error instanceof UsageError)) throw error;
		stderr.write(`pi-gateway: ${error.message}\nRun pi-gateway --help for the options.\n`);
		return EXIT_USAGE;
	}
	if ("help" in parsed) {
		stdout.write(helpText());
		return 0;
	}
	if ("version" in parsed) {
		stdout.write(`pi-gateway ${packageVersion()}\n`);
		return 0;
	}
	const options = parsed.options;
	// From here on, every line on stderr follows --log-format and --log-level.
	const say = logWriter(stderr, options.logFormat, options.logLevel);
	io.say = say;
	if (!options.webhook && (options.webhookSecret !== undefined)) {
		say("warning: a webhook secret is set but webhooks are off (add --webhook)");
	}
	if (!options.webhook && options.webhookSessionKeys) {
		say("warning: --webhook-session-keys has no effect while webhooks are off (add --webhook)");
	}
	if (options.approvalTimeoutMs !== undefined && !options.approve?.length) {
		say("warning: --approval-timeout has no effect without --approve (no tool call waits for a decision)");
	}
	if (options.notifyEvents !== undefined && options.notifyUrl === undefined) {
		say("warning: --notify-events has no effect without --notify-url (no outbound webhook is configured)");
	}
	if (options.retryScheduleMs !== undefined && options.notifyUrl === undefined && options.callbackSecret === undefined) {
		say("warning: --notify-retries has no effect without --notify-url or --callback-secret (nothing is delivered)");
	}
	if (options.callbackSecret !== undefined && options.callbackHosts === undefined) {
		say("warning: --callback-secret without --callback-hosts: every callback is refused until --callback-hosts names the hosts it may reach");
	}
	if (options.metricsPublic && options.token === undefined) {
		say("warning: --metrics-public has no effect without --token (every route is open already)");
	}
	for (const flag of options.clusterFlagsIgnored) {
		say(`warning: ${flag} has no effect without --redis-url (or PI_GATEWAY_REDIS_URL): this gateway runs alone`);
	}
	if (options.cluster !== undefined) {
		if (options.cluster.nodeId === undefined) {
			// Made here rather than by the runtime, so the banner can name it.
			options.cluster.nodeId = uuidv7();
			options.cluster.nodeIdGenerated = true;
		}
		const advertised = new URL(options.cluster.advertiseUrl).hostname.replace(/^\[(.*)\]$/, "$1");
		if (isLoopbackBind(options.bind) && !isLoopbackHost(advertised)) {
			say(`warning: --advertise-url ${options.cluster.advertiseUrl} is not a loopback address, but this node listens on ${options.bind} only: the other nodes cannot reach it (--bind 0.0.0.0 or the address they use)`);
		}
		if (options.port === 0) {
			say("warning: --port 0 picks a port at start, which --advertise-url cannot know: give the port the other nodes reach this one at");
		}
	}
	if (options.webhook && options.webhookSecret === undefined) {
		// A webhook reaches an agent that runs tools: never without a secret. The banner prints it.
		options.webhookSecret = generateWebhookSecret();
		options.webhookSecretGenerated = true;
	}

	// Signals: the first one stops gracefully, a second one exits at once. Installed before
	// anything slow, so Ctrl-C during start-up also works.
	let stopRequested = null;
	let stopping = false;
	let wake = () => {};
	const stopSignal = new Promise((resolveStop) => {
		wake = resolveStop;
	});
	const onSignal = (signal) => {
		if (stopping || stopRequested) {
			say(`${signal} again: exiting now`);
			process.exit(signal === "SIGINT" ? 130 : 143);
		}
		stopRequested = signal;
		wake(signal);
	};
	process.on("SIGINT", onSignal);
	process.on("SIGTERM", onSignal);
	const removeSignals = () => {
		process.off("SIGINT", onSignal);
		process.off("SIGTERM", onSignal);
	};

	// pi's own defaults (getAgentDir) read PI_CODING_AGENT_DIR: point it at our agent dir too, so
	// nothing in pi falls back to ~/.pi/agent.
	let agentDir = options.agentDir;
	let agentDirIsTemp = false;
	let sessionDir = options.dataDir;
	let sessionDirIsTemp = false;
	let agent;
	let runtime;
	let code = 0;
	try {
		if (agentDir === undefined) {
			agentDir = await mkdtemp(join(tmpdir(), "pi-gateway-agent-"));
			agentDirIsTemp = true;
		} else {
			await mkdir(agentDir, { recursive: true });
		}
		process.env.PI_CODING_AGENT_DIR = agentDir;
		if (options.ephemeral || sessionDir === undefined) {
			sessionDir = await mkdtemp(join(tmpdir(), "pi-gateway-sessions-"));
			sessionDirIsTemp = true;
		} else {
			// Conversations are private: a dir we create is the user's alone.
			try {
				await mkdir(sessionDir, { recursive: true, mode: 0o700 });
				if (!statSync(sessionDir).isDirectory()) throw new Error("not a directory");
			} catch (error) {
				throw new StartupError(
					`cannot keep sessions in ${sessionDir}: ${error instanceof Error ? error.message : String(error)}` +
						" (--data-dir DIR or PI_GATEWAY_DATA_DIR chooses another dir; --ephemeral keeps none)",
				);
			}
		}

		if (options.model) {
			agent = await createModelPiAgent({ model: options.model, cwd: options.cwd ?? process.cwd(), agentDir, sessionDir, say });
		} else {
			const { createFauxPiAgent, FAUX_PROVIDER, FAUX_MODEL_ID } = await importPeer(() => import("./faux-agent.js"));
			const faux = await createFauxPiAgent({ cwd: options.cwd, agentDir, sessionDir });
			// The label names the model the primary session is on (a continued one keeps its own).
			const current = faux.primarySession.model;
			agent = { ...faux, close: () => faux.close(), label: current ? `${current.provider}/${current.id}` : `${FAUX_PROVIDER}/${FAUX_MODEL_ID}` };
		}
		if (stopRequested) throw new StartupError(`${stopRequested} during start-up`, 0);

		const { GatewayRuntime, setActiveGatewayRuntime } = await import("../index.js");
		let created;
		try {
			const config = gatewayConfig(options);
			io.configure?.(config);
			created = new GatewayRuntime({
				config,
				primarySessionKey: PRIMARY_SESSION_KEY,
				primarySession: agent.primarySession,
				createSession: (key) => agent.createSession(key),
				// A key that is not in memory but stored is loaded (createSession continues it);
				// DELETE ...?purge=true removes what is stored.
				sessionExists: (key) => agent.sessionExists(key),
				deleteSession: (key) => agent.deleteSession(key),
				// The runtime filters by level and, with json, hands over whole JSON lines.
				log: (line) => stderr.write(options.logFormat === "json" ? `${line}\n` : `pi-gateway: ${line}\n`),
				logFormat: options.logFormat,
				logLevel: options.logLevel,
			});
		} catch (error) {
			// parseCli validated every value; should the runtime still refuse one, it is a usage error
			// (e.g. rediss:// in a build without TLS), said with the flag behind the config field.
			let message = error instanceof Error ? error.message : String(error);
			const field = /\bconfig\.cluster\.(\w+)/.exec(message)?.[1];
			if (field !== undefined && CLUSTER_CONFIG_FLAGS[field] !== undefined) message += ` (${CLUSTER_CONFIG_FLAGS[field]})`;
			throw new StartupError(message, EXIT_USAGE);
		}
		runtime = created;
		try {
			await runtime.start();
		} catch (error) {
			runtime = undefined;
			throw new StartupError(`cannot start: ${error instanceof Error ? error.message : String(error)}`);
		}
		setActiveGatewayRuntime(runtime);
		stdout.write(banner({ options, port: runtime.getAddress().port, agent, agentDirIsTemp, sessionDirIsTemp }));

		const signal = await stopSignal;
		stopping = true;
		say(`${signal} received, stopping`);
	} catch (error) {
		if (error instanceof StartupError) {
			if (error.code !== 0) say(error.message, "error");
			code = error.code;
		} else {
			say(`cannot start: ${error instanceof Error ? error.stack ?? error.message : String(error)}`, "error");
			code = EXIT_FAILURE;
		}
	} finally {
		stopping = true;
		if (runtime) {
			try {
				await runtime.stop();
			} catch (error) {
				say(`stop failed: ${error instanceof Error ? error.message : String(error)}`, "error");
				code = EXIT_FAILURE;
			}
			const { setActiveGatewayRuntime } = await import("../index.js");
			setActiveGatewayRuntime(null);
		}
		if (agent) {
			try {
				await agent.close();
			} catch (error) {
				say(`closing the agent failed: ${error instanceof Error ? error.message : String(error)}`, "error");
				code = code || EXIT_FAILURE;
			}
		}
		if (agentDirIsTemp && agentDir && existsSync(agentDir)) {
			await rm(agentDir, { recursive: true, force: true }).catch(() => {});
		}
		if (sessionDirIsTemp && sessionDir && existsSync(sessionDir)) {
			await rm(sessionDir, { recursive: true, force: true }).catch(() => {});
		}
		if (runtime) say("stopped");
	}
	// Keep the handlers until the very end: a second Ctrl-C while stopping still forces the exit.
	removeSignals();
	return code;
}

/**
 * Entry point of bin/pi-gateway.js: runs main, sets the exit code and lets Node exit on its own.
 * Should something still hold the event loop after a clean stop, we say so and exit anyway.
 */
export async function run(argv = process.argv.slice(2)) {
	/** @type {{ say?: (message: string, level?: string) => void }} */
	const io = {};
	const code = await main(argv, io);
	process.exitCode = code;
	const say = io.say ?? ((message) => process.stderr.write(`pi-gateway: ${message}\n`));
	setTimeout(() => {
		say(`warning: still running ${EXIT_GRACE_MS} ms after stopping (a handle was left open); exiting`);
		process.exit(code);
	}, EXIT_GRACE_MS).unref();
}

/**
 * The CLI's own stderr lines: with "text", `pi-gateway: <message>`; with "json", one
 * `{time, level, message}` object a line (as the runtime writes its own). A message starting
 * with `warning: ` is a warning (the prefix is left out of the JSON message, as the runtime does);
 * `level` says otherwise. Lines below `minLevel` are dropped.
 * @param {NodeJS.WritableStream} stderr
 * @param {"text" | "json"} format
 * @param {"debug" | "info" | "warn" | "error"} minLevel
 * @returns {(message: string, level?: "debug" | "info" | "warn" | "error") => void}
 */
export function logWriter(stderr, format, minLevel) {
	const least = LOG_LEVELS.indexOf(minLevel);
	return (message, level) => {
		const warning = message.startsWith("warning: ");
		const at = level ?? (warning ? "warn" : "info");
		if (LOG_LEVELS.indexOf(at) < least) return;
		if (format === "json") {
			const text = warning ? message.slice("warning: ".length) : message;
			stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: at, message: text })}\n`);
		} else {
			stderr.write(`pi-gateway: ${message}\n`);
		}
	};
}
