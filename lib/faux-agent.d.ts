// Types of `pi-gateway/faux`: real pi `AgentSession`s on pi-ai's offline faux model, for trying
// the gateway (and testing an embedding) without an API key or a network.

import type { AgentSession } from "@mariozechner/pi-coding-agent";

export interface FauxPiAgentOptions {
	/** Workspace the agent's tools act on; a new temporary directory (holding hello.txt) when omitted. */
	cwd?: string;
	/** pi agent directory (settings); a new temporary directory when omitted. */
	agentDir?: string;
	/**
	 * Where session files are stored: the primary session in `<sessionDir>/primary`, the others in
	 * `<sessionDir>/gateway-sessions/<sanitizeSessionKey(key)>`. Default `<agentDir>/sessions`.
	 * Kept by `close()` when given.
	 */
	sessionDir?: string;
	/** Sessions in memory only (pi's `SessionManager.inMemory`): nothing on disk; `sessionExists` answers false. */
	ephemeral?: boolean;
	/** Pace of streamed answers. */
	tokensPerSecond?: number;
	/** Pace of `/slow N` answers. Default 20. */
	slowTokensPerSecond?: number;
}

export interface FauxPiAgent {
	/** The primary session; it continues the most recent session file in `<sessionDir>/primary`. */
	primarySession: AgentSession;
	/**
	 * A session for `key`: it continues the most recent session file in
	 * `<sessionDir>/gateway-sessions/<sanitizeSessionKey(key)>` (its messages, model and thinking
	 * level), or starts one.
	 */
	createSession(key: string): Promise<AgentSession>;
	/** Whether a session file is stored for `key` (for `GatewayRuntimeOptions.sessionExists`); false when ephemeral. */
	sessionExists(key: string): Promise<boolean>;
	/** Removes what is stored for `key` (for `GatewayRuntimeOptions.deleteSession`); nothing when ephemeral. */
	deleteSession(key: string): Promise<void>;
	cwd: string;
	agentDir: string;
	/** Where session files are stored; undefined when ephemeral. */
	sessionDir: string | undefined;
	/** pi-ai's registration of the faux provider. */
	faux: unknown;
	/** Disposes every live session and removes the temporary directories it made. */
	close(): Promise<void>;
}

/**
 * Builds the offline agent. The model is scripted by the last user message: `/echo <text>`,
 * `/long <N>`, `/slow <N>`, `/error`, `/toolfail`, `/history`, `/bash <command>` (several with
 * ` ;; ` between them: one `bash` tool call each, run by pi's real `bash` tool in `cwd`; a command
 * `@read <path>` is a `read` tool call of that path instead; then one answer line per call,
 * `bash said: <output>` / `read said: <text>` or `bash failed: <error>` / `read failed: <error>`); anything else reads
 * hello.txt with pi's real `read` tool and answers `hello.txt says: ...`. Active tools: `read`, `bash`. pi's summarization requests
 * (`compact()`) are answered `Summary of N messages.`. Two models: `faux/faux-1` (default) and
 * `faux/faux-2` (`reasoning: true`).
 */
export function createFauxPiAgent(options?: FauxPiAgentOptions): Promise<FauxPiAgent>;

/** Where a gateway's sessions live under `root` (the layout createFauxPiAgent and the CLI use). */
export interface GatewaySessionStore {
	root: string;
	/** `<root>/primary` */
	primaryDir: string;
	/** `<root>/gateway-sessions` */
	keysRoot: string;
	/** `<root>/gateway-sessions/<sanitizeSessionKey(key)>` */
	keyDir(key: string): string;
	/** Whether a `*.jsonl` session file is stored for `key`. */
	sessionExists(key: string): Promise<boolean>;
	/** Removes the key's directory. */
	deleteSession(key: string): Promise<void>;
}
export function gatewaySessionStore(root: string): GatewaySessionStore;

export const FAUX_PROVIDER: "faux";
export const FAUX_MODEL_ID: "faux-1";
export const FAUX_MODEL_2_ID: "faux-2";
export const HELLO_FILE: "hello.txt";
export const HELLO_CONTENT: string;
export const MISSING_FILE: string;
export const FAUX_ERROR_MESSAGE: string;
/** `" ;; "`: separates the commands of one `/bash` message. */
export const BASH_SEPARATOR: " ;; ";
/** The tools every faux session has active: `["read", "bash"]`. */
export const FAUX_TOOLS: readonly string[];
/** The commands of a `/bash` argument (split on BASH_SEPARATOR, trimmed, empty ones dropped; at least one). */
export function fauxBashCommands(arg: string): string[];
/** `"@read "`: a `/bash` command that starts with it is a `read` tool call of the path after it. */
export const READ_PREFIX: "@read ";
/**
 * The tool calls of a `/bash` argument, one per command of `fauxBashCommands`, in order: `read`
 * `{ path }` for a command starting with READ_PREFIX (the rest, trimmed), else `bash` `{ command }`.
 */
export function fauxBashToolCalls(
	arg: string,
): ({ name: "bash"; arguments: { command: string } } | { name: "read"; arguments: { path: string } })[];
export const DEFAULT_SLOW_TOKENS_PER_SECOND: number;
export function fauxLongText(n: number): string;
export function parseFauxCommand(text: string): {
	name: "default" | "echo" | "long" | "slow" | "error" | "toolfail" | "history" | "bash";
	arg: string;
};
export function trackSession<S extends { dispose(): void }>(sessions: Set<S>, session: S): S;
export function closeSessions(sessions: Set<{ dispose(): void }>): Promise<void>;
