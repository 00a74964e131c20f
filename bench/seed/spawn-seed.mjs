// Spawn the seed gateway (run-seed.mjs) as a child process and wait until it listens.
//
//   import { spawnSeed, seedAvailable } from "./bench/seed/spawn-seed.mjs";
//   if (seedAvailable()) {
//     const seed = await spawnSeed(["--scenario", "stream:100:1"], { timeoutMs: 10000 });
//     await fetch(`http://127.0.0.1:${seed.port}/health`);
//     await seed.stop();
//   }

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const runSeed = join(here, "run-seed.mjs");

/** Whether the seed .ts exists ($PI_GATEWAY_SEED, else <repo>/../shared/seed/gateway-runtime.ts). */
export function seedAvailable() {
	const path = process.env.PI_GATEWAY_SEED || resolve(here, "..", "..", "..", "shared", "seed", "gateway-runtime.ts");
	return existsSync(path);
}

/**
 * Start the seed with run-seed.mjs `args`; resolves once it printed its ready line.
 * stderr is passed through unless `quiet`. `stop()` sends SIGTERM, then SIGKILL after `killAfterMs`
 * (default 2500: the seed's own 2 s stop deadline plus a little grace, so a seed stuck in stop()
 * — it never returns while an SSE client is connected — still exits 0 by itself).
 * The child also exits when our end of its stdin closes, so a crashed parent leaves no orphan.
 * @returns {Promise<{port:number, pid:number, child:import("node:child_process").ChildProcess, stop:()=>Promise<void>}>}
 */
export function spawnSeed(args = [], options = {}) {
	return spawnLauncher(runSeed, "seed", args, options);
}

/**
 * Start a launcher script (run-seed.mjs, bench/run-gateway.mjs: same flags, same ready line
 * `{"ready":true,"port":N,"pid":P}`) as a child and wait for it; `name` is for messages.
 */
export async function spawnLauncher(script, name, args = [], { timeoutMs = 15000, killAfterMs = 2500, quiet = false, env } = {}) {
	const child = spawn(process.execPath, [script, "--exit-on-stdin-close", ...args], {
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
			const timer = setTimeout(() => reject(new Error(`${name} not ready within ${timeoutMs} ms`)), timeoutMs);
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
				reject(new Error(`${name} exited before ready (code ${code}, signal ${signal})`));
			});
		});
		// Keep draining stdout so the child never blocks on a full pipe.
		child.stdout.resume();
		return { port: ready.port, pid: ready.pid, child, stop };
	} catch (error) {
		await stop();
		throw error;
	}
}
