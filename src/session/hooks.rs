//! The observer seam: what the engine tells whoever watches it (metrics, outbound webhooks,
//! tests). Every method has an empty default; calls are made outside the engine's locks where
//! it matters little and inside them never for long, so an observer must be quick and must
//! not call back into the gateway.

use super::log::End;
use super::run::Run;

pub trait Hooks: Send + Sync + 'static {
    /// A run left the queue and its prompt is about to be sent to the agent.
    fn run_started(&self, _run: &Run) {}
    /// A run reached its terminal status (its result is set).
    fn run_ended(&self, _run: &Run) {}
    /// A session was created (or the primary adopted) for `key`.
    fn session_created(&self, _key: &str) {}
    /// An idle session was evicted.
    fn session_evicted(&self, _key: &str) {}
    /// A subscriber of `key` went away: its client left (`None`), it fell behind, or the
    /// session ended.
    fn subscriber_dropped(&self, _key: &str, _reason: Option<End>) {}
}

/// Watches nothing.
pub struct NoHooks;

impl Hooks for NoHooks {}
