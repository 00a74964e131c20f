// Types of `pi-gateway/faux`: real pi `AgentSession`s on pi-ai's offline faux model, for trying
// the gateway (and testing an embedding) without an API key or a network.

import type { AgentSession } from "@mariozechner/pi-coding-agent";

export interface FauxPiAgentOptions {
	/** Workspace the agent's tools act on; a new temporary directory (holding hello.txt) when omitted. */
	cwd?: string;
	/** pi agent directory (settings, sessions); a new temporary directory when omitted. */
	agentDir?: string;
	/** Pace of streamed answers. */
	tokensPerSecond?: number;
	/** Pace of `/slow N` answers. Default 20. */
	slowTokensPerSecond?: number;
}

export interface FauxPiAgent {
	/** The primary session; its files live in `<agentDir>/sessions/primary`. */
	primarySession: AgentSession;
	/** A session for `key`, stored in `<agentDir>/sessions/gateway-sessions/<sanitizeSessionKey(key)>`. */
	createSession(key: string): Promise<AgentSession>;
	cwd: string;
	agentDir: string;
	/** pi-ai's registration of the faux provider. */
	faux: unknown;
	/** Disposes every live session and removes the temporary directories it made. */
	close(): Promise<void>;
}

/**
 * Builds the offline agent. The model is scripted by the last user message: `/echo <text>`,
 * `/long <N>`, `/slow <N>`, `/error`, `/toolfail`; anything else reads hello.txt with pi's real
 * `read` tool and answers `hello.txt says: ...`.
 */
export function createFauxPiAgent(options?: FauxPiAgentOptions): Promise<FauxPiAgent>;

export const FAUX_PROVIDER: "faux";
export const FAUX_MODEL_ID: "faux-1";
export const HELLO_FILE: "hello.txt";
export const HELLO_CONTENT: string;
export const MISSING_FILE: string;
export const FAUX_ERROR_MESSAGE: string;
export const DEFAULT_SLOW_TOKENS_PER_SECOND: number;
export function fauxLongText(n: number): string;
export function parseFauxCommand(text: string): {
	name: "default" | "echo" | "long" | "slow" | "error" | "toolfail";
	arg: string;
};
export function trackSession<S extends { dispose(): void }>(sessions: Set<S>, session: S): S;
export function closeSessions(sessions: Set<{ dispose(): void }>): Promise<void>;
