// Outbound webhooks (issue 16, SPEC §14) in the tests: a real receiver on 127.0.0.1 (node:http,
// or node:https with a certificate made at test time by openssl), Standard Webhooks secrets, and
// checking a delivery with the real `standardwebhooks` package.
//
// A receiver records every request it gets, in arrival order: `{method, path, headers, body
// (the raw text), at (ms since epoch), closedAt (when its connection closed, once it has)}`.
// How it answers is up to `respond(delivery, index)`: a status code (default 204), `{status,
// headers}`, or HANG to accept the request and never answer (the socket stays open until the
// client gives up or the receiver is closed).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Webhook } from "standardwebhooks";
import { checkWebhookDelivery } from "./openapi.mjs";
import { SOON_MS, waitFor } from "./wait.mjs";

/** `respond` answer: hold the request open, never answer. */
export const HANG = Symbol("hang");

export const OPENSSL = "/usr/bin/openssl";

/** A fresh Standard Webhooks secret: `whsec_` + the base64 of 24 random bytes. */
export const newSecret = () => `whsec_${randomBytes(24).toString("base64")}`;

/** `webhook-id`: `msg_` and a UUIDv7 in its simple (32 hex digits, no dashes) form. */
export const WEBHOOK_ID = /^msg_[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}$/;

/** The body's `timestamp`: RFC 3339, UTC, with milliseconds. */
export const RFC3339_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/**
 * Starts a receiver on 127.0.0.1 (port 0). `tls: {key, cert}` (PEM) makes it HTTPS.
 * `respond(delivery, index)` → a status code, `{status, headers}` or HANG (default 204 for all).
 * Returns `{port, url(path), deliveries, of(type), waitFor(n, what), close()}`.
 */
export async function startReceiver({ respond = () => 204, tls } = {}) {
	const deliveries = [];
	const onRequest = (req, res) => {
		const chunks = [];
		req.on("data", (c) => chunks.push(c));
		req.on("end", () => {
			const delivery = {
				method: req.method,
				path: req.url,
				headers: req.headers,
				body: Buffer.concat(chunks).toString("utf8"),
				at: Date.now(),
				/** When the request's connection closed (set then). */
				closedAt: undefined,
			};
			req.socket.once("close", () => {
				delivery.closedAt = Date.now();
			});
			const index = deliveries.push(delivery) - 1;
			const answer = respond(delivery, index);
			if (answer === HANG) return;
			const { status, headers = {} } = typeof answer === "number" ? { status: answer } : answer;
			res.writeHead(status, { "content-type": "text/plain", ...headers }).end(status >= 300 ? "nope" : "");
		});
	};
	const server = tls ? https.createServer({ key: tls.key, cert: tls.cert }, onRequest) : http.createServer(onRequest);
	// Node's own limits stay far above what a test waits; the client's timeout is what is tested.
	await new Promise((resolve, reject) => {
		server.once("error", reject);
		server.listen(0, "127.0.0.1", resolve);
	});
	const { port } = server.address();
	const scheme = tls ? "https" : "http";
	const host = tls ? "localhost" : "127.0.0.1";
	let closed = false;
	return {
		port,
		server,
		deliveries,
		/** The receiver's URL with `path` (by name `localhost` for HTTPS, so the certificate matches). */
		url: (path = "/") => `${scheme}://${host}:${port}${path}`,
		/** The deliveries whose body has `type`. */
		of: (type) => deliveries.filter((d) => parse(d).type === type),
		/** Waits until `predicate(deliveries)` holds; returns its value. */
		waitFor: (predicate, what, timeoutMs = SOON_MS) => waitFor(() => predicate(deliveries), what, timeoutMs),
		async close() {
			if (closed) return;
			closed = true;
			server.closeAllConnections?.();
			await new Promise((resolve) => server.close(() => resolve()));
		},
	};
}

/** The JSON body of a delivery (asserts that it is JSON). */
export function parse(delivery) {
	try {
		return JSON.parse(delivery.body);
	} catch {
		assert.fail(`a delivery whose body is not JSON: ${JSON.stringify(delivery.body.slice(0, 200))}`);
	}
}

/**
 * Checks one delivery as Standard Webhooks and the contract say: a POST with content-type
 * application/json, user-agent pi-gateway/<version>, a `msg_<uuidv7>` webhook-id, a
 * webhook-timestamp within `skewS` seconds of its arrival, and a signature that the
 * `standardwebhooks` package verifies with `secret` (and not with another secret); the body is
 * exactly `{type, timestamp, data}`. Returns the verified body.
 */
export function verifyDelivery(delivery, secret, { skewS = 5 } = {}) {
	const { headers } = delivery;
	assert.equal(delivery.method, "POST");
	assert.equal(headers["content-type"], "application/json");
	assert.match(String(headers["user-agent"]), /^pi-gateway\/\d+\.\d+\.\d+/);
	assert.match(String(headers["webhook-id"]), WEBHOOK_ID, "webhook-id");
	assert.match(String(headers["webhook-timestamp"]), /^\d+$/, "webhook-timestamp is unix seconds");
	const sentAt = Number(headers["webhook-timestamp"]);
	assert.ok(
		Math.abs(sentAt - delivery.at / 1000) <= skewS,
		`webhook-timestamp ${sentAt} is the time of the attempt (arrived ${delivery.at / 1000})`,
	);
	assert.match(String(headers["webhook-signature"]), /^v1,[A-Za-z0-9+/]{43}=$/, "webhook-signature");
	const body = new Webhook(secret).verify(delivery.body, headers);
	assert.throws(() => new Webhook(newSecret()).verify(delivery.body, headers), /No matching signature/, "another secret does not verify");
	// Exactly these fields, in the order Standard Webhooks shows them.
	assert.deepEqual(Object.keys(body), ["type", "timestamp", "data"], `body fields: ${delivery.body.slice(0, 200)}`);
	assert.match(body.timestamp, RFC3339_MS, "the body's timestamp");
	// And as the OpenAPI document's `webhooks` describe it.
	checkWebhookDelivery(headers, body);
	assert.ok(Math.abs(Date.parse(body.timestamp) - delivery.at) <= skewS * 1000, `body timestamp ${body.timestamp} is recent`);
	return body;
}

/**
 * A self-signed certificate for `localhost` (CN and subjectAltName DNS:localhost, a leaf:
 * CA:FALSE, serverAuth), made now with openssl in a temporary directory. Returns `{key, cert (PEM strings), certPath, dir, remove()}`,
 * or `{error}` when openssl is missing or fails.
 */
export function makeLocalhostCert() {
	if (!existsSync(OPENSSL)) return { error: `${OPENSSL} not found: install openssl to run the HTTPS webhook test` };
	const dir = mkdtempSync(join(tmpdir(), "pi-gateway-webhook-tls-"));
	const keyPath = join(dir, "key.pem");
	const certPath = join(dir, "cert.pem");
	const r = spawnSync(
		OPENSSL,
		[
			"req",
			"-x509",
			"-newkey",
			"rsa:2048",
			"-nodes",
			"-keyout",
			keyPath,
			"-out",
			certPath,
			"-days",
			"2",
			"-subj",
			"/CN=localhost",
			"-addext",
			"subjectAltName=DNS:localhost",
			// openssl marks a self-signed certificate CA:TRUE by default, and webpki (rustls) refuses
			// a CA certificate as a server's own (CaUsedAsEndEntity): make it a leaf.
			"-addext",
			"basicConstraints=critical,CA:FALSE",
			"-addext",
			"extendedKeyUsage=serverAuth",
		],
		{ encoding: "utf8", timeout: 30_000 },
	);
	const remove = () => rmSync(dir, { recursive: true, force: true });
	if (r.status !== 0) {
		remove();
		return { error: `openssl req failed (status ${r.status}, ${r.error ?? ""}): ${r.stderr}` };
	}
	return { key: readFileSync(keyPath, "utf8"), cert: readFileSync(certPath, "utf8"), certPath, dir, remove };
}
