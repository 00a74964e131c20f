//! The napi binding: `NativeGateway`, the class behind `index.js`'s `GatewayRuntime`.
//!
//! Only this module (and [`js_callback`]) imports napi. Every export is synchronous and
//! cheap, or returns a Promise whose work runs on the gateway's own tokio runtime; nothing
//! here blocks the JS thread. Exports are `catch_unwind`, and a panic hook installed at
//! module load reports any panic, so none crosses into Node.

mod js_callback;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{FnArgs, Function, PromiseRaw, Unknown};
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi::{Env, Error, Result};
use napi_derive::napi;
use tokio::task::JoinHandle;

use crate::agent::Agent;
use crate::config::Config;
use crate::events::{json_or_null, AgentEvent};
use crate::http::{self, Server};
use crate::session::{Gateway, MessageRequest, MessageResult, Outcome, SessionError};
use crate::util::lock;
use crate::validate;

use js_callback::{
    Callback, CreateArgs, DeliverArgs, HandleArgs, JsAgent, JsFn, KeepAlive, PromptArgs,
    ReleaseArgs,
};

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

/// Frames an in-process `addSubscriber` listener may have outstanding (a nominal bound).
const JS_SUBSCRIBER_CAPACITY: usize = 1 << 24;

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
}

fn result_json(result: &MessageResult) -> String {
    serde_json::to_string(result).unwrap_or_else(|_| "{}".into())
}

#[napi]
impl NativeGateway {
    /// Validates the config (throwing an error that names the bad field) and wires the JS
    /// callbacks. Nothing listens until `start`.
    #[napi(constructor, catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config_json: String,
        primary_key: String,
        create: JsFn<'_, CreateArgs>,
        prompt: JsFn<'_, PromptArgs>,
        abort: JsFn<'_, HandleArgs>,
        release: JsFn<'_, ReleaseArgs>,
        renew: JsFn<'_, HandleArgs>,
        log: JsFn<'_, String>,
        deliver: JsFn<'_, DeliverArgs>,
    ) -> Result<Self> {
        let config = Config::from_json(&config_json).map_err(err)?;
        let agent = Arc::new(JsAgent::new(
            js_callback::weak(&create)?,
            js_callback::weak(&prompt)?,
            js_callback::weak(&abort)?,
            js_callback::weak(&release)?,
            js_callback::weak(&renew)?,
            js_callback::weak(&log)?,
        ));
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
            deliver: Arc::new(js_callback::weak(&deliver)?),
            subscriptions: Arc::new(Mutex::new(HashMap::new())),
        })
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
            self.agent.log("warning: webhooks are enabled without webhook.secret (accepted because the gateway only listens on loopback)");
        }
        if config.bearer_token.is_none() && !config.is_loopback() {
            self.agent.log(&format!(
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
        let task = self.handle()?.spawn(async move {
            let mut slot = server.lock().await;
            if let Some(s) = slot.as_ref() {
                return Ok(s.addr.port());
            }
            let started = async {
                gateway.ensure_session(gateway.primary_key()).await?;
                http::serve(gateway.clone()).await
            }
            .await;
            match started {
                Ok(s) => {
                    let port = s.addr.port();
                    *slot = Some(s);
                    *lock(&port_slot) = Some(port);
                    gateway.set_ready(true);
                    Ok(port)
                }
                Err(e) => {
                    lock(&keep).take();
                    Err(e)
                }
            }
        });
        env.spawn_future(async move {
            match task.await {
                Ok(Ok(port)) => Ok(port as u32),
                Ok(Err(e)) => Err(err(e)),
                Err(e) => Err(err(format!("pi-gateway: start failed: {e}"))),
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
        let task = self.handle()?.spawn(async move {
            let mut slot = server.lock().await;
            gateway.set_ready(false);
            match slot.take() {
                Some(s) => s.shutdown(&gateway).await,
                None => gateway.stop_sessions().await,
            }
            *lock(&port_slot) = None;
            lock(&keep).take();
        });
        env.spawn_future(async move {
            task.await
                .map_err(|e| err(format!("pi-gateway: stop failed: {e}")))
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
    /// `{images?, source?, metadata?}`, checked here as the HTTP routes check them.
    #[napi(catch_unwind)]
    pub fn enqueue<'env>(
        &self,
        env: &'env Env,
        session_key: String,
        text: String,
        fields_json: Option<String>,
    ) -> Result<PromiseRaw<'env, String>> {
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
        // Queued here, on the JS thread, so messages keep the order of the calls.
        let key = session_key.clone();
        let rx = self.gateway.enqueue(
            MessageRequest {
                session_key,
                text,
                images_json: fields.images_json,
                source: fields.source,
            },
            None,
        );
        env.spawn_future(async move {
            let result = rx.await.unwrap_or_else(|_| {
                MessageResult::failure(
                    &key,
                    "The message was dropped without a result",
                    Outcome::Failed,
                )
            });
            Ok(result_json(&result))
        })
    }

    /// Subscribes JS subscriber `id` (chosen by the caller) and resolves with the `hello`
    /// event's JSON. Later frames go to `deliver(id, json)`; `deliver(id, null)` says the
    /// stream ended. JS holds frames that overtake the resolution until `hello` is handled.
    #[napi(catch_unwind)]
    pub fn subscribe<'env>(
        &self,
        env: &'env Env,
        session_key: String,
        id: u32,
    ) -> Result<PromiseRaw<'env, String>> {
        validate::session_key(&session_key, "sessionKey").map_err(Error::from_reason)?;
        let gateway = self.gateway.clone();
        let deliver = self.deliver.clone();
        let subs = self.subscriptions.clone();
        let handle = self.handle()?.clone();
        let task = self.handle()?.spawn(async move {
            // In-process listeners get every event, as the seed's did: their channel is
            // bounded only nominally (the JS thread itself is the reader).
            let mut sub = gateway
                .subscribe(&session_key, JS_SUBSCRIBER_CAPACITY)
                .await?;
            let hello = match sub.rx.recv().await {
                Some(frame) => String::from_utf8_lossy(&frame.json()).into_owned(),
                None => return Err("the session ended before it could be subscribed".to_string()),
            };
            let forward = handle.spawn(async move {
                while let Some(frame) = sub.rx.recv().await {
                    let json = String::from_utf8_lossy(&frame.json()).into_owned();
                    deliver.call(
                        FnArgs::from((id, Some(json))),
                        ThreadsafeFunctionCallMode::NonBlocking,
                    );
                }
                drop(sub.guard);
                deliver.call(
                    FnArgs::from((id, None)),
                    ThreadsafeFunctionCallMode::NonBlocking,
                );
            });
            lock(&subs).insert(id, forward);
            Ok::<String, String>(hello)
        });
        env.spawn_future(async move {
            match task.await {
                Ok(Ok(hello)) => Ok(hello),
                Ok(Err(e)) => Err(err(e)),
                Err(e) => Err(err(format!("pi-gateway: subscribe failed: {e}"))),
            }
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
        let task = self
            .handle()?
            .spawn(async move { gateway.reset(&session_key).await });
        env.spawn_future(async move {
            match task.await {
                Ok(Ok(())) => Ok(true),
                Ok(Err(SessionError::NotFound)) => Ok(false),
                Ok(Err(SessionError::Failed(e))) => Err(err(e)),
                Err(e) => Err(err(format!("pi-gateway: reset failed: {e}"))),
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
        kind: u32,
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
            0 => AgentEvent::TurnStart,
            1 => AgentEvent::TurnEnd,
            2 => AgentEvent::MessageStart { role: s(a) },
            3 => AgentEvent::TextDelta { index, delta: s(a) },
            4 => AgentEvent::ThinkingDelta { index, delta: s(a) },
            5 => AgentEvent::ToolStart {
                id: s(a),
                name: s(b),
                args: json_or_null(c),
            },
            6 => AgentEvent::ToolUpdate {
                id: s(a),
                name: s(b),
                partial: json_or_null(c),
            },
            7 => AgentEvent::ToolEnd {
                id: s(a),
                name: s(b),
                result: json_or_null(c),
                is_error: index != 0,
            },
            8 => AgentEvent::MessageComplete { text: s(a) },
            9 => AgentEvent::TextStart { index },
            10 => AgentEvent::TextEnd { index },
            11 => AgentEvent::ThinkingStart { index },
            12 => AgentEvent::ThinkingEnd { index },
            13 => AgentEvent::ToolCallStart {
                index,
                id: s(a),
                name: s(b),
            },
            14 => AgentEvent::ToolCallDelta {
                index,
                id: s(a),
                delta: s(b),
            },
            15 => AgentEvent::ToolCallEnd {
                index,
                id: s(a),
                name: s(b),
                input: json_or_null(c),
            },
            _ => AgentEvent::Touch,
        };
        self.gateway.push_event(handle, message_count, event, bytes);
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
