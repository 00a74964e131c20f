// Spawn pi-gateway (run-gateway.mjs) as a child process and wait until it listens — the
// counterpart of bench/seed/spawn-seed.mjs, with the same options and the same result.
//
//   import { spawnGateway } from "./bench/spawn-gateway.mjs";
//   const gw = await spawnGateway(["--scenario", "stream:100:1"], { timeoutMs: 10000 });
//   await fetch(`http://127.0.0.1:${gw.port}/health`);
//   await gw.stop();

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { spawnLauncher } from "./seed/spawn-seed.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const runGateway = join(here, "run-gateway.mjs");

/**
 * Start pi-gateway with run-gateway.mjs `args`; resolves once it printed its ready line.
 * stderr is passed through unless `quiet`. `stop()` sends SIGTERM, then SIGKILL after `killAfterMs`.
 * The child also exits when our end of its stdin closes, so a crashed parent leaves no orphan.
 * @returns {Promise<{port:number, pid:number, child:import("node:child_process").ChildProcess, stop:()=>Promise<void>}>}
 */
export function spawnGateway(args = [], options = {}) {
	return spawnLauncher(runGateway, "gateway", args, options);
}
