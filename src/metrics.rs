//! `GET /metrics` (SPEC section 14): the gateway's counters, gauges and histograms in a
//! `prometheus-client` registry, fed through the [`Hooks`] seam.
//!
//! prometheus-client writes OpenMetrics text. Prometheus asks for that (its `Accept` names
//! `application/openmetrics-text`) and gets it as written; every other client (curl,
//! `promtool check metrics`, older scrapers) gets the classic text format 0.0.4, which differs
//! from it only in a counter's `HELP`/`TYPE` naming the `_total` sample and in having no
//! `# UNIT` and `# EOF` lines ([`to_classic_text`]).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::{text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::events::{GatewayEvent, EVENT_TYPES};
use crate::session::approval::{Approval, DecidedBy, Decision};
use crate::session::{End, Hooks, Run};

/// The media type of the classic text format.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The media type of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallbackLabel {
    callback: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latencies: 0.5 ms to about 16 s.
fn http_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}

/// Run durations: 50 ms to 30 min.
fn run_histogram() -> Histogram {
    Histogram::new([
        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    ])
}

/// JS callback times: 0.1 ms to about 13 min (a `prompt` lasts as long as its run).
fn callback_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 4.0, 13,
    ))
}

/// What the gateway measures. Counters and histograms move through [`Hooks`]; the gauges of
/// sessions and queued messages are read from the gateway when scraped ([`Metrics::encode`]).
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<RouteLabel>,
    sessions: Gauge,
    sessions_created: Counter,
    sessions_evicted: Counter,
    runs: Family<OutcomeLabel, Counter>,
    run_duration: HistogramFamily<OutcomeLabel>,
    queue_depth: Gauge,
    subscribers: Gauge,
    slow_readers_cut: Counter,
    /// One counter per [`EVENT_TYPES`] entry, by index (tokens are the hot path).
    events_by_type: Vec<Counter>,
    tokens: Family<KindLabel, Counter>,
    cost: Counter<f64, AtomicU64>,
    approvals: Family<OutcomeLabel, Counter>,
    webhook_deliveries: Family<OutcomeLabel, Counter>,
    js_callbacks: HistogramFamily<CallbackLabel>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("pi_gateway");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<RouteLabel> =
            Family::new_with_constructor(http_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its response head, by route template",
            Unit::Seconds,
            http_duration.clone(),
        );
        let sessions = Gauge::default();
        registry.register("sessions", "Sessions in memory", sessions.clone());
        let sessions_created = Counter::default();
        registry.register(
            "sessions_created",
            "Sessions created (the primary one included)",
            sessions_created.clone(),
        );
        let sessions_evicted = Counter::default();
        registry.register(
            "sessions_evicted",
            "Sessions evicted: idle, or the least recently active idle one at session.maxSessions",
            sessions_evicted.clone(),
        );
        let runs = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "runs",
            "Runs ended, by outcome (succeeded, failed, aborted, cancelled)",
            runs.clone(),
        );
        let run_duration: HistogramFamily<OutcomeLabel> =
            Family::new_with_constructor(run_histogram);
        registry.register_with_unit(
            "run_duration",
            "Time from a run's start to its end, by outcome (runs that never started are not timed)",
            Unit::Seconds,
            run_duration.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Messages waiting in session queues, all sessions together",
            queue_depth.clone(),
        );
        let subscribers = Gauge::default();
        registry.register(
            "sse_subscribers",
            "Event-stream subscribers: /events clients and in-process listeners",
            subscribers.clone(),
        );
        let slow_readers_cut = Counter::default();
        registry.register(
            "sse_slow_readers_cut",
            "Subscribers cut off because they fell too far behind",
            slow_readers_cut.clone(),
        );
        let events = Family::<TypeLabel, Counter>::default();
        registry.register("events", "Events logged, by type", events.clone());
        // `hello` is written to each reader, never logged.
        let events_by_type = EVENT_TYPES
            .iter()
            .map(|&t| {
                if t == "hello" {
                    Counter::default()
                } else {
                    events.get_or_create(&TypeLabel { r#type: t }).clone()
                }
            })
            .collect();
        let tokens = Family::<KindLabel, Counter>::default();
        registry.register(
            "tokens",
            "Tokens of completed assistant messages, by kind (input, output, cache_read, cache_write)",
            tokens.clone(),
        );
        let cost = Counter::<f64, AtomicU64>::default();
        registry.register(
            "cost_usd",
            "Cost of completed assistant messages as the model reports it, in US dollars",
            cost.clone(),
        );
        let approvals = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "approvals",
            "Approvals decided, by outcome (approved, denied, timeout, aborted)",
            approvals.clone(),
        );
        let webhook_deliveries = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Outbound webhook attempts and deliveries, by outcome",
            webhook_deliveries.clone(),
        );
        let js_callbacks: HistogramFamily<CallbackLabel> =
            Family::new_with_constructor(callback_histogram);
        registry.register_with_unit(
            "js_callback_duration",
            "Time from a call into JavaScript to its answer, by callback",
            Unit::Seconds,
            js_callbacks.clone(),
        );
        // Known outcomes start at 0, so a rate over them is defined from the first scrape.
        for outcome in ["succeeded", "failed", "aborted", "cancelled"] {
            let _ = runs.get_or_create(&OutcomeLabel { outcome });
        }
        for outcome in ["approved", "denied", "timeout", "aborted"] {
            let _ = approvals.get_or_create(&OutcomeLabel { outcome });
        }
        for outcome in ["delivered", "retrying", "given_up", "dropped", "refused"] {
            let _ = webhook_deliveries.get_or_create(&OutcomeLabel { outcome });
        }
        for kind in ["input", "output", "cache_read", "cache_write"] {
            let _ = tokens.get_or_create(&KindLabel { kind });
        }
        Metrics {
            registry,
            http_requests,
            http_duration,
            sessions,
            sessions_created,
            sessions_evicted,
            runs,
            run_duration,
            queue_depth,
            subscribers,
            slow_readers_cut,
            events_by_type,
            tokens,
            cost,
            approvals,
            webhook_deliveries,
            js_callbacks,
        }
    }

    /// Sets the scraped gauges and encodes everything: OpenMetrics text when `openmetrics`,
    /// else the classic text format.
    pub fn encode(&self, sessions: usize, queued: u64, openmetrics: bool) -> String {
        self.sessions.set(sessions as i64);
        self.queue_depth.set(queued as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = text::encode(&mut out, &self.registry);
        if openmetrics {
            out
        } else {
            to_classic_text(&out)
        }
    }

    /// An outbound webhook delivery moved (`outcome`: delivered, retrying, given_up, …).
    pub fn webhook_delivery(&self, outcome: &'static str) {
        self.webhook_deliveries
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    fn usage(&self, usage: &str) {
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Cost {
            total: f64,
        }
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Usage {
            input: u64,
            output: u64,
            cache_read: u64,
            cache_write: u64,
            cost: Option<Cost>,
        }
        let Ok(usage) = serde_json::from_str::<Usage>(usage) else {
            return;
        };
        for (kind, n) in [
            ("input", usage.input),
            ("output", usage.output),
            ("cache_read", usage.cache_read),
            ("cache_write", usage.cache_write),
        ] {
            if n > 0 {
                self.tokens.get_or_create(&KindLabel { kind }).inc_by(n);
            }
        }
        if let Some(total) = usage.cost.map(|c| c.total) {
            if total.is_finite() && total > 0.0 {
                self.cost.inc_by(total);
            }
        }
    }
}

impl Hooks for Metrics {
    fn run_ended(&self, run: &Run) {
        let outcome = run.status().as_str();
        self.runs.get_or_create(&OutcomeLabel { outcome }).inc();
        if let (Some(start), Some(end)) = run.times() {
            self.run_duration
                .get_or_create(&OutcomeLabel { outcome })
                .observe(end.saturating_sub(start) as f64 / 1000.0);
        }
    }

    fn session_created(&self, _key: &str) {
        self.sessions_created.inc();
    }

    fn session_evicted(&self, _key: &str) {
        self.sessions_evicted.inc();
    }

    fn subscriber_added(&self, _key: &str) {
        self.subscribers.inc();
    }

    fn subscriber_dropped(&self, _key: &str, reason: Option<End>) {
        self.subscribers.dec();
        if reason == Some(End::Behind) {
            self.slow_readers_cut.inc();
        }
    }

    fn event_logged(&self, _key: &str, event: &GatewayEvent<'_>) {
        if let Some(counter) = self.events_by_type.get(event.type_index()) {
            counter.inc();
        }
        if let GatewayEvent::MessageComplete { usage, .. } = event {
            self.usage(usage.get());
        }
    }

    fn approval_resolved(&self, _approval: &Approval, decision: &Decision) {
        let outcome = match (decision.by, decision.approved) {
            (DecidedBy::Client, true) => "approved",
            (DecidedBy::Client, false) => "denied",
            (DecidedBy::Timeout, _) => "timeout",
            (DecidedBy::Abort, _) => "aborted",
        };
        self.approvals
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    fn agent_call(&self, callback: &'static str, elapsed: Duration) {
        self.js_callbacks
            .get_or_create(&CallbackLabel { callback })
            .observe(elapsed.as_secs_f64());
    }

    fn http_request(&self, route: &'static str, method: &'static str, status: u16, t: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route,
                method,
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabel { route })
            .observe(t.as_secs_f64());
    }
}

/// OpenMetrics text as the classic text format 0.0.4: a counter's `HELP` and `TYPE` name its
/// `_total` sample, and the `# UNIT` and `# EOF` lines go (the classic parser has neither).
pub fn to_classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            // Held until its TYPE says whether the name needs `_total`.
            if let Some(previous) = help.replace(line) {
                out.push_str(previous);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" && !name.ends_with("_total") {
                "_total"
            } else {
                ""
            };
            if let Some(h) = help.take() {
                match h["# HELP ".len()..].split_once(' ') {
                    Some((help_name, text)) if help_name == name => {
                        out.push_str(&format!("# HELP {name}{suffix} {text}\n"));
                    }
                    _ => {
                        out.push_str(h);
                        out.push('\n');
                    }
                }
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        if let Some(h) = help.take() {
            out.push_str(h);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(h) = help {
        out.push_str(h);
        out.push('\n');
    }
    out
}

/// Whether an `Accept` header asks for OpenMetrics text.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let mut params = part.split(';');
            let media = params.next().unwrap_or("").trim();
            let refused = params.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counters_by_their_samples_and_drops_openmetrics_only_lines() {
        let m = Metrics::new();
        m.sessions_created.inc();
        m.http_request("/health", "GET", 200, Duration::from_millis(2));
        let om = m.encode(1, 0, true);
        assert!(om.contains("# TYPE pi_gateway_sessions_created counter\n"));
        assert!(om.ends_with("# EOF\n"));
        let classic = m.encode(1, 0, false);
        assert!(classic.contains(
            "# HELP pi_gateway_sessions_created_total Sessions created (the primary one included).\n# TYPE pi_gateway_sessions_created_total counter\npi_gateway_sessions_created_total 1\n"
        ));
        assert!(classic.contains("# TYPE pi_gateway_sessions gauge\npi_gateway_sessions 1\n"));
        assert!(classic.contains(
            "pi_gateway_http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"} 1\n"
        ));
        assert!(classic.contains("# TYPE pi_gateway_http_request_duration_seconds histogram\n"));
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
        // Every HELP is followed by the TYPE of the same name.
        let lines: Vec<&str> = classic.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or("");
                assert!(
                    lines[i + 1].starts_with(&format!("# TYPE {name} ")),
                    "{line} / {}",
                    lines[i + 1]
                );
            }
        }
    }

    #[test]
    fn usage_counts_tokens_by_kind_and_cost() {
        let m = Metrics::new();
        m.usage(r#"{"input":10,"output":5,"cacheRead":2,"cacheWrite":0,"totalTokens":17,"cost":{"total":0.25}}"#);
        m.usage("null");
        m.usage(r#"{"input":"x"}"#);
        let text = m.encode(0, 0, false);
        assert!(
            text.contains("pi_gateway_tokens_total{kind=\"input\"} 10\n"),
            "{text}"
        );
        assert!(text.contains("pi_gateway_tokens_total{kind=\"output\"} 5\n"));
        assert!(text.contains("pi_gateway_tokens_total{kind=\"cache_read\"} 2\n"));
        assert!(text.contains("pi_gateway_tokens_total{kind=\"cache_write\"} 0\n"));
        assert!(text.contains("pi_gateway_cost_usd_total 0.25\n"));
    }

    #[test]
    fn openmetrics_is_served_only_when_asked_for() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
    }
}
