//! Outbound webhooks (SPEC section 14), per the Standard Webhooks spec: run and approval events
//! POSTed, signed, to the configured targets and to a run's own callback, retried on a schedule,
//! bounded in number, cancelled at stop.
//!
//! # Layout
//!
//! - [`config`] — the `webhooks` config object, its defaults and bounds.
//! - `sign`     — the signature, message ids, the body's timestamp.
//! - `ssrf`     — where a per-request callback may go, checked at request time and at send time.
//! - `client`   — the hyper-util clients over rustls, one attempt at a time.
//! - this file  — [`Outbound`], the handle the gateway emits through, and the delivery tasks.
//!
//! # Deliveries
//!
//! [`Outbound::emit`] never waits: each delivery (one event to one receiver) takes a slot out of
//! `maxPending` and becomes a task. The slot is held while the delivery is queued, in flight or
//! waiting to retry, and given back when its task ends in any way (a guard's `Drop`); with no
//! slot free the delivery is dropped and said so. At most [`MAX_CONCURRENT_SENDS`] attempts are
//! in flight at once; the others wait for a permit before their clock starts. An attempt that
//! fails (non-2xx, no answer within `timeoutMs`, no connection) is retried after the next delay
//! of `retryScheduleMs`, with the same `webhook-id` and a fresh timestamp and signature; after
//! the last, the delivery is given up. [`Outbound::shutdown`] cancels one token every task
//! selects on, so in-flight attempts and waiting retries end at once, and returns.

pub mod config;

mod client;
mod sign;
mod ssrf;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::util::now_ms;
use client::{Clients, SendError, Signed};
use config::{OutboundConfig, SigningKey, WebhookUrl};
use ssrf::CheckError;

pub use sign::signature;
pub use ssrf::is_public;

/// Attempts in flight at once, over all receivers.
pub const MAX_CONCURRENT_SENDS: usize = 16;

/// What became of a delivery (or of one attempt, for `Retrying`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// An attempt failed; another follows after the schedule's delay.
    Retrying,
    /// The last attempt failed.
    GivenUp,
    /// Not queued: `maxPending` deliveries were already held, or the gateway was stopping.
    Dropped,
    /// A callback whose host or addresses no longer pass the SSRF check at send time.
    Refused,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retrying => "retrying",
            DeliveryOutcome::GivenUp => "given_up",
            DeliveryOutcome::Dropped => "dropped",
            DeliveryOutcome::Refused => "refused",
        }
    }
}

/// Hears what happens to deliveries (metrics, logs). Called from delivery tasks: keep it quick.
pub trait DeliveryObserver: Send + Sync + 'static {
    fn delivery(&self, _outcome: DeliveryOutcome) {}
    /// A delivery given up, dropped or refused (one line naming the url, event and
    /// webhook-id), a TLS setup problem, or a stop that cancelled deliveries.
    fn warn(&self, _message: &str) {}
}

/// A per-request callback that passed [`Outbound::check_callback`].
#[derive(Clone)]
pub struct Callback {
    url: Arc<WebhookUrl>,
}

impl Callback {
    /// The URL as the client gave it.
    pub fn url(&self) -> &str {
        &self.url.text
    }
}

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The query may carry a token: leave it out.
        f.debug_struct("Callback")
            .field("url", &self.url.redacted())
            .finish()
    }
}

/// The outbound webhook sender: a cheap handle, shared by clones.
#[derive(Clone)]
pub struct Outbound {
    shared: Arc<Shared>,
}

struct Shared {
    config: OutboundConfig,
    observer: Arc<dyn DeliveryObserver>,
    rt: Handle,
    /// None when nothing can be sent (no targets, no callbacks): no TLS setup then.
    clients: Option<Clients>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// Deliveries held: queued, in flight or waiting to retry.
    pending: AtomicUsize,
    sends: Semaphore,
}

/// Where one delivery goes.
enum Receiver {
    Target(Arc<WebhookUrl>),
    Callback(Arc<WebhookUrl>),
}

impl Receiver {
    fn url(&self) -> &WebhookUrl {
        match self {
            Receiver::Target(url) | Receiver::Callback(url) => url,
        }
    }
}

/// One event to one receiver, across all its attempts.
struct Delivery {
    id: String,
    event: Arc<str>,
    receiver: Receiver,
    key: SigningKey,
    body: Bytes,
}

impl Delivery {
    /// The start of every warn line about it.
    fn describe(&self) -> String {
        format!(
            "{} to {} (webhook-id {})",
            self.event,
            self.receiver.url().redacted(),
            self.id
        )
    }
}

/// How one attempt ended, short of success.
enum AttemptError {
    Failed(String),
    Refused(String),
}

impl Outbound {
    /// Builds the sender; delivery tasks run on `rt`. With targets or callbacks configured,
    /// the HTTPS client is set up here (reading the system's root certificates once).
    pub fn new(
        config: OutboundConfig,
        rt: &Handle,
        observer: Arc<dyn DeliveryObserver>,
    ) -> Outbound {
        let clients = config
            .is_active()
            .then(|| Clients::new(config.timeout, &|m: &str| observer.warn(m)));
        Outbound {
            shared: Arc::new(Shared {
                config,
                observer,
                rt: rt.clone(),
                clients,
                tracker: TaskTracker::new(),
                cancel: CancellationToken::new(),
                pending: AtomicUsize::new(0),
                sends: Semaphore::new(MAX_CONCURRENT_SENDS),
            }),
        }
    }

    /// Whether per-request callbacks are accepted (`webhooks.callbackSecret` is set).
    pub fn accepts_callbacks(&self) -> bool {
        self.shared.config.callback_key.is_some()
    }

    /// Queues `event` with `data` for every configured target subscribed to it, and for
    /// `callback` (a callback gets every event of its run, whatever `events` says). Never
    /// blocks, never waits. Body: `{"type": event, "timestamp": RFC 3339 UTC with ms, "data": data}`.
    pub fn emit(&self, event: &str, data: Value, callback: Option<&Callback>) {
        let shared = &self.shared;
        let mut receivers: Vec<(Receiver, SigningKey)> = shared
            .config
            .targets
            .iter()
            .filter(|t| t.wants(event))
            .map(|t| (Receiver::Target(t.url.clone()), t.key.clone()))
            .collect();
        if let (Some(callback), Some(key)) = (callback, &shared.config.callback_key) {
            receivers.push((Receiver::Callback(callback.url.clone()), key.clone()));
        }
        if receivers.is_empty() {
            return;
        }
        /// The body, its fields in the order Standard Webhooks shows them.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            r#type: &'a str,
            timestamp: String,
            data: Value,
        }
        let body = Body {
            r#type: event,
            timestamp: sign::rfc3339_ms(now_ms()),
            data,
        };
        // A `Value` always serializes; should that ever change, nothing is sent.
        let body = match serde_json::to_vec(&body) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                shared
                    .observer
                    .warn(&format!("outbound webhook {event} not sent: {e}"));
                return;
            }
        };
        let event: Arc<str> = Arc::from(event);
        for (receiver, key) in receivers {
            let delivery = Delivery {
                id: sign::message_id(),
                event: event.clone(),
                receiver,
                key,
                body: body.clone(),
            };
            shared.queue(delivery);
        }
    }

    /// Checks a per-request callback URL at request time. `Err` is the whole 400 message and
    /// names the field: `"Invalid callback.url: …"`.
    pub async fn check_callback(&self, url: &str) -> Result<Callback, String> {
        let invalid = |why: &str| format!("Invalid callback.url: {why}");
        if !self.accepts_callbacks() {
            return Err(invalid(
                "callbacks are not enabled on this gateway (webhooks.callbackSecret is not set)",
            ));
        }
        let url = WebhookUrl::parse(url).map_err(|why| invalid(&why))?;
        let dns_timeout = ssrf::DNS_TIMEOUT.min(self.shared.config.timeout);
        ssrf::resolve_checked(&self.shared.config.allowed_hosts, &url, dns_timeout)
            .await
            .map_err(|e| invalid(e.message()))?;
        Ok(Callback { url: Arc::new(url) })
    }

    /// Deliveries held now (queued, in flight, waiting to retry).
    pub fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::SeqCst)
    }

    /// Waits until no delivery is pending, at most `limit` (polling every 5 ms); whether none
    /// is. For a grace period at stop, before [`Outbound::shutdown`], and for tests.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.pending() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Stops: cancels every pending delivery and retry (one warn line with the count), returns
    /// at once. Later `emit`s are dropped.
    pub fn shutdown(&self) {
        let shared = &self.shared;
        if shared.cancel.is_cancelled() {
            return;
        }
        // Counted before the cancel: cancelled tasks give their slots back at once.
        let pending = self.pending();
        shared.cancel.cancel();
        shared.tracker.close();
        if pending > 0 {
            shared.observer.warn(&format!(
                "outbound webhooks stopped: {pending} pending deliveries cancelled"
            ));
        }
    }
}

/// Gives a delivery's `maxPending` slot back when its task ends, however it ends.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    fn queue(self: &Arc<Self>, delivery: Delivery) {
        if self.cancel.is_cancelled() {
            self.drop_delivery(&delivery, "the gateway is stopping");
            return;
        }
        let max = self.config.max_pending;
        let reserved = self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !reserved {
            self.drop_delivery(
                &delivery,
                &format!("{max} deliveries are already pending (webhooks.maxPending)"),
            );
            return;
        }
        let slot = Slot(self.clone());
        let shared = self.clone();
        let cancel = self.cancel.clone();
        self.tracker.spawn_on(
            async move {
                let _slot = slot;
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => {}
                    _ = shared.deliver(delivery) => {}
                }
            },
            &self.rt,
        );
    }

    fn drop_delivery(&self, delivery: &Delivery, why: &str) {
        self.observer.delivery(DeliveryOutcome::Dropped);
        self.observer.warn(&format!(
            "outbound webhook dropped: {}: {why}",
            delivery.describe()
        ));
    }

    /// Every attempt of one delivery, until it is delivered, refused or given up.
    async fn deliver(&self, delivery: Delivery) {
        let schedule = &self.config.retry_schedule;
        let mut attempt = 0;
        loop {
            let result = {
                let Ok(_permit) = self.sends.acquire().await else {
                    return; // the semaphore is never closed
                };
                match tokio::time::timeout(self.config.timeout, self.attempt(&delivery)).await {
                    Ok(result) => result,
                    Err(_) => Err(AttemptError::Failed(format!(
                        "no answer within {} ms",
                        self.config.timeout.as_millis()
                    ))),
                }
            };
            let why = match result {
                Ok(()) => {
                    self.observer.delivery(DeliveryOutcome::Delivered);
                    return;
                }
                Err(AttemptError::Refused(why)) => {
                    self.observer.delivery(DeliveryOutcome::Refused);
                    self.observer.warn(&format!(
                        "outbound webhook refused: {}: {why}",
                        delivery.describe()
                    ));
                    return;
                }
                Err(AttemptError::Failed(why)) => why,
            };
            match schedule.get(attempt) {
                Some(delay) => {
                    self.observer.delivery(DeliveryOutcome::Retrying);
                    tokio::time::sleep(*delay).await;
                    attempt += 1;
                }
                None => {
                    self.observer.delivery(DeliveryOutcome::GivenUp);
                    let attempts = attempt + 1;
                    let plural = if attempts == 1 { "" } else { "s" };
                    self.observer.warn(&format!(
                        "outbound webhook given up: {} after {attempts} attempt{plural}: {why}",
                        delivery.describe(),
                    ));
                    return;
                }
            }
        }
    }

    /// One attempt: a fresh timestamp and signature; for a callback, a fresh SSRF check and a
    /// connection only to an address that passed it (each in turn, while they refuse).
    async fn attempt(&self, delivery: &Delivery) -> Result<(), AttemptError> {
        let Some(clients) = &self.clients else {
            return Err(AttemptError::Failed("no client".into()));
        };
        let timestamp = now_ms() / 1000;
        let signature = sign::signature(
            delivery.key.as_bytes(),
            &delivery.id,
            timestamp,
            &delivery.body,
        );
        let signed = Signed {
            id: &delivery.id,
            timestamp,
            signature: &signature,
        };
        match &delivery.receiver {
            Receiver::Target(url) => clients
                .send_target(url, delivery.body.clone(), &signed)
                .await
                .map_err(|e| AttemptError::Failed(e.into_message())),
            Receiver::Callback(url) => {
                let dns_timeout = ssrf::DNS_TIMEOUT.min(self.config.timeout);
                let addrs = ssrf::resolve_checked(&self.config.allowed_hosts, url, dns_timeout)
                    .await
                    .map_err(|e| match e {
                        CheckError::Refused(why) => AttemptError::Refused(why),
                        CheckError::Unresolved(why) => AttemptError::Failed(why),
                    })?;
                let mut last = String::new();
                for addr in addrs {
                    match clients
                        .send_callback(url, addr, delivery.body.clone(), &signed)
                        .await
                    {
                        Ok(()) => return Ok(()),
                        Err(SendError::Connect(why)) => last = format!("{addr}: {why}"),
                        Err(SendError::Failed(why)) => return Err(AttemptError::Failed(why)),
                    }
                }
                Err(AttemptError::Failed(last))
            }
        }
    }
}

#[cfg(test)]
mod tests;
