// The "other web site" of the browser security test: one HTML page whose script can send the
// gateway every kind of request a web page can make without the gateway's cooperation — forms
// (text/plain, urlencoded, multipart) into hidden iframes, a form from a sandboxed iframe
// (Origin: null), no-cors and "simple" fetches, a
// beacon, an EventSource and an <img> — plus a CORS fetch with a JSON body (which needs the
// gateway to allow the page's origin). Each function resolves once the browser is done with its
// request (the iframe loaded, the fetch settled, the EventSource opened or failed, the image loaded
// or failed), or after `timeoutMs`. The test reads the statuses from the browser's network events.

/** The body a text/plain form sends: `{"text":"<text>","x":"="}` plus a line break, valid JSON. */
export const PLAIN_FORM_FIELD_PREFIX = (text) => `{"text":${JSON.stringify(text)},"x":"`;

/** The page's functions (also injected into a gateway page for the same-origin checks). */
export const ATTACK_SCRIPT = `"use strict";
const TIMEOUT_MS = 10000;
let frames = 0;
function timeout(promise, what) {
	return Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve("timeout: " + what), TIMEOUT_MS))]);
}
async function newFrame() {
	const name = "target" + ++frames;
	const frame = document.createElement("iframe");
	frame.name = name;
	frame.src = "about:blank";
	const blank = new Promise((resolve) => frame.addEventListener("load", resolve, { once: true }));
	document.body.append(frame);
	await blank;
	return { name, loaded: new Promise((resolve) => frame.addEventListener("load", () => resolve("load"), { once: true })) };
}
/** Submits a POST form (fields: [name, value] pairs) into a fresh iframe; resolves on its load. */
window.submitForm = async (action, enctype, fields) => {
	const frame = await newFrame();
	const form = document.createElement("form");
	form.method = "POST";
	form.action = action;
	form.enctype = enctype;
	form.target = frame.name;
	for (const [name, value] of fields) {
		const input = document.createElement("input");
		input.type = "hidden";
		input.name = name;
		input.value = value;
		form.append(input);
	}
	document.body.append(form);
	form.submit();
	return timeout(frame.loaded, "form " + action);
};
function escapeHtml(text) {
	return String(text).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
/**
 * The same form, submitted by a sandboxed iframe (an opaque origin: the browser sends
 * "Origin: null"); resolves when the iframe has loaded the answer.
 */
window.sandboxedForm = (action, enctype, fields) =>
	timeout(
		new Promise((resolve) => {
			const frame = document.createElement("iframe");
			frame.setAttribute("sandbox", "allow-forms allow-scripts");
			let loads = 0;
			frame.addEventListener("load", () => {
				if (++loads === 2) resolve("load");
			});
			const inputs = fields
				.map(([name, value]) => '<input type="hidden" name="' + escapeHtml(name) + '" value="' + escapeHtml(value) + '">')
				.join("");
			frame.srcdoc =
				'<form method="POST" action="' + escapeHtml(action) + '" enctype="' + escapeHtml(enctype) + '">' + inputs + "</form>" +
				// Submitted once the srcdoc document has loaded, so the iframe loads twice: srcdoc, then the answer.
				"<scr" + "ipt>addEventListener('load', () => setTimeout(() => document.forms[0].submit(), 0));</scr" + "ipt>";
			document.body.append(frame);
		}),
		"sandboxed form " + action,
	);
window.noCorsFetch = (url, body) =>
	timeout(
		fetch(url, { method: "POST", mode: "no-cors", body }).then((r) => "response:" + r.type, (e) => "error:" + e.message),
		"no-cors fetch " + url,
	);
/** A "simple" CORS request: text/plain body, no preflight; the page cannot read the answer. */
window.simpleFetch = (url, body) =>
	timeout(
		fetch(url, { method: "POST", body }).then((r) => "response:" + r.status, (e) => "error:" + e.message),
		"fetch " + url,
	);
window.beacon = (url, body) => navigator.sendBeacon(url, body);
window.openEventSource = (url) =>
	timeout(
		new Promise((resolve) => {
			const source = new EventSource(url);
			source.onmessage = (event) => {
				source.close();
				resolve("message:" + event.data);
			};
			source.onerror = () => {
				source.close();
				resolve("error");
			};
		}),
		"EventSource " + url,
	);
window.loadImage = (url) =>
	timeout(
		new Promise((resolve) => {
			const image = new Image();
			image.onload = () => resolve("load");
			image.onerror = () => resolve("error");
			image.src = url;
		}),
		"img " + url,
	);
/** A CORS request with a JSON body (preflighted): works only where the gateway allows this origin. */
window.jsonFetch = (url, payload) =>
	timeout(
		fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(payload) }).then(
			async (r) => ({ status: r.status, body: await r.text() }),
			(e) => ({ error: e.message }),
		),
		"json fetch " + url,
	);
`;

export const ATTACK_PAGE_HTML = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>another site</title><link rel="icon" href="data:,"></head>
<body>
<h1>Just another web site</h1>
<script>
${ATTACK_SCRIPT}</script>
</body>
</html>
`;
