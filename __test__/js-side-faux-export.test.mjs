// The offline faux model is a documented export for embedders (issue 11): `pi-gateway/faux`
// resolves through package.json "exports" (a package may import itself by its own name), and what
// it builds is a real AgentSession a GatewayRuntime from `pi-gateway` serves.
// Run: node --test __test__/js-side-faux-export.test.mjs

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { withRunId } from "./support/runs.mjs";

describe("pi-gateway/faux", () => {
	it("resolves by its package specifier to lib/faux-agent.js, next to pi-gateway itself", () => {
		assert.equal(fileURLToPath(import.meta.resolve("pi-gateway/faux")), fileURLToPath(new URL("../lib/faux-agent.js", import.meta.url)));
		assert.equal(fileURLToPath(import.meta.resolve("pi-gateway")), fileURLToPath(new URL("../index.js", import.meta.url)));
		const require = createRequire(import.meta.url);
		assert.equal(require("pi-gateway/package.json").name, "pi-gateway");
		// Only the exported subpaths resolve.
		assert.throws(() => import.meta.resolve("pi-gateway/lib/cli.js"), { code: "ERR_PACKAGE_PATH_NOT_EXPORTED" });
	});

	it("createFauxPiAgent from pi-gateway/faux builds real AgentSessions a GatewayRuntime serves", async (t) => {
		const faux = await import("pi-gateway/faux");
		const { GatewayRuntime } = await import("pi-gateway");
		for (const name of ["createFauxPiAgent", "fauxLongText", "parseFauxCommand"]) assert.equal(typeof faux[name], "function", name);
		assert.equal(faux.FAUX_PROVIDER, "faux");
		assert.equal(faux.FAUX_MODEL_ID, "faux-1");

		const agent = await faux.createFauxPiAgent();
		t.after(() => agent.close());
		assert.equal(agent.primarySession.model?.provider, "faux");
		assert.ok(existsSync(agent.cwd) && existsSync(agent.agentDir));

		const rt = new GatewayRuntime({
			config: {
				bind: "127.0.0.1",
				port: 0,
				session: { idleMinutes: 1, maxQueuePerSession: 4 },
				webhook: { enabled: false, basePath: "/webhook" },
			},
			primarySessionKey: "main",
			primarySession: agent.primarySession,
			createSession: (key) => agent.createSession(key),
		});
		await rt.start();
		t.after(() => rt.stop());
		const res = await fetch(`http://127.0.0.1:${rt.getAddress().port}/sessions/embedded/messages`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ text: "What is in hello.txt?" }),
		});
		assert.equal(res.status, 200);
		const body = await res.json();
		assert.equal(res.headers.get("x-run-id"), body.runId);
		assert.deepEqual(withRunId(body), {
			ok: true,
			response: `${faux.HELLO_FILE} says: ${faux.HELLO_CONTENT}`,
			sessionKey: "embedded",
		});
		assert.deepEqual(withRunId(await rt.enqueueMessage({ sessionKey: "main", text: "/echo offline" })), {
			ok: true,
			response: "You said: offline",
			sessionKey: "main",
		});
		assert.ok(agent.faux.state.callCount >= 3, "the model calls went to the faux provider");
	});
});
