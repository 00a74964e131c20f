// Shared by the browser security tests: the real `pi-gateway` command in a child process (HOME and
// TMPDIR in a fresh temporary folder, no inherited API keys), plain HTTP requests that look like
// curl's (no Origin, no Sec-Fetch-*), and a small page server for "another web site".

import { rm } from "node:fs/promises";
import { request as httpRequest, createServer } from "node:http";
import { childEnv, EXIT_DEADLINE_MS, listening, makeSandbox, spawnCli, START_DEADLINE_MS } from "./cli-child.mjs";
import { within } from "./wait.mjs";

/**
 * Starts `node bin/pi-gateway.js --port 0 ...args` and waits for its ready line and banner.
 * @param {string[]} args
 * @returns {Promise<{ base: string, port: number, out: { stdout: string, stderr: string }, stop: () => Promise<void> }>}
 */
export async function startCli(args) {
	const box = await makeSandbox("pi-gateway-browser-cli-");
	const proc = spawnCli(undefined, ["--port", "0", ...args], childEnv(box));
	const { child, out, exited } = proc;
	const stop = async () => {
		if (child.exitCode === null && child.signalCode === null) {
			child.kill("SIGTERM");
			await within(exited, EXIT_DEADLINE_MS, "pi-gateway to exit after SIGTERM").catch(() => {
				child.kill("SIGKILL");
			});
		}
		await rm(box.root, { recursive: true, force: true }).catch(() => {});
	};
	try {
		const { port } = await within(listening(proc), START_DEADLINE_MS, "pi-gateway to print its address");
		return { base: `http://127.0.0.1:${port}`, port, out, stop };
	} catch (error) {
		await stop();
		throw new Error(`${error.message}\nstdout:\n${out.stdout}\nstderr:\n${out.stderr}`);
	}
}

/**
 * One HTTP request as curl would send it: no Origin, no Sec-Fetch-* headers.
 * @param {string} url
 * @param {{ method?: string, headers?: Record<string, string>, body?: string }} [options]
 * @returns {Promise<{ status: number, headers: import("node:http").IncomingHttpHeaders, text: string, json: any }>}
 */
export function plainRequest(url, { method = "GET", headers = {}, body } = {}) {
	return within(
		new Promise((resolve, reject) => {
			const req = httpRequest(url, { method, headers, agent: false }, (res) => {
				let text = "";
				res.setEncoding("utf8");
				res.on("data", (chunk) => (text += chunk));
				res.on("end", () => {
					let json;
					try {
						json = JSON.parse(text);
					} catch {
						json = undefined;
					}
					resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
				});
				res.on("error", reject);
			});
			req.on("error", reject);
			req.end(body);
		}),
		30_000,
		`${method} ${url}`,
	);
}

/**
 * Serves one HTML page at `/` (and 404 elsewhere) on `host`:0 — "another web site".
 * @param {string} host  e.g. "127.0.0.2" (another site) or "127.0.0.1" (another port: same site, other origin)
 * @param {string} html
 */
export async function startPageServer(host, html) {
	const server = createServer((req, res) => {
		const path = new URL(req.url ?? "/", "http://x").pathname;
		if (req.method === "GET" && path === "/") {
			res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" }).end(html);
		} else {
			res.writeHead(404, { "content-type": "text/plain" }).end("Not found");
		}
	});
	await new Promise((resolve, reject) => {
		server.once("error", reject);
		server.listen(0, host, resolve);
	});
	const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
	return {
		origin: `http://${host}:${port}`,
		close: () =>
			new Promise((resolve) => {
				server.closeAllConnections();
				server.close(() => resolve());
			}),
	};
}
