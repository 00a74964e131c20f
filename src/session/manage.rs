//! Managing sessions: loading stored ones, the history, calls behind the management routes
//! (stats, name, model, thinking level, models) and deleting a session.

use std::sync::Arc;

use serde_json::Value;

use crate::agent::Op;
use crate::error::GatewayError;
use crate::history::{self, Entry, Format, Page};
use crate::util::lock;

use super::lifecycle::Retire;
use super::{Gateway, Session, SESSION_DELETED};

/// Entries read per UI message asked for, to begin with (a run with a tool call: its marker, the
/// user message, two assistant messages and a tool result make two UI messages).
const HISTORY_ENTRIES_PER_UI_MESSAGE: usize = 3;
/// Entries read beyond that, so a short page rarely needs a second read.
const HISTORY_WINDOW_SLACK: usize = 16;

/// The run `session` is running, if any.
fn running_run(session: &Session) -> Option<String> {
    lock(&session.state)
        .active
        .as_ref()
        .filter(|a| !a.run.status().is_ended())
        .map(|a| a.run.id.clone())
}

/// What the history route asks for.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub format: Format,
    pub limit: usize,
    pub before: Option<String>,
}

impl Gateway {
    /// Whether the agent has a stored session for `key` (`options.sessionExists`).
    pub async fn stored(&self, key: &str) -> Result<bool, GatewayError> {
        let answer = self.inner.agent.op(Op::Exists, 0, key, "{}".into()).await?;
        Ok(answer.trim() == "true")
    }

    /// The session for `key` if it is in memory (or being created), or stored: then it is
    /// loaded. Otherwise [`GatewayError::SessionNotFound`]; nothing is created for an unknown key.
    pub async fn loaded_session(&self, key: &str) -> Result<Arc<Session>, GatewayError> {
        if let Some(session) = self.find(key) {
            return Ok(session);
        }
        if self.is_known(key) || self.stored(key).await? {
            return self.ensure_session(key).await;
        }
        Err(GatewayError::SessionNotFound(key.to_string()))
    }

    /// A management call into the session for `key` (loaded if stored); answers its JSON.
    pub async fn session_op(&self, key: &str, op: Op, args: Value) -> Result<String, GatewayError> {
        let session = self.loaded_session(key).await?;
        let answer = self
            .inner
            .agent
            .op(op, session.handle, key, args.to_string())
            .await?;
        lock(&session.state).last_active_at = crate::util::now_ms();
        Ok(answer)
    }

    /// The models a session may switch to (those with credentials), asked of the primary session.
    pub async fn models(&self) -> Result<String, GatewayError> {
        let primary = self.inner.primary_key.clone();
        let session = self.ensure_session(&primary).await?;
        Ok(self
            .inner
            .agent
            .op(Op::Models, session.handle, &primary, "{}".into())
            .await?)
    }

    /// Whether the session for `key` can compact (`compact()`); loads a stored one.
    pub async fn can_compact(&self, key: &str) -> Result<bool, GatewayError> {
        Ok(self.loaded_session(key).await?.compactable)
    }

    /// One page of the conversation of `key`. While a run is running, the history ends at its
    /// user message: the rest arrives through its chat or run stream.
    ///
    /// Only the end of the conversation crosses from JS: a window of entries a few times the
    /// page, widened (×4 each time) until it holds the page, or the whole conversation.
    pub async fn history(&self, key: &str, query: &HistoryQuery) -> Result<Page, GatewayError> {
        let session = self.loaded_session(key).await?;
        let per_message = match query.format {
            Format::Ui => HISTORY_ENTRIES_PER_UI_MESSAGE,
            Format::Pi => 1,
        };
        let mut tail = query
            .limit
            .saturating_mul(per_message)
            .saturating_add(HISTORY_WINDOW_SLACK);
        loop {
            let (mut entries, start) = self.entries_now(&session, tail).await?;
            if let Some(run_id) = running_run(&session) {
                history::cut_at_run(&mut entries, &run_id);
            }
            let whole = start == 0;
            match history::page(entries, query.format, query.limit, query.before.as_deref()) {
                // Enough of it, or all there is.
                Ok(page) if whole || page.has_more => {
                    return Ok(Page {
                        messages: page.messages,
                        has_more: page.has_more || !whole,
                    })
                }
                Err(message) if whole => return Err(GatewayError::Invalid(message)),
                // The page (or `before`) reaches back past the window.
                _ => tail = tail.saturating_mul(4),
            }
        }
    }

    /// The window of the last `tail` entries, read so that a run ending meanwhile is seen
    /// whole: when the running run changed while the entries were read, they are read again.
    async fn entries_now(
        &self,
        session: &Session,
        tail: usize,
    ) -> Result<(Vec<Entry>, usize), GatewayError> {
        let before = running_run(session);
        let window = self.entries(session, tail).await?;
        if before.is_some() && running_run(session) != before {
            return self.entries(session, tail).await;
        }
        Ok(window)
    }

    async fn entries(
        &self,
        session: &Session,
        tail: usize,
    ) -> Result<(Vec<Entry>, usize), GatewayError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            entries: Vec<Entry>,
            #[serde(default)]
            start: usize,
        }
        let text = self
            .inner
            .agent
            .op(
                Op::History,
                session.handle,
                &session.key,
                serde_json::json!({ "tail": tail }).to_string(),
            )
            .await?;
        let answer: Answer = serde_json::from_str(&text).map_err(|e| {
            GatewayError::Agent(format!("history: unexpected answer from JavaScript: {e}"))
        })?;
        Ok((answer.entries, answer.start))
    }

    /// `DELETE /sessions/:key`: the running run aborted, queued ones answered `Session
    /// deleted`, the session disposed and forgotten with its log; with `purge`, its stored
    /// conversation deleted too (`options.deleteSession`). Answers whether it was purged.
    pub async fn delete_session(&self, key: &str, purge: bool) -> Result<bool, GatewayError> {
        if key == self.inner.primary_key {
            return Err(GatewayError::PrimaryDelete);
        }
        if purge {
            // Refused before anything is touched when nothing can delete stored conversations.
            self.inner
                .agent
                .op(Op::Purge, 0, key, r#"{"check":true}"#.into())
                .await?;
        }
        if self.is_known(key) && self.find(key).is_none() {
            // Still being created: let it finish, then delete it.
            let _ = self.ensure_session(key).await;
        }
        let removed = self.withdraw(&mut lock(&self.inner.registry), key, true, false);
        let found = match &removed {
            Some(session) => {
                self.retire(session, SESSION_DELETED, Retire::Dispose).await;
                true
            }
            // Not in memory: a stored conversation is all there is of it.
            None => self.stored(key).await?,
        };
        let purged = if !found {
            Err(GatewayError::SessionNotFound(key.to_string()))
        } else if purge {
            self.inner
                .agent
                .op(Op::Purge, 0, key, "{}".into())
                .await
                .map(|_| true)
                .map_err(GatewayError::from)
        } else {
            Ok(false)
        };
        // Messages sent meanwhile get a session now (after the purge: a fresh conversation).
        if removed.is_some() {
            self.release_reservation(key);
        }
        purged
    }
}
