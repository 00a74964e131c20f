#!/usr/bin/env node
// `npm test`: every check, in order, stopping at the first failure.
//   cargo fmt --check · cargo clippy (-D warnings) · cargo test · tsc --noEmit over the
//   typings and a file written like the seed's callers · the JS tests on node's runner.
// `npm test -- <file...>` runs only the given JS test files.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
process.chdir(root);

function run(title, cmd, args, options = {}) {
	console.log(`\n=== ${title}: ${cmd} ${args.join(" ")}`);
	const started = Date.now();
	const r = spawnSync(cmd, args, { stdio: "inherit", ...options });
	const secs = ((Date.now() - started) / 1000).toFixed(1);
	if (r.status !== 0) {
		console.error(`=== ${title} failed (exit ${r.status ?? r.signal}) after ${secs}s`);
		process.exit(r.status || 1);
	}
	console.log(`=== ${title} ok (${secs}s)`);
}

function testFiles(dir) {
	const out = [];
	for (const entry of readdirSync(dir, { withFileTypes: true })) {
		const path = join(dir, entry.name);
		if (entry.isDirectory()) out.push(...testFiles(path));
		else if (entry.name.endsWith(".test.mjs")) out.push(relative(root, path));
	}
	return out.sort();
}

const only = process.argv.slice(2);
if (only.length === 0) {
	run("rustfmt", "cargo", ["fmt", "--check"]);
	run("clippy", "cargo", ["clippy", "--all-targets", "--", "-D", "warnings"]);
	run("cargo test", "cargo", ["test", "--quiet"]);
	// skipLibCheck keeps third-party typings out of it; a .d.ts counts as a library file,
	// so index.d.ts is also checked as an ordinary .ts copy.
	mkdirSync(".test-tmp", { recursive: true });
	copyFileSync("index.d.ts", "__test__/typings/index-dts-copy.generated.ts");
	run("tsc", process.execPath, ["node_modules/typescript/bin/tsc", "--noEmit", "-p", "tsconfig.json"]);
}
if (!existsSync("native.cjs")) run("build", "npm", ["run", "build"]);
// The useChat browser test drives Debian's chromium. On a fresh machine where we may
// install packages (root with apt-get), install it so `npm test` alone is enough.
const browserTest = only.length === 0 || only.some((f) => f.includes("chat-browser"));
if (browserTest && !existsSync("/usr/bin/chromium") && process.getuid?.() === 0 && existsSync("/usr/bin/apt-get")) {
	run("apt-get update", "apt-get", ["update", "-qq"]);
	run("install chromium", "apt-get", ["install", "-y", "-qq", "chromium"], {
		env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
	});
}
const files = only.length ? only : [...testFiles("__test__"), ...testFiles("bench/seed")];
run("node --test", process.execPath, ["--test", "--test-reporter=spec", ...files]);
