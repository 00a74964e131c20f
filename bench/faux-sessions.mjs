// Real pi sessions for the benchmark launchers (bench/run-gateway.mjs and bench/seed/run-seed.mjs,
// flag `--faux` / `--faux-memory`): `createFauxPiAgent` of lib/faux-agent.js, i.e. real pi
// `AgentSession`s (pi's agent loop, tools, session files) on pi-ai's offline faux model — the
// agent the `pi-gateway` CLI runs without `--model`. Both launchers take their sessions from here,
// so the seed and pi-gateway drive the very same sessions.
//
// Storage:
//   "disk"   (--faux)         session files in a fresh temporary dir (<agentDir>/sessions), removed
//                             on exit — what the CLI does with `--ephemeral` (and, in another
//                             dir, with `--data-dir`): each session continues/writes its .jsonl file
//   "memory" (--faux-memory)  pi's SessionManager.inMemory: nothing on disk (createFauxPiAgent's
//                             `ephemeral: true`)
//
// Note: lib/faux-agent.js imports ../index.js (for openGatewaySessionManager), so a seed launched
// this way also loads pi-gateway's native addon: a constant in its RSS, not in a per-session delta.

import { rmSync } from "node:fs";
import { createFauxPiAgent } from "../lib/faux-agent.js";

/**
 * @param {"disk" | "memory"} storage
 * @returns {Promise<{primarySession: any, createSession: (key: string) => Promise<any>, sessionExists: (key: string) => Promise<boolean>, deleteSession: (key: string) => Promise<void>, storage: string, close: () => Promise<void>}>}
 */
export async function startFauxSessions(storage) {
	if (storage !== "disk" && storage !== "memory") throw new Error(`faux storage: disk or memory, not ${storage}`);
	const agent = await createFauxPiAgent({ ephemeral: storage === "memory" });
	// close() removes the temporary dirs it made; should the process die another way, at least
	// remove them on a normal exit (process.exit from a signal handler included).
	const dirs = [agent.cwd, agent.agentDir];
	process.once("exit", () => {
		for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
	});
	return {
		primarySession: agent.primarySession,
		createSession: (key) => agent.createSession(key),
		sessionExists: (key) => agent.sessionExists(key),
		deleteSession: (key) => agent.deleteSession(key),
		storage: storage === "disk" ? `session files in ${agent.sessionDir} (temporary)` : "in memory (SessionManager.inMemory)",
		close: () => agent.close(),
	};
}
