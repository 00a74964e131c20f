// The CLI's part of issue 11: `--webhook` without a secret generates and prints one,
// `--idle-minutes 0` is accepted as the API accepts it, `--allowed-hosts` and
// `--webhook-session-keys` reach the config, and without its optional peer
// (@mariozechner/pi-coding-agent) the CLI says what to install in one line instead of a stack.
// The flags are checked through parseCli/gatewayConfig and on the real CLI in a child process
// (HOME and TMPDIR in a fresh temporary folder) over real sockets.
// Run: node --test __test__/js-side-cli.test.mjs

import assert from "node:assert/strict";
import { cp, mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describe, it } from "node:test";
import { GatewayRuntime } from "../index.js";
import {
	EXIT_FAILURE,
	gatewayConfig,
	generateWebhookSecret,
	helpText,
	importPeer,
	OPTIONS,
	parseCli,
	StartupError,
	UsageError,
} from "../lib/cli.js";
import { childEnv, sandbox as sandboxFor, spawnCli, START_DEADLINE_MS, startCliGateway, stopWith } from "./support/cli-child.mjs";
import { request } from "./support/http.mjs";
import { within } from "./support/wait.mjs";
import { bodyWithRunId } from "./support/runs.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const INSTALL_LINE = "install @mariozechner/pi-coding-agent";

const sandbox = (t) => sandboxFor(t, "pi-gateway-js-side-cli-");

const stop = (proc) => stopWith(proc, "SIGINT");

/** A JSON POST as curl would send it (http.mjs's request: node:http, which, unlike fetch, lets us set Host). */
const postJson = (port, path, body, headers = {}) => request(port, "POST", path, { headers, body });

describe("CLI flags of issue 11 (parseCli, gatewayConfig)", () => {
	it("--idle-minutes 0 (and PI_GATEWAY_IDLE_MINUTES=0) is accepted, as the API accepts it; negatives are not", () => {
		for (const [argv, env] of [
			[["--idle-minutes", "0"], {}],
			[[], { PI_GATEWAY_IDLE_MINUTES: "0" }],
		]) {
			const { options } = /** @type {any} */ (parseCli(argv, env));
			assert.equal(options.idleMinutes, 0);
			const config = gatewayConfig(options);
			assert.equal(config.session.idleMinutes, 0);
			// The runtime takes the config the CLI builds.
			const rt = new GatewayRuntime({
				config,
				primarySessionKey: "main",
				primarySession: { prompt() {}, subscribe: () => () => {}, abort() {}, dispose() {}, messages: [] },
				createSession: async () => {
					throw new Error("not used");
				},
			});
			assert.equal(rt.isReady(), false);
		}
		assert.equal(/** @type {any} */ (parseCli(["--idle-minutes", "0.25"], {})).options.idleMinutes, 0.25);
		for (const bad of ["-1", "", "abc", "10000001"]) {
			assert.throws(() => parseCli(["--idle-minutes", bad], {}), (error) => error instanceof UsageError && /--idle-minutes/.test(error.message));
		}
	});

	it("--allowed-hosts becomes config.allowedHosts (lower case, IPv6 in brackets); a URL or a port is a usage error", () => {
		const { options } = /** @type {any} */ (parseCli(["--allowed-hosts", "GW.example, 10.0.0.5 ,::1,[fe80::2]"], {}));
		assert.deepEqual(gatewayConfig(options).allowedHosts, ["gw.example", "10.0.0.5", "[::1]", "[fe80::2]"]);
		const fromEnv = /** @type {any} */ (parseCli([], { PI_GATEWAY_ALLOWED_HOSTS: "a.example" })).options;
		assert.deepEqual(gatewayConfig(fromEnv).allowedHosts, ["a.example"]);
		assert.equal("allowedHosts" in gatewayConfig(/** @type {any} */ (parseCli([], {})).options), false, "unset by default");
		for (const bad of ["http://gw.example", "gw.example:8080", "a/b", ",", "a b"]) {
			assert.throws(
				() => parseCli(["--allowed-hosts", bad], {}),
				(error) => error instanceof UsageError && error.message.includes("--allowed-hosts"),
				bad,
			);
		}
	});

	it("--webhook-session-keys sets webhook.allowRequestSessionKey; off by default", () => {
		const on = /** @type {any} */ (parseCli(["--webhook", "--webhook-session-keys"], {})).options;
		assert.equal(gatewayConfig(on).webhook.allowRequestSessionKey, true);
		const env = /** @type {any} */ (parseCli([], { PI_GATEWAY_WEBHOOK: "1", PI_GATEWAY_WEBHOOK_SESSION_KEYS: "yes" })).options;
		assert.equal(gatewayConfig(env).webhook.allowRequestSessionKey, true);
		const off = /** @type {any} */ (parseCli(["--webhook"], {})).options;
		assert.equal("allowRequestSessionKey" in gatewayConfig(off).webhook, false);
	});

	it("the help text lists the new flags with their variables (it is derived from OPTIONS)", () => {
		const help = helpText();
		for (const [flag, env] of [
			["--allowed-hosts", "PI_GATEWAY_ALLOWED_HOSTS"],
			["--webhook-session-keys", "PI_GATEWAY_WEBHOOK_SESSION_KEYS"],
		]) {
			assert.ok(OPTIONS.some((o) => `--${o.name}` === flag && o.env === env), flag);
			assert.match(help, new RegExp(`${flag}(\\s|$)`, "m"));
			assert.ok(help.includes(env));
		}
		assert.match(help, /generated/, "--webhook-secret's help says a secret is generated");
	});

	it("generateWebhookSecret: 24 random bytes as base64url (32 characters), different every time", () => {
		const secrets = new Set(Array.from({ length: 100 }, () => generateWebhookSecret()));
		assert.equal(secrets.size, 100);
		for (const secret of secrets) assert.match(secret, /^[A-Za-z0-9_-]{32}$/);
	});
});

describe("without @mariozechner/pi-coding-agent", () => {
	it("importPeer maps the peer's ERR_MODULE_NOT_FOUND to a one-line StartupError naming what to install", async (t) => {
		// A real failed import: a module outside any node_modules tree that imports the peer.
		const box = await sandbox(t);
		const needsPeer = join(box.root, "needs-peer.mjs");
		await writeFile(needsPeer, 'export * from "@mariozechner/pi-coding-agent";\n');
		const needsPiAi = join(box.root, "needs-pi-ai.mjs");
		await writeFile(needsPiAi, 'export * from "@mariozechner/pi-ai";\n');
		for (const file of [needsPeer, needsPiAi]) {
			await assert.rejects(
				importPeer(() => import(pathToFileURL(file).href)),
				(error) => {
					assert.ok(error instanceof StartupError, String(error));
					assert.equal(error.code, EXIT_FAILURE);
					assert.ok(error.message.includes(INSTALL_LINE), error.message);
					assert.doesNotMatch(error.message, /\n/);
					return true;
				},
			);
		}
		// Anything else is not disguised as a missing peer.
		const other = join(box.root, "needs-other.mjs");
		await writeFile(other, 'export * from "some-package-that-is-not-installed";\n');
		await assert.rejects(importPeer(() => import(pathToFileURL(other).href)), (error) => {
			assert.equal(error.code, "ERR_MODULE_NOT_FOUND");
			assert.ok(!(error instanceof StartupError));
			return true;
		});
		const boom = new Error("boom");
		await assert.rejects(
			importPeer(async () => {
				throw boom;
			}),
			(error) => error === boom,
		);
		// And a present peer loads.
		const pi = await importPeer(() => import("@mariozechner/pi-coding-agent"));
		assert.equal(typeof pi.createAgentSession, "function");
	});

	it("the CLI installed without it exits 1 printing one line that says to install it (faux and --model)", async (t) => {
		// A copy of the package (what npm would install) with no node_modules anywhere above it.
		const box = await sandbox(t);
		const pkg = join(box.root, "pkg");
		await mkdir(pkg);
		for (const entry of ["bin", "lib", "index.js", "native.cjs", "package.json"]) {
			await cp(join(ROOT, entry), join(pkg, entry), { recursive: true });
		}
		for (const name of await readdir(ROOT)) {
			if (name.endsWith(".node")) await cp(join(ROOT, name), join(pkg, name));
		}
		for (const args of [["--port", "0"], ["--port", "0", "--model", "openai/gpt-4o-mini"]]) {
			const proc = spawnCli(t, args, childEnv(box, { OPENAI_API_KEY: "x" }), join(pkg, "bin", "pi-gateway.js"));
			const { code, signal } = await within(proc.exited, START_DEADLINE_MS, "the CLI to exit");
			assert.deepEqual({ code, signal }, { code: 1, signal: null }, proc.out.stderr);
			const lines = proc.out.stderr.trimEnd().split("\n");
			assert.equal(lines.length, 1, `one line:\n${proc.out.stderr}`);
			assert.ok(lines[0].startsWith("pi-gateway: "), lines[0]);
			assert.ok(lines[0].includes(INSTALL_LINE), lines[0]);
			assert.doesNotMatch(proc.out.stderr, /\bat .*:\d+:\d+|ERR_MODULE_NOT_FOUND|node:internal/, "no stack trace");
			assert.equal(proc.out.stdout, "");
		}
		assert.deepEqual(
			(await readdir(box.tmp)).filter((name) => name.startsWith("pi-gateway")),
			[],
			"the temporary agent dir is removed",
		);
	});
});

describe("the CLI with the new flags, over HTTP", () => {
	it("--webhook without a secret generates one, prints it on the webhook line, and requires it", async (t) => {
		const box = await sandbox(t);
		const gw = await startCliGateway(t, ["--port", "0", "--webhook", "--idle-minutes", "0"], childEnv(box));
		const line = gw.out.stdout.split("\n").find((l) => l.trimStart().startsWith("webhook"));
		assert.ok(line, gw.out.stdout);
		const match = /x-pi-webhook-secret: ([A-Za-z0-9_-]{32})\b/.exec(line);
		assert.ok(match, `the webhook line carries the generated secret: ${line}`);
		assert.match(line, /generated/);
		const secret = match[1];

		const hook = (headers) => postJson(gw.port, "/webhook/ci", { text: "/echo from ci", sender: "bot" }, headers);
		const none = await hook({});
		assert.equal(none.status, 401, none.text);
		assert.equal((await hook({ "x-pi-webhook-secret": "wrong" })).status, 401);
		const ok = await hook({ "x-pi-webhook-secret": secret });
		assert.equal(ok.status, 200, ok.text);
		assert.deepEqual(bodyWithRunId(ok), { ok: true, response: "You said: from ci", sessionKey: "webhook:ci:bot" });

		// --idle-minutes 0 started the gateway; its sessions answer.
		const listed = await request(gw.port, "GET", "/sessions");
		assert.equal(listed.status, 200);
		assert.deepEqual(await stop(gw), { code: 0, signal: null });
	});

	it("--webhook-secret given: it is not printed; the banner says it is required", async (t) => {
		const box = await sandbox(t);
		const gw = await startCliGateway(t, ["--port", "0", "--webhook"], childEnv(box, { PI_GATEWAY_WEBHOOK_SECRET: "chosen-secret-1" }));
		assert.ok(!gw.out.stdout.includes("chosen-secret-1"));
		assert.match(gw.out.stdout, /webhook .*\(x-pi-webhook-secret required\)/);
		const ok = await postJson(gw.port, "/webhook", { text: "/echo x" }, { "x-pi-webhook-secret": "chosen-secret-1" });
		assert.equal(ok.status, 200, ok.text);
		assert.deepEqual(await stop(gw), { code: 0, signal: null });
	});

	it("--allowed-hosts lets that Host name in on a loopback bind; other names stay refused", async (t) => {
		const box = await sandbox(t);
		const plain = await startCliGateway(t, ["--port", "0"], childEnv(box));
		const refused = await request(plain.port, "GET", "/health", { headers: { host: `gw.example:${plain.port}` } });
		assert.equal(refused.status, 403, "without --allowed-hosts a non-loopback Host is refused");
		assert.deepEqual(await stop(plain), { code: 0, signal: null });

		const gw = await startCliGateway(t, ["--port", "0", "--allowed-hosts", "gw.example,gw2.example"], childEnv(box));
		assert.match(gw.out.stdout, /hosts\s+gw\.example, gw2\.example/);
		for (const host of [`gw.example:${gw.port}`, "GW2.example", `127.0.0.1:${gw.port}`, `localhost:${gw.port}`]) {
			const r = await request(gw.port, "GET", "/health", { headers: { host } });
			assert.equal(r.status, 200, `${host}: ${r.text}`);
		}
		const message = await postJson(gw.port, "/sessions/demo/messages", { text: "/echo via name" }, { host: `gw.example:${gw.port}` });
		assert.equal(message.status, 200, message.text);
		assert.equal(message.json.response, "You said: via name");
		const evil = await request(gw.port, "GET", "/health", { headers: { host: `evil.example:${gw.port}` } });
		assert.equal(evil.status, 403);
		assert.deepEqual(evil.json, { error: "Host not allowed" });
		assert.deepEqual(await stop(gw), { code: 0, signal: null });
	});

	it("--webhook-session-keys lets a webhook body name a session under webhook:, never main", async (t) => {
		const box = await sandbox(t);
		const secret = { "x-pi-webhook-secret": "s3" };
		const off = await startCliGateway(t, ["--port", "0", "--webhook", "--webhook-secret", "s3"], childEnv(box));
		const refused = await postJson(off.port, "/webhook", { text: "/echo x", sessionKey: "webhook:mine" }, secret);
		assert.equal(refused.status, 400, refused.text);
		assert.match(refused.json.error, /^Invalid sessionKey/);
		assert.deepEqual(await stop(off), { code: 0, signal: null });

		const on = await startCliGateway(t, ["--port", "0", "--webhook", "--webhook-secret", "s3", "--webhook-session-keys"], childEnv(box));
		const named = await postJson(on.port, "/webhook", { text: "/echo named", sessionKey: "webhook:mine" }, secret);
		assert.equal(named.status, 200, named.text);
		assert.deepEqual(bodyWithRunId(named), { ok: true, response: "You said: named", sessionKey: "webhook:mine" });
		for (const sessionKey of ["main", "demo"]) {
			const r = await postJson(on.port, "/webhook", { text: "/echo x", sessionKey }, secret);
			assert.equal(r.status, 400, `${sessionKey}: ${r.text}`);
			assert.match(r.json.error, /^Invalid sessionKey/);
		}
		assert.deepEqual(await stop(on), { code: 0, signal: null });
	});
});
