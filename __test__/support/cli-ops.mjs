// For the CLI tests of issue 16 (operability): a webhook receiver on 127.0.0.1 that records
// every delivery, a Standard Webhooks secret, and the JSON log lines of a child's stderr.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer } from "node:http";

/** A fresh Standard Webhooks secret: `whsec_` and 24 random bytes in base64. */
export function webhookSecret() {
	return "whsec_" + randomBytes(24).toString("base64");
}

/**
 * An HTTP server on 127.0.0.1 that takes webhook deliveries; closed by t.after.
 * `statuses[i]` is the status of the i-th delivery (204 once they run out). Each delivery is
 * pushed onto `deliveries` as `{ method, url, headers, body, status, at }` once its body is read.
 * @param {import("node:test").TestContext} t
 * @param {number[]} [statuses]
 */
export async function startWebhookReceiver(t, statuses = []) {
	/** @type {{ method: string, url: string, headers: import("node:http").IncomingHttpHeaders, body: string, status: number, at: number }[]} */
	const deliveries = [];
	const server = createServer((req, res) => {
		let body = "";
		req.setEncoding("utf8");
		req.on("data", (chunk) => (body += chunk));
		req.on("end", () => {
			const status = statuses[deliveries.length] ?? 204;
			deliveries.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body, status, at: Date.now() });
			res.writeHead(status, { "content-type": "text/plain" });
			res.end(status < 300 ? "" : "try again");
		});
	});
	server.listen(0, "127.0.0.1");
	await once(server, "listening");
	t.after(() => {
		server.closeAllConnections();
		return new Promise((resolve) => server.close(resolve));
	});
	const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
	return { server, deliveries, url: `http://127.0.0.1:${port}/hooks/pi` };
}

/**
 * Every non-empty line of `stderr` as a JSON object with `time` (ISO 8601), `level` and
 * `message`; fails naming the first line that is not one.
 * @param {string} stderr
 * @returns {{ time: string, level: string, message: string, sessionKey?: string, runId?: string }[]}
 */
export function jsonLogLines(stderr) {
	const lines = stderr.split("\n").filter((line) => line.trim() !== "");
	return lines.map((line) => {
		let entry;
		try {
			entry = JSON.parse(line);
		} catch {
			assert.fail(`a stderr line is not JSON: ${JSON.stringify(line)}\nstderr:\n${stderr}`);
		}
		assert.ok(entry && typeof entry === "object" && !Array.isArray(entry), `a JSON object: ${line}`);
		assert.equal(typeof entry.time, "string", `time: ${line}`);
		assert.ok(!Number.isNaN(Date.parse(entry.time)) && entry.time.endsWith("Z"), `time is an ISO 8601 UTC timestamp: ${line}`);
		assert.ok(["debug", "info", "warn", "error"].includes(entry.level), `level: ${line}`);
		assert.equal(typeof entry.message, "string", `message: ${line}`);
		return entry;
	});
}
