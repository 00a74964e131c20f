//! `POST /sessions/:key/chat` and its resume route: the Vercel AI SDK UI message stream of one
//! run, read from the session's log (see [`crate::ui_stream`] for the chunks).
//!
//! A client that disconnects drops this body, which drops its cursor: the run goes on and
//! stays resumable, unless `chat.abortOnDisconnect` asks for it to be cancelled.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame as BodyFrame};
use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use hyper::Response;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::session::approval::{check_decision, Decision};
use crate::session::{Cursor, End, Gateway, Run, Step};
use crate::ui_stream;

use super::body::Body as BoxBody;
use super::body::BodyError;

/// The user's text from a chat request body: `text`, then `prompt`, then the last user
/// message of `messages` (v5 `parts` or v4 `content`). Blank text counts as none.
/// Parses a `/chat` body, materialising only what the gateway uses: `text`, `prompt`, `id`
/// and the last user message of `messages`. A `useChat` body carries the whole conversation;
/// every other message is skipped by the parser without building values for it.
pub fn parse_chat_body(bytes: &[u8]) -> Result<Map<String, Value>, BodyError> {
    #[derive(serde::Deserialize)]
    struct Top<'a> {
        #[serde(borrow)]
        text: Option<&'a RawValue>,
        #[serde(borrow)]
        prompt: Option<&'a RawValue>,
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        #[serde(borrow)]
        messages: Option<&'a RawValue>,
        #[serde(borrow)]
        mode: Option<&'a RawValue>,
        #[serde(borrow)]
        trigger: Option<&'a RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Role<'a> {
        #[serde(borrow)]
        role: Option<std::borrow::Cow<'a, str>>,
    }

    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    // Anything but an object (or a duplicate field) is refused, as for the other routes.
    let top: Top = serde_json::from_slice(bytes).map_err(|_| BodyError::Invalid)?;
    let value =
        |raw: &RawValue| serde_json::from_str::<Value>(raw.get()).map_err(|_| BodyError::Invalid);
    let mut out = Map::new();
    for (name, raw) in [
        ("text", top.text),
        ("prompt", top.prompt),
        ("id", top.id),
        ("mode", top.mode),
        ("trigger", top.trigger),
    ] {
        if let Some(raw) = raw {
            out.insert(name.into(), value(raw)?);
        }
    }
    if let Some(raw) = top.messages {
        if let Ok(list) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
            let last_user = list.iter().rposition(|m| {
                serde_json::from_str::<Role>(m.get())
                    .ok()
                    .and_then(|r| r.role)
                    .is_some_and(|r| r == "user")
            });
            let kept = match last_user {
                Some(i) => {
                    // Where it was, for errors that name its parts (`messages[3].parts[1]`).
                    out.insert(LAST_USER_INDEX.into(), Value::from(i));
                    vec![value(list[i])?]
                }
                None => Vec::new(),
            };
            out.insert("messages".into(), Value::Array(kept));
            // The last message, when it is the assistant's: it may carry approval decisions.
            if let Some((i, last)) = list.iter().enumerate().next_back() {
                let role = serde_json::from_str::<Role>(last.get())
                    .ok()
                    .and_then(|r| r.role);
                if role.is_some_and(|r| r == "assistant") {
                    out.insert(LAST_ASSISTANT.into(), value(last)?);
                    out.insert(LAST_ASSISTANT_INDEX.into(), Value::from(i));
                }
            }
        }
    }
    Ok(out)
}

/// Where [`parse_chat_body`] keeps the request's last message when it is the assistant's.
const LAST_ASSISTANT: &str = "\u{0}lastAssistant";
const LAST_ASSISTANT_INDEX: &str = "\u{0}lastAssistantIndex";

/// The decisions a chat POST carries: the `approval-responded` tool parts of its last message,
/// when that is the assistant's (what `addToolApprovalResponse` leaves for the next request).
pub struct Continuation {
    /// The assistant message's id (the one the continuation's `start` names).
    pub message_id: Option<String>,
    /// `(approval id, decision)`, in the message's order.
    pub decisions: Vec<(String, Decision)>,
}

/// The chat POST's approval decisions, if it carries any; `Err` names the bad field.
pub fn continuation(body: &Map<String, Value>) -> Result<Option<Continuation>, String> {
    let Some(message) = body.get(LAST_ASSISTANT) else {
        return Ok(None);
    };
    let index = body
        .get(LAST_ASSISTANT_INDEX)
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let Some(parts) = message.get("parts").and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut decisions = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        if part.get("state").and_then(Value::as_str) != Some("approval-responded") {
            continue;
        }
        let field = format!("messages[{index}].parts[{j}].approval");
        let approval = part
            .get("approval")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("Invalid {field}: expected an object"))?;
        let id = match approval.get("id") {
            Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_APPROVAL_ID_BYTES => {
                id.clone()
            }
            _ => {
                return Err(format!(
                "Invalid {field}.id: expected an approval id of 1 to {MAX_APPROVAL_ID_BYTES} bytes"
            ))
            }
        };
        let decision = check_decision(approval.get("approved"), approval.get("reason"))
            .map_err(|e| e.replacen("Invalid ", &format!("Invalid {field}."), 1))?;
        decisions.push((id, decision));
    }
    if decisions.is_empty() {
        return Ok(None);
    }
    let message_id = message
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.len() <= MAX_APPROVAL_ID_BYTES)
        .map(str::to_owned);
    Ok(Some(Continuation {
        message_id,
        decisions,
    }))
}

/// Longest approval (or message) id a continuation may name.
const MAX_APPROVAL_ID_BYTES: usize = 256;

/// The key under which [`parse_chat_body`] notes the index of the last user message in the
/// request's `messages` (not a field a client can send: it starts with a NUL).
pub const LAST_USER_INDEX: &str = "\u{0}lastUserIndex";

/// The last user message [`parse_chat_body`] kept, with its index in the request.
pub fn last_user_message(body: &Map<String, Value>) -> Option<(&Value, usize)> {
    let message = body.get("messages")?.as_array()?.first()?;
    let index = body.get(LAST_USER_INDEX)?.as_u64()? as usize;
    Some((message, index))
}

pub fn extract_user_text(body: &Map<String, Value>) -> Option<String> {
    let non_blank = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
    };
    if let Some(text) = non_blank(body.get("text")) {
        return Some(text);
    }
    if let Some(text) = non_blank(body.get("prompt")) {
        return Some(text);
    }
    let messages = body.get("messages")?.as_array()?;
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    if let Some(parts) = last_user.get("parts").and_then(Value::as_array) {
        let text: String = parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("");
        if !text.trim().is_empty() {
            return Some(text);
        }
    }
    match last_user.get("content") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::Array(parts)) => {
            let text: String = parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("");
            (!text.trim().is_empty()).then_some(text)
        }
        _ => None,
    }
}

/// A chat stream: a cursor over one run's UI message chunks in the session's log, from its
/// `start` chunk to its closing chunks and `[DONE]`. The POST that started the run, a resume
/// (`GET …/chat/:chatId/stream`) and an idempotent repeat all read the same bytes.
pub struct ChatBody {
    cursor: Cursor,
    /// With `chat.abortOnDisconnect`: the run to cancel if this body is dropped before it ends.
    cancel_on_drop: Option<(Gateway, Arc<Run>)>,
    done: bool,
    /// Sent before anything read from the log.
    prefix: Option<Bytes>,
    /// Chunks are dropped until a step starts (a stream joining a run midway).
    skipping: bool,
}

impl ChatBody {
    pub fn new(cursor: Cursor, cancel_on_drop: Option<(Gateway, Arc<Run>)>) -> ChatBody {
        ChatBody {
            cursor,
            cancel_on_drop,
            done: false,
            prefix: None,
            skipping: false,
        }
    }

    /// The stream of a message handed to a running run (`steer` / `followUp`): its own
    /// `start` (`message_id`), then the run's chunks from its next step on — no part is open
    /// there — and the run's end. `cursor` is where the message was handed over.
    pub fn from_next_step(cursor: Cursor, message_id: &str, run: &Run) -> ChatBody {
        ChatBody {
            cursor,
            cancel_on_drop: None,
            done: false,
            // The run that answers it: the one it was handed to.
            prefix: Some(start_of(message_id, run).freeze()),
            skipping: true,
        }
    }

    /// A chat stream's continuation after its run's approvals were decided (the client's
    /// next chat POST): `start` for the client's message (`message_id`), a new step, then the
    /// run's chunks after the pause (`cursor`).
    pub fn continuation(
        cursor: Cursor,
        message_id: &str,
        run: &Run,
        cancel_on_drop: Option<(Gateway, Arc<Run>)>,
    ) -> ChatBody {
        let mut start = start_of(message_id, run);
        ui_stream::push_chunk(&mut start, &ui_stream::Chunk::StartStep);
        ChatBody {
            cursor,
            cancel_on_drop,
            done: false,
            prefix: Some(start.freeze()),
            skipping: false,
        }
    }

    /// What of `data` a stream joining midway sends: from the first step on; once the run
    /// has ended without another step, its closing chunk.
    fn skip_to_step(&mut self, data: Option<Bytes>) -> Option<Bytes> {
        let data = data?;
        if !self.skipping {
            return Some(data);
        }
        if let Some(at) = ui_stream::step_start(&data) {
            self.skipping = false;
            return Some(data.slice(at..));
        }
        if self.done {
            return ui_stream::closing_chunk(&data).map(|at| data.slice(at..));
        }
        None
    }
}

/// The `start` chunk of message `message_id`, which run `run` answers.
fn start_of(message_id: &str, run: &Run) -> BytesMut {
    let mut start = BytesMut::new();
    ui_stream::push_chunk(
        &mut start,
        &ui_stream::Chunk::Start {
            message_id,
            message_metadata: Some(ui_stream::StartMetadata {
                session_key: &run.session_key,
                run_id: &run.id,
            }),
        },
    );
    start
}

impl Drop for ChatBody {
    fn drop(&mut self) {
        if let Some((gateway, run)) = self.cancel_on_drop.take() {
            if !self.done && !run.status().is_ended() {
                let g = gateway.clone();
                gateway.runtime().spawn(async move {
                    let _ = g.cancel(&run).await;
                });
            }
        }
    }
}

impl Body for ChatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(BodyFrame::data(prefix))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let (data, step) = match this.cursor.poll_bytes(cx, 16 * 1024, |e| e.chat.clone()) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(polled) => polled,
        };
        let paused = step == Step::Done(End::Paused);
        let data = match step {
            Step::More => data,
            Step::Done(End::RunEnded | End::Paused) => {
                this.done = true;
                data
            }
            Step::Done(_) => {
                // Fell behind the log, or the session ended without ending this run.
                this.done = true;
                let mut out = BytesMut::new();
                if let Some(data) = data {
                    out.extend_from_slice(&data);
                }
                ui_stream::lost(&mut out);
                Some(out.freeze())
            }
        };
        let mut data = this.skip_to_step(data);
        if paused {
            // The run waits for approvals: this message ends here for now (see `pause`).
            let mut out = BytesMut::new();
            if let Some(data) = data.take() {
                out.extend_from_slice(&data);
            }
            ui_stream::pause(&mut out, !this.skipping);
            data = Some(out.freeze());
        }
        match data {
            Some(data) => Poll::Ready(Some(Ok(BodyFrame::data(data)))),
            None if this.done => Poll::Ready(None),
            // Entries were skipped (another run's): look again at once.
            None => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.prefix.is_none()
    }
}

/// The chat stream of a run whose start is no longer in the log: the whole answer, sent
/// once the run has ended (see [`ui_stream::whole`]).
pub fn whole_body(run: Arc<Run>) -> BoxBody {
    use http_body_util::BodyExt;
    WholeBody {
        wait: Some(Box::pin(async move {
            let result = run.wait().await;
            ui_stream::whole(&run.id, &result).freeze()
        })),
    }
    .boxed_unsync()
}

type Pending = Pin<Box<dyn std::future::Future<Output = Bytes> + Send>>;

struct WholeBody {
    wait: Option<Pending>,
}

impl Body for WholeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        let Some(wait) = self.wait.as_mut() else {
            return Poll::Ready(None);
        };
        match wait.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(bytes) => {
                self.wait = None;
                Poll::Ready(Some(Ok(BodyFrame::data(bytes))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.wait.is_none()
    }
}

/// The headers the `ai` package's own UI-message-stream response sends.
pub fn response(body: BoxBody) -> Response<BoxBody> {
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
    h.insert(
        HeaderName::from_static("x-vercel-ai-ui-message-stream"),
        HeaderValue::from_static("v1"),
    );
    h.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_body_keeps_only_what_is_used() {
        let body = serde_json::json!({
            "id": "chat-1",
            "trigger": "submit-message",
            "messages": [
                {"role": "user", "parts": [{"type": "text", "text": "first"}]},
                {"role": "assistant", "parts": [{"type": "text", "text": "x".repeat(1000)}]},
                {"role": "user", "parts": [{"type": "text", "text": "last"}]},
                {"role": "assistant", "parts": []}
            ]
        });
        let parsed = parse_chat_body(body.to_string().as_bytes()).expect("valid");
        assert_eq!(parsed.get("id"), Some(&Value::from("chat-1")));
        assert_eq!(parsed["messages"].as_array().map(Vec::len), Some(1));
        assert_eq!(extract_user_text(&parsed).as_deref(), Some("last"));
        assert!(parse_chat_body(b"[1]").is_err());
        assert!(parse_chat_body(b"{").is_err());
        assert!(parse_chat_body(b"  ").expect("blank is {}").is_empty());
        let odd = parse_chat_body(br#"{"messages": "nope", "text": 5}"#).expect("object");
        assert_eq!(extract_user_text(&odd), None);
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn text_wins_over_prompt_over_messages() {
        let body = obj(serde_json::json!({
            "text": "a", "prompt": "b",
            "messages": [{"role": "user", "parts": [{"type": "text", "text": "c"}]}]
        }));
        assert_eq!(extract_user_text(&body).as_deref(), Some("a"));
        let body = obj(serde_json::json!({"text": "  ", "prompt": "b"}));
        assert_eq!(extract_user_text(&body).as_deref(), Some("b"));
        let body = obj(serde_json::json!({"messages": [
            {"role": "user", "parts": [{"type": "text", "text": "first"}]},
            {"role": "assistant", "parts": [{"type": "text", "text": "x"}]},
            {"role": "user", "parts": [{"type": "text", "text": "he"}, {"type": "file"}, {"type": "text", "text": "llo"}]}
        ]}));
        assert_eq!(extract_user_text(&body).as_deref(), Some("hello"));
        let body = obj(serde_json::json!({"messages": [{"role": "user", "content": "v4"}]}));
        assert_eq!(extract_user_text(&body).as_deref(), Some("v4"));
        assert_eq!(extract_user_text(&obj(serde_json::json!({}))), None);
        assert_eq!(
            extract_user_text(&obj(serde_json::json!({"messages": "nope"}))),
            None
        );
    }
}
