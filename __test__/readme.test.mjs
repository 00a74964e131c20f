// The README's TypeScript snippets are true when pasted: both type-check against the package's
// own typings (resolved by its name, as a user's project would), and the offline one runs and
// gets the answer it prints.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dir = join(root, ".test-tmp", "readme");

function snippets() {
	const readme = readFileSync(join(root, "README.md"), "utf8");
	const section = readme.slice(readme.indexOf("## Use it from TypeScript"), readme.indexOf("\n## ", readme.indexOf("## Use it from TypeScript") + 5));
	return [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
}

test("the README's TypeScript snippets type-check, and the offline one runs as pasted", { timeout: 120_000 }, async () => {
	const blocks = snippets();
	assert.equal(blocks.length, 2, "two snippets: offline and with a real model");
	mkdirSync(dir, { recursive: true });
	blocks.forEach((code, i) => writeFileSync(join(dir, `snippet-${i}.ts`), code));
	writeFileSync(
		join(dir, "tsconfig.json"),
		JSON.stringify({
			compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, skipLibCheck: true, types: ["node"] },
			include: ["snippet-*.ts"],
		}),
	);
	const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
	await run(process.execPath, [tsc, "-p", join(dir, "tsconfig.json")], { cwd: root }).catch((e) => {
		assert.fail(`tsc failed on the README snippets:\n${e.stdout}${e.stderr}`);
	});

	const tsx = join(root, "node_modules", "tsx", "dist", "cli.mjs");
	const { stdout } = await run(process.execPath, [tsx, join(dir, "snippet-0.ts")], { cwd: root, timeout: 60_000 });
	assert.match(stdout, /ok: true/);
	assert.match(stdout, /hello\.txt says: Hello from the pi-gateway workspace\./);
	assert.match(stdout, /sessionKey: 'demo'/);
});
