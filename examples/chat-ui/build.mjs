// Builds the chat example into a static folder: index.html, app.js (React, `ai`,
// `@ai-sdk/react` and the page, bundled by esbuild) and app.css.
//
//   node examples/chat-ui/build.mjs [outdir]      (default: examples/chat-ui/dist)
//
// Also importable: `await buildChatUi({ outdir })` (the tests build into a temp dir).

import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

export const EXAMPLE_DIR = dirname(fileURLToPath(import.meta.url));
export const DEFAULT_OUTDIR = join(EXAMPLE_DIR, "dist");

/**
 * @param {{ outdir?: string, minify?: boolean, sourcemap?: boolean }} [options]
 * @returns {Promise<string>} the absolute output directory
 */
export async function buildChatUi({ outdir = DEFAULT_OUTDIR, minify = true, sourcemap = false } = {}) {
	const out = resolve(outdir);
	await mkdir(out, { recursive: true });
	await build({
		absWorkingDir: EXAMPLE_DIR,
		entryPoints: { app: join(EXAMPLE_DIR, "src", "app.jsx") },
		outdir: out,
		bundle: true,
		format: "esm",
		platform: "browser",
		target: ["es2022"],
		jsx: "automatic",
		minify,
		sourcemap,
		define: { "process.env.NODE_ENV": minify ? '"production"' : '"development"' },
		logLevel: "warning",
	});
	await copyFile(join(EXAMPLE_DIR, "index.html"), join(out, "index.html"));
	return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
	const out = await buildChatUi({ outdir: process.argv[2] ?? DEFAULT_OUTDIR });
	console.log(`built ${out}`);
}
