// What the browser really sent to, and got back from, one server: read from Chromium's own
// network events over CDP (Network.*ExtraInfo carry the raw request headers and the raw response
// status even when the page may not see them: a CORS-refused fetch, an EventSource, an <img>
// blocked by ORB, a no-cors fetch). Playwright's `response` event skips those.

/**
 * @param {import("playwright-core").BrowserContext} context
 * @param {import("playwright-core").Page} tab
 * @param {string} base  only requests whose URL starts with it are kept (e.g. "http://127.0.0.1:3000/")
 */
export async function watchNetwork(context, tab, base) {
	const cdp = await context.newCDPSession(tab);
	await cdp.send("Network.enable");
	/** @type {Map<string, { id: string, method?: string, url?: string, type?: string, requestHeaders?: Record<string, string>, status?: number, responseHeaders?: Record<string, string>, failure?: string, body?: string }>} */
	const byId = new Map();
	const entry = (id) => {
		let e = byId.get(id);
		if (!e) byId.set(id, (e = { id }));
		return e;
	};
	const lower = (headers) => Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]));
	cdp.on("Network.requestWillBeSent", (event) => {
		const e = entry(event.requestId);
		e.method = event.request.method;
		e.url = event.request.url;
		e.type = event.type;
	});
	cdp.on("Network.requestWillBeSentExtraInfo", (event) => {
		entry(event.requestId).requestHeaders = lower(event.headers);
	});
	cdp.on("Network.responseReceivedExtraInfo", (event) => {
		const e = entry(event.requestId);
		e.status = event.statusCode;
		e.responseHeaders = lower(event.headers);
	});
	cdp.on("Network.loadingFailed", (event) => {
		entry(event.requestId).failure = event.errorText;
	});
	cdp.on("Network.loadingFinished", (event) => {
		const e = byId.get(event.requestId);
		if (!e) return;
		cdp.send("Network.getResponseBody", { requestId: event.requestId }).then(
			(result) => {
				e.body = result.base64Encoded ? Buffer.from(result.body, "base64").toString("utf8") : result.body;
			},
			() => {},
		);
	});
	return {
		/** Requests to `base` seen so far (in the order they were first seen). */
		entries: () => [...byId.values()].filter((e) => e.url?.startsWith(base)),
		/** The requests to `base` with this method and URL. */
		find: (method, url) => [...byId.values()].filter((e) => e.method === method && e.url === url),
		clear: () => byId.clear(),
		detach: () => cdp.detach().catch(() => {}),
	};
}
