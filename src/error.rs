//! The core's errors: each has a stable machine-readable code and the HTTP status it maps to,
//! so callers decide by variant instead of by matching message text.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// A request field is wrong; the message names the field.
    Invalid(String),
    SessionNotFound(String),
    RunNotFound(String),
    /// The run has already ended, with this status.
    RunEnded(&'static str),
    /// The session's queue is at `maxQueuePerSession`.
    QueueFull(usize),
    /// An `Idempotency-Key` came back with a different request.
    IdempotencyConflict,
    /// The agent (JS) failed a call: creating, renewing or releasing a session.
    Agent(String),
    /// The gateway is stopping or stopped.
    Stopped,
    /// `mode: "reject"` while the session is busy; the run it is busy with.
    SessionBusy(String),
    /// `session.maxSessions` sessions exist and none is idle.
    TooManySessions,
    /// The primary session cannot be deleted.
    PrimaryDelete,
    /// A management call failed with this status (404 unknown model, 501 no such method, ...).
    Op(u16, String),
    /// No pending or recently decided approval has this id.
    ApprovalNotFound(String),
    /// The approval was decided already.
    ApprovalDecided(String),
    /// The cluster cannot place the session now (Redis unreachable, a lease in flux).
    Unavailable(String),
}

impl From<crate::agent::OpError> for GatewayError {
    fn from(e: crate::agent::OpError) -> Self {
        GatewayError::Op(e.status, e.message)
    }
}

impl GatewayError {
    /// A stable code for programs (`"queue_full"`, `"run_not_found"`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::Invalid(_) => "invalid_request",
            GatewayError::SessionNotFound(_) => "session_not_found",
            GatewayError::RunNotFound(_) => "run_not_found",
            GatewayError::RunEnded(_) => "run_ended",
            GatewayError::QueueFull(_) => "queue_full",
            GatewayError::IdempotencyConflict => "idempotency_conflict",
            GatewayError::Agent(_) => "agent_error",
            GatewayError::Stopped => "stopped",
            GatewayError::SessionBusy(_) => "session_busy",
            GatewayError::Unavailable(_) => "unavailable",
            GatewayError::TooManySessions => "too_many_sessions",
            GatewayError::PrimaryDelete => "primary_session",
            GatewayError::ApprovalNotFound(_) => "approval_not_found",
            GatewayError::ApprovalDecided(_) => "approval_decided",
            GatewayError::Op(400, _) => "invalid_request",
            GatewayError::Op(404, _) => "not_found",
            GatewayError::Op(501, _) => "not_supported",
            GatewayError::Op(..) => "agent_error",
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::Invalid(_) => 400,
            GatewayError::SessionNotFound(_)
            | GatewayError::RunNotFound(_)
            | GatewayError::ApprovalNotFound(_) => 404,
            GatewayError::ApprovalDecided(_)
            | GatewayError::RunEnded(_)
            | GatewayError::SessionBusy(_)
            | GatewayError::PrimaryDelete => 409,
            GatewayError::TooManySessions => 503,
            GatewayError::Op(status, _) => *status,
            GatewayError::QueueFull(_) => 429,
            GatewayError::IdempotencyConflict => 422,
            GatewayError::Agent(_) => 500,
            GatewayError::Stopped | GatewayError::Unavailable(_) => 503,
        }
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayError::Invalid(message)
            | GatewayError::Agent(message)
            | GatewayError::Unavailable(message) => f.write_str(message),
            GatewayError::SessionNotFound(key) => write!(f, "Session not found: {key}"),
            GatewayError::RunNotFound(id) => write!(f, "Run not found: {id}"),
            GatewayError::RunEnded(status) => write!(f, "Run already ended ({status})"),
            GatewayError::QueueFull(max) => write!(f, "Queue full ({max} pending)."),
            GatewayError::IdempotencyConflict => {
                f.write_str("Idempotency-Key reused with a different request")
            }
            GatewayError::Stopped => f.write_str("Gateway stopped"),
            GatewayError::SessionBusy(_) => f.write_str("Session busy"),
            GatewayError::TooManySessions => f.write_str("Too many sessions"),
            GatewayError::PrimaryDelete => f.write_str("The primary session cannot be deleted"),
            GatewayError::Op(_, message) => f.write_str(message),
            GatewayError::ApprovalNotFound(id) => write!(f, "Approval not found: {id}"),
            GatewayError::ApprovalDecided(id) => write!(f, "Approval already decided: {id}"),
        }
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_are_stable() {
        let cases = [
            (
                GatewayError::Invalid("Invalid x".into()),
                "invalid_request",
                400,
            ),
            (GatewayError::RunNotFound("r".into()), "run_not_found", 404),
            (GatewayError::RunEnded("succeeded"), "run_ended", 409),
            (GatewayError::QueueFull(3), "queue_full", 429),
            (GatewayError::SessionBusy("r".into()), "session_busy", 409),
            (
                GatewayError::IdempotencyConflict,
                "idempotency_conflict",
                422,
            ),
        ];
        for (e, code, status) in cases {
            assert_eq!((e.code(), e.status()), (code, status), "{e}");
        }
        assert_eq!(
            GatewayError::QueueFull(3).to_string(),
            "Queue full (3 pending)."
        );
    }
}
