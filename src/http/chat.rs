//! `POST /sessions/:key/chat`: the Vercel AI SDK UI message stream for one message's run.
//!
//! The message goes through the session queue with a run tap attached. While the run is
//! going, the tap carries the agent's events and [`Translator`] turns them into UI message
//! chunks; when the tap closes, the message's result decides the last chunk (`finish`,
//! `abort` or `error`), and `[DONE]` ends the stream. Chunks carry exactly the fields of
//! the `ai` package's schema — its strict versions reject anything more.
//!
//! A client that disconnects drops this body, which drops the tap's receiver: the run goes
//! on, and the session stops feeding a reader that is gone.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame as BodyFrame};
use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use hyper::Response;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::events::AgentEvent;
use crate::session::{MessageResult, Outcome, RunSignal, TapReceiver};
use crate::util::now_ms;

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
    for (name, raw) in [("text", top.text), ("prompt", top.prompt), ("id", top.id)] {
        if let Some(raw) = raw {
            out.insert(name.into(), value(raw)?);
        }
    }
    if let Some(raw) = top.messages {
        if let Ok(list) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
            let last_user = list.iter().rev().find(|m| {
                serde_json::from_str::<Role>(m.get())
                    .ok()
                    .and_then(|r| r.role)
                    .is_some_and(|r| r == "user")
            });
            let kept = match last_user {
                Some(m) => vec![value(m)?],
                None => Vec::new(),
            };
            out.insert("messages".into(), Value::Array(kept));
        }
    }
    Ok(out)
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

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Chunk<'a> {
    Start {
        #[serde(rename = "messageId")]
        message_id: &'a str,
    },
    StartStep,
    FinishStep,
    TextStart {
        id: &'a str,
    },
    TextDelta {
        id: &'a str,
        delta: &'a str,
    },
    TextEnd {
        id: &'a str,
    },
    ReasoningStart {
        id: &'a str,
    },
    ReasoningDelta {
        id: &'a str,
        delta: &'a str,
    },
    ReasoningEnd {
        id: &'a str,
    },
    ToolInputStart {
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        #[serde(rename = "toolName")]
        tool_name: &'a str,
    },
    ToolInputDelta {
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        #[serde(rename = "inputTextDelta")]
        input_text_delta: &'a str,
    },
    ToolInputAvailable {
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        #[serde(rename = "toolName")]
        tool_name: &'a str,
        input: &'a RawValue,
    },
    ToolOutputAvailable {
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        output: &'a RawValue,
    },
    ToolOutputError {
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        #[serde(rename = "errorText")]
        error_text: &'a str,
    },
    Finish {
        #[serde(rename = "finishReason")]
        finish_reason: &'a str,
    },
    Abort,
    Error {
        #[serde(rename = "errorText")]
        error_text: &'a str,
    },
}

fn push_chunk(out: &mut BytesMut, chunk: &Chunk<'_>) {
    out.extend_from_slice(b"data: ");
    // Serializing borrowed strings and validated raw JSON into memory cannot fail.
    if let Ok(json) = serde_json::to_vec(chunk) {
        out.extend_from_slice(&json);
    }
    out.extend_from_slice(b"\n\n");
}

/// Turns one run's agent events into UI message chunks. Part ids are unique within the
/// message: `text_<n>` / `reasoning_<n>` count parts across all of the run's steps.
#[derive(Default)]
pub struct Translator {
    step_open: bool,
    texts: HashMap<u32, String>,
    reasonings: HashMap<u32, String>,
    text_count: u32,
    reasoning_count: u32,
    tools_started: HashMap<String, String>,
}

impl Translator {
    pub fn event(&mut self, event: &AgentEvent, out: &mut BytesMut) {
        match event {
            AgentEvent::TurnStart => {
                self.close_parts(out);
                if self.step_open {
                    push_chunk(out, &Chunk::FinishStep);
                }
                self.step_open = true;
                push_chunk(out, &Chunk::StartStep);
            }
            AgentEvent::TurnEnd => {
                self.close_parts(out);
                if self.step_open {
                    self.step_open = false;
                    push_chunk(out, &Chunk::FinishStep);
                }
            }
            AgentEvent::TextStart { index } => {
                let id = format!("text_{}", self.text_count);
                self.text_count += 1;
                push_chunk(out, &Chunk::TextStart { id: &id });
                self.texts.insert(*index, id);
            }
            AgentEvent::TextDelta { index, delta } => {
                if let Some(id) = self.texts.get(index) {
                    push_chunk(out, &Chunk::TextDelta { id, delta });
                }
            }
            AgentEvent::TextEnd { index } => {
                if let Some(id) = self.texts.remove(index) {
                    push_chunk(out, &Chunk::TextEnd { id: &id });
                }
            }
            AgentEvent::ThinkingStart { index } => {
                let id = format!("reasoning_{}", self.reasoning_count);
                self.reasoning_count += 1;
                push_chunk(out, &Chunk::ReasoningStart { id: &id });
                self.reasonings.insert(*index, id);
            }
            AgentEvent::ThinkingDelta { index, delta } => {
                if let Some(id) = self.reasonings.get(index) {
                    push_chunk(out, &Chunk::ReasoningDelta { id, delta });
                }
            }
            AgentEvent::ThinkingEnd { index } => {
                if let Some(id) = self.reasonings.remove(index) {
                    push_chunk(out, &Chunk::ReasoningEnd { id: &id });
                }
            }
            AgentEvent::ToolCallStart { id, name, .. } => {
                self.tools_started.insert(id.clone(), name.clone());
                push_chunk(
                    out,
                    &Chunk::ToolInputStart {
                        tool_call_id: id,
                        tool_name: name,
                    },
                );
            }
            AgentEvent::ToolCallDelta { id, delta, .. } if self.tools_started.contains_key(id) => {
                push_chunk(
                    out,
                    &Chunk::ToolInputDelta {
                        tool_call_id: id,
                        input_text_delta: delta,
                    },
                );
            }
            AgentEvent::ToolCallEnd {
                id, name, input, ..
            } => {
                self.tools_started.insert(id.clone(), name.clone());
                push_chunk(
                    out,
                    &Chunk::ToolInputAvailable {
                        tool_call_id: id,
                        tool_name: name,
                        input,
                    },
                );
            }
            AgentEvent::ToolEnd {
                id,
                result,
                is_error,
                ..
            } => {
                if !self.tools_started.contains_key(id) {
                    return;
                }
                if *is_error {
                    let text = tool_error_text(result);
                    push_chunk(
                        out,
                        &Chunk::ToolOutputError {
                            tool_call_id: id,
                            error_text: &text,
                        },
                    );
                } else {
                    push_chunk(
                        out,
                        &Chunk::ToolOutputAvailable {
                            tool_call_id: id,
                            output: result,
                        },
                    );
                }
            }
            _ => {}
        }
    }

    /// Ends parts a run left open (pi sends no `text_end` after an abort).
    fn close_parts(&mut self, out: &mut BytesMut) {
        let mut texts: Vec<_> = self.texts.drain().collect();
        texts.sort();
        for (_, id) in texts {
            push_chunk(out, &Chunk::TextEnd { id: &id });
        }
        let mut reasonings: Vec<_> = self.reasonings.drain().collect();
        reasonings.sort();
        for (_, id) in reasonings {
            push_chunk(out, &Chunk::ReasoningEnd { id: &id });
        }
    }

    /// The closing chunks for the message's result, then `[DONE]`.
    pub fn finish(&mut self, result: &MessageResult, overflowed: bool, out: &mut BytesMut) {
        self.close_parts(out);
        if self.step_open {
            self.step_open = false;
            push_chunk(out, &Chunk::FinishStep);
        }
        if overflowed {
            push_chunk(
                out,
                &Chunk::Error {
                    error_text: "The chat stream fell too far behind and lost events",
                },
            );
        } else {
            match result.outcome {
                Outcome::Completed => push_chunk(
                    out,
                    &Chunk::Finish {
                        finish_reason: "stop",
                    },
                ),
                Outcome::Aborted => push_chunk(out, &Chunk::Abort),
                _ => {
                    let text = result.error.as_deref().unwrap_or("Unknown error");
                    push_chunk(out, &Chunk::Error { error_text: text });
                }
            }
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

/// A tool failure's text: the text parts of pi's `{content:[{type:"text",text}]}`, else
/// the JSON itself.
fn tool_error_text(result: &RawValue) -> String {
    let parsed: Option<Value> = serde_json::from_str(result.get()).ok();
    if let Some(Value::Array(parts)) = parsed.as_ref().and_then(|v| v.get("content")) {
        let text: Vec<&str> = parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        if !text.is_empty() {
            return text.join("\n");
        }
    }
    match parsed {
        Some(Value::String(s)) => s,
        _ => result.get().to_string(),
    }
}

static MESSAGE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A message id unique within this process: time, process id and a counter.
pub fn new_message_id() -> String {
    let n = MESSAGE_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("msg_{:x}{:x}{:x}", now_ms(), std::process::id(), n)
}

enum Phase {
    Running,
    Finishing,
    Done,
}

pub struct ChatBody {
    tap: TapReceiver,
    result: oneshot::Receiver<MessageResult>,
    translator: Translator,
    message_id: String,
    phase: Phase,
}

impl ChatBody {
    pub fn new(tap: TapReceiver, result: oneshot::Receiver<MessageResult>) -> ChatBody {
        ChatBody {
            tap,
            result,
            translator: Translator::default(),
            message_id: new_message_id(),
            phase: Phase::Running,
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
        loop {
            match this.phase {
                Phase::Running => {
                    let mut out = BytesMut::new();
                    // Batch whatever is ready into one write.
                    loop {
                        match this.tap.rx.poll_recv(cx) {
                            Poll::Ready(Some(RunSignal::Started)) => push_chunk(
                                &mut out,
                                &Chunk::Start {
                                    message_id: &this.message_id,
                                },
                            ),
                            Poll::Ready(Some(RunSignal::Event(ev))) => {
                                this.translator.event(&ev, &mut out)
                            }
                            Poll::Ready(None) => {
                                this.phase = Phase::Finishing;
                                break;
                            }
                            Poll::Pending => break,
                        }
                        if out.len() >= 16 * 1024 {
                            break;
                        }
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(BodyFrame::data(out.freeze()))));
                    }
                    if matches!(this.phase, Phase::Running) {
                        return Poll::Pending;
                    }
                }
                Phase::Finishing => {
                    let result = match Pin::new(&mut this.result).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(r)) => r,
                        Poll::Ready(Err(_)) => MessageResult::failure(
                            "",
                            "The message was dropped without a result",
                            Outcome::Failed,
                        ),
                    };
                    let mut out = BytesMut::new();
                    let overflowed = this.tap.overflowed();
                    this.translator.finish(&result, overflowed, &mut out);
                    this.phase = Phase::Done;
                    return Poll::Ready(Some(Ok(BodyFrame::data(out.freeze()))));
                }
                Phase::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }
}

use std::future::Future;

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
    use crate::events::json_or_null;

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

    #[test]
    fn part_ids_stay_unique_across_steps_and_open_parts_are_closed() {
        let mut t = Translator::default();
        let mut out = BytesMut::new();
        for ev in [
            AgentEvent::TurnStart,
            AgentEvent::TextStart { index: 0 },
            AgentEvent::TextDelta {
                index: 0,
                delta: "a".into(),
            },
            AgentEvent::TextEnd { index: 0 },
            AgentEvent::TurnEnd,
            AgentEvent::TurnStart,
            AgentEvent::TextStart { index: 0 },
            AgentEvent::TextDelta {
                index: 0,
                delta: "b".into(),
            },
        ] {
            t.event(&ev, &mut out);
        }
        let result = MessageResult::failure("k", "Request was aborted", Outcome::Aborted);
        t.finish(&result, false, &mut out);
        let text = String::from_utf8(out.to_vec()).expect("utf8");
        let chunks: Vec<&str> = text
            .split("\n\n")
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_start_matches("data: "))
            .collect();
        assert_eq!(
            chunks,
            vec![
                r#"{"type":"start-step"}"#,
                r#"{"type":"text-start","id":"text_0"}"#,
                r#"{"type":"text-delta","id":"text_0","delta":"a"}"#,
                r#"{"type":"text-end","id":"text_0"}"#,
                r#"{"type":"finish-step"}"#,
                r#"{"type":"start-step"}"#,
                r#"{"type":"text-start","id":"text_1"}"#,
                r#"{"type":"text-delta","id":"text_1","delta":"b"}"#,
                r#"{"type":"text-end","id":"text_1"}"#,
                r#"{"type":"finish-step"}"#,
                r#"{"type":"abort"}"#,
                "[DONE]",
            ]
        );
    }

    #[test]
    fn failed_tools_become_tool_output_error() {
        let mut t = Translator::default();
        let mut out = BytesMut::new();
        t.event(
            &AgentEvent::ToolCallEnd {
                index: 0,
                id: "c1".into(),
                name: "read".into(),
                input: json_or_null(Some(r#"{"path":"x"}"#.into())),
            },
            &mut out,
        );
        t.event(
            &AgentEvent::ToolEnd {
                id: "c1".into(),
                name: "read".into(),
                result: json_or_null(Some(
                    r#"{"content":[{"type":"text","text":"ENOENT"}]}"#.into(),
                )),
                is_error: true,
            },
            &mut out,
        );
        let text = String::from_utf8(out.to_vec()).expect("utf8");
        assert!(text.contains(r#"{"type":"tool-input-available","toolCallId":"c1","toolName":"read","input":{"path":"x"}}"#));
        assert!(
            text.contains(r#"{"type":"tool-output-error","toolCallId":"c1","errorText":"ENOENT"}"#)
        );
    }
}
