//! The boundary between the core and the agent.
//!
//! The core drives sessions through [`Agent`]; the napi binding implements it with
//! threadsafe functions into JavaScript, tests implement it with a fake. Events flow the
//! other way, pushed by whoever owns the agent into [`crate::session::Gateway::push_event`].

use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Identifies one agent session for its whole life; never reused within a process.
pub type SessionHandle = u32;

/// What the core learns about a session when it is created or reset.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub session_id: String,
    pub message_count: u32,
}

/// One queued message, as handed to `prompt`.
#[derive(Debug, Clone, Default)]
pub struct PromptRequest {
    pub text: String,
    /// `images` from the request, as JSON text (passed through untouched).
    pub images_json: Option<String>,
    pub source: String,
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
    fn log(&self, message: &str);
}
