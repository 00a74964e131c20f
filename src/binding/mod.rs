//! The napi binding: `NativeGateway`, the class behind `index.js`'s `GatewayRuntime`.
//!
//! Only this module (and [`js_callback`]) imports napi. Every export is synchronous and
//! cheap, or returns a Promise whose work runs on the gateway's own tokio runtime; nothing
//! here blocks the JS thread. Exports are `catch_unwind`, and a panic hook installed at
//! module load reports any panic, so none crosses into Node.

mod js_callback;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::future::Future;

use napi::bindgen_prelude::{
    FnArgs, Function, JsObjectValue, Object, PromiseRaw, ToNapiValue, Unknown,
};
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi::{Env, Error, Result};
use napi_derive::napi;
use tokio::task::JoinHandle;

use crate::agent::Agent;
use crate::config::Config;
use crate::error::GatewayError;
use crate::events::{json_or_null, AgentEvent};
use crate::http::{self, Server};
use crate::session::{Gateway, MessageRequest, MessageResult, Run, Step, Submit, Submitted};
use crate::util::lock;
use crate::validate;

use js_callback::{Callback, DeliverArgs, JsAgent, JsCallbacks, JsFn, KeepAlive};

/// The agent events `index.js` forwards through `pushEvent`. One table for both sides: napi
/// exports it to JS as `EventKind`.
#[napi]
pub enum EventKind {
    TurnStart,
    TurnEnd,
    MessageStart,
    Token,
    Thinking,
    ToolStart,
    ToolUpdate,
    ToolEnd,
    MessageComplete,
    TextStart,
    TextEnd,
    ThinkingStart,
    ThinkingEnd,
    ToolcallStart,
    ToolcallDelta,
    ToolcallEnd,
    /// pi's `agent_start`: the run is under way.
    AgentStart,
    /// Anything else: only the message count may have moved.
    Touch,
    /// pi's `queue_update`: `a` and `b` are its steering and follow-up lists as JSON.
    QueueUpdate,
    /// pi's `agent_end`.
    AgentEnd,
    /// A pi event passed through: `a` is its type (`compaction_start`, ...), `c` its fields.
    Info,
}

#[napi_derive::module_init]
fn init() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Panics are bugs: say where, then let catch_unwind (exports, request handlers) or
        // tokio (tasks) contain it. The process is never aborted from here.
        eprintln!("pi-gateway: internal panic (contained): {info}");
        if std::env::var_os("PI_GATEWAY_PANIC_BACKTRACE").is_some() {
            default_hook(info);
        }
    }));
}

fn err(message: impl Into<String>) -> Error {
    Error::from_reason(message.into())
}

/// Worker threads of each gateway's runtime, where HTTP parsing and SSE writes run, off the
/// JS thread: one per core the process may run on (Linux counts its affinity mask, so a
/// gateway pinned with `taskset` to one core gets one), at most this many.
const MAX_WORKER_THREADS: usize = 4;

fn worker_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_WORKER_THREADS)
}

/// How far an in-process `addSubscriber` listener may fall behind: it is never cut off for
/// that (the JS thread itself is its reader), only when the log drops what it has not read.
const JS_SUBSCRIBER_LAG: usize = usize::MAX;

/// Frames handed to JS per wake of a listener's forwarding task, at most about this many bytes.
const JS_BATCH_BYTES: usize = 64 * 1024;

#[napi]
pub struct NativeGateway {
    rt: Option<tokio::runtime::Runtime>,
    gateway: Gateway,
    agent: Arc<JsAgent>,
    server: Arc<tokio::sync::Mutex<Option<Server>>>,
    keep_alive: Arc<Mutex<Option<KeepAlive>>>,
    port: Arc<Mutex<Option<u16>>>,
    deliver: Arc<Callback<DeliverArgs>>,
    subscriptions: Arc<Mutex<HashMap<u32, JoinHandle<()>>>>,
}

impl Drop for NativeGateway {
    fn drop(&mut self) {
        // Never block the JS thread (this runs in GC finalization): let the workers wind
        // down on their own.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl NativeGateway {
    fn handle(&self) -> Result<&tokio::runtime::Handle> {
        self.rt
            .as_ref()
            .map(|rt| rt.handle())
            .ok_or_else(|| err("pi-gateway: runtime is gone"))
    }

    /// Runs `work` on the gateway's runtime and returns a Promise of its outcome: the one
    /// shape every async export has. An `Err` rejects with its message; a task that could
    /// not finish rejects naming `what`.
    fn spawn_promise<'env, T, F>(
        &self,
        env: &'env Env,
        what: &'static str,
        work: F,
    ) -> Result<PromiseRaw<'env, T>>
    where
        T: ToNapiValue + Send + 'static,
        F: Future<Output = std::result::Result<T, String>> + Send + 'static,
    {
        let task = self.handle()?.spawn(work);
        env.spawn_future(async move {
            match task.await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(err(e)),
                Err(e) => Err(err(format!("pi-gateway: {what} failed: {e}"))),
            }
        })
    }

    /// Checks and submits a message from JS, as HTTP does.
    fn submit_from_js(
        &self,
        session_key: String,
        text: String,
        fields_json: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<std::result::Result<Submitted, GatewayError>> {
        // Checked at the door, as over HTTP: nothing that would break the session is queued.
        validate::session_key(&session_key, "sessionKey").map_err(Error::from_reason)?;
        let fields = match fields_json.as_deref() {
            None => serde_json::Map::new(),
            Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => {
                    return Err(Error::from_reason(
                        "Invalid images: images, source and metadata must be JSON-serializable",
                    ))
                }
            },
        };
        let fields =
            validate::message_fields(&fields, self.gateway.config()).map_err(Error::from_reason)?;
        let idempotency = match idempotency_key {
            None => None,
            Some(key) => {
                crate::session::idempotency::check_key(key.as_bytes())
                    .map_err(Error::from_reason)?;
                let fingerprint = crate::session::idempotency::fingerprint(
                    "JS",
                    &session_key,
                    format!("{text}\u{0}{}", fields_json.as_deref().unwrap_or("")).as_bytes(),
                );
                Some((key, fingerprint))
            }
        };
        Ok(self.gateway.submit(Submit {
            request: MessageRequest {
                session_key,
                text,
                images_json: fields.images_json,
                source: fields.source,
                ..Default::default()
            },
            chat_id: None,
            cancel_if_abandoned: false,
            callback: None,
            idempotency,
            mode: fields.mode,
        }))
    }
}

/// `usage` and `model` of a completed assistant message, from `{usage, model}` JSON; `null`
/// for what is missing or malformed (`usage` must be an object, `model` `{provider, id}`).
fn completion_extra(text: Option<String>) -> (crate::events::Json, crate::events::Json) {
    use crate::events::{null_json, Json, ModelRef};
    #[derive(serde::Deserialize)]
    struct Extra {
        usage: Option<Json>,
        model: Option<ModelRef>,
    }
    let Some(extra) = text.and_then(|t| serde_json::from_str::<Extra>(&t).ok()) else {
        return (null_json(), null_json());
    };
    let usage = extra
        .usage
        .filter(|u| u.get().starts_with('{'))
        .unwrap_or_else(null_json);
    let model = extra
        .model
        .and_then(|m| serde_json::value::to_raw_value(&m).ok())
        .unwrap_or_else(null_json);
    (usage, model)
}

/// A JSON list of strings from JS, checked; `[]` for anything else.
fn string_list(text: Option<String>) -> crate::events::Json {
    let list: Vec<String> = text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    serde_json::value::to_raw_value(&list).unwrap_or_else(|_| crate::events::empty_list_json())
}

type Resolver = Box<dyn FnOnce(Env) -> Result<String>>;

/// An `enqueue` Promise waiting for its run's result. Settled once; if it is dropped unsettled
/// (a run dropped without a result, which is a bug), it still settles, so the caller is
/// answered and the Promise's threadsafe function does not keep Node alive.
struct ResultPromise {
    deferred: Option<napi::JsDeferred<String, Resolver>>,
    session_key: String,
}

impl ResultPromise {
    fn new(deferred: napi::JsDeferred<String, Resolver>, session_key: &str) -> ResultPromise {
        ResultPromise {
            deferred: Some(deferred),
            session_key: session_key.to_string(),
        }
    }

    fn settle(mut self, outcome: std::result::Result<String, String>) {
        if let Some(deferred) = self.deferred.take() {
            match outcome {
                Ok(json) => deferred.resolve(Box::new(move |_| Ok(json))),
                Err(message) => deferred.reject(err(message)),
            }
        }
    }
}

impl Drop for ResultPromise {
    fn drop(&mut self) {
        if let Some(deferred) = self.deferred.take() {
            let result = MessageResult::failure(
                &self.session_key,
                "The message was dropped without a result",
                crate::session::Outcome::Failed,
            );
            let json = result_json(&result);
            deferred.resolve(Box::new(move |_| Ok(json)));
        }
    }
}

fn result_json(result: &MessageResult) -> String {
    serde_json::to_string(result).unwrap_or_else(|_| "{}".into())
}

fn record_json(run: &Run) -> String {
    serde_json::to_string(&run.record()).unwrap_or_else(|_| "{}".into())
}

/// The JS callbacks the agent is driven through, read off the `callbacks` object by name.
fn callback<Args: 'static + napi::bindgen_prelude::JsValuesTupleIntoVec>(
    callbacks: &Object<'_>,
    name: &str,
) -> Result<Callback<Args>> {
    let f: JsFn<'_, Args> = callbacks.get_named_property(name).map_err(|e| {
        err(format!(
            "pi-gateway: callbacks.{name} must be a function: {e}"
        ))
    })?;
    js_callback::weak(&f)
}

#[napi]
impl NativeGateway {
    /// Validates the config (throwing an error that names the bad field) and wires the JS
    /// callbacks: `{createSession, prompt, abort, release, renew, handOver, clearPending, log,
    /// deliver}`. Nothing
    /// listens until `start`.
    #[napi(constructor, catch_unwind)]
    pub fn new(config_json: String, primary_key: String, callbacks: Object<'_>) -> Result<Self> {
        let config = Config::from_json(&config_json).map_err(err)?;
        let agent = Arc::new(JsAgent::new(JsCallbacks {
            create: callback(&callbacks, "createSession")?,
            prompt: callback(&callbacks, "prompt")?,
            abort: callback(&callbacks, "abort")?,
            release: callback(&callbacks, "release")?,
            renew: callback(&callbacks, "renew")?,
            hand_over: callback(&callbacks, "handOver")?,
            clear_pending: callback(&callbacks, "clearPending")?,
            op: callback(&callbacks, "op")?,
            log: callback(&callbacks, "log")?,
        }));
        let deliver = callback::<DeliverArgs>(&callbacks, "deliver")?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads())
            .thread_name("pi-gateway")
            .enable_all()
            .build()
            .map_err(|e| err(format!("pi-gateway: cannot start its runtime: {e}")))?;
        let gateway = Gateway::new(
            config,
            agent.clone() as Arc<dyn Agent>,
            primary_key,
            rt.handle().clone(),
        );
        Ok(NativeGateway {
            rt: Some(rt),
            gateway,
            agent,
            server: Arc::new(tokio::sync::Mutex::new(None)),
            keep_alive: Arc::new(Mutex::new(None)),
            port: Arc::new(Mutex::new(None)),
            deliver: Arc::new(deliver),
            subscriptions: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Logs from `level` up: `debug`, `info` (the default), `warn` or `error`.
    #[napi(catch_unwind)]
    pub fn set_log_level(&self, level: String) -> Result<()> {
        let level = crate::agent::LogLevel::parse(&level).ok_or_else(|| {
            err(format!(
                "Invalid logLevel: expected \"debug\", \"info\", \"warn\" or \"error\", got {level:?}"
            ))
        })?;
        self.gateway.set_log_level(level);
        Ok(())
    }

    /// Creates the primary session and starts listening; resolves with the bound port.
    /// `keepAlive` is held (keeping Node alive) until `stop` or a failed start.
    #[napi(catch_unwind)]
    pub fn start<'env>(
        &self,
        env: &'env Env,
        keep_alive: Function<'_, (), Unknown<'static>>,
    ) -> Result<PromiseRaw<'env, u32>> {
        let config = self.gateway.config();
        if config.webhook.enabled && config.webhook.secret.is_none() && !config.is_loopback() {
            return Err(err(format!(
                "Refusing to start: webhooks are enabled without webhook.secret on {}, which is not a loopback address. Anyone who can reach it could make the agent run commands. Set webhook.secret or bind to 127.0.0.1.",
                config.bind_text
            )));
        }
        if config.webhook.enabled && config.webhook.secret.is_none() {
            self.gateway.log("warning: webhooks are enabled without webhook.secret (accepted because the gateway only listens on loopback)");
        }
        if config.bearer_token.is_none() && !config.is_loopback() {
            self.gateway.log(&format!(
                "warning: no bearerToken set and the gateway listens on {}, which is not loopback: every session is open to anyone who can reach it",
                config.bind_text
            ));
        }
        {
            let mut slot = lock(&self.keep_alive);
            if slot.is_none() {
                *slot = Some(js_callback::keep_alive(&keep_alive)?);
            }
        }
        let gateway = self.gateway.clone();
        let server = self.server.clone();
        let keep = self.keep_alive.clone();
        let port_slot = self.port.clone();
        self.spawn_promise(env, "start", async move {
            let mut slot = server.lock().await;
            if let Some(s) = slot.as_ref() {
                return Ok(u32::from(s.addr.port()));
            }
            let started = async {
                gateway
                    .ensure_session(gateway.primary_key())
                    .await
                    .map_err(|e| e.to_string())?;
                http::serve(gateway.clone()).await
            }
            .await;
            match started {
                Ok(s) => {
                    let port = s.addr.port();
                    *slot = Some(s);
                    *lock(&port_slot) = Some(port);
                    gateway.set_ready(true);
                    Ok(u32::from(port))
                }
                Err(e) => {
                    lock(&keep).take();
                    Err(e)
                }
            }
        })
    }

    /// Stops accepting, answers every pending message, ends every stream, releases the
    /// sessions and the port, then lets Node exit.
    #[napi(catch_unwind)]
    pub fn stop<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        let gateway = self.gateway.clone();
        let server = self.server.clone();
        let keep = self.keep_alive.clone();
        let port_slot = self.port.clone();
        self.spawn_promise(env, "stop", async move {
            let mut slot = server.lock().await;
            gateway.set_ready(false);
            match slot.take() {
                Some(s) => s.shutdown(&gateway).await,
                None => gateway.stop_sessions().await,
            }
            *lock(&port_slot) = None;
            lock(&keep).take();
            Ok(())
        })
    }

    #[napi(catch_unwind)]
    pub fn is_ready(&self) -> bool {
        self.gateway.is_ready()
    }

    /// The bound port while listening.
    #[napi(catch_unwind)]
    pub fn port(&self) -> Option<u32> {
        lock(&self.port).map(u32::from)
    }

    /// Queues a message; resolves with the `GatewayMessageResult` as JSON. `fields_json` is
    /// `{images?, source?, metadata?}`, checked here as the HTTP routes check them. Queued
    /// here, on the JS thread, so messages keep the order of the calls; and settled from the
    /// thread that ends the run, before that session's next run starts, so the promises of
    /// one session settle in the order its runs end (a task woken at the run's end could be
    /// scheduled after the next run had already answered).
    #[napi(catch_unwind, ts_return_type = "Promise<string>")]
    pub fn enqueue<'env>(
        &self,
        env: &'env Env,
        session_key: String,
        text: String,
        fields_json: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<Object<'env>> {
        let key = session_key.clone();
        let submitted = self.submit_from_js(session_key, text, fields_json, idempotency_key)?;
        let (deferred, promise) = env.create_deferred::<String, Resolver>()?;
        let answer = ResultPromise::new(deferred, &key);
        match submitted {
            Ok(s) => s
                .run()
                .on_finish(move |result| answer.settle(Ok(result_json(result)))),
            // The seed answers a full queue with a result, not a rejection; so is `reject`
            // on a busy session answered (the bodies of HTTP's 429 and 409).
            Err(e) => answer.settle(match MessageResult::refusal(&key, &e) {
                Some(result) => Ok(result_json(&result)),
                None => Err(e.to_string()),
            }),
        }
        Ok(promise)
    }

    /// Queues a message without waiting for it: the run's record as JSON. Throws when the
    /// message is refused (bad input, a full queue, an idempotency conflict).
    #[napi(catch_unwind)]
    pub fn submit(
        &self,
        session_key: String,
        text: String,
        fields_json: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<String> {
        match self.submit_from_js(session_key, text, fields_json, idempotency_key)? {
            Ok(s) => {
                let mut record = serde_json::to_value(s.run().record())
                    .unwrap_or_else(|_| serde_json::json!({}));
                if let Some(how) = s.delivered() {
                    record["delivered"] = how.as_str().into();
                }
                Ok(record.to_string())
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// `GET /sessions/:key/queue`'s body as JSON, or `None` for an unknown session.
    #[napi(catch_unwind)]
    pub fn get_queue(&self, session_key: String) -> Option<String> {
        self.gateway
            .queue(&session_key)
            .and_then(|q| serde_json::to_string(&q).ok())
    }

    /// A run's record as JSON, while it is kept.
    #[napi(catch_unwind)]
    pub fn get_run(&self, session_key: String, run_id: String) -> Option<String> {
        self.gateway
            .run(&session_key, &run_id)
            .map(|r| record_json(&r))
    }

    /// The session's kept runs' records, oldest first, as a JSON array.
    #[napi(catch_unwind)]
    pub fn list_runs(&self, session_key: String) -> String {
        let records: Vec<_> = self
            .gateway
            .runs(&session_key)
            .iter()
            .map(|r| r.record())
            .collect();
        serde_json::to_string(&records).unwrap_or_else(|_| "[]".into())
    }

    /// Resolves with a run's result as JSON once it has ended; rejects when it is unknown.
    #[napi(catch_unwind)]
    pub fn wait_run<'env>(
        &self,
        env: &'env Env,
        session_key: String,
        run_id: String,
    ) -> Result<PromiseRaw<'env, String>> {
        let run = self
            .gateway
            .run(&session_key, &run_id)
            .ok_or_else(|| err(GatewayError::RunNotFound(run_id).to_string()))?;
        self.spawn_promise(env, "waitForRun", async move {
            Ok(result_json(&run.wait().await))
        })
    }

    /// Cancels a run as `DELETE …/runs/:runId` does; resolves with `{ok, runId, status?, error?}`.
    #[napi(catch_unwind)]
    pub fn cancel_run<'env>(
        &self,
        env: &'env Env,
        session_key: String,
        run_id: String,
    ) -> Result<PromiseRaw<'env, String>> {
        let gateway = self.gateway.clone();
        self.spawn_promise(env, "cancelRun", async move {
            let answer = match gateway.cancel_run(&session_key, &run_id).await {
                Ok(status) => {
                    serde_json::json!({"ok": true, "runId": run_id, "status": status.as_str()})
                }
                Err(e) => {
                    let status = gateway.run(&session_key, &run_id).map(|r| r.status());
                    serde_json::json!({"ok": false, "runId": run_id, "status": status, "error": e.to_string()})
                }
            };
            Ok(answer.to_string())
        })
    }

    /// Subscribes JS subscriber `id` (chosen by the caller), from the log after event id
    /// `after` when given, and resolves with the `hello` event and its id. Later frames go to
    /// `deliver(id, json, eventId)`; `deliver(id, null, 0)` says the stream ended. JS holds
    /// frames that overtake the resolution until `hello` is handled.
    #[napi(catch_unwind)]
    pub fn subscribe<'env>(
        &self,
        env: &'env Env,
        session_key: String,
        id: u32,
        after: Option<f64>,
    ) -> Result<PromiseRaw<'env, Hello>> {
        validate::session_key(&session_key, "sessionKey").map_err(Error::from_reason)?;
        let after = match after {
            None => None,
            Some(a) if a.is_finite() && a >= 0.0 && a.fract() == 0.0 => Some(a as u64),
            Some(a) => {
                return Err(err(format!(
                    "Invalid after: expected a non-negative integer, got {a}"
                )))
            }
        };
        let gateway = self.gateway.clone();
        let deliver = self.deliver.clone();
        let subs = self.subscriptions.clone();
        let handle = self.handle()?.clone();
        self.spawn_promise(env, "addSubscriber", async move {
            let sub = gateway
                .subscribe(&session_key, after, JS_SUBSCRIBER_LAG)
                .await
                .map_err(|e| e.to_string())?;
            let hello = Hello {
                json: String::from_utf8_lossy(&sub.hello.json()).into_owned(),
                id: sub.seen as f64,
            };
            let mut cursor = sub.cursor;
            let forward = handle.spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    let step = std::future::poll_fn(|cx| {
                        cursor.poll_next(cx, JS_BATCH_BYTES, |entry| {
                            if let Some(frame) = entry.frame.as_ref() {
                                batch.push((entry.seq, frame.json()));
                            }
                        })
                    })
                    .await;
                    for (seq, json) in batch {
                        deliver.call(
                            FnArgs::from((
                                id,
                                Some(String::from_utf8_lossy(&json).into_owned()),
                                seq as f64,
                            )),
                            ThreadsafeFunctionCallMode::NonBlocking,
                        );
                    }
                    if let Step::Done(_) = step {
                        break;
                    }
                }
                drop(cursor);
                deliver.call(
                    FnArgs::from((id, None, 0.0)),
                    ThreadsafeFunctionCallMode::NonBlocking,
                );
            });
            lock(&subs).insert(id, forward);
            Ok(hello)
        })
    }

    #[napi(catch_unwind)]
    pub fn unsubscribe(&self, id: u32) -> bool {
        match lock(&self.subscriptions).remove(&id) {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    /// False when nothing was running (or the session is unknown), as in the seed.
    #[napi(catch_unwind)]
    pub fn abort(&self, session_key: String) -> bool {
        self.gateway.abort(&session_key).unwrap_or(false)
    }

    /// Clears the gateway's queue (`index.js` clears pi's own right after, on the JS thread).
    /// False when the session is unknown.
    #[napi(catch_unwind)]
    pub fn clear_queue(&self, session_key: String) -> bool {
        self.gateway.clear_queue(&session_key)
    }

    #[napi(catch_unwind)]
    pub fn reset<'env>(
        &self,
        env: &'env Env,
        session_key: String,
    ) -> Result<PromiseRaw<'env, bool>> {
        let gateway = self.gateway.clone();
        self.spawn_promise(env, "resetSession", async move {
            match gateway.reset(&session_key).await {
                Ok(()) => Ok(true),
                Err(GatewayError::SessionNotFound(_)) => Ok(false),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    /// Every session's snapshot, as JSON.
    #[napi(catch_unwind)]
    pub fn list(&self) -> String {
        serde_json::to_string(&self.gateway.list()).unwrap_or_else(|_| "[]".into())
    }

    #[napi(catch_unwind)]
    pub fn get(&self, session_key: String) -> Option<String> {
        self.gateway
            .snapshot(&session_key)
            .and_then(|s| serde_json::to_string(&s).ok())
    }

    /// Answers a callback request (see `js_callback`). False when nobody waits for it.
    #[napi(catch_unwind)]
    pub fn settle(&self, request_id: u32, ok: bool, value: String) -> bool {
        self.agent
            .settle(request_id, if ok { Ok(value) } else { Err(value) })
    }

    /// One agent event, called synchronously from the session's `subscribe` listener.
    /// `kind` selects the event; `a`, `b` and `c` carry its strings (c is JSON), `n` its
    /// index or flag. Only these small fields ever cross.
    #[napi(catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn push_event(
        &self,
        handle: u32,
        kind: EventKind,
        message_count: u32,
        a: Option<String>,
        b: Option<String>,
        c: Option<String>,
        n: Option<u32>,
    ) {
        let bytes = a.as_ref().map_or(0, String::len)
            + b.as_ref().map_or(0, String::len)
            + c.as_ref().map_or(0, String::len)
            + 16;
        let index = n.unwrap_or(0);
        let s = |v: Option<String>| v.unwrap_or_default();
        let event = match kind {
            EventKind::TurnStart => AgentEvent::TurnStart,
            EventKind::TurnEnd => AgentEvent::TurnEnd,
            EventKind::MessageStart => AgentEvent::MessageStart { role: s(a) },
            EventKind::Token => AgentEvent::TextDelta { index, delta: s(a) },
            EventKind::Thinking => AgentEvent::ThinkingDelta { index, delta: s(a) },
            EventKind::ToolStart => AgentEvent::ToolStart {
                id: s(a),
                name: s(b),
                args: json_or_null(c),
            },
            EventKind::ToolUpdate => AgentEvent::ToolUpdate {
                id: s(a),
                name: s(b),
                partial: json_or_null(c),
            },
            EventKind::ToolEnd => AgentEvent::ToolEnd {
                id: s(a),
                name: s(b),
                result: json_or_null(c),
                is_error: index != 0,
            },
            EventKind::MessageComplete => {
                let (usage, model) = completion_extra(c);
                AgentEvent::MessageComplete {
                    text: s(a),
                    usage,
                    stop_reason: b,
                    model,
                }
            }
            EventKind::AgentEnd => AgentEvent::AgentEnd,
            EventKind::Info => {
                let Some(kind) = a.as_deref().and_then(crate::events::InfoKind::parse) else {
                    return;
                };
                let mut fields = match c.and_then(|c| serde_json::from_str(&c).ok()) {
                    Some(serde_json::Value::Object(map)) => map,
                    _ => serde_json::Map::new(),
                };
                for reserved in ["type", "sessionKey", "runId"] {
                    fields.remove(reserved);
                }
                AgentEvent::Info { kind, fields }
            }
            EventKind::TextStart => AgentEvent::TextStart { index },
            EventKind::TextEnd => AgentEvent::TextEnd { index },
            EventKind::ThinkingStart => AgentEvent::ThinkingStart { index },
            EventKind::ThinkingEnd => AgentEvent::ThinkingEnd { index },
            EventKind::ToolcallStart => AgentEvent::ToolCallStart {
                index,
                id: s(a),
                name: s(b),
            },
            EventKind::ToolcallDelta => AgentEvent::ToolCallDelta {
                index,
                id: s(a),
                delta: s(b),
            },
            EventKind::ToolcallEnd => AgentEvent::ToolCallEnd {
                index,
                id: s(a),
                name: s(b),
                input: json_or_null(c),
            },
            EventKind::AgentStart => AgentEvent::AgentStart,
            EventKind::Touch => AgentEvent::Touch,
            EventKind::QueueUpdate => AgentEvent::QueueUpdate {
                steering: string_list(a),
                follow_up: string_list(b),
            },
        };
        self.gateway.push_event(handle, message_count, event, bytes);
    }

    /// Whether `approval.policy` can hold or block a tool call: `index.js` hooks each
    /// session's `beforeToolCall` only then.
    #[napi(catch_unwind)]
    pub fn approvals_active(&self) -> bool {
        self.gateway.approvals_active()
    }

    /// pi's `beforeToolCall` for the session `handle`: resolves with `{approved, reason?}`
    /// (`reason`: what the model is told) once the policy, a person, a timeout or an abort
    /// has decided. `call_json` is `{toolCallId, toolName, args}`; `siblings_json` the list of
    /// every tool call of the same assistant message (asked for together).
    #[napi(catch_unwind)]
    pub fn approve_tool_call<'env>(
        &self,
        env: &'env Env,
        handle: u32,
        call_json: String,
        siblings_json: String,
    ) -> Result<PromiseRaw<'env, String>> {
        use crate::session::approval::ToolCall;
        let call: ToolCall = serde_json::from_str(&call_json)
            .map_err(|e| err(format!("pi-gateway: invalid tool call: {e}")))?;
        // A list that does not parse only loses the batching: the call is asked for alone.
        let siblings: Vec<ToolCall> = serde_json::from_str(&siblings_json).unwrap_or_default();
        let verdict = self.gateway.approve_tool_call(handle, call, siblings);
        self.spawn_promise(env, "beforeToolCall", async move {
            let verdict = verdict.await;
            serde_json::to_string(&verdict).map_err(|e| e.to_string())
        })
    }

    /// pi aborted the session `handle` itself: its pending approvals are denied.
    #[napi(catch_unwind)]
    pub fn abort_approvals(&self, handle: u32) {
        self.gateway.abort_approvals(handle);
    }

    /// The session's pending approvals as a JSON array (`GET /sessions/:key/approvals`).
    #[napi(catch_unwind)]
    pub fn list_approvals(&self, session_key: String) -> String {
        let approvals = self.gateway.approvals(&session_key);
        let views: Vec<_> = approvals.iter().map(|a| a.view()).collect();
        serde_json::to_string(&views).unwrap_or_else(|_| "[]".into())
    }

    /// Decides an approval as `POST /sessions/:key/approvals/:id` does: `{ok: true, ...}`, or
    /// `{status, error}` (404, 409 with the earlier decision, 400 naming the bad field).
    #[napi(catch_unwind)]
    pub fn resolve_approval(
        &self,
        session_key: String,
        approval_id: String,
        decision_json: String,
    ) -> String {
        use crate::session::approval::check_decision;
        let fields: serde_json::Map<String, serde_json::Value> =
            match serde_json::from_str(&decision_json) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
        let decision = match check_decision(fields.get("approved"), fields.get("reason")) {
            Ok(d) => d,
            Err(message) => {
                return serde_json::json!({"status": 400, "error": message}).to_string()
            }
        };
        let (status, answer) = self
            .gateway
            .decide_answer(&session_key, &approval_id, decision);
        let mut answer = serde_json::to_value(answer).unwrap_or_default();
        if status != 200 {
            answer["status"] = status.into();
        }
        answer.to_string()
    }

    /// Counters for tests and benchmarks: `{ events, eventBytes }` crossed from JS so far.
    #[napi(catch_unwind)]
    pub fn stats(&self) -> Stats {
        let s = self.gateway.stats();
        Stats {
            events: s.events.load(std::sync::atomic::Ordering::Relaxed) as f64,
            event_bytes: s.event_bytes.load(std::sync::atomic::Ordering::Relaxed) as f64,
        }
    }
}

/// The first event of an `addSubscriber` stream, and the id a reconnect would resume after.
#[napi(object)]
pub struct Hello {
    pub json: String,
    pub id: f64,
}

#[napi(object)]
pub struct Stats {
    pub events: f64,
    pub event_bytes: f64,
}

/// For tests of panic containment in exports: panics inside a `catch_unwind` export.
#[napi(catch_unwind)]
#[allow(dead_code)]
pub fn test_panic(message: String) {
    panic!("{message}");
}
