// Issue 12 (runs and the event log): the new API, used the way the README shows it. If this
// compiles against index.d.ts, the README's runs example and the new types agree.
import {
	type GatewayConfig,
	type GatewayEvent,
	type GatewayMessageResult,
	type GatewayRun,
	type GatewayRunEndStatus,
	type GatewayRunStatus,
	GatewayRuntime,
} from "../../index.js";

export const runsConfig: GatewayConfig = {
	bind: "127.0.0.1",
	port: 0,
	session: { idleMinutes: 30, maxQueuePerSession: 8 },
	webhook: { enabled: false, basePath: "/webhook" },
	events: { replayEvents: 4096, replayBytes: 4 * 1024 * 1024 },
	runs: { retainMs: 60 * 60 * 1000, retainPerSession: 100 },
	idempotency: { ttlMs: 24 * 60 * 60 * 1000, maxKeys: 100_000 },
	chat: { abortOnDisconnect: false },
};

export async function useRuns(gateway: GatewayRuntime): Promise<GatewayMessageResult> {
	// Accept a message without waiting for it; read it back; wait for its result.
	const run: GatewayRun = await gateway.submitMessage({
		sessionKey: "demo",
		text: "What is in hello.txt?",
		idempotencyKey: "job-42",
	});
	const status: GatewayRunStatus = run.status;
	const again: GatewayRun | undefined = gateway.getRun("demo", run.runId);
	const all: GatewayRun[] = gateway.listRuns("demo");
	const ended: number | undefined = all.at(-1)?.endedAt;
	console.log(status, run.mode, run.createdAt, again?.startedAt, ended, again?.result?.ok);

	// Follow the log, remember the last id, and pick up after it on a new subscription.
	let lastId = 0;
	const unsubscribe = await gateway.addSubscriber("demo", (event: GatewayEvent, id: number) => {
		lastId = id;
		if (event.type === "hello" && event.missed) console.log("some events were dropped from the log");
		if (event.type === "run_start") console.log("run", event.runId);
		if (event.type === "token" && event.runId === run.runId) process.stdout.write(event.delta);
		if (event.type === "run_end") {
			const end: GatewayRunEndStatus = event.status;
			console.log(event.runId, end, event.error ?? "");
		}
	});
	unsubscribe();
	const resumed = await gateway.addSubscriber("demo", (event) => console.log(event.type), { after: lastId });
	resumed();

	const cancelled: { ok: boolean; runId: string; status?: GatewayRunStatus; error?: string } = await gateway.cancelRun(
		"demo",
		run.runId,
	);
	console.log(cancelled.ok, cancelled.status, cancelled.error);

	const result: GatewayMessageResult = await gateway.waitForRun("demo", run.runId);
	const runId: string | undefined = result.runId;
	const direct = await gateway.enqueueMessage({ sessionKey: "demo", text: "hi", idempotencyKey: "job-43" });
	console.log(runId, direct.runId);
	return result;
}

// The README's "From JavaScript" snippet, as pasted after its offline example.
export async function readmeRunsSnippet(gateway: GatewayRuntime): Promise<void> {
	const run = await gateway.submitMessage({ sessionKey: "demo", text: "What is in hello.txt?" });
	console.log(run.status); // "queued" or "running": accepted, not waited for (rejects when the queue is full)

	let lastId = 0; // listener(event, id): id is the event's log id; for hello, the id it goes on after
	const unsubscribe = await gateway.addSubscriber("demo", (event, id) => {
		lastId = id;
		if (event.type === "run_end") console.log(event.runId, event.status);
	});

	const result = await gateway.waitForRun("demo", run.runId); // its GatewayMessageResult, runId included
	console.log(gateway.getRun("demo", run.runId)?.status, gateway.listRuns("demo").length);
	console.log(await gateway.cancelRun("demo", run.runId)); // { ok: false, … }: it has already ended
	unsubscribe();

	// Later: hello, then every logged event after lastId, then live ones (hello.missed if some were dropped).
	const again = await gateway.addSubscriber("demo", (event) => console.log(event.type), { after: lastId });
	again(); // unsubscribe
	console.log(result.runId);
}
