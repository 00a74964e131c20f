// Written the way the seed's callers use the gateway: if this compiles against index.d.ts,
// a TypeScript program written for the seed compiles unchanged against pi-gateway.
import { type AgentSession, createAgentSession } from "@mariozechner/pi-coding-agent";
import {
	createGatewaySessionManager,
	type GatewayConfig,
	type GatewayEvent,
	type GatewayMessageRequest,
	type GatewayMessageResult,
	GatewayRuntime,
	type GatewayRuntimeOptions,
	type GatewaySessionFactory,
	type GatewaySessionSnapshot,
	getActiveGatewayRuntime,
	sanitizeSessionKey,
	setActiveGatewayRuntime,
} from "../../index.js";

export async function runGateway(primarySession: AgentSession, cwd: string): Promise<GatewayMessageResult> {
	const config: GatewayConfig = {
		bind: "127.0.0.1",
		port: 0,
		bearerToken: process.env.PI_GATEWAY_TOKEN,
		session: { idleMinutes: 30, maxQueuePerSession: 8 },
		webhook: { enabled: true, basePath: "/webhook", secret: "s3cret" },
	};
	let runtime: GatewayRuntime | undefined;
	const createSession: GatewaySessionFactory = async (sessionKey: string) => {
		const root = runtime ? runtime.getGatewaySessionDir("x") : cwd;
		const { session } = await createAgentSession({
			cwd,
			sessionManager: createGatewaySessionManager(cwd, sessionKey, root),
		});
		return session;
	};
	const options: GatewayRuntimeOptions = {
		config,
		primarySessionKey: "main",
		primarySession,
		createSession,
		log: (message: string) => console.log(message),
	};
	runtime = new GatewayRuntime(options);
	setActiveGatewayRuntime(runtime);
	await runtime.start();
	const address: { bind: string; port: number } = runtime.getAddress();
	const ready: boolean = runtime.isReady();
	const unsubscribe: () => void = await runtime.addSubscriber("main", (event: GatewayEvent) => {
		if (event.type === "token") process.stdout.write(event.delta);
		if (event.type === "hello") console.log(event.snapshot.queueDepth);
	});
	const request: GatewayMessageRequest = { sessionKey: "main", text: "hi", source: "rpc" };
	const result: GatewayMessageResult = await runtime.enqueueMessage(request);
	const sessions: GatewaySessionSnapshot[] = runtime.listSessions();
	const one: GatewaySessionSnapshot | undefined = runtime.getSession("main");
	const aborted: boolean = runtime.abortSession("main");
	runtime.clearQueue("main");
	await runtime.resetSession("main");
	const dir: string = runtime.getGatewaySessionDir(sanitizeSessionKey("a/b"));
	console.log(address.port, ready, sessions.length, one?.messageCount, aborted, dir);
	unsubscribe();
	const active: GatewayRuntime | null = getActiveGatewayRuntime();
	await active?.stop();
	setActiveGatewayRuntime(null);
	return result;
}
