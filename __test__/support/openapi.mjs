// Checks HTTP responses against the gateway's OpenAPI document (src/http/openapi.json).
//
// `checkResponse({method, path, status, headers, text, json})` finds the operation the request
// reached and throws an Error naming it when the response is not what the document says:
// - an undocumented status (the operation's `responses`, or its `default`);
// - a JSON body that fails the documented schema (ajv 2020-12 with formats, compiled once per
//   schema and cached);
// - a content type the document does not list for that status (text/event-stream, text/plain…),
//   or a body where the document lists none;
// - a `405` whose `Allow` is not the path's `x-allow`.
//
// How a request maps to the document:
// - the path (query removed, still percent-encoded) is matched against the path templates, a
//   `{param}` standing for one non-empty segment; concrete paths win over templates;
// - webhooks: the document names the default base path `/webhook`; a gateway may use another
//   `webhook.basePath`. The rule is explicit: every base in `WEBHOOK_BASES` (the document's
//   `/webhook` plus the bases the tests configure, `/hooks`; add one with `addWebhookBase`) maps
//   to the webhook operations — the base itself (or with a trailing `/`) to `/webhook`, anything
//   below it, by whole segments, to `/webhook/{route}`;
// - HEAD uses the path's `head` operation, else its `get` (HEAD is answered wherever GET is);
//   only the status is checked, there is no body;
// - a documented path asked with a method it lacks: the document's `x-other-methods`
//   responses (`405` with the path's `x-allow` as `Allow`, or what a guard answers first);
// - a path outside the document (`/nope`, `/sessions/k/bogus`, `/__test/panic`): the
//   document's `x-unmatched-paths` responses (`404 Not found`, `401`, …). Nothing is skipped.

import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

export const OPENAPI_URL = new URL("../../src/http/openapi.json", import.meta.url);
export const OPENAPI_TEXT = readFileSync(OPENAPI_URL, "utf8");
export const doc = JSON.parse(OPENAPI_TEXT);

const DOC_ID = "pi-gateway-openapi.json";
const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
addFormats(ajv);
ajv.addSchema(doc, DOC_ID);

const METHODS = ["get", "head", "post", "put", "patch", "delete", "options", "trace"];
const DOC_WEBHOOK_BASE = "/webhook";

/** Base paths whose requests map to the webhook operations (see the header). */
export const WEBHOOK_BASES = new Set([DOC_WEBHOOK_BASE, "/hooks"]);
export function addWebhookBase(base) {
	WEBHOOK_BASES.add(base);
}

const escapePointer = (s) => s.replaceAll("~", "~0").replaceAll("/", "~1");

/** Path templates, concrete ones (fewer parameters) first. */
const routes = Object.keys(doc.paths)
	.filter((p) => p !== DOC_WEBHOOK_BASE && !p.startsWith(`${DOC_WEBHOOK_BASE}/`))
	.map((template) => {
		const params = (template.match(/\{[^}]+\}/g) ?? []).length;
		const source = template
			.split(/(\{[^}]+\})/)
			.map((part) => (part.startsWith("{") ? "[^/]+" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
			.join("");
		return { template, params, regex: new RegExp(`^${source}$`) };
	})
	.sort((a, b) => a.params - b.params);

/** The document's path template for a request path, or undefined when it has none. */
export function matchPath(rawPath) {
	const path = rawPath.split("?")[0];
	for (const base of WEBHOOK_BASES) {
		if (path === base || path === `${base}/`) return DOC_WEBHOOK_BASE;
		if (path.startsWith(`${base}/`)) return `${DOC_WEBHOOK_BASE}/{route}`;
	}
	return routes.find((r) => r.regex.test(path))?.template;
}

/** A `$ref`'d object of the document followed to what it names, with its JSON pointer. */
function deref(value, pointer) {
	let v = value;
	let at = pointer;
	for (let i = 0; v?.$ref && i < 8; i++) {
		at = v.$ref.slice(1);
		v = at.split("/").slice(1).reduce((o, k) => o?.[k.replaceAll("~1", "/").replaceAll("~0", "~")], doc);
	}
	return { value: v, pointer: at };
}

const validators = new Map();
function validatorAt(pointer) {
	let v = validators.get(pointer);
	if (!v) {
		v = ajv.compile({ $ref: `${DOC_ID}#${pointer}` });
		validators.set(pointer, v);
	}
	return v;
}

const essence = (type) => String(type ?? "").split(";")[0].trim().toLowerCase();
const headerValue = (headers, name) => {
	const v = headers?.[name.toLowerCase()];
	return Array.isArray(v) ? v.join(", ") : v;
};

/**
 * Where a request lands in the document: `{template, operation, responses, responsesPointer, what}`.
 * `operation` is undefined for the document-level catch-alls.
 */
export function findOperation(method, rawPath) {
	const m = method.toLowerCase();
	const template = matchPath(rawPath);
	if (template === undefined) {
		return { template, responses: doc["x-unmatched-paths"].responses, responsesPointer: "/x-unmatched-paths/responses", what: "x-unmatched-paths" };
	}
	const item = doc.paths[template];
	const itemPointer = `/paths/${escapePointer(template)}`;
	const opMethod = item[m] ? m : m === "head" && item.get ? "get" : undefined;
	if (!opMethod) {
		return {
			template,
			item,
			responses: doc["x-other-methods"].responses,
			responsesPointer: "/x-other-methods/responses",
			what: `${template} x-other-methods (x-allow: ${item["x-allow"]})`,
		};
	}
	const operation = item[opMethod];
	return {
		template,
		item,
		operation,
		responses: operation.responses,
		responsesPointer: `${itemPointer}/${opMethod}/responses`,
		what: `${opMethod.toUpperCase()} ${template} (${operation.operationId})`,
	};
}

/**
 * Throws when the response is not what the document says (see the header). Returns what it
 * matched (for tests of the checker).
 */
export function checkResponse({ method, path, status, headers = {}, text = "", json }) {
	const found = findOperation(method, path);
	const where = `${method} ${path} → ${status} [${found.what}]`;
	const fail = (why) => {
		throw new Error(`OpenAPI: ${where}: ${why}`);
	};
	const key = String(status);
	const entry = found.responses[key] !== undefined ? key : found.responses.default !== undefined ? "default" : undefined;
	if (entry === undefined) {
		fail(`status ${status} is not documented (documented: ${Object.keys(found.responses).join(", ")}); body ${text.slice(0, 300)}`);
	}
	const { value: response, pointer } = deref(found.responses[entry], `${found.responsesPointer}/${entry}`);
	if (status === 405) {
		const allow = headerValue(headers, "allow");
		const expected = found.item?.["x-allow"];
		if (expected !== undefined && allow !== expected) fail(`Allow is ${JSON.stringify(allow)}, the document says ${JSON.stringify(expected)}`);
	}
	if (method.toUpperCase() === "HEAD") return { ...found, response };
	const content = response.content;
	const type = essence(headerValue(headers, "content-type"));
	if (!content || Object.keys(content).length === 0) {
		if (text !== "") fail(`the document lists no body, got ${JSON.stringify(type)}: ${text.slice(0, 200)}`);
		return { ...found, response };
	}
	const mediaKey = Object.keys(content).find((k) => essence(k) === type);
	if (mediaKey === undefined) {
		fail(`content type ${JSON.stringify(headerValue(headers, "content-type"))} is not documented (documented: ${Object.keys(content).join(", ")}); body ${text.slice(0, 200)}`);
	}
	if (essence(mediaKey) === "application/json" && content[mediaKey].schema) {
		let body = json;
		if (body === undefined) {
			try {
				body = JSON.parse(text);
			} catch {
				fail(`the body is not JSON: ${text.slice(0, 200)}`);
			}
		}
		const validate = validatorAt(`${pointer}/content/${escapePointer(mediaKey)}/schema`);
		if (!validate(body)) {
			const errors = validate.errors
				.slice(0, 8)
				.map((e) => `${e.instancePath || "/"} ${e.message}${e.params && Object.keys(e.params).length ? ` ${JSON.stringify(e.params)}` : ""} (${e.schemaPath})`)
				.join("; ");
			fail(`the body does not match the schema: ${errors}; body ${text.slice(0, 400)}`);
		}
	}
	return { ...found, response, mediaType: mediaKey };
}

/**
 * Checks an outbound webhook delivery against the document's `webhooks` entry for its type:
 * the body against the request body's schema, and the required headers against theirs.
 * Throws an Error naming what does not match.
 */
export function checkWebhookDelivery(headers, body) {
	const entry = doc.webhooks?.[body?.type];
	if (!entry) throw new Error(`outbound webhook of type ${JSON.stringify(body?.type)} is not in the document's webhooks`);
	const pointer = `/webhooks/${escapePointer(body.type)}/post/requestBody/content/application~1json/schema`;
	const validate = validatorAt(pointer);
	if (!validate(body)) {
		throw new Error(`outbound webhook ${body.type}: body does not match the document: ${ajv.errorsText(validate.errors)}`);
	}
	for (const [i, param] of (entry.post.parameters ?? []).entries()) {
		if (param.in !== "header") continue;
		const value = headerValue(headers, param.name);
		if (value === undefined) {
			if (param.required) throw new Error(`outbound webhook ${body.type}: header ${param.name} is missing`);
			continue;
		}
		const check = validatorAt(`/webhooks/${escapePointer(body.type)}/post/parameters/${i}/schema`);
		if (!check(value)) {
			throw new Error(`outbound webhook ${body.type}: header ${param.name}: ${ajv.errorsText(check.errors)}`);
		}
	}
}
