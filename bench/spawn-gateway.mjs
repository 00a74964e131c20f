// Spawn pi-gateway (run-gateway.mjs) as a child process and wait until it listens — the
// counterpart of bench/seed/spawn-seed.mjs, with the same options and the same result.
//
//   import { spawnGateway } from "./bench/spawn-gateway.mjs";
//   const gw = await spawnGateway(["--scenario", "stream:100:1"], { timeoutMs: 10000 });
//   await fetch(`http://127.0.0.1:${gw.port}/health`);
//   await gw.stop();

import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const runGateway = join(here, "run-gateway.mjs");

/**
 * Start pi-gateway with run-gateway.mjs `args`; resolves once it printed its ready line.
 * stderr is passed through unless `quiet`. `stop()` sends SIGTERM, then SIGKILL after `killAfterMs`.
 * The child also exits when our end of its stdin closes, so a crashed parent leaves no orphan.
 * @returns {Promise<{port:number, pid:number, child:import("node:child_process").ChildProcess, stop:()=>Promise<void>}>}
 */
export async function spawnGateway(args = [], { timeoutMs = 15000, killAfterMs = 2500, quiet = false, env } = {}) {
	const child = spawn(process.execPath, [runGateway, "--exit-on-stdin-close", ...args], {
		stdio: ["pipe", "pipe", quiet ? "ignore" : "inherit"],
		env: env ?? process.env,
	});
	const exited = new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));

	const stop = async () => {
		if (child.exitCode !== null || child.signalCode !== null) return;
		child.kill("SIGTERM");
		const timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
		await exited;
		clearTimeout(timer);
	};

	const lines = createInterface({ input: child.stdout });
	try {
		const ready = await new Promise((resolveReady, reject) => {
			const timer = setTimeout(() => reject(new Error(`gateway not ready within ${timeoutMs} ms`)), timeoutMs);
			lines.on("line", (line) => {
				try {
					const msg = JSON.parse(line);
					if (msg?.ready) {
						clearTimeout(timer);
						resolveReady(msg);
					}
				} catch {
					// not our line
				}
			});
			exited.then(({ code, signal }) => {
				clearTimeout(timer);
				reject(new Error(`gateway exited before ready (code ${code}, signal ${signal})`));
			});
		});
		child.stdout.resume();
		return { port: ready.port, pid: ready.pid, child, stop };
	} catch (error) {
		await stop();
		throw error;
	}
}
