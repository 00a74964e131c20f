//! pi-gateway: an HTTP gateway for pi coding-agent sessions, as a Node-native addon.
//!
//! The agent (`AgentSession` from `@mariozechner/pi-coding-agent`) stays in JavaScript.
//! Everything around it lives here, on a tokio runtime owned by each `GatewayRuntime`:
//! the HTTP server, the session registry, the per-session FIFO queues, the SSE fan-out,
//! the Vercel AI chat-stream translation and idle eviction.
//!
//! # Layout
//!
//! The core never imports napi; it talks to the agent through the [`agent::Agent`] trait,
//! so `cargo test` drives it with a fake agent and no Node.
//!
//! - [`config`]   — `GatewayConfig` parsing and validation, every default and bound.
//! - [`agent`]    — the trait the core drives the agent through, and what crosses it.
//! - [`events`]   — agent events as they enter Rust, and their one-time JSON/SSE encoding.
//! - [`error`]    — the core's error enum, each with a stable code and HTTP status.
//! - [`session`]  — the registry (one creation per key), runs and their queues, the
//!   replayable event log and its cursors, reset, eviction and stop. The heart of the crate.
//! - [`ui_stream`] — agent events into Vercel AI SDK UI message chunks.
//! - [`http`]     — hyper server: routing, auth, bodies, SSE, chat stream, webhooks.
//! - [`cluster`]  — several gateways on one Redis: leases, log streams, run records.
//! - [`metrics`]  — `GET /metrics`: the registry the engine's hooks feed.
//! - [`binding`]  — the only napi module: the `NativeGateway` class and the JS callbacks.
//!
//! The hand-written `index.js` next to `Cargo.toml` holds the `AgentSession` objects
//! (a JS value cannot live on a tokio thread) and maps the seed's API onto `NativeGateway`.

pub mod agent;
pub mod cluster;
pub mod config;
pub mod error;
pub mod events;
pub mod history;
pub mod http;
pub mod metrics;
pub mod outbound;
pub mod session;
pub mod ui_stream;
pub mod util;
pub mod validate;

mod binding;
