// No error body carries a server path or a stack (issue 11): what createSession, prompt() and the
// model fail with reaches HTTP clients with absolute paths replaced by `<path>` and stack frames
// cut off, while the log gets the whole message. Through the real runtime, over real sockets.
// Run: node --test __test__/js-side-error-paths.test.mjs

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { startGateway } from "./support/gateway.mjs";
import { request } from "./support/http.mjs";
import { openSse } from "./support/sse.mjs";

/** Absolute paths of the kinds the messages below carry. */
const SERVER_PATH = /\/tmp|\/srv|\/home|\/app|file:|C:\\/;

describe("error messages sent to clients carry no server path or stack", () => {
	it("createSession throwing ENAMETOOLONG with a path: 500, the body says <path>, the log has the path", async (t) => {
		const gw = await startGateway({
			createSession: async () => {
				throw new Error("ENAMETOOLONG: name too long, mkdir '/tmp/x/y'");
			},
		});
		t.after(() => gw.stop());

		const r = await request(gw.port, "POST", "/sessions/long/messages", { body: { text: "hi" } });
		assert.equal(r.status, 500, r.text);
		assert.equal(r.json.ok, false);
		assert.equal(r.json.sessionKey, "long");
		assert.equal(r.json.error, "createSession failed: ENAMETOOLONG: name too long, mkdir '<path>'");
		assert.doesNotMatch(r.text, /\/tmp/);
		assert.ok(
			gw.logs.some((line) => line.includes("mkdir '/tmp/x/y'") && line.includes("createSession")),
			`the log keeps the whole message: ${JSON.stringify(gw.logs)}`,
		);

		// The same for an event stream: its error event carries no path either.
		const sse = await openSse(gw.port, "/sessions/long2/events");
		t.after(() => sse.close());
		const frame = await sse.waitFor((f) => f.data?.type === "error");
		assert.match(JSON.stringify(frame.data), /ENAMETOOLONG/);
		assert.doesNotMatch(JSON.stringify(frame.data), /\/tmp/);
		assert.match(JSON.stringify(frame.data), /<path>/);
	});

	it("createSession failing with a stack in its message, file:// URLs and Windows paths: all cut or replaced", async (t) => {
		const message =
			"Cannot load extension file:///home/me/.pi/agent/extensions/x.js (C:\\Users\\me\\x.js)\n" +
			"    at load (/app/node_modules/pi/dist/loader.js:10:5)\n" +
			"    at async main (/app/index.js:3:1)";
		const gw = await startGateway({
			createSession: async () => {
				throw new Error(message);
			},
		});
		t.after(() => gw.stop());
		const r = await request(gw.port, "POST", "/sessions/ext/messages", { body: { text: "hi" } });
		assert.equal(r.status, 500, r.text);
		assert.equal(r.json.error, "createSession failed: Cannot load extension <path> (<path>)");
		assert.doesNotMatch(r.text, SERVER_PATH);
		assert.doesNotMatch(r.text, /\bat (load|async)/, "no stack frame");
		assert.ok(gw.logs.some((line) => line.includes(message)), "the log has the message as thrown");
	});

	it("prompt() rejecting and the model failing with paths: the result's error has <path>", async (t) => {
		const gw = await startGateway();
		t.after(() => gw.stop());

		const thrown = await request(gw.port, "POST", "/sessions/p/messages", {
			body: { text: "/throw EACCES: permission denied, open '/srv/data/secret.txt'" },
		});
		assert.equal(thrown.status, 500, thrown.text);
		assert.equal(thrown.json.ok, false);
		assert.equal(thrown.json.error, "EACCES: permission denied, open '<path>'");
		assert.doesNotMatch(thrown.text, SERVER_PATH);

		const failed = await request(gw.port, "POST", "/sessions/p/messages", {
			body: { text: "/error provider config at /home/me/.pi/agent/models.json is invalid" },
		});
		assert.equal(failed.status, 500, failed.text);
		assert.equal(failed.json.ok, false);
		assert.match(failed.json.error, /provider config at <path> is invalid/);
		assert.doesNotMatch(failed.text, SERVER_PATH);

		// Messages without paths are left exactly as they were; URLs and MIME types are not paths.
		const plain = await request(gw.port, "POST", "/sessions/p/messages", {
			body: { text: "/throw upstream http://api.example/v1/chat said image/png and/or text is bad" },
		});
		assert.equal(plain.json.error, "upstream http://api.example/v1/chat said image/png and/or text is bad");

		assert.ok(gw.logs.some((line) => line.includes("'/srv/data/secret.txt'")), "the log has the path");
		assert.ok(gw.logs.some((line) => line.includes("/home/me/.pi/agent/models.json")), "the log has the path");
	});
});
