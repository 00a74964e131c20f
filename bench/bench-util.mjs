// Small helpers shared by the benchmark processes: the measurement probe's client, per-process
// CPU and RSS from /proc, percentiles, which HTTP load generator to use.

import { execFileSync, spawnSync } from "node:child_process";
import { accessSync, constants, readdirSync, readFileSync } from "node:fs";
import { request } from "node:http";
import { createRequire } from "node:module";
import { delimiter, join } from "node:path";

/** Ask the probe preloaded into a measured process (bench/probe.mjs) for its stats; `gc` first runs a full GC. */
export function probeStats(socketPath, { gc = false, timeoutMs = 10000 } = {}) {
	return new Promise((resolve, reject) => {
		const req = request({ socketPath, path: gc ? "/gc" : "/stats", method: gc ? "POST" : "GET", agent: false }, (res) => {
			let body = "";
			res.setEncoding("utf8");
			res.on("data", (d) => (body += d));
			res.on("end", () => {
				try {
					resolve(JSON.parse(body));
				} catch (error) {
					reject(error);
				}
			});
		});
		req.setTimeout(timeoutMs, () => req.destroy(new Error(`probe ${socketPath} timed out`)));
		req.on("error", reject);
		req.end();
	});
}

/** Main-thread event-loop utilization between two probe stats. */
export function eluBetween(before, after) {
	const active = after.elu.active - before.elu.active;
	const idle = after.elu.idle - before.elu.idle;
	return active + idle > 0 ? active / (active + idle) : 0;
}

let clkTck = 0;
function ticksPerSecond() {
	if (!clkTck) {
		try {
			clkTck = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
		} catch {
			clkTck = 100;
		}
	}
	return clkTck;
}
ticksPerSecond();

/**
 * CPU time of process `pid`, all threads, in ns, two ways:
 *   statNs  — utime+stime from /proc/<pid>/stat (includes threads that already exited; clock-tick
 *             resolution, 10 ms at CLK_TCK 100)
 *   schedNs — the sum of /proc/<pid>/task/<tid>/schedstat run times (ns resolution; live threads only)
 */
export function procCpu(pid) {
	const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
	// Fields after the ")" that closes the command name: state is field 3; utime 14, stime 15.
	const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
	const statNs = ((Number(fields[11]) + Number(fields[12])) * 1e9) / ticksPerSecond();
	let schedNs = 0;
	for (const tid of readdirSync(`/proc/${pid}/task`)) {
		try {
			schedNs += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
		} catch {
			// the thread exited between readdir and read
		}
	}
	return { statNs, schedNs };
}

/** CPU ns between two procCpu() readings: schedstat's sum (precise), unless threads exited in between. */
export function cpuBetween(before, after) {
	const sched = after.schedNs - before.schedNs;
	const stat = after.statNs - before.statNs;
	// A thread that exited takes its schedstat time with it; /proc/<pid>/stat keeps it. Fall
	// back to the tick count when the two disagree by more than the tick resolution allows.
	const slack = (2 * 1e9) / ticksPerSecond() + 0.05 * stat;
	return { ns: sched >= stat - slack ? sched : stat, schedNs: sched, statNs: stat };
}

/**
 * CPU time, in ns, of this process's children that have exited and been waited for (cutime +
 * cstime of /proc/self/stat; clock-tick resolution). The difference across one child's run is
 * that child's CPU time, all threads.
 */
export function childrenCpuNs() {
	const stat = readFileSync("/proc/self/stat", "utf8");
	const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
	return ((Number(fields[13]) + Number(fields[14])) * 1e9) / ticksPerSecond();
}

/** Path of an executable `wrk`: Debian's /usr/bin/wrk, else the first on PATH; null when none. */
export function findWrk() {
	const dirs = ["/usr/bin", ...(process.env.PATH ?? "").split(delimiter).filter(Boolean)];
	for (const dir of dirs) {
		const path = join(dir, "wrk");
		try {
			accessSync(path, constants.X_OK);
			return path;
		} catch {
			// not there
		}
	}
	return null;
}

/**
 * The HTTP load generator to use: wrk when installed (a C event loop, several times the request
 * rate autocannon manages on one core), else autocannon. `prefer` "autocannon" forces the
 * fallback. Returns {name, version, path?}.
 */
export function httpLoadTool(prefer) {
	const wrk = prefer === "autocannon" ? null : findWrk();
	if (wrk) {
		// `wrk -v` prints "wrk debian/4.1.0-3+b2 [epoll] Copyright …" and the usage, and exits 1.
		const v = spawnSync(wrk, ["-v"], { encoding: "utf8" });
		const m = /^wrk\s+(\S+)/.exec(`${v.stdout ?? ""}${v.stderr ?? ""}`);
		return { name: "wrk", version: m ? m[1] : "unknown", path: wrk };
	}
	if (prefer === "wrk") throw new Error("wrk was asked for but is not installed (/usr/bin/wrk or PATH)");
	let version = "unknown";
	try {
		version = createRequire(import.meta.url)("autocannon/package.json").version;
	} catch {
		// version unknown
	}
	return { name: "autocannon", version };
}

/** Resident set size of `pid` in bytes (VmRSS). */
export function rssBytes(pid) {
	const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
	return m ? Number(m[1]) * 1024 : NaN;
}

/** p-th percentile (0..100) of a sorted numeric array or typed array. */
export function percentile(sorted, p) {
	if (!sorted.length) return NaN;
	const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
	return sorted[i];
}

/** Epoch milliseconds with sub-ms precision (the same clock the scripted stream stamps its tokens with). */
export function nowMs() {
	return performance.timeOrigin + performance.now();
}
