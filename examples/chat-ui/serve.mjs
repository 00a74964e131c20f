// A tiny static file server for the built chat page, and a one-command demo.
//
//   node examples/chat-ui/serve.mjs [--port 5173] [--gateway http://127.0.0.1:3000] [--session web] [--token T]
//       builds the page into examples/chat-ui/dist and serves it; prints the URL to open.
//   node examples/chat-ui/serve.mjs --demo [--port 5173] [--gateway-port 3000]
//       the same, plus a pi-gateway in this process on the offline faux model (no API key),
//       with CORS allowing the page's origin.
//
// Also importable: `startStaticServer({ root, port })` (the browser test serves the page with it).

import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, resolve, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { buildChatUi, DEFAULT_OUTDIR } from "./build.mjs";

const TYPES = {
	".html": "text/html; charset=utf-8",
	".js": "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".map": "application/json; charset=utf-8",
	".json": "application/json; charset=utf-8",
	".svg": "image/svg+xml",
	".png": "image/png",
	".ico": "image/x-icon",
};

/**
 * Serves the files under `root` (GET/HEAD only; `/` is `index.html`; nothing outside `root`).
 * @param {{ root: string, host?: string, port?: number }} options
 * @returns {Promise<{ server: import("node:http").Server, port: number, origin: string, close: () => Promise<void> }>}
 */
export async function startStaticServer({ root, host = "127.0.0.1", port = 0 }) {
	const base = resolve(root);
	const server = createServer(async (req, res) => {
		try {
			if (req.method !== "GET" && req.method !== "HEAD") {
				res.writeHead(405, { allow: "GET, HEAD" }).end();
				return;
			}
			const pathname = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
			const file = resolve(join(base, pathname === "/" ? "index.html" : pathname));
			if (file !== base && !file.startsWith(base + sep)) {
				res.writeHead(403).end();
				return;
			}
			const info = await stat(file).catch(() => null);
			if (!info?.isFile()) {
				res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("Not found");
				return;
			}
			res.writeHead(200, {
				"content-type": TYPES[extname(file)] ?? "application/octet-stream",
				"content-length": info.size,
				"cache-control": "no-store",
			});
			if (req.method === "HEAD") res.end();
			else createReadStream(file).pipe(res);
		} catch {
			if (!res.headersSent) res.writeHead(400);
			res.end();
		}
	});
	await new Promise((ok, fail) => {
		server.once("error", fail);
		server.listen(port, host, () => {
			server.off("error", fail);
			ok();
		});
	});
	const actual = /** @type {import("node:net").AddressInfo} */ (server.address()).port;
	return {
		server,
		port: actual,
		origin: `http://${host}:${actual}`,
		close: () =>
			new Promise((ok) => {
				server.closeAllConnections?.();
				server.close(() => ok());
			}),
	};
}

async function main() {
	const { values } = parseArgs({
		options: {
			port: { type: "string", default: "5173" },
			host: { type: "string", default: "127.0.0.1" },
			gateway: { type: "string", default: "http://127.0.0.1:3000" },
			session: { type: "string", default: "web" },
			token: { type: "string" },
			demo: { type: "boolean", default: false },
			"gateway-port": { type: "string", default: "3000" },
		},
	});
	const root = await buildChatUi({ outdir: DEFAULT_OUTDIR });
	const page = await startStaticServer({ root, host: values.host, port: Number(values.port) });
	const closers = [page.close];
	let gateway = values.gateway;

	if (values.demo) {
		// Offline demo: real pi AgentSessions on the faux model, behind a gateway that lets the page's
		// origin in through CORS. Try "What is in hello.txt?", "/echo hi", "/slow 100" (then Stop).
		const { GatewayRuntime } = await import("../../index.js");
		const { createFauxPiAgent } = await import("../../lib/faux-agent.js");
		const agent = await createFauxPiAgent({ tokensPerSecond: 30 });
		const runtime = new GatewayRuntime({
			config: {
				bind: "127.0.0.1",
				port: Number(values["gateway-port"]),
				bearerToken: values.token || undefined,
				session: { idleMinutes: 30, maxQueuePerSession: 8 },
				webhook: { enabled: false, basePath: "/webhook" },
				cors: { origins: [page.origin] },
			},
			primarySessionKey: "main",
			primarySession: agent.primarySession,
			createSession: agent.createSession,
		});
		await runtime.start();
		gateway = `http://127.0.0.1:${runtime.getAddress().port}`;
		closers.unshift(() => runtime.stop(), () => agent.close());
		console.log(`pi-gateway (offline faux model) on ${gateway}, CORS origin ${page.origin}`);
	}

	const query = new URLSearchParams({ gateway, session: values.session });
	if (values.token) query.set("token", values.token);
	console.log(`chat page: ${page.origin}/?${query}`);
	const shutdown = async () => {
		for (const close of closers) await close().catch(() => {});
		process.exit(0);
	};
	process.once("SIGINT", shutdown);
	process.once("SIGTERM", shutdown);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
	await main();
}
