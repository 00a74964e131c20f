//! Approvals (SPEC section 13): a tool call held until a person decides.
//!
//! pi asks through its `beforeToolCall` hook (`index.js`), and the gateway answers from
//! `approval.policy`: `allow` and `deny` at once; `ask` by holding the call as a pending
//! [`Approval`] until a client decides (the REST route, or a chat continuation), its timeout
//! passes, or an abort denies it (abort, cancel, interrupt, reset, delete, stop, the run's end).
//!
//! Every `ask` call of one assistant message is requested together, when pi reaches the first
//! of them: a client sees them all at once and answers them in one go, which is what the AI
//! SDK's `lastAssistantMessageIsCompleteWithApprovalResponses` waits for (pi itself holds every
//! call of a message until the decisions of all of them are in).
//!
//! Pending approvals live in their session's state, under its lock, so their events are
//! logged in one order with the agent's. For a chat run (protocol 6 and 7), the last request of
//! a batch is a *pause* ([`super::Entry::pause`]): a chat stream that reads it while the batch is
//! still pending ends there, and the client's next chat POST continues the run.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::watch;

use crate::agent::SessionHandle;
use crate::config::Policy;
use crate::error::GatewayError;
use crate::events::{GatewayEvent, Json};
use crate::util::{lock, now_ms};

use super::run::Run;
use super::{append, append_entry, Gateway, Session, State};

/// Pending approvals one session may hold; tool calls past it are denied at once.
pub const MAX_PENDING_APPROVALS: usize = 64;
/// Decided approvals a session remembers (so a second decision is a `409`, not a `404`).
pub const DECIDED_KEPT: usize = 256;
/// Longest `reason` a client may give, in characters.
pub const MAX_REASON_CHARS: usize = 2000;

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecidedBy {
    Client,
    Timeout,
    Abort,
}

impl DecidedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Client => "client",
            DecidedBy::Timeout => "timeout",
            DecidedBy::Abort => "abort",
        }
    }
}

/// How an approval was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub approved: bool,
    /// The client's reason; for a timeout or an abort, the gateway's.
    pub reason: Option<String>,
    pub by: DecidedBy,
}

impl Decision {
    pub fn client(approved: bool, reason: Option<String>) -> Decision {
        Decision {
            approved,
            reason,
            by: DecidedBy::Client,
        }
    }

    fn abort(reason: &str) -> Decision {
        Decision {
            approved: false,
            reason: Some(reason.to_string()),
            by: DecidedBy::Abort,
        }
    }
}

/// What the hook answers pi: run the tool, or block it and tell the model why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub approved: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Denied by an abort: the hook aborts pi's run before it answers, so pi does not go on
    /// to its next step before the gateway's abort reaches it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub aborted: bool,
}

impl Verdict {
    fn allow() -> Verdict {
        Verdict {
            approved: true,
            reason: None,
            aborted: false,
        }
    }

    fn deny(reason: impl Into<String>) -> Verdict {
        Verdict {
            approved: false,
            reason: Some(reason.into()),
            aborted: false,
        }
    }
}

/// The model's text for a blocked call ([`Verdict::reason`]).
pub const DENIED_BY_POLICY: &str = "Denied by policy";
pub const DENIED_TOO_MANY: &str = "Denied: too many pending approvals";
pub const DENIED_ABORTED: &str = "Denied: the run was aborted";
pub const DENIED_GONE: &str = "Denied: the session is gone";
/// An approval's reason when an abort decided it.
const ABORTED_REASON: &str = "The run was aborted";
/// An approval's reason when its run ended before a decision (its call never reached pi's hook).
const ENDED_REASON: &str = "The run ended before a decision";
/// An approval's reason when its tool call ended without asking (pi refused it first).
const CALL_ENDED_REASON: &str = "The tool call ended before a decision";

/// One tool call as the hook reports it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ToolCall {
    #[serde(rename = "toolCallId")]
    pub id: String,
    #[serde(rename = "toolName")]
    pub name: String,
    #[serde(default = "crate::events::null_json")]
    pub args: Json,
}

/// A tool call waiting for (or past) a decision.
pub struct Approval {
    pub id: String,
    pub session_key: String,
    /// The run the call belongs to (none for a prompt the gateway did not start).
    pub run_id: Option<String>,
    run_no: u64,
    pub tool_call_id: String,
    pub tool_name: String,
    pub args: Json,
    pub requested_at: u64,
    pub expires_at: u64,
    /// Its batch's pause number (0: its run's chat stream does not pause for it).
    pause: u32,
    /// The run's open pause ([`Run::open_pause`]).
    open_pause: Option<Arc<AtomicU32>>,
    /// The id of its batch's last request: a continuation reads on from there.
    pause_seq: AtomicU64,
    decision: watch::Sender<Option<Decision>>,
    timer: Mutex<Option<tokio::task::AbortHandle>>,
}

/// `GET /sessions/:key/approvals`'s items.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalView<'a> {
    pub approval_id: &'a str,
    pub session_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<&'a str>,
    pub tool_call_id: &'a str,
    pub tool_name: &'a str,
    pub args: &'a RawValue,
    pub requested_at: u64,
    pub expires_at: u64,
}

/// The answer to a decision: `{ok, approvalId, approved, reason?, by}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decided {
    pub ok: bool,
    pub approval_id: String,
    pub approved: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub by: DecidedBy,
}

/// What a decision is answered with.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Decided(Decided),
    Refused(Refusal),
}

/// A refused decision: `{error}`, and for a `409` the decision that stands.
#[derive(Debug, Serialize)]
pub struct Refusal {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<DecidedBy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Approval {
    pub fn view(&self) -> ApprovalView<'_> {
        ApprovalView {
            approval_id: &self.id,
            session_key: &self.session_key,
            run_id: self.run_id.as_deref(),
            tool_call_id: &self.tool_call_id,
            tool_name: &self.tool_name,
            args: &self.args,
            requested_at: self.requested_at,
            expires_at: self.expires_at,
        }
    }

    /// Its decision, once there is one.
    pub fn decision(&self) -> Option<Decision> {
        self.decision.borrow().clone()
    }

    /// The id after which a continuation of its run's chat stream reads on.
    pub fn pause_seq(&self) -> u64 {
        self.pause_seq.load(Ordering::Acquire)
    }

    fn answer(&self, decision: &Decision) -> Decided {
        Decided {
            ok: true,
            approval_id: self.id.clone(),
            approved: decision.approved,
            reason: decision.reason.clone(),
            by: decision.by,
        }
    }
}

/// A session's approvals.
#[derive(Default)]
pub(super) struct Approvals {
    pending: Vec<Arc<Approval>>,
    /// Decided ones, oldest first, at most [`DECIDED_KEPT`].
    decided: VecDeque<Arc<Approval>>,
    /// Batches numbered so far (a pause's number).
    batches: u32,
    /// `(run, tool call)` of calls refused for want of room (at most [`DECIDED_KEPT`]): they
    /// stay refused when pi reaches them, even if room was made meanwhile.
    refused: VecDeque<(u64, String)>,
}

impl Approvals {
    fn find_call(&self, run_no: u64, call_id: &str) -> Option<&Arc<Approval>> {
        let same = |a: &&Arc<Approval>| a.run_no == run_no && a.tool_call_id == call_id;
        self.pending
            .iter()
            .find(same)
            .or_else(|| self.decided.iter().rev().find(same))
    }

    /// The ids of the decided approvals kept, oldest first (for tests).
    #[cfg(test)]
    pub(super) fn decided_ids(&self) -> Vec<String> {
        self.decided.iter().map(|a| a.id.clone()).collect()
    }

    fn find(&self, id: &str) -> Option<&Arc<Approval>> {
        self.pending
            .iter()
            .find(|a| a.id == id)
            .or_else(|| self.decided.iter().find(|a| a.id == id))
    }
}

/// `approved` and `reason` of a decision from a client; the message names the bad field.
pub fn check_decision(
    approved: Option<&serde_json::Value>,
    reason: Option<&serde_json::Value>,
) -> Result<Decision, String> {
    use serde_json::Value;
    let approved = match approved {
        Some(Value::Bool(b)) => *b,
        _ => return Err("Invalid approved: expected a boolean".into()),
    };
    let reason = match reason {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= MAX_REASON_CHARS => {
            Some(s.clone()).filter(|s| !s.trim().is_empty())
        }
        Some(_) => {
            return Err(format!(
                "Invalid reason: expected a string of at most {MAX_REASON_CHARS} characters"
            ))
        }
    };
    Ok(Decision::client(approved, reason))
}

impl Gateway {
    /// Whether any tool call can be held or blocked (`index.js` hooks sessions only then).
    pub fn approvals_active(&self) -> bool {
        self.inner.config.approval.is_active()
    }

    /// pi's hook asks whether `call` may run; `siblings` are the tool calls of the same
    /// assistant message (asked for together). Resolves with the verdict once it is known.
    pub fn approve_tool_call(
        &self,
        handle: SessionHandle,
        call: ToolCall,
        siblings: Vec<ToolCall>,
    ) -> impl Future<Output = Verdict> + Send + 'static {
        let config = &self.inner.config.approval;
        let timeout = config.timeout;
        let waiting: Result<watch::Receiver<Option<Decision>>, Verdict> =
            match config.policy_for(&call.name) {
                Policy::Allow => Err(Verdict::allow()),
                Policy::Deny => Err(Verdict::deny(DENIED_BY_POLICY)),
                Policy::Ask => match self.session_by_handle(handle) {
                    None => Err(Verdict::deny(DENIED_GONE)),
                    Some(session) => {
                        let mut st = lock(&session.state);
                        match self.approval_for(&session, &mut st, call, siblings) {
                            Some(approval) => Ok(approval.decision.subscribe()),
                            None => Err(Verdict::deny(DENIED_TOO_MANY)),
                        }
                    }
                },
            };
        async move {
            let mut rx = match waiting {
                Ok(rx) => rx,
                Err(verdict) => return verdict,
            };
            let verdict = match rx.wait_for(Option::is_some).await {
                Ok(d) => match d.as_ref() {
                    Some(d) if d.approved => Verdict::allow(),
                    Some(d) => Verdict {
                        aborted: d.by == DecidedBy::Abort,
                        ..Verdict::deny(denial_text(d, timeout))
                    },
                    None => Verdict::deny(DENIED_ABORTED),
                },
                // Dropped without a decision (its session went away).
                Err(_) => Verdict::deny(DENIED_GONE),
            };
            // (Bound first: the borrow of the channel's value ends with this statement.)
            verdict
        }
    }

    /// The approval for `call` in the session's running run: the one already requested with
    /// its batch, or a new batch of `call` and the `ask` calls among `siblings`. `None` when
    /// the session holds too many pending approvals.
    fn approval_for(
        &self,
        session: &Session,
        st: &mut State,
        call: ToolCall,
        siblings: Vec<ToolCall>,
    ) -> Option<Arc<Approval>> {
        let run = st
            .active
            .as_ref()
            .map(|a| a.run.clone())
            .filter(|r| !r.status().is_ended());
        let run_no = run.as_ref().map_or(0, |r| r.no);
        if let Some(found) = st.approvals.find_call(run_no, &call.id) {
            return Some(found.clone());
        }
        let refused = |st: &State, id: &str| {
            st.approvals
                .refused
                .iter()
                .any(|(no, call)| *no == run_no && call == id)
        };
        if refused(st, &call.id) {
            return None;
        }
        let config = &self.inner.config;
        let mut batch: Vec<ToolCall> = siblings
            .into_iter()
            .filter(|c| {
                c.id != call.id
                    && config.approval.policy_for(&c.name) == Policy::Ask
                    && st.approvals.find_call(run_no, &c.id).is_none()
                    && !refused(st, &c.id)
            })
            .collect();
        // In the message's order: the call pi reached first is the first of its batch.
        batch.insert(0, call.clone());
        let room = MAX_PENDING_APPROVALS.saturating_sub(st.approvals.pending.len());
        if batch.len() > room {
            for c in batch.drain(room..) {
                st.approvals.refused.push_back((run_no, c.id));
            }
            while st.approvals.refused.len() > DECIDED_KEPT {
                st.approvals.refused.pop_front();
            }
        }
        if batch.is_empty() {
            return None;
        }
        let chat = st
            .active
            .as_ref()
            .is_some_and(|a| a.translator.is_some() && run.is_some());
        let pause = if chat && config.chat_protocol >= 6 {
            st.approvals.batches = st.approvals.batches.wrapping_add(1).max(1);
            st.approvals.batches
        } else {
            0
        };
        let now = now_ms();
        let timeout = config.approval.timeout;
        let created: Vec<Arc<Approval>> = batch
            .into_iter()
            .map(|c| {
                Arc::new(Approval {
                    id: uuid::Uuid::now_v7().to_string(),
                    session_key: session.key.clone(),
                    run_id: run.as_ref().map(|r| r.id.clone()),
                    run_no,
                    tool_call_id: c.id,
                    tool_name: c.name,
                    args: c.args,
                    requested_at: now,
                    expires_at: now + timeout.as_millis() as u64,
                    pause,
                    open_pause: run.as_ref().map(|r| r.open_pause.clone()),
                    pause_seq: AtomicU64::new(0),
                    decision: watch::channel(None).0,
                    timer: Mutex::new(None),
                })
            })
            .collect();
        if let (Some(run), true) = (run.as_ref(), pause != 0) {
            // Before the pause is logged: a chat stream that reads it must find it open.
            run.open_pause.store(pause, Ordering::Release);
        }
        let last = created.len() - 1;
        for (i, approval) in created.iter().enumerate() {
            st.approvals.pending.push(approval.clone());
            let chat = self.approval_chunks(st, |t, protocol, out| {
                t.approval_request(protocol, approval, out)
            });
            let seq = append_entry(
                &session.log,
                run.as_deref(),
                Some(&GatewayEvent::ApprovalRequest {
                    session_key: &session.key,
                    approval_id: &approval.id,
                    tool_call_id: &approval.tool_call_id,
                    tool_name: &approval.tool_name,
                    args: &approval.args,
                    expires_at: approval.expires_at,
                }),
                chat,
                false,
                if i == last { pause } else { 0 },
            );
            self.inner
                .hooks
                .approval_requested(approval, run.as_deref());
            if i == last {
                for a in &created {
                    a.pause_seq.store(seq, Ordering::Release);
                }
            }
        }
        for approval in &created {
            let gateway = self.clone();
            let key = session.key.clone();
            let id = approval.id.clone();
            let timer = self.inner.rt.spawn(async move {
                tokio::time::sleep(timeout).await;
                let _ = gateway.decide(
                    &key,
                    &id,
                    Decision {
                        approved: false,
                        reason: Some(format!("No decision within {}", seconds(timeout))),
                        by: DecidedBy::Timeout,
                    },
                );
            });
            *lock(&approval.timer) = Some(timer.abort_handle());
        }
        created.into_iter().find(|a| a.tool_call_id == call.id)
    }

    /// The chat chunks of an approval event, when the running run has a chat stream.
    fn approval_chunks(
        &self,
        st: &mut State,
        make: impl FnOnce(&mut crate::ui_stream::Translator, u8, &mut BytesMut),
    ) -> Option<Bytes> {
        let translator = st.active.as_mut()?.translator.as_mut()?;
        let mut out = BytesMut::new();
        make(translator, self.inner.config.chat_protocol, &mut out);
        (!out.is_empty()).then(|| out.freeze())
    }

    /// The session's pending approvals, oldest first (none for a key not in memory).
    pub fn approvals(&self, key: &str) -> Vec<Arc<Approval>> {
        match self.find(key) {
            Some(session) => lock(&session.state).approvals.pending.clone(),
            None => Vec::new(),
        }
    }

    /// The approval `id` of session `key`, pending or recently decided.
    pub fn approval(&self, key: &str, id: &str) -> Option<Arc<Approval>> {
        let session = self.find(key)?;
        let st = lock(&session.state);
        st.approvals.find(id).cloned()
    }

    /// Decides approval `id` of session `key`. `404` when it is unknown, `409` when it was
    /// decided already.
    pub fn decide(&self, key: &str, id: &str, decision: Decision) -> Result<Decided, GatewayError> {
        let session = self
            .find(key)
            .ok_or_else(|| GatewayError::ApprovalNotFound(id.to_string()))?;
        let mut st = lock(&session.state);
        let Some(i) = st.approvals.pending.iter().position(|a| a.id == id) else {
            return Err(match st.approvals.find(id) {
                Some(_) => GatewayError::ApprovalDecided(id.to_string()),
                None => GatewayError::ApprovalNotFound(id.to_string()),
            });
        };
        let approval = st.approvals.pending.remove(i);
        let answer = approval.answer(&decision);
        self.resolve(&session, &mut st, approval, decision);
        Ok(answer)
    }

    /// [`Gateway::decide`] as the REST route and the JS API answer it: `200` and
    /// `{ok, approvalId, approved, reason?, by}`, or the error's status and `{error}` — for a
    /// `409`, with the decision that stands.
    pub fn decide_answer(&self, key: &str, id: &str, decision: Decision) -> (u16, Answer) {
        let e = match self.decide(key, id, decision) {
            Ok(decided) => return (200, Answer::Decided(decided)),
            Err(e) => e,
        };
        let standing = match e {
            GatewayError::ApprovalDecided(_) => self.approval(key, id).and_then(|a| a.decision()),
            _ => None,
        };
        let refusal = Refusal {
            error: e.to_string(),
            approved: standing.as_ref().map(|d| d.approved),
            by: standing.as_ref().map(|d| d.by),
            reason: standing.and_then(|d| d.reason),
        };
        (e.status(), Answer::Refused(refusal))
    }

    /// Logs `approval`'s decision and hands it to the waiting hook.
    fn resolve(
        &self,
        session: &Session,
        st: &mut State,
        approval: Arc<Approval>,
        decision: Decision,
    ) {
        if let Some(timer) = lock(&approval.timer).take() {
            timer.abort();
        }
        if approval.pause != 0
            && !st
                .approvals
                .pending
                .iter()
                .any(|a| a.run_no == approval.run_no && a.pause == approval.pause)
        {
            // The whole batch is decided: chat streams read on past its pause.
            if let Some(open) = &approval.open_pause {
                let _ =
                    open.compare_exchange(approval.pause, 0, Ordering::AcqRel, Ordering::Acquire);
            }
        }
        let run: Option<Arc<Run>> = st
            .active
            .as_ref()
            .map(|a| a.run.clone())
            .filter(|r| r.no == approval.run_no && !r.status().is_ended());
        let chat = if run.is_some() {
            self.approval_chunks(st, |t, protocol, out| {
                t.approval_resolved(protocol, &approval, &decision, out)
            })
        } else {
            None
        };
        append(
            &session.log,
            run.as_deref(),
            Some(&GatewayEvent::ApprovalResolved {
                session_key: &session.key,
                approval_id: &approval.id,
                tool_call_id: &approval.tool_call_id,
                approved: decision.approved,
                reason: decision.reason.as_deref(),
                by: decision.by.as_str(),
            }),
            chat,
            false,
        );
        self.inner.hooks.approval_resolved(&approval, &decision);
        approval.decision.send_replace(Some(decision));
        st.approvals.decided.push_back(approval);
        while st.approvals.decided.len() > DECIDED_KEPT {
            st.approvals.decided.pop_front();
        }
    }

    /// Denies every pending approval of the session (an abort, a reset, a stop, ...), so the
    /// run waiting for them goes on to its end.
    pub(super) fn deny_approvals(&self, session: &Session, st: &mut State) {
        self.deny_pending(session, st, ABORTED_REASON, |_| true);
    }

    /// Denies the pending approvals of a run that is ending (their calls never reached pi's
    /// hook, or pi stopped waiting).
    pub(super) fn deny_approvals_of(&self, session: &Session, st: &mut State, run: &Run) {
        self.deny_pending(session, st, ENDED_REASON, |a| a.run_no == run.no);
    }

    /// A tool call ended while its approval was pending: pi refused the call before asking.
    pub(super) fn tool_call_ended(&self, session: &Session, st: &mut State, call_id: &str) {
        if st.approvals.pending.is_empty() {
            return;
        }
        let run_no = st.active.as_ref().map_or(0, |a| a.run.no);
        self.deny_pending(session, st, CALL_ENDED_REASON, |a| {
            a.run_no == run_no && a.tool_call_id == call_id
        });
    }

    fn deny_pending(
        &self,
        session: &Session,
        st: &mut State,
        reason: &str,
        which: impl Fn(&Approval) -> bool,
    ) {
        let (denied, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut st.approvals.pending)
            .into_iter()
            .partition(|a| which(a));
        st.approvals.pending = kept;
        for approval in denied {
            self.resolve(session, st, approval, Decision::abort(reason));
        }
    }

    /// Denies the pending approvals of the session with `handle` (pi's own abort signal).
    pub fn abort_approvals(&self, handle: SessionHandle) {
        if let Some(session) = self.session_by_handle(handle) {
            let mut st = lock(&session.state);
            self.deny_approvals(&session, &mut st);
        }
    }
}

/// What the model is told when a decision blocks its call.
fn denial_text(decision: &Decision, timeout: std::time::Duration) -> String {
    match decision.by {
        DecidedBy::Client => match decision.reason.as_deref() {
            Some(reason) => format!("Denied by the user: {reason}"),
            None => "Denied by the user".to_string(),
        },
        DecidedBy::Timeout => format!("Denied: no decision within {}", seconds(timeout)),
        DecidedBy::Abort => DENIED_ABORTED.to_string(),
    }
}

/// `120 s`, `0.3 s`.
fn seconds(d: std::time::Duration) -> String {
    format!("{} s", d.as_millis() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_decision_names_its_bad_field() {
        assert_eq!(
            check_decision(Some(&json!(true)), None),
            Ok(Decision::client(true, None))
        );
        assert_eq!(
            check_decision(Some(&json!(false)), Some(&json!("no"))),
            Ok(Decision::client(false, Some("no".into())))
        );
        assert!(check_decision(None, None)
            .unwrap_err()
            .starts_with("Invalid approved"));
        assert!(check_decision(Some(&json!("yes")), None)
            .unwrap_err()
            .starts_with("Invalid approved"));
        assert!(check_decision(Some(&json!(true)), Some(&json!(5)))
            .unwrap_err()
            .starts_with("Invalid reason"));
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        assert!(check_decision(Some(&json!(true)), Some(&json!(long)))
            .unwrap_err()
            .starts_with("Invalid reason"));
    }

    #[test]
    fn denials_tell_the_model_why() {
        let t = std::time::Duration::from_millis(120_000);
        assert_eq!(
            denial_text(&Decision::client(false, Some("not now".into())), t),
            "Denied by the user: not now"
        );
        assert_eq!(
            denial_text(&Decision::client(false, None), t),
            "Denied by the user"
        );
        assert_eq!(
            denial_text(
                &Decision {
                    approved: false,
                    reason: None,
                    by: DecidedBy::Timeout
                },
                std::time::Duration::from_millis(300)
            ),
            "Denied: no decision within 0.3 s"
        );
        assert_eq!(seconds(t), "120 s");
    }
}
