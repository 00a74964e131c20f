//! Every call from Rust into JavaScript goes through here.
//!
//! Each callback is a weak threadsafe function (it never keeps Node alive by itself), called
//! in non-blocking mode from a tokio task — never from the JS thread, never waiting on it.
//! A callback does not return its answer: the hand-written `index.js` runs the agent call,
//! catches whatever it throws or rejects, and answers with a synchronous
//! `NativeGateway.settle(requestId, ok, value)`. So a JS failure always arrives here as a
//! plain `Err(message)` naming the callback, and a JS callback that never answers only ever
//! stalls the one future waiting for it (the core puts deadlines where that matters).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{FnArgs, Function, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use tokio::sync::oneshot;

use crate::agent::{
    Agent, AgentResult, BoxFuture, Delivery, LogLine, Op, OpError, Pending, PromptOutcome,
    PromptRequest, SessionHandle, SessionInfo,
};
use crate::events::empty_list_json;
use crate::util::lock;

/// A weak, callee-not-handled threadsafe function taking `Args`.
pub type Callback<Args> = ThreadsafeFunction<Args, Unknown<'static>, Args, Status, false, true, 0>;

/// A strong one: while it exists, Node's event loop stays alive.
pub type KeepAlive = ThreadsafeFunction<(), Unknown<'static>, (), Status, false, false, 0>;

pub fn weak<Args: 'static + napi::bindgen_prelude::JsValuesTupleIntoVec>(
    f: &Function<'_, Args, Unknown<'static>>,
) -> napi::Result<Callback<Args>> {
    f.build_threadsafe_function()
        .callee_handled::<false>()
        .weak::<true>()
        .build()
}

pub fn keep_alive(f: &Function<'_, (), Unknown<'static>>) -> napi::Result<KeepAlive> {
    f.build_threadsafe_function()
        .callee_handled::<false>()
        .weak::<false>()
        .build()
}

type Answer = Result<String, String>;

/// `(requestId, handle, sessionKey)`
pub type CreateArgs = FnArgs<(u32, u32, String)>;
/// `(requestId, handle, text, imagesJson, source, runId, kind)`
pub type PromptArgs = FnArgs<(
    u32,
    u32,
    String,
    Option<String>,
    String,
    String,
    &'static str,
)>;
/// `(requestId, op, handle, sessionKey, argsJson)`
pub type OpArgs = FnArgs<(u32, &'static str, u32, String, String)>;
/// `(requestId, handle, runId, "steer" | "followUp", text, imagesJson)`
pub type HandOverArgs = FnArgs<(u32, u32, String, &'static str, String, Option<String>)>;
/// `(requestId, handle)`
pub type HandleArgs = FnArgs<(u32, u32)>;
/// `(requestId, handle, dispose)`
pub type ReleaseArgs = FnArgs<(u32, u32, bool)>;
/// `(subscriberId, json | null, eventId)`
pub type DeliverArgs = FnArgs<(u32, Option<String>, f64)>;
/// A JS function as napi hands it over, taking `Args`.
pub type JsFn<'a, Args> = Function<'a, Args, Unknown<'static>>;

/// The JS functions the agent is driven through (`index.js` passes them as one object).
pub struct JsCallbacks {
    pub create: Callback<CreateArgs>,
    pub prompt: Callback<PromptArgs>,
    pub abort: Callback<HandleArgs>,
    pub release: Callback<ReleaseArgs>,
    pub renew: Callback<HandleArgs>,
    pub hand_over: Callback<HandOverArgs>,
    pub clear_pending: Callback<HandleArgs>,
    pub op: Callback<OpArgs>,
    pub log: Callback<String>,
}

/// The JS side of the [`Agent`] trait.
pub struct JsAgent {
    cb: JsCallbacks,
    pending: Arc<Mutex<HashMap<u32, oneshot::Sender<Answer>>>>,
    next_request: AtomicU32,
}

/// Removes a request from the pending map when its future is dropped (a timeout, a stop),
/// so a late answer from JS finds nobody waiting — and `settle` tells JS so.
struct PendingGuard {
    pending: Arc<Mutex<HashMap<u32, oneshot::Sender<Answer>>>>,
    id: u32,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        lock(&self.pending).remove(&self.id);
    }
}

impl JsAgent {
    pub fn new(cb: JsCallbacks) -> JsAgent {
        JsAgent {
            cb,
            pending: Arc::new(Mutex::new(HashMap::new())),
            next_request: AtomicU32::new(1),
        }
    }

    /// Answers request `id`. False when nobody waits for it any more.
    pub fn settle(&self, id: u32, answer: Answer) -> bool {
        match lock(&self.pending).remove(&id) {
            Some(tx) => tx.send(answer).is_ok(),
            None => false,
        }
    }

    /// Registers a request, lets `call` fire the callback with its id, and returns the
    /// future of the answer.
    fn request(
        &self,
        name: &'static str,
        call: impl FnOnce(u32) -> Status,
    ) -> BoxFuture<AgentResult<String>> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let guard = PendingGuard {
            pending: self.pending.clone(),
            id,
        };
        let status = call(id);
        Box::pin(async move {
            let _guard = guard;
            if status != Status::Ok {
                return Err(format!(
                    "{name}: JavaScript could not be called ({status}); is the process exiting?"
                ));
            }
            match rx.await {
                Ok(answer) => answer,
                Err(_) => Err(format!("{name}: no answer from JavaScript")),
            }
        })
    }
}

const MODE: ThreadsafeFunctionCallMode = ThreadsafeFunctionCallMode::NonBlocking;

fn parse_info(name: &str, text: &str) -> AgentResult<SessionInfo> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Info {
        #[serde(default)]
        session_id: String,
        #[serde(default)]
        message_count: u32,
        #[serde(default)]
        steer: bool,
        #[serde(default)]
        compact: bool,
        name: Option<String>,
        model: Option<crate::events::ModelRef>,
        thinking_level: Option<String>,
    }
    let info: Info = serde_json::from_str(text)
        .map_err(|e| format!("{name}: unexpected answer from JavaScript: {e}"))?;
    Ok(SessionInfo {
        session_id: info.session_id,
        message_count: info.message_count,
        steer: info.steer,
        compact: info.compact,
        name: info.name,
        model: info.model,
        thinking_level: info.thinking_level,
    })
}

impl Agent for JsAgent {
    fn create_session(
        &self,
        handle: SessionHandle,
        key: &str,
    ) -> BoxFuture<AgentResult<SessionInfo>> {
        let key = key.to_string();
        let fut = self.request("createSession", |id| {
            self.cb.create.call(FnArgs::from((id, handle, key)), MODE)
        });
        Box::pin(async move { parse_info("createSession", &fut.await?) })
    }

    fn prompt(
        &self,
        handle: SessionHandle,
        request: PromptRequest,
    ) -> BoxFuture<AgentResult<PromptOutcome>> {
        let fut = self.request("prompt", |id| {
            self.cb.prompt.call(
                FnArgs::from((
                    id,
                    handle,
                    request.text,
                    request.images_json,
                    request.source,
                    request.run_id,
                    request.kind.as_str(),
                )),
                MODE,
            )
        });
        Box::pin(async move {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Outcome {
                #[serde(default)]
                response: String,
                stop_reason: Option<String>,
                error_message: Option<String>,
                #[serde(default)]
                message_count: u32,
            }
            let text = fut.await?;
            let o: Outcome = serde_json::from_str(&text)
                .map_err(|e| format!("prompt: unexpected answer from JavaScript: {e}"))?;
            Ok(PromptOutcome {
                response: o.response,
                stop_reason: o.stop_reason,
                error_message: o.error_message,
                message_count: o.message_count,
            })
        })
    }

    fn abort(&self, handle: SessionHandle) -> BoxFuture<AgentResult<()>> {
        let fut = self.request("abort", |id| {
            self.cb.abort.call(FnArgs::from((id, handle)), MODE)
        });
        Box::pin(async move { fut.await.map(|_| ()) })
    }

    fn release(&self, handle: SessionHandle, dispose: bool) -> BoxFuture<AgentResult<()>> {
        let fut = self.request("dispose", |id| {
            self.cb
                .release
                .call(FnArgs::from((id, handle, dispose)), MODE)
        });
        Box::pin(async move { fut.await.map(|_| ()) })
    }

    fn renew(&self, handle: SessionHandle) -> BoxFuture<AgentResult<SessionInfo>> {
        let fut = self.request("newSession", |id| {
            self.cb.renew.call(FnArgs::from((id, handle)), MODE)
        });
        Box::pin(async move { parse_info("newSession", &fut.await?) })
    }

    fn deliver(
        &self,
        handle: SessionHandle,
        how: Delivery,
        request: &PromptRequest,
    ) -> BoxFuture<AgentResult<bool>> {
        let fut = self.request(how.as_str(), |id| {
            self.cb.hand_over.call(
                FnArgs::from((
                    id,
                    handle,
                    request.run_id.clone(),
                    how.as_str(),
                    request.text.clone(),
                    request.images_json.clone(),
                )),
                MODE,
            )
        });
        Box::pin(async move { Ok(fut.await? == "1") })
    }

    fn clear_pending(&self, handle: SessionHandle) -> BoxFuture<AgentResult<Pending>> {
        let fut = self.request("clearQueue", |id| {
            self.cb.clear_pending.call(FnArgs::from((id, handle)), MODE)
        });
        Box::pin(async move {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Removed {
                #[serde(default)]
                steering: Vec<String>,
                #[serde(default)]
                follow_up: Vec<String>,
            }
            let text = fut.await?;
            let removed: Removed = serde_json::from_str(&text)
                .map_err(|e| format!("clearQueue: unexpected answer from JavaScript: {e}"))?;
            let list = |v: &Vec<String>| {
                serde_json::value::to_raw_value(v).unwrap_or_else(|_| empty_list_json())
            };
            Ok(Pending {
                steering: list(&removed.steering),
                follow_up: list(&removed.follow_up),
            })
        })
    }

    fn op(
        &self,
        op: Op,
        handle: SessionHandle,
        key: &str,
        args: String,
    ) -> BoxFuture<Result<String, OpError>> {
        let key = key.to_string();
        let fut = self.request(op.as_str(), |id| {
            self.cb
                .op
                .call(FnArgs::from((id, op.as_str(), handle, key, args)), MODE)
        });
        Box::pin(async move {
            // JS answers `{value}` or `{status, error}`; a throw is a 500.
            #[derive(serde::Deserialize)]
            struct Answer {
                value: Option<Box<serde_json::value::RawValue>>,
                status: Option<u16>,
                error: Option<String>,
            }
            let internal = |message: String| OpError {
                status: 500,
                message,
            };
            let text = fut.await.map_err(internal)?;
            let answer: Answer = serde_json::from_str(&text).map_err(|e| {
                internal(format!(
                    "{}: unexpected answer from JavaScript: {e}",
                    op.as_str()
                ))
            })?;
            match (answer.value, answer.error) {
                (_, Some(message)) => Err(OpError {
                    status: answer
                        .status
                        .filter(|s| (400..=599).contains(s))
                        .unwrap_or(500),
                    message,
                }),
                (Some(value), None) => Ok(value.get().to_string()),
                (None, None) => Ok("null".to_string()),
            }
        })
    }

    /// Hands JS the line as JSON: `{level, message, sessionKey?, runId?}`.
    fn log(&self, line: &LogLine<'_>) {
        if let Ok(json) = serde_json::to_string(line) {
            let _ = self.cb.log.call(json, MODE);
        }
    }
}
