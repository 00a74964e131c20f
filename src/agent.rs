//! The boundary between the core and the agent.
//!
//! The core drives sessions through [`Agent`]; the napi binding implements it with
//! threadsafe functions into JavaScript, tests implement it with a fake. Events flow the
//! other way, pushed by whoever owns the agent into [`crate::session::Gateway::push_event`].

use std::future::Future;

use crate::events::{empty_list_json, Json, ModelRef};
use std::pin::Pin;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Identifies one agent session for its whole life; never reused within a process.
pub type SessionHandle = u32;

/// What the core learns about a session when it is created or reset.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub session_id: String,
    pub message_count: u32,
    /// The session has `steer()` and `followUp()`: messages can be handed to a running prompt.
    pub steer: bool,
    /// The session has `compact()`.
    pub compact: bool,
    pub name: Option<String>,
    pub model: Option<ModelRef>,
    pub thinking_level: Option<String>,
}

/// What a run asks of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PromptKind {
    /// `prompt(text)`.
    #[default]
    Prompt,
    /// `trigger: "regenerate-message"`: the previous answer to the last user message is left
    /// (`navigateTree`, where the session has it), then `prompt(text)`.
    Regenerate,
    /// `compact(text)`: `text` holds the instructions (empty: none).
    Compact,
}

impl PromptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PromptKind::Prompt => "prompt",
            PromptKind::Regenerate => "regenerate",
            PromptKind::Compact => "compact",
        }
    }
}

/// A call into one session, or into the agent as a whole, behind a management route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The conversation: pi's message entries on the current branch, and the gateway's run
    /// markers, as `{entries: [...]}`.
    History,
    /// `getSessionStats()`.
    Stats,
    /// `setSessionName(args.name)`.
    SetName,
    /// `setModel(args)` (`{provider, id}`).
    SetModel,
    /// `setThinkingLevel(args.level)`.
    SetThinking,
    /// The models with credentials (no session: handle 0).
    Models,
    /// `options.sessionExists(key)` (no session).
    Exists,
    /// `options.deleteSession(key)` (no session).
    Purge,
    /// The session is being reset: its stored conversation is closed and a new one begun, so
    /// the key's next session does not continue it.
    Fresh,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::History => "history",
            Op::Stats => "stats",
            Op::SetName => "setName",
            Op::SetModel => "setModel",
            Op::SetThinking => "setThinking",
            Op::Models => "models",
            Op::Exists => "exists",
            Op::Purge => "purge",
            Op::Fresh => "fresh",
        }
    }

    /// Its name as metrics label the JS callback: `op:<name>`.
    pub fn callback_label(self) -> &'static str {
        match self {
            Op::History => "op:history",
            Op::Stats => "op:stats",
            Op::SetName => "op:setName",
            Op::SetModel => "op:setModel",
            Op::SetThinking => "op:setThinking",
            Op::Models => "op:models",
            Op::Exists => "op:exists",
            Op::Purge => "op:purge",
            Op::Fresh => "op:fresh",
        }
    }
}

/// How an [`Op`] failed, as the client hears it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    pub status: u16,
    pub message: String,
}

impl OpError {
    pub fn not_supported(what: &str) -> OpError {
        OpError {
            status: 501,
            message: format!("Not supported by this session: {what}"),
        }
    }
}

/// How a message is handed to a prompt in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// `session.steer()`: after the current tool calls, before the next model call.
    Steer,
    /// `session.followUp()`: when the agent would otherwise stop.
    FollowUp,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Steer => "steer",
            Delivery::FollowUp => "followUp",
        }
    }
}

/// What `clear_pending` removed from the agent's own queue: two JSON arrays of strings.
#[derive(Debug, Clone)]
pub struct Pending {
    pub steering: Json,
    pub follow_up: Json,
}

/// One queued message, as handed to `prompt`.
#[derive(Debug, Clone, Default)]
pub struct PromptRequest {
    /// The gateway run this prompt belongs to (a run may prompt more than once: messages
    /// handed to it after its prompt finished run as further prompts of the same run).
    pub run_id: String,
    pub text: String,
    /// `images` from the request, as JSON text (passed through untouched).
    pub images_json: Option<String>,
    pub source: String,
    pub kind: PromptKind,
}

/// How a `prompt` call ended, read off the session after the promise settled.
#[derive(Debug, Clone, Default)]
pub struct PromptOutcome {
    /// The last assistant message's text parts, joined.
    pub response: String,
    /// The last assistant message's `stopReason` (`stop`, `aborted`, `error`, ...).
    pub stop_reason: Option<String>,
    pub error_message: Option<String>,
    pub message_count: u32,
}

/// How much a log line matters; a gateway logs from a level up (`--log-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<LogLevel> {
        Some(match text {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => return None,
        })
    }

    pub fn from_u8(n: u8) -> LogLevel {
        match n {
            0 => LogLevel::Debug,
            1 => LogLevel::Info,
            2 => LogLevel::Warn,
            _ => LogLevel::Error,
        }
    }
}

/// One log line, with the session and run it is about where there is one.
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine<'a> {
    #[serde(serialize_with = "level_name")]
    pub level: LogLevel,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<&'a str>,
}

fn level_name<S: serde::Serializer>(level: &LogLevel, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(level.as_str())
}

impl<'a> LogLine<'a> {
    /// A line of its own: `warning: ...` is a warning, anything else information.
    pub fn plain(message: &'a str) -> LogLine<'a> {
        LogLine {
            level: if message.starts_with("warning:") {
                LogLevel::Warn
            } else {
                LogLevel::Info
            },
            message,
            session_key: None,
            run_id: None,
        }
    }
}

/// A failed call into the agent, with the callback's name in the message.
pub type AgentResult<T> = Result<T, String>;

/// The agent as the core sees it. Every method returns a future that must not block;
/// a JS throw or rejection arrives as `Err(message)`.
pub trait Agent: Send + Sync + 'static {
    /// Create (or, for the primary key, adopt) the session for `key` and start forwarding
    /// its events under `handle`.
    fn create_session(
        &self,
        handle: SessionHandle,
        key: &str,
    ) -> BoxFuture<AgentResult<SessionInfo>>;
    fn prompt(
        &self,
        handle: SessionHandle,
        request: PromptRequest,
    ) -> BoxFuture<AgentResult<PromptOutcome>>;
    fn abort(&self, handle: SessionHandle) -> BoxFuture<AgentResult<()>>;
    /// Stop forwarding events; `dispose()` the session unless it is the primary one.
    fn release(&self, handle: SessionHandle, dispose: bool) -> BoxFuture<AgentResult<()>>;
    /// Start the primary session afresh (`newSession()`, or the documented fallback).
    fn renew(&self, handle: SessionHandle) -> BoxFuture<AgentResult<SessionInfo>>;
    /// Hands `request` to the prompt of its run (`request.run_id`) if that is in flight
    /// (`steer()` or `followUp()`). `Ok(false)`: it is not (it has just finished), so the core
    /// runs the message itself, as a further prompt of that run.
    fn deliver(
        &self,
        _handle: SessionHandle,
        _how: Delivery,
        _request: &PromptRequest,
    ) -> BoxFuture<AgentResult<bool>> {
        Box::pin(async { Ok(false) })
    }
    /// Clears the agent's own pending steering and follow-up messages (`clearQueue()`).
    fn clear_pending(&self, _handle: SessionHandle) -> BoxFuture<AgentResult<Pending>> {
        Box::pin(async {
            Ok(Pending {
                steering: empty_list_json(),
                follow_up: empty_list_json(),
            })
        })
    }
    /// A management call ([`Op`]); `args` is JSON. Answers JSON.
    fn op(
        &self,
        op: Op,
        _handle: SessionHandle,
        _key: &str,
        _args: String,
    ) -> BoxFuture<Result<String, OpError>> {
        let error = match op {
            Op::Exists => return Box::pin(async { Ok("false".to_string()) }),
            _ => OpError::not_supported(op.as_str()),
        };
        Box::pin(async move { Err(error) })
    }
    fn log(&self, line: &LogLine<'_>);
}
