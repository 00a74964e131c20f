// Conversations that last (issue 14): the real `pi-gateway` command keeps its sessions on disk
// (--data-dir, a printed default, --ephemeral), so a key's conversation continues after a restart
// and after idle eviction; stored sessions are found by routes (sessionExists) and purged by
// DELETE ?purge=true (deleteSession). Every gateway is a real child process on 127.0.0.1 with HOME
// and TMPDIR in a sandbox (support/cli-child.mjs), on the offline faux model, whose `/history`
// command answers with what the user said before in the session's context.
// Run: node --test __test__/persistence.test.mjs

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { sandbox as sandboxFor, spawnCli, START_DEADLINE_MS, startFakeOpenAi, writeLocalModels } from "./support/cli-child.mjs";
import { request } from "./support/http.mjs";
import {
	bannerSessions,
	childEnv,
	historyAnswer,
	keyDir,
	listedKeys,
	say,
	sessionFiles,
	startCliGateway,
	startMainGateway,
	stopCleanly,
} from "./support/persist-util.mjs";
import { waitFor, within } from "./support/wait.mjs";

const sandbox = (t) => sandboxFor(t, "pi-gateway-persist-");
const TIMEOUT = { timeout: 120_000 };
/** The faux model's answer to a plain question (it reads hello.txt). */
const FAUX_ANSWER = "hello.txt says: Hello from the pi-gateway workspace.";

describe("the CLI keeps conversations on disk", TIMEOUT, () => {
	it("--data-dir: talk, stop (SIGTERM), start again on the same dir: /history shows the earlier messages", async (t) => {
		const box = await sandbox(t);
		const data = join(box.root, "data");
		const env = childEnv(box);
		const args = ["--port", "0", "--data-dir", data];

		const first = await startCliGateway(t, args, env);
		assert.deepEqual(bannerSessions(first.out.stdout), { dir: data, temporary: false }, "the banner names the sessions dir");
		assert.equal(await say(first, "k", "/echo first"), "You said: first");
		assert.equal(await say(first, "k", "what is there?"), FAUX_ANSWER);
		assert.equal(await say(first, "k", "/history"), historyAnswer(["/echo first", "what is there?"]));
		assert.equal(await say(first, "main", "/echo on the primary"), "You said: on the primary");
		await stopCleanly(first);

		// On disk: one pi session file per session, in a dir only the user may enter.
		assert.equal((await sessionFiles(keyDir(data, "k"))).length, 1);
		assert.equal((await sessionFiles(join(data, "primary"))).length, 1);
		assert.equal((await stat(data)).mode & 0o777, 0o700, "the data dir the gateway creates is private");
		assert.deepEqual(await readdir(box.home), [], "nothing in HOME with --data-dir");

		const second = await startCliGateway(t, args, env);
		assert.equal(bannerSessions(second.out.stdout).dir, data);
		assert.equal(
			await say(second, "k", "/history"),
			historyAnswer(["/echo first", "what is there?", "/history"]),
			"the key's conversation continued",
		);
		assert.equal(await say(second, "main", "/history"), historyAnswer(["/echo on the primary"]), "so did the primary's");
		assert.equal(await say(second, "other", "/history"), historyAnswer([]), "a new key starts empty");
		await stopCleanly(second);
		assert.equal((await sessionFiles(keyDir(data, "k"))).length, 1, "the same file was continued, not a new one started");
	});

	it("after idle eviction (--idle-minutes 0, a 25 ms sweep) the key's conversation continues in the same process", async (t) => {
		const box = await sandbox(t);
		const data = join(box.root, "data");
		// main() of lib/cli.js in a child, as bin/pi-gateway.js runs it, with session.sweepIntervalMs 25
		// (the CLI has no flag for it; at the default 60 s an eviction would take a minute).
		const gw = await startMainGateway(t, ["--port", "0", "--data-dir", data, "--idle-minutes", "0"], childEnv(box));
		const evicted = (key) =>
			waitFor(async () => !(await listedKeys(gw)).includes(key), `session ${key} to be evicted`, 20_000, 25);

		assert.equal(await say(gw, "k", "/echo one"), "You said: one");
		await evicted("k");
		assert.match(gw.out.stderr, /evicted idle session k\b/);
		assert.equal(await say(gw, "k", "/history"), historyAnswer(["/echo one"]), "continued after one eviction");
		await evicted("k");
		assert.equal(await say(gw, "k", "/echo three"), "You said: three");
		await evicted("k");
		assert.equal(await say(gw, "k", "/history"), historyAnswer(["/echo one", "/history", "/echo three"]), "and after three");
		assert.deepEqual(await listedKeys(gw).then((keys) => keys.filter((key) => key !== "k")), ["main"], "the primary is never evicted");
		await stopCleanly(gw);
		assert.equal((await sessionFiles(keyDir(data, "k"))).length, 1);
	});

	it("--ephemeral (or PI_GATEWAY_EPHEMERAL=1) keeps nothing: a temporary sessions dir, removed on exit", async (t) => {
		const box = await sandbox(t);
		const first = await startCliGateway(t, ["--port", "0", "--ephemeral"], childEnv(box));
		const printed = bannerSessions(first.out.stdout);
		assert.equal(printed.temporary, true, first.out.stdout);
		assert.ok(printed.dir.startsWith(box.tmp), `the temporary dir is in TMPDIR: ${printed.dir}`);
		assert.equal(await say(first, "k", "/echo forget me"), "You said: forget me");
		assert.equal(await say(first, "k", "/history"), historyAnswer(["/echo forget me"]), "within a run the conversation goes on");
		await stopCleanly(first);
		assert.equal(existsSync(printed.dir), false, "the sessions dir is removed on exit");

		const second = await startCliGateway(t, ["--port", "0"], childEnv(box, { PI_GATEWAY_EPHEMERAL: "1" }));
		assert.equal(bannerSessions(second.out.stdout).temporary, true);
		assert.equal(await say(second, "k", "/history"), historyAnswer([]), "nothing survived the restart");
		assert.equal(await say(second, "main", "/history"), historyAnswer([]));
		await stopCleanly(second);
		assert.deepEqual(await readdir(box.home), [], "nothing is written to HOME");
		assert.deepEqual((await readdir(box.tmp)).filter((name) => name.startsWith("pi-gateway")), [], "nothing is left in TMPDIR");
	});

	it("the sessions dir: PI_GATEWAY_DATA_DIR, else <agent-dir>/sessions with --agent-dir, else $XDG_DATA_HOME/pi-gateway, else ~/.local/share/pi-gateway", async (t) => {
		const box = await sandbox(t);
		const cases = [
			{ name: "PI_GATEWAY_DATA_DIR", args: [], env: { PI_GATEWAY_DATA_DIR: join(box.root, "env-data") }, dir: join(box.root, "env-data") },
			{
				name: "--data-dir over PI_GATEWAY_EPHEMERAL (a flag wins over a variable)",
				args: ["--data-dir", join(box.root, "flag-data")],
				env: { PI_GATEWAY_EPHEMERAL: "1" },
				dir: join(box.root, "flag-data"),
			},
			{ name: "--agent-dir", args: ["--agent-dir", join(box.root, "agent")], env: {}, dir: join(box.root, "agent", "sessions") },
			{ name: "XDG_DATA_HOME", args: [], env: { XDG_DATA_HOME: join(box.root, "xdg") }, dir: join(box.root, "xdg", "pi-gateway") },
			{ name: "a relative XDG_DATA_HOME is ignored", args: [], env: { XDG_DATA_HOME: "relative/xdg" }, dir: join(box.home, ".local", "share", "pi-gateway") },
		];
		for (const c of cases) {
			const gw = await startCliGateway(t, ["--port", "0", ...c.args], childEnv(box, c.env));
			assert.deepEqual(bannerSessions(gw.out.stdout), { dir: c.dir, temporary: false }, c.name);
			assert.equal(await say(gw, "k", "/history"), historyAnswer([]), c.name);
			assert.equal(await say(gw, "k", `/echo ${c.name}`), `You said: ${c.name}`);
			await stopCleanly(gw);
			assert.equal((await sessionFiles(keyDir(c.dir, "k"))).length, 1, `${c.name}: stored in ${c.dir}`);
		}
		// The default one, used again: it continues.
		const again = await startCliGateway(t, ["--port", "0"], childEnv(box));
		assert.equal(bannerSessions(again.out.stdout).dir, join(box.home, ".local", "share", "pi-gateway"));
		assert.equal(await say(again, "k", "/history"), historyAnswer(["/history", "/echo a relative XDG_DATA_HOME is ignored"]));
		await stopCleanly(again);
	});

	it("a sessions dir that cannot be made exits 1 naming it", async (t) => {
		const box = await sandbox(t);
		const file = join(box.root, "a-file");
		await writeFile(file, "not a dir");
		const proc = spawnCli(t, ["--port", "0", "--data-dir", join(file, "sub")], childEnv(box));
		const exit = await within(proc.exited, START_DEADLINE_MS, "pi-gateway to exit");
		assert.deepEqual(exit, { code: 1, signal: null }, proc.out.stderr);
		assert.ok(proc.out.stderr.includes(join(file, "sub")), proc.out.stderr);
		assert.deepEqual((await readdir(box.tmp)).filter((name) => name.startsWith("pi-gateway")), [], "the temporary dirs are removed");
	});

	it("--model: the conversation continues after a restart (the model is sent the earlier messages)", async (t) => {
		const box = await sandbox(t);
		const requests = [];
		const server = await startFakeOpenAi(t, ["Fixed ", "answer."], requests);
		server.unref();
		const { agentDir, workspace } = await writeLocalModels(box.root, server);
		const data = join(box.root, "data");
		const args = ["--port", "0", "--model", "local/fake-1", "--agent-dir", agentDir, "--cwd", workspace, "--data-dir", data];
		const env = childEnv(box, { LOCAL_FAKE_API_KEY: "key" });

		const first = await startCliGateway(t, args, env);
		assert.deepEqual(bannerSessions(first.out.stdout), { dir: data, temporary: false });
		assert.equal(await say(first, "k", "remember the word teal"), "Fixed answer.");
		await stopCleanly(first);
		const second = await startCliGateway(t, args, env);
		assert.equal(await say(second, "k", "which word?"), "Fixed answer.");
		await stopCleanly(second);

		assert.equal(requests.length, 2);
		const sent = JSON.parse(requests[1].body).messages.map((m) => [m.role, typeof m.content === "string" ? m.content : m.content.map((c) => c.text).join("")]);
		assert.deepEqual(sent.slice(-3), [
			["user", "remember the word teal"],
			["assistant", "Fixed answer."],
			["user", "which word?"],
		]);
		assert.equal((await sessionFiles(keyDir(data, "k"))).length, 1);
		assert.equal(existsSync(join(agentDir, "sessions")), false, "--data-dir, not the agent dir");
	});
});

describe("stored sessions through the routes (sessionExists, deleteSession)", TIMEOUT, () => {
	it("GET /sessions/k/messages after a restart returns the stored history; an unknown key is 404", async (t) => {
		const box = await sandbox(t);
		const data = join(box.root, "data");
		const args = ["--port", "0", "--data-dir", data];
		const first = await startCliGateway(t, args, childEnv(box));
		await say(first, "k", "/echo stored");
		await say(first, "k", "what is there?");
		const before = await request(first.port, "GET", "/sessions/k/messages");
		assert.equal(before.status, 200, before.text);
		await stopCleanly(first);

		const second = await startCliGateway(t, args, childEnv(box));
		assert.deepEqual(await listedKeys(second), ["main"], "nothing is loaded before it is asked for");
		const after = await request(second.port, "GET", "/sessions/k/messages");
		assert.equal(after.status, 200, after.text);
		assert.equal(after.json.sessionKey, "k");
		assert.equal(after.json.format, "ui");
		assert.deepEqual(after.json.messages, before.json.messages, "the same history as before the restart");
		const summary = after.json.messages.map((m) => [
			m.role,
			m.parts
				.filter((p) => p.type === "text")
				.map((p) => p.text)
				.join(""),
		]);
		assert.deepEqual(summary, [
			["user", "/echo stored"],
			["assistant", "You said: stored"],
			["user", "what is there?"],
			["assistant", FAUX_ANSWER],
		]);
		assert.ok((await listedKeys(second)).includes("k"), "the stored key was loaded");
		const pi = await request(second.port, "GET", "/sessions/k/messages?format=pi");
		assert.equal(pi.status, 200, pi.text);
		assert.deepEqual(
			pi.json.messages.map((m) => m.message.role),
			["user", "assistant", "user", "assistant", "toolResult", "assistant"],
		);

		const unknown = await request(second.port, "GET", "/sessions/never-seen/messages");
		assert.equal(unknown.status, 404, unknown.text);
		assert.deepEqual(unknown.json, { error: "Session not found: never-seen" });
		await stopCleanly(second);
	});

	it("DELETE /sessions/k?purge=true removes the key's dir: after a restart the key is unknown; without purge it stays stored", async (t) => {
		const box = await sandbox(t);
		const data = join(box.root, "data");
		const args = ["--port", "0", "--data-dir", data];
		const first = await startCliGateway(t, args, childEnv(box));
		await say(first, "purged", "/echo gone soon");
		await say(first, "kept", "/echo still here");
		assert.equal((await sessionFiles(keyDir(data, "purged"))).length, 1);

		const purged = await request(first.port, "DELETE", "/sessions/purged?purge=true");
		assert.equal(purged.status, 200, purged.text);
		assert.deepEqual(purged.json, { ok: true, sessionKey: "purged", purged: true });
		assert.equal(existsSync(keyDir(data, "purged")), false, "the key's dir is removed");
		const kept = await request(first.port, "DELETE", "/sessions/kept");
		assert.equal(kept.status, 200, kept.text);
		assert.deepEqual(kept.json, { ok: true, sessionKey: "kept", purged: false });
		assert.equal((await sessionFiles(keyDir(data, "kept"))).length, 1, "without purge the stored session stays");

		// In this process: the purged key is unknown, the deleted-but-kept one is loaded again.
		assert.equal((await request(first.port, "GET", "/sessions/purged/messages")).status, 404);
		const reloaded = await request(first.port, "GET", "/sessions/kept/messages");
		assert.equal(reloaded.status, 200, reloaded.text);
		assert.equal(reloaded.json.messages.length, 2);
		const primary = await request(first.port, "DELETE", "/sessions/main?purge=true");
		assert.equal(primary.status, 409, primary.text);
		await stopCleanly(first);

		const second = await startCliGateway(t, args, childEnv(box));
		assert.equal((await request(second.port, "GET", "/sessions/purged/messages")).status, 404, "purged for good");
		assert.equal(await say(second, "purged", "/history"), historyAnswer([]), "the key starts over");
		assert.equal(await say(second, "kept", "/history"), historyAnswer(["/echo still here"]));
		await stopCleanly(second);
	});

	it("a model and thinking level set through the routes survive a restart (PUT model faux-2, PUT thinking high)", async (t) => {
		const box = await sandbox(t);
		const data = join(box.root, "data");
		const args = ["--port", "0", "--data-dir", data];
		const first = await startCliGateway(t, args, childEnv(box));
		const models = await request(first.port, "GET", "/models");
		assert.equal(models.status, 200, models.text);
		assert.deepEqual(
			models.json.models.map((m) => [m.provider, m.id, m.reasoning]),
			[
				["faux", "faux-1", false],
				["faux", "faux-2", true],
			],
		);
		await say(first, "k", "/echo on faux-1");
		const put = await request(first.port, "PUT", "/sessions/k/model", { body: { provider: "faux", id: "faux-2" } });
		assert.equal(put.status, 200, put.text);
		assert.deepEqual(put.json.model, { provider: "faux", id: "faux-2" });
		const thinking = await request(first.port, "PUT", "/sessions/k/thinking", { body: { level: "high" } });
		assert.equal(thinking.status, 200, thinking.text);
		assert.equal(thinking.json.thinkingLevel, "high");
		await say(first, "k", "/echo on faux-2");
		await stopCleanly(first);

		const second = await startCliGateway(t, args, childEnv(box));
		const snapshot = await request(second.port, "GET", "/sessions/k");
		assert.equal(snapshot.status, 200, snapshot.text);
		assert.deepEqual(snapshot.json.session.model, { provider: "faux", id: "faux-2" }, "the model was restored");
		assert.equal(snapshot.json.session.thinkingLevel, "high", "so was the thinking level");
		const history = await request(second.port, "GET", "/sessions/k/messages");
		assert.deepEqual(
			history.json.messages.filter((m) => m.role === "assistant").map((m) => m.metadata.model.id),
			["faux-1", "faux-2"],
		);
		assert.equal(await say(second, "k", "/history"), historyAnswer(["/echo on faux-1", "/echo on faux-2"]));
		const after = await request(second.port, "GET", "/sessions/k/messages");
		assert.equal(after.json.messages.at(-1).metadata.model.id, "faux-2", "the next answer comes from faux-2 too");
		await stopCleanly(second);
	});

	it("--max-sessions 2: a new key past the cap evicts the least recently active idle session, whose conversation continues", async (t) => {
		const box = await sandbox(t);
		const data = join(box.root, "data");
		const gw = await startCliGateway(t, ["--port", "0", "--data-dir", data, "--max-sessions", "2"], childEnv(box));
		await say(gw, "a", "/echo from a");
		await say(gw, "b", "/echo from b");
		await say(gw, "c", "/echo from c");
		const keys = await listedKeys(gw);
		assert.ok(!keys.includes("a"), `a, the least recently active, was evicted: ${keys}`);
		assert.ok(keys.includes("c"));
		assert.ok(keys.filter((key) => key !== "main").length <= 2, `at most 2 sessions besides the primary: ${keys}`);
		assert.equal(await say(gw, "a", "/history"), historyAnswer(["/echo from a"]), "a's conversation continued");
		await stopCleanly(gw);
	});
});
