// Several gateways sharing sessions through Redis (SPEC section 15), on real servers started
// here on 127.0.0.1 and stopped by t.after:
// - Debian's redis-server (/usr/bin/redis-server) on a free port, with a password, nothing saved
//   (`--save '' --appendonly no`); stopped and started again on the same port for the degraded
//   test; `redis.command(...)` speaks RESP to it for the tests' own look at the keys;
// - nginx (/usr/sbin/nginx) in a temporary prefix dir, in the foreground, routing by session key
//   (`hash $session_key consistent`, the key from the path): the site part of its config
//   ({@link nginxSite}) is the README's example;
// - two (or more) `pi-gateway` CLI processes on the faux model, each on its own fixed port
//   with `--advertise-url http://127.0.0.1:<port>`, a distinct `--node-id`, the same
//   `--data-dir` and Redis, a short `--lease`; `kill9()`, `stop()`, `restart()`, `ready()`.
// A missing redis-server or nginx FAILS the test with a message saying what to install.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";

import { childEnv, EXIT_DEADLINE_MS, listening, spawnCli, START_DEADLINE_MS } from "./cli-child.mjs";
import { request } from "./http.mjs";
import { sleep, waitFor, within } from "./wait.mjs";

export const REDIS_SERVER = "/usr/bin/redis-server";
export const NGINX = "/usr/sbin/nginx";
/** How long a server of ours may take to start or to stop. */
const SERVER_DEADLINE_MS = 10_000;

/** Fails the test (never skips it) when Debian's `pkg` is not installed at `path`. */
export function requireBinary(path, pkg) {
	if (!existsSync(path)) {
		assert.fail(
			`${path} is missing: the cluster tests run a real ${pkg} (Debian package "${pkg}": apt-get install ${pkg}; .ci/run installs it)`,
		);
	}
}

/** A TCP port that was free on 127.0.0.1 a moment ago (the OS picked it). */
export async function freePort() {
	const server = net.createServer();
	server.listen(0, "127.0.0.1");
	await once(server, "listening");
	const { port } = /** @type {net.AddressInfo} */ (server.address());
	await new Promise((resolve) => server.close(resolve));
	return port;
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
function canConnect(port) {
	return new Promise((resolve) => {
		const socket = net.connect({ host: "127.0.0.1", port });
		socket.once("connect", () => {
			socket.destroy();
			resolve(true);
		});
		socket.once("error", () => resolve(false));
	});
}

/**
 * A child process of ours (redis-server, nginx) with its output collected; `exited` resolves
 * with `{code, signal}`.
 */
function spawnServer(command, args, options = {}) {
	const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...options });
	const out = { stdout: "", stderr: "" };
	child.stdout.setEncoding("utf8").on("data", (chunk) => (out.stdout += chunk));
	child.stderr.setEncoding("utf8").on("data", (chunk) => (out.stderr += chunk));
	const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
	child.on("error", (error) => (out.stderr += `\nspawn failed: ${error.message}`));
	return { child, out, exited, running: () => child.exitCode === null && child.signalCode === null };
}

/** `signal`, then (bounded) SIGKILL if it does not exit in time. Resolves once it has exited. */
async function terminate(proc, signal = "SIGTERM", ms = SERVER_DEADLINE_MS) {
	if (!proc.running()) return proc.exited;
	proc.child.kill(signal);
	try {
		return await within(proc.exited, ms, `pid ${proc.child.pid} to exit after ${signal}`);
	} catch {
		proc.child.kill("SIGKILL");
		return within(proc.exited, ms, `pid ${proc.child.pid} to exit after SIGKILL`);
	}
}

// ---------------------------------------------------------------------------------------------
// Redis

/** One RESP request, `args` as bulk strings. */
function encodeCommand(args) {
	let out = `*${args.length}\r\n`;
	for (const arg of args) {
		const bytes = Buffer.from(String(arg));
		out += `$${bytes.length}\r\n${bytes.toString("latin1")}\r\n`;
	}
	return Buffer.from(out, "latin1");
}

/**
 * Parses one RESP2 reply at `at` of `buf`; `{value, end}`, or undefined when incomplete. An error
 * reply is `{error: "..."}`; bulk strings are UTF-8 strings.
 */
function parseReply(buf, at = 0) {
	const lineEnd = buf.indexOf("\r\n", at);
	if (lineEnd === -1) return undefined;
	const kind = String.fromCharCode(buf[at]);
	const line = buf.toString("utf8", at + 1, lineEnd);
	const next = lineEnd + 2;
	switch (kind) {
		case "+":
			return { value: line, end: next };
		case "-":
			return { value: { error: line }, end: next };
		case ":":
			return { value: Number(line), end: next };
		case "$": {
			const length = Number(line);
			if (length < 0) return { value: null, end: next };
			if (buf.length < next + length + 2) return undefined;
			return { value: buf.toString("utf8", next, next + length), end: next + length + 2 };
		}
		case "*": {
			const count = Number(line);
			if (count < 0) return { value: null, end: next };
			const items = [];
			let pos = next;
			for (let i = 0; i < count; i++) {
				const item = parseReply(buf, pos);
				if (!item) return undefined;
				items.push(item.value);
				pos = item.end;
			}
			return { value: items, end: pos };
		}
		default:
			throw new Error(`unexpected RESP reply ${JSON.stringify(buf.toString("utf8", at, Math.min(buf.length, at + 40)))}`);
	}
}

/**
 * Sends `commands` (each an array of words) on one connection to Redis on `port` and resolves
 * with their replies, in order (bounded: 5 s).
 */
export function redisCommands(port, commands, timeoutMs = 5000) {
	return new Promise((resolve, reject) => {
		const socket = net.connect({ host: "127.0.0.1", port });
		let buf = Buffer.alloc(0);
		const replies = [];
		const timer = setTimeout(() => {
			socket.destroy();
			reject(new Error(`Redis on port ${port} did not answer ${JSON.stringify(commands)} within ${timeoutMs} ms`));
		}, timeoutMs);
		socket.once("connect", () => socket.write(Buffer.concat(commands.map(encodeCommand))));
		socket.on("data", (chunk) => {
			buf = Buffer.concat([buf, chunk]);
			for (;;) {
				const reply = parseReply(buf);
				if (!reply) break;
				replies.push(reply.value);
				buf = buf.subarray(reply.end);
			}
			if (replies.length >= commands.length) {
				clearTimeout(timer);
				socket.destroy();
				resolve(replies);
			}
		});
		socket.once("error", (error) => {
			clearTimeout(timer);
			reject(error);
		});
		socket.once("close", () => {
			clearTimeout(timer);
			if (replies.length < commands.length) reject(new Error(`Redis on port ${port} closed the connection`));
		});
	});
}

/**
 * Starts redis-server on a free 127.0.0.1 port with a password and no persistence (`dir` holds
 * its working dir). Returns `{port, password, url, command(...), commands([...]), stop(), start(),
 * running(), log()}`: `stop()` ends it (SIGTERM), `start()` starts it again on the same port,
 * empty (as a Redis restarted without persistence is). The caller stops it at the end.
 */
export async function startRedis({ dir, password = randomBytes(12).toString("hex") }) {
	requireBinary(REDIS_SERVER, "redis-server");
	await mkdir(dir, { recursive: true });
	const port = await freePort();
	let proc;
	let log = "";
	const args = [
		"--port", String(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--requirepass", password,
		"--daemonize", "no",
		"--loglevel", "warning",
	];
	const redis = {
		port,
		password,
		/** The URL the gateways get: the password in it, as a real deployment has it. */
		url: `redis://:${password}@127.0.0.1:${port}/0`,
		running: () => proc?.running() ?? false,
		log: () => log + (proc ? proc.out.stdout + proc.out.stderr : ""),
		async start() {
			assert.ok(!redis.running(), "Redis is already running");
			if (proc) log += proc.out.stdout + proc.out.stderr;
			proc = spawnServer(REDIS_SERVER, args);
			const started = proc;
			await waitFor(
				async () => {
					if (!started.running()) {
						assert.fail(`redis-server exited at start (${JSON.stringify(await started.exited)}):\n${started.out.stdout}${started.out.stderr}`);
					}
					try {
						const [auth, pong] = await redisCommands(port, [["AUTH", password], ["PING"]], 1000);
						return auth === "OK" && pong === "PONG";
					} catch {
						return false;
					}
				},
				`redis-server to answer PING on port ${port}`,
				SERVER_DEADLINE_MS,
				20,
			);
		},
		async stop() {
			if (!proc) return;
			const { code, signal } = await terminate(proc);
			if (!(code === 0 || signal === "SIGTERM")) {
				assert.fail(`redis-server stopped badly (${code ?? signal}):\n${proc.out.stdout}${proc.out.stderr}`);
			}
		},
		/** Kill without waiting for a clean stop (cleanup). */
		async kill() {
			if (proc) await terminate(proc, "SIGKILL");
		},
		/** One command (authenticated); its reply. An error reply fails the test. */
		async command(...words) {
			const [auth, reply] = await redisCommands(port, [["AUTH", password], words]);
			assert.equal(auth, "OK", "Redis AUTH");
			assert.ok(!(reply && typeof reply === "object" && "error" in reply), `Redis ${words.join(" ")}: ${reply?.error}`);
			return reply;
		},
	};
	await redis.start();
	return redis;
}

// ---------------------------------------------------------------------------------------------
// nginx

/**
 * The site part of the nginx config: a session key taken from the path picks one gateway
 * (consistent hashing), streams pass unbuffered, the client's Host goes through (without it the
 * gateway sees the upstream's name, which its Host check refuses on a loopback bind or with
 * --allowed-hosts). This is the README's example (with its own addresses there).
 * @param {{ listen: string, servers: string[], upstream?: string }} options
 */
export function nginxSite({ listen, servers, upstream = "pi_gateways" }) {
	return `map $uri $session_key {
    ~^/sessions/(?<k>[^/]+) $k;
    default "";
}
upstream ${upstream} {
    hash $session_key consistent;
${servers.map((server) => `    server ${server};`).join("\n")}
}
server {
    listen ${listen};
    location / {
        proxy_pass http://${upstream};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;  # the name clients use (--allowed-hosts), not the upstream's
        proxy_buffering off;          # event and chat streams
        proxy_read_timeout 1h;
    }
}
`;
}

/** The whole nginx.conf for a foreground nginx in `prefix`, with the site in `site.conf`. */
export function nginxMain(prefix) {
	return `daemon off;
master_process on;
worker_processes 1;
pid ${join(prefix, "nginx.pid")};
error_log stderr;
events {
    worker_connections 256;
}
http {
    access_log off;
    client_body_temp_path ${join(prefix, "client_body_temp")};
    proxy_temp_path ${join(prefix, "proxy_temp")};
    fastcgi_temp_path ${join(prefix, "fastcgi_temp")};
    uwsgi_temp_path ${join(prefix, "uwsgi_temp")};
    scgi_temp_path ${join(prefix, "scgi_temp")};
    include ${join(prefix, "site.conf")};
}
`;
}

/**
 * Starts nginx in front of `upstreamPorts` (127.0.0.1) on a free port. `check`: a path that must
 * answer 200 through it before this resolves (default `/health`; null: only wait for the port).
 * Returns `{port, prefix, site, config, stop(), log()}`.
 */
export async function startNginx(upstreamPorts, { check = "/health" } = {}) {
	requireBinary(NGINX, "nginx");
	// Its own dir under the system's temporary dir, readable by the worker processes (which run
	// as another user when we are root).
	const prefix = await mkdtemp(join(tmpdir(), "pi-gateway-nginx-"));
	await chmod(prefix, 0o755);
	const port = await freePort();
	const site = nginxSite({ listen: `127.0.0.1:${port}`, servers: upstreamPorts.map((p) => `127.0.0.1:${p}`) });
	const config = nginxMain(prefix);
	await writeFile(join(prefix, "site.conf"), site);
	await writeFile(join(prefix, "nginx.conf"), config);
	const proc = spawnServer(NGINX, ["-p", `${prefix}/`, "-c", join(prefix, "nginx.conf"), "-e", "stderr"]);
	const nginx = {
		port,
		prefix,
		site,
		config,
		log: () => proc.out.stdout + proc.out.stderr,
		async stop() {
			// SIGTERM: fast shutdown (SIGQUIT would wait for open event streams).
			const workers = childPids(proc.child.pid);
			await terminate(proc);
			for (const pid of workers) {
				try {
					process.kill(pid, "SIGKILL");
				} catch {
					// gone with its master
				}
			}
			await rm(prefix, { recursive: true, force: true });
		},
	};
	try {
		await waitFor(
			async () => {
				if (!proc.running()) assert.fail(`nginx exited at start (${JSON.stringify(await proc.exited)}):\n${nginx.log()}`);
				if (!(await canConnect(port))) return false;
				if (check === null) return true;
				const res = await request(port, "GET", check, { timeoutMs: 2000, openapi: false }).catch(() => undefined);
				return res?.status === 200;
			},
			`nginx on port ${port} to answer GET ${check}`,
			SERVER_DEADLINE_MS,
			20,
		);
	} catch (error) {
		await nginx.stop();
		throw error;
	}
	return nginx;
}

/** The child pids of `pid` (Linux /proc), best effort. */
function childPids(pid) {
	try {
		return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
	} catch {
		return [];
	}
}

// ---------------------------------------------------------------------------------------------
// Gateways

/**
 * One `pi-gateway` node of a cluster: the CLI on the faux model. `args()` are its flags; Redis
 * is given by flag or by PI_GATEWAY_REDIS_URL (`redisByEnv`).
 */
class GatewayNode {
	constructor({ name, nodeId, port, dataDir, box, redisUrl, redisByEnv, leaseS, prefix, extraArgs }) {
		Object.assign(this, { name, nodeId, port, dataDir, box, redisUrl, redisByEnv, leaseS, prefix, extraArgs });
		this.base = `http://127.0.0.1:${port}`;
		this.advertiseUrl = `http://127.0.0.1:${port}`;
		/** Every run of the process (restarts included), for the outputs. */
		this.runs = [];
		this.proc = undefined;
	}

	args() {
		const args = [
			"--port", String(this.port),
			"--bind", "127.0.0.1",
			"--advertise-url", this.advertiseUrl,
			"--node-id", this.nodeId,
			"--data-dir", this.dataDir,
			"--lease", String(this.leaseS),
			"--cluster-prefix", this.prefix,
			...this.extraArgs,
		];
		if (!this.redisByEnv) args.push("--redis-url", this.redisUrl);
		return args;
	}

	env() {
		return childEnv(this.box, this.redisByEnv ? { PI_GATEWAY_REDIS_URL: this.redisUrl } : {});
	}

	/** Starts the process (bounded) and waits until `/ready` says ready with the cluster ok. */
	async start() {
		assert.ok(!this.running(), `${this.name} is already running`);
		// No t: the cluster's own t.after stops every process (this one too if it never starts).
		this.proc = spawnCli(undefined, this.args(), this.env());
		this.runs.push(this.proc);
		try {
			await within(listening(this.proc), START_DEADLINE_MS, `${this.name} to print its banner`);
		} catch (error) {
			throw new Error(`${error.message}\n${this.output()}`);
		}
		await this.ready();
		return this;
	}

	running() {
		return this.proc !== undefined && this.proc.child.exitCode === null && this.proc.child.signalCode === null;
	}

	/** GET /ready until `ready: true` and `cluster: want`; resolves with the last body. */
	async ready(want = "ok", timeoutMs = 15_000) {
		return waitFor(
			async () => {
				if (!this.running()) assert.fail(`${this.name} exited:\n${this.output()}`);
				const res = await request(this.port, "GET", "/ready", { timeoutMs: 2000 }).catch(() => undefined);
				return res?.status === 200 && res.json?.ready === true && res.json?.cluster === want ? res.json : false;
			},
			`${this.name}'s /ready to say cluster "${want}"`,
			timeoutMs,
			25,
		);
	}

	/** SIGKILL, as a crash: nothing is released. Resolves once it is gone. */
	async kill9() {
		if (!this.running()) return;
		this.proc.child.kill("SIGKILL");
		await within(this.proc.exited, EXIT_DEADLINE_MS, `${this.name} to die of SIGKILL`);
	}

	/** SIGTERM (a clean stop, bounded; SIGKILL after), resolving with its exit. */
	async stop() {
		if (!this.running()) return this.proc?.exited;
		this.proc.child.kill("SIGTERM");
		try {
			return await within(this.proc.exited, EXIT_DEADLINE_MS, `${this.name} to exit after SIGTERM`);
		} catch (error) {
			this.proc.child.kill("SIGKILL");
			await within(this.proc.exited, EXIT_DEADLINE_MS, `${this.name} to die of SIGKILL`);
			throw error;
		}
	}

	/** Starts it again with the same flags (same port, node id, data dir). */
	async restart() {
		if (this.running()) await this.stop();
		return this.start();
	}

	/** stdout and stderr of every run so far. */
	output() {
		return this.runs
			.map((run, i) => `--- ${this.name} run ${i + 1} stdout:\n${run.out.stdout}--- stderr:\n${run.out.stderr}`)
			.join("\n");
	}

	/** The keys of the sessions this node holds (its own GET /sessions: never forwarded). */
	async localKeys() {
		const res = await request(this.port, "GET", "/sessions");
		assert.equal(res.status, 200, `GET /sessions on ${this.name}: ${res.text}`);
		return res.json.sessions.map((s) => s.sessionKey);
	}
}

/**
 * Starts a cluster for one test: Redis, `nodes` gateways sharing it and a data dir, and (with
 * `nginx`) nginx in front of them. Everything is stopped and removed by t.after, in order
 * (gateways, nginx, Redis, the dirs). Returns
 * `{redis, nodes, nginx?, dataDir, prefix, leaseMs, ownerOf(key), close(), diagnostics()}`.
 * @param {import("node:test").TestContext} t
 * @param {{ nodes?: number, nginx?: boolean, leaseS?: number, prefix?: string, extraArgs?: string[] }} [options]
 */
export async function startCluster(t, { nodes: count = 2, nginx: withNginx = false, leaseS = 1.5, prefix = "t17:", extraArgs = [] } = {}) {
	requireBinary(REDIS_SERVER, "redis-server");
	if (withNginx) requireBinary(NGINX, "nginx");
	const root = await mkdtemp(join(tmpdir(), "pi-gateway-cluster-"));
	const dataDir = join(root, "data");
	const cluster = {
		root,
		dataDir,
		prefix,
		leaseS,
		leaseMs: Math.round(leaseS * 1000),
		/** @type {Awaited<ReturnType<typeof startRedis>> | undefined} */
		redis: undefined,
		/** @type {GatewayNode[]} */
		nodes: [],
		/** @type {Awaited<ReturnType<typeof startNginx>> | undefined} */
		nginx: undefined,
		closed: false,
		async close() {
			if (cluster.closed) return;
			cluster.closed = true;
			const problems = [];
			await Promise.all(
				cluster.nodes.map(async (node) => {
					try {
						await node.stop();
					} catch (error) {
						problems.push(`${node.name}: ${error.message}`);
					}
				}),
			);
			if (cluster.nginx) await cluster.nginx.stop().catch((error) => problems.push(`nginx: ${error.message}`));
			if (cluster.redis) await cluster.redis.kill().catch((error) => problems.push(`redis: ${error.message}`));
			await rm(root, { recursive: true, force: true });
			if (problems.length) throw new Error(`cluster cleanup: ${problems.join("; ")}`);
		},
		/** Every server's output, for a failure message. */
		diagnostics() {
			return [
				...cluster.nodes.map((node) => node.output()),
				cluster.nginx ? `--- nginx:\n${cluster.nginx.log()}` : "",
				cluster.redis ? `--- redis:\n${cluster.redis.log()}` : "",
			].join("\n");
		},
		/**
		 * The node holding `key` (in its own GET /sessions), asserting that exactly one does;
		 * `among`: only these nodes are asked (default: the running ones).
		 */
		async ownerOf(key, among = cluster.nodes.filter((node) => node.running())) {
			const holders = [];
			for (const node of among) if ((await node.localKeys()).includes(key)) holders.push(node);
			assert.equal(
				holders.length,
				1,
				`exactly one node holds session ${JSON.stringify(key)}; held by: [${holders.map((n) => n.name).join(", ")}]`,
			);
			return holders[0];
		},
		/** The lease of `key` in Redis: `"<nodeId> <advertiseUrl>"`, or null. */
		lease(key) {
			return cluster.redis.command("GET", `${prefix}{lease}:${key}`);
		},
	};
	t.after(() => cluster.close());
	cluster.redis = await startRedis({ dir: join(root, "redis") });
	await mkdir(dataDir, { recursive: true, mode: 0o700 });
	const names = "abcdefghijklmnopqrstuvwxyz";
	for (let i = 0; i < count; i++) {
		const box = { root: join(root, `node-${names[i]}`), home: join(root, `node-${names[i]}`, "home"), tmp: join(root, `node-${names[i]}`, "tmp") };
		await mkdir(box.home, { recursive: true });
		await mkdir(box.tmp, { recursive: true });
		cluster.nodes.push(
			new GatewayNode({
				name: `node ${names[i].toUpperCase()}`,
				nodeId: `gw-${names[i]}`,
				port: await freePort(),
				dataDir,
				box,
				redisUrl: cluster.redis.url,
				// One node reads Redis's URL from the flag, the other from PI_GATEWAY_REDIS_URL.
				redisByEnv: i % 2 === 1,
				leaseS,
				prefix,
				extraArgs,
			}),
		);
	}
	try {
		await Promise.all(cluster.nodes.map((node) => node.start()));
		if (withNginx) cluster.nginx = await startNginx(cluster.nodes.map((node) => node.port));
	} catch (error) {
		throw new Error(`${error.message}\n${cluster.diagnostics()}`);
	}
	return cluster;
}

/** POST /sessions/:key/messages `{text}` on `port`; `{status, headers, json, text, runId}`. */
export async function postText(port, key, text, { headers = {}, timeoutMs = 20_000, body = {} } = {}) {
	const res = await request(port, "POST", `/sessions/${encodeURIComponent(key)}/messages`, {
		headers,
		body: { text, ...body },
		timeoutMs,
	});
	return { ...res, runId: res.headers["x-run-id"] };
}

/**
 * The conversation of `key` as pi keeps it (GET /sessions/:key/messages?format=pi, the last
 * 1000 entries, asked on `port`): `[{role, text}]`, the text parts of each message joined.
 */
export async function conversation(port, key) {
	const res = await request(port, "GET", `/sessions/${encodeURIComponent(key)}/messages?format=pi&limit=1000`);
	assert.equal(res.status, 200, `GET /sessions/${key}/messages?format=pi: ${res.status} ${res.text}`);
	return res.json.messages.map(({ message }) => ({
		role: message.role,
		text:
			typeof message.content === "string"
				? message.content
				: (message.content ?? [])
						.filter((part) => part.type === "text")
						.map((part) => part.text)
						.join(""),
	}));
}

export { sleep };
