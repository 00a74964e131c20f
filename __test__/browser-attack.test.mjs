// A web page on another origin cannot drive the gateway (issue 11, "safe by default").
//
// The real `pi-gateway` command (bin/pi-gateway.js) runs in a child process on the offline faux
// model, whose answer to a plain question is a real `read` tool call (lib/faux-agent.js), with
// webhooks on and no bearer token: the most exposed configuration on loopback. A second HTTP
// server plays "another web site" (__test__/support/browser-attack-page.mjs); Debian's headless
// chromium opens it and sends the gateway everything a page can send without the gateway's
// consent: text/plain forms whose body is valid JSON (to a new session, the primary session, the
// chat route and the webhook path), a urlencoded form, a multipart form, a form from a sandboxed
// iframe (Origin: null), a no-cors fetch, a
// "simple" fetch, a beacon, an EventSource and an <img>. Then:
//   - the browser's own network log (CDP) shows that every one of them reached the gateway and
//     was answered 403 (the contract's order: Origin before content type), with the JSON error
//     where the page could load it;
//   - the gateway's state, read with plain requests (no Origin, as curl sends them), shows that
//     nothing reached any session: the primary session's message count has not moved, and no
//     session exists for any key the page used (404) — so no tool ran.
// It does this from another site (127.0.0.2) and from another port of 127.0.0.1 (same site,
// another origin). Requests from the gateway's own origin and from an origin allowed with --cors
// still work, while forms from those are refused 415.
// (DNS rebinding needs a resolver the test controls; the Host check is tested with raw sockets
// elsewhere.)
// Run: npm test -- __test__/browser-attack.test.mjs   (needs /usr/bin/chromium; fails, never skips, without it)

import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { HELLO_FILE } from "../lib/faux-agent.js";
import { removeDir } from "./support/chat-fixture.mjs";
import { ATTACK_PAGE_HTML, ATTACK_SCRIPT, PLAIN_FORM_FIELD_PREFIX } from "./support/browser-attack-page.mjs";
import { launchChromium } from "./support/browser-chromium.mjs";
import { plainRequest, startCli, startPageServer } from "./support/browser-cli.mjs";
import { watchNetwork } from "./support/browser-network.mjs";
import { waitFor } from "./support/wait.mjs";

/** The faux model's answer to a plain question, after its `read` tool call of hello.txt. */
const FAUX_ANSWER = "hello.txt says: Hello from the pi-gateway workspace.";
const QUESTION = `What is in ${HELLO_FILE}?`;
/** Messages one plain question adds to a pi session: user, assistant (read call), tool result, assistant. */
const MESSAGES_PER_TOOL_TURN = 4;
const ORIGIN_REFUSED = "Origin not allowed";
const CROSS_SITE_REFUSED = "Cross-site request refused";
const unsupported = (type) => `Unsupported Content-Type ${type}: send application/json`;

/** What the page sends: `fn` is one of the page's functions, `args(gateway)` its arguments. */
const ATTACKS = [
	{
		what: "a text/plain form whose body is JSON, to a new session",
		method: "POST",
		path: "/sessions/x/messages",
		fn: "submitForm",
		args: (url) => [url, "text/plain", [[PLAIN_FORM_FIELD_PREFIX(QUESTION), '"}']]],
		navigation: true,
	},
	{
		what: "a text/plain form, to the primary session",
		method: "POST",
		path: "/sessions/main/messages",
		fn: "submitForm",
		args: (url) => [url, "text/plain", [[PLAIN_FORM_FIELD_PREFIX(QUESTION), '"}']]],
		navigation: true,
	},
	{
		what: "a text/plain form, to the chat route",
		method: "POST",
		path: "/sessions/c/chat",
		fn: "submitForm",
		args: (url) => [url, "text/plain", [[PLAIN_FORM_FIELD_PREFIX(QUESTION), '"}']]],
		navigation: true,
	},
	{
		what: "a text/plain form to the webhook, naming the primary session",
		method: "POST",
		path: "/webhook",
		fn: "submitForm",
		args: (url) => [url, "text/plain", [[`{"text":${JSON.stringify(QUESTION)},"sessionKey":"main","x":"`, '"}']]],
		navigation: true,
	},
	{
		what: "a text/plain form to a webhook route",
		method: "POST",
		path: "/webhook/attack",
		fn: "submitForm",
		args: (url) => [url, "text/plain", [[PLAIN_FORM_FIELD_PREFIX(QUESTION), '"}']]],
		navigation: true,
	},
	{
		what: "a urlencoded form",
		method: "POST",
		path: "/sessions/u/messages",
		fn: "submitForm",
		args: (url) => [url, "application/x-www-form-urlencoded", [[PLAIN_FORM_FIELD_PREFIX(QUESTION), '"}']]],
		navigation: true,
	},
	{
		what: "a multipart form",
		method: "POST",
		path: "/sessions/m/messages",
		fn: "submitForm",
		args: (url) => [url, "multipart/form-data", [["text", QUESTION]]],
		navigation: true,
	},
	{
		what: "a text/plain form from a sandboxed iframe (Origin: null)",
		method: "POST",
		path: "/sessions/sandboxed/messages",
		fn: "sandboxedForm",
		args: (url) => [url, "text/plain", [[PLAIN_FORM_FIELD_PREFIX(QUESTION), '"}']]],
		navigation: true,
		// An opaque origin: the browser sends "Origin: null" and calls it cross-site, wherever the page is.
		sentOrigin: "null",
		site: "cross-site",
		viaFrame: true,
	},
	{
		what: "a no-cors fetch with a JSON text body",
		method: "POST",
		path: "/sessions/n/messages",
		fn: "noCorsFetch",
		args: (url) => [url, JSON.stringify({ text: QUESTION })],
	},
	{
		what: 'a "simple" fetch (text/plain, no preflight)',
		method: "POST",
		path: "/sessions/s/messages",
		fn: "simpleFetch",
		args: (url) => [url, JSON.stringify({ text: QUESTION })],
	},
	{
		what: "a beacon",
		method: "POST",
		path: "/sessions/b/messages",
		fn: "beacon",
		args: (url) => [url, JSON.stringify({ text: QUESTION })],
	},
	{ what: "an EventSource", method: "GET", path: "/sessions/y/events", fn: "openEventSource", args: (url) => [url] },
	{ what: "an <img>", method: "GET", path: "/sessions/z/events", fn: "loadImage", args: (url) => [url], noOrigin: true },
];
/** Every session key the page used (the webhook's would be `webhook:<route>:<sender>`). */
const ATTACKED_KEYS = ["x", "c", "u", "m", "sandboxed", "n", "s", "b", "y", "z", "webhook:attack:default", "webhook:default:default"];

/** Calls one of the page's functions (see browser-attack-page.mjs) with JSON-able arguments. */
function call(tab, fn, args) {
	return tab.evaluate(({ fn, args }) => window[fn](...args), { fn, args });
}

/** `{key: snapshot}` of every session, read like curl (no Origin). */
async function sessionsOf(base) {
	const res = await plainRequest(`${base}/sessions`);
	assert.equal(res.status, 200, res.text);
	return Object.fromEntries(res.json.sessions.map((s) => [s.sessionKey, s]));
}

describe("a web page on another origin cannot drive the gateway (CLI, faux model, chromium)", () => {
	let tempDir;
	/** The CLI with webhooks on and no token. */
	let gw;
	let crossSite;
	let sameSite;
	let context;
	let tab;
	let net;
	/** The primary session's message count after the control request. */
	let primaryCount;

	before(async () => {
		tempDir = await mkdtemp(join(tmpdir(), "pi-gateway-browser-attack-"));
		[gw, crossSite, sameSite] = await Promise.all([
			startCli(["--webhook"]),
			startPageServer("127.0.0.2", ATTACK_PAGE_HTML),
			startPageServer("127.0.0.1", ATTACK_PAGE_HTML),
		]);
		({ context, tab } = await launchChromium(join(tempDir, "profile")));
		net = await watchNetwork(context, tab, `${gw.base}/`);

		// Control: a plain client reaches the primary session, and its question makes pi run the
		// read tool, so a message that got through would show in the message count.
		const answer = await plainRequest(`${gw.base}/sessions/main/messages`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ text: QUESTION }),
		});
		assert.equal(answer.status, 200, answer.text);
		assert.equal(answer.json.ok, true);
		assert.equal(answer.json.response, FAUX_ANSWER);
		// curl -d (urlencoded content type, no Origin, no Sec-Fetch-*) keeps working.
		const curlStyle = await plainRequest(`${gw.base}/sessions/main/messages`, {
			method: "POST",
			headers: { "content-type": "application/x-www-form-urlencoded" },
			body: JSON.stringify({ text: "/echo from curl" }),
		});
		assert.equal(curlStyle.status, 200, curlStyle.text);
		assert.equal(curlStyle.json.response, "You said: from curl");
		const sessions = await sessionsOf(gw.base);
		assert.deepEqual(Object.keys(sessions), ["main"]);
		primaryCount = sessions.main.messageCount;
		assert.equal(primaryCount, MESSAGES_PER_TOOL_TURN + 2, "the read tool ran for the control question");
	});

	after(async () => {
		await net?.detach();
		await context?.close().catch(() => {});
		await Promise.all([crossSite?.close(), sameSite?.close(), gw?.stop()].filter(Boolean)).catch(() => {});
		await removeDir(tempDir);
	});

	/**
	 * Opens the attacker page at `origin`, sends every attack, waits until the browser has an
	 * answer (or a failure) for each, and checks what the gateway answered and what it holds.
	 */
	async function attackFrom(origin, expectedSite) {
		net.clear();
		// Playwright's view too: it sees navigations of out-of-process frames (the sandboxed one),
		// which the page's own CDP session does not; CDP sees what playwright skips (CORS-refused
		// fetches, EventSource, ORB-blocked images).
		const seenByPlaywright = new Map();
		const onResponse = async (response) => {
			if (!response.url().startsWith(`${gw.base}/`)) return;
			const key = `${response.request().method()} ${response.url()}`;
			const entry = { status: response.status(), requestHeaders: await response.request().allHeaders().catch(() => ({})) };
			entry.responseHeaders = await response.allHeaders().catch(() => ({}));
			entry.body = await response.text().catch(() => undefined);
			seenByPlaywright.set(key, [...(seenByPlaywright.get(key) ?? []), entry]);
		};
		const observed = async (attack) => {
			const url = `${gw.base}${attack.path}`;
			const fromCdp = net.find(attack.method, url);
			if (fromCdp.length > 0) return fromCdp;
			const fromPlaywright = seenByPlaywright.get(`${attack.method} ${url}`) ?? [];
			if (fromPlaywright.length > 0 || !attack.viaFrame) return fromPlaywright;
			// Neither network view reports the sandboxed iframe's navigation (its own process); read the
			// answer from the frame itself: the status of its navigation and the text it shows.
			const frame = tab.frames().find((f) => f.url() === url);
			if (!frame) return [];
			const answer = await frame
				.evaluate(() => ({
					status: /** @type {any} */ (performance.getEntriesByType("navigation")[0])?.responseStatus,
					body: (document.querySelector("pre") ?? document.body)?.textContent ?? "",
				}))
				.catch(() => undefined);
			return answer ? [{ ...answer, requestHeaders: undefined, fromFrame: true }] : [];
		};
		tab.on("response", onResponse);
		try {
			await tab.goto(`${origin}/`);
			const outcomes = {};
			for (const attack of ATTACKS) {
				const url = `${gw.base}${attack.path}`;
				outcomes[attack.what] = await call(tab, attack.fn, attack.args(url));
			}
			// Every request reached the gateway and got its answer (the beacon is fire-and-forget).
			const unanswered = async () => {
				const missing = [];
				for (const attack of ATTACKS) {
					if (!(await observed(attack)).some((e) => e.status !== undefined)) missing.push(attack);
				}
				return missing;
			};
			await waitFor(async () => (await unanswered()).length === 0, "an answer to every request").catch(async (error) => {
				const missing = (await unanswered()).map((a) => a.what);
				throw new Error(`${error.message}; none for: ${missing.join("; ")} (page outcomes ${JSON.stringify(outcomes)})`);
			});
			for (const attack of ATTACKS) {
				const url = `${gw.base}${attack.path}`;
				const seen = await observed(attack);
				assert.equal(seen.length, 1, `${attack.what}: sent once (${JSON.stringify(seen)})`);
				const [request] = seen;
				const sentOrigin = request.requestHeaders?.origin;
				const label = `${attack.what} (${attack.method} ${attack.path}, Origin ${sentOrigin}, Sec-Fetch-Site ${request.requestHeaders?.["sec-fetch-site"]}, outcome ${JSON.stringify(outcomes[attack.what])})`;
				// What the browser sent: an attack, not something the gateway could mistake for curl.
				// (The sandboxed frame's request headers are not visible from here; its answer is.)
				if (!request.fromFrame) {
					if (attack.noOrigin) assert.equal(sentOrigin, undefined, label);
					else assert.equal(sentOrigin, attack.sentOrigin ?? origin, label);
					assert.equal(request.requestHeaders?.["sec-fetch-site"], attack.site ?? expectedSite, label);
					assert.match(request.responseHeaders?.["content-type"] ?? "", /^application\/json/, label);
				}
				// What the gateway answered.
				assert.equal(request.status, 403, label);
				const body = request.body || seenByPlaywright.get(`${attack.method} ${url}`)?.[0]?.body;
				if (attack.navigation) assert.ok(body, `${label}: the form's answer loaded in its frame`);
				if (body) assert.deepEqual(JSON.parse(body), { error: attack.noOrigin ? CROSS_SITE_REFUSED : ORIGIN_REFUSED }, label);
				if (attack.navigation) assert.equal(outcomes[attack.what], "load", label);
			}
		} finally {
			tab.off("response", onResponse);
		}

		// Nothing reached any session: the primary's count did not move, nothing was created.
		const sessions = await sessionsOf(gw.base);
		assert.deepEqual(Object.keys(sessions), ["main"], JSON.stringify(sessions));
		assert.equal(sessions.main.messageCount, primaryCount, "the primary session got no message");
		assert.equal(sessions.main.queueDepth, 0);
		assert.equal(sessions.main.processing, false);
		for (const key of ATTACKED_KEYS) {
			const res = await plainRequest(`${gw.base}/sessions/${encodeURIComponent(key)}`);
			assert.equal(res.status, 404, `session ${key}: ${res.text}`);
			assert.deepEqual(res.json, { error: `Session not found: ${key}` });
		}
	}

	it("from another site (127.0.0.2): every form, fetch, beacon, EventSource and <img> is refused 403, and no session moves", async () => {
		assert.notEqual(new URL(crossSite.origin).hostname, new URL(gw.base).hostname);
		await attackFrom(crossSite.origin, "cross-site");
	});

	it("from another port of 127.0.0.1 (same site, another origin): the same", async () => {
		assert.equal(new URL(sameSite.origin).hostname, new URL(gw.base).hostname);
		assert.notEqual(sameSite.origin, gw.base);
		await attackFrom(sameSite.origin, "same-site");
	});

	it("the gateway's own origin works with JSON (a tool runs), and its forms are refused 415", async () => {
		net.clear();
		const health = await tab.goto(`${gw.base}/health`);
		assert.equal(health?.status(), 200);
		await tab.addScriptTag({ content: ATTACK_SCRIPT });

		const result = await call(tab, "jsonFetch", ["/sessions/ok/messages", { text: QUESTION }]);
		assert.equal(result.status, 200, JSON.stringify(result));
		const answer = JSON.parse(result.body);
		assert.equal(answer.ok, true);
		assert.equal(answer.response, FAUX_ANSWER);
		const [sent] = net.find("POST", `${gw.base}/sessions/ok/messages`);
		assert.equal(sent.requestHeaders?.origin, gw.base, "the browser sent its own origin");
		assert.equal(sent.requestHeaders?.["sec-fetch-site"], "same-origin");
		let sessions = await sessionsOf(gw.base);
		assert.equal(sessions.ok?.messageCount, MESSAGES_PER_TOOL_TURN, "the read tool ran");

		// An EventSource from the page itself: the stream opens and says hello.
		const event = await call(tab, "openEventSource", ["/sessions/ok/events"]);
		assert.match(String(event), /^message:/, String(event));
		const hello = JSON.parse(String(event).slice("message:".length));
		assert.equal(hello.type, "hello");
		assert.equal(hello.sessionKey, "ok");

		// Forms, even from the gateway's own origin, are not JSON requests.
		const forms = [
			["text/plain", [[PLAIN_FORM_FIELD_PREFIX(QUESTION), '"}']]],
			["application/x-www-form-urlencoded", [[PLAIN_FORM_FIELD_PREFIX(QUESTION), '"}']]],
			["multipart/form-data", [["text", QUESTION]]],
		];
		for (const [enctype, fields] of forms) {
			const [response, outcome] = await Promise.all([
				tab.waitForResponse((r) => r.url() === `${gw.base}/sessions/ok/messages` && r.request().method() === "POST"),
				call(tab, "submitForm", [`${gw.base}/sessions/ok/messages`, enctype, fields]),
			]);
			assert.equal(outcome, "load");
			assert.equal(response.status(), 415, enctype);
			assert.deepEqual(JSON.parse(await response.text()), { error: unsupported(enctype) }, enctype);
		}
		sessions = await sessionsOf(gw.base);
		assert.equal(sessions.ok.messageCount, MESSAGES_PER_TOOL_TURN, "no form reached the session");
		assert.equal(sessions.main.messageCount, primaryCount);
	});

	it("an origin allowed with --cors reads JSON answers and events; its forms get 415, its <img> 403, other origins stay refused", async () => {
		const allowed = await startCli(["--cors", crossSite.origin]);
		const allowedNet = await watchNetwork(context, tab, `${allowed.base}/`);
		try {
			await tab.goto(`${crossSite.origin}/`);
			const result = await call(tab, "jsonFetch", [`${allowed.base}/sessions/friend/messages`, { text: QUESTION }]);
			assert.equal(result.status, 200, JSON.stringify(result));
			assert.equal(JSON.parse(result.body).response, FAUX_ANSWER);
			const [sent] = allowedNet.find("POST", `${allowed.base}/sessions/friend/messages`);
			assert.equal(sent.requestHeaders?.origin, crossSite.origin);
			assert.equal(sent.requestHeaders?.["sec-fetch-site"], "cross-site");

			const event = await call(tab, "openEventSource", [`${allowed.base}/sessions/friend/events`]);
			assert.match(String(event), /^message:/, String(event));
			assert.equal(JSON.parse(String(event).slice("message:".length)).type, "hello");

			const [response, outcome] = await Promise.all([
				tab.waitForResponse((r) => r.url() === `${allowed.base}/sessions/friend/messages` && r.request().method() === "POST"),
				call(tab, "submitForm", [`${allowed.base}/sessions/friend/messages`, "text/plain", [[PLAIN_FORM_FIELD_PREFIX(QUESTION), '"}']]]),
			]);
			assert.equal(outcome, "load");
			assert.equal(response.status(), 415);
			assert.deepEqual(JSON.parse(await response.text()), { error: unsupported("text/plain") });

			// An <img> carries no Origin, so the allow-list cannot vouch for it: cross-site, 403.
			assert.equal(await call(tab, "loadImage", [`${allowed.base}/sessions/img/events`]), "error");
			await waitFor(
				() => allowedNet.find("GET", `${allowed.base}/sessions/img/events`)[0]?.status !== undefined,
				"the answer to the <img>",
			);
			assert.equal(allowedNet.find("GET", `${allowed.base}/sessions/img/events`)[0].status, 403);

			// Another origin is still refused by this gateway.
			await tab.goto(`${sameSite.origin}/`);
			assert.equal(
				await call(tab, "submitForm", [`${allowed.base}/sessions/other/messages`, "text/plain", [[PLAIN_FORM_FIELD_PREFIX(QUESTION), '"}']]]),
				"load",
			);
			await waitFor(
				() => allowedNet.find("POST", `${allowed.base}/sessions/other/messages`)[0]?.status !== undefined,
				"the answer to the other origin's form",
			);
			assert.equal(allowedNet.find("POST", `${allowed.base}/sessions/other/messages`)[0].status, 403);

			const sessions = await sessionsOf(allowed.base);
			assert.deepEqual(Object.keys(sessions).sort(), ["friend", "main"]);
			assert.equal(sessions.friend.messageCount, MESSAGES_PER_TOOL_TURN, "only the JSON request ran");
			for (const key of ["img", "other"]) {
				assert.equal((await plainRequest(`${allowed.base}/sessions/${key}`)).status, 404, key);
			}
		} finally {
			await allowedNet.detach();
			await allowed.stop();
		}
	});
});
