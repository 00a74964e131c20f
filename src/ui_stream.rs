//! The Vercel AI SDK UI message stream of one run: agent events in, `data: <chunk>` lines out.
//!
//! A [`Translator`] lives with a run started from `/chat` and turns each of its agent events
//! into UI message chunks once; the bytes go into the session's log beside the event, so every
//! reader of that chat stream (the POST that started it, a resume, an idempotent repeat)
//! shares them. Chunks carry exactly the fields of the `ai` package's schema — its strict
//! versions reject anything more.

use std::collections::HashMap;

use bytes::BytesMut;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::events::AgentEvent;
use crate::session::approval::{Approval, Decision};
use crate::session::{MessageResult, Outcome};

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Chunk<'a> {
    Start {
        #[serde(rename = "messageId")]
        message_id: &'a str,
        #[serde(rename = "messageMetadata", skip_serializing_if = "Option::is_none")]
        message_metadata: Option<StartMetadata<'a>>,
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
        /// pi's tools are not declared to the client: `dynamic-tool` parts.
        dynamic: bool,
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
        dynamic: bool,
    },
    ToolOutputAvailable {
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        output: &'a RawValue,
        dynamic: bool,
    },
    ToolOutputError {
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        #[serde(rename = "errorText")]
        error_text: &'a str,
        dynamic: bool,
    },
    Finish {
        #[serde(rename = "finishReason")]
        finish_reason: &'a str,
        #[serde(rename = "messageMetadata", skip_serializing_if = "Option::is_none")]
        message_metadata: Option<&'a FinishMetadata>,
    },
    /// A message handed to this run while it ran (`steer` / `followUp`).
    DataSteering {
        data: Steering<'a>,
    },
    /// A tool call waits for a decision (protocol 6 and 7).
    ToolApprovalRequest {
        #[serde(rename = "approvalId")]
        approval_id: &'a str,
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
    },
    /// A tool call was denied (protocol 6 and 7).
    ToolOutputDenied {
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
    },
    /// A tool call's approval, pending or decided (protocol 5): one part, updated in place.
    DataApprovalRequest {
        id: &'a str,
        data: ApprovalData<'a>,
    },
    Abort,
    Error {
        #[serde(rename = "errorText")]
        error_text: &'a str,
    },
}

/// `messageMetadata` of the `start` chunk.
#[derive(Serialize)]
pub struct StartMetadata<'a> {
    #[serde(rename = "sessionKey")]
    pub session_key: &'a str,
    #[serde(rename = "runId")]
    pub run_id: &'a str,
}

/// pi's token usage, summed over a run's assistant messages (its `Usage` shape).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Usage {
    #[serde(serialize_with = "count")]
    pub input: f64,
    #[serde(serialize_with = "count")]
    pub output: f64,
    #[serde(serialize_with = "count")]
    pub cache_read: f64,
    #[serde(serialize_with = "count")]
    pub cache_write: f64,
    #[serde(serialize_with = "count")]
    pub total_tokens: f64,
    pub cost: Cost,
}

/// A number as JSON writes it from JavaScript: an integer when it is one (token counts always
/// are; a cost of 0 too), else a float.
fn count<S: serde::Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        s.serialize_i64(*value as i64)
    } else {
        s.serialize_f64(*value)
    }
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(default)]
pub struct Cost {
    #[serde(serialize_with = "count")]
    pub input: f64,
    #[serde(serialize_with = "count")]
    pub output: f64,
    #[serde(rename = "cacheRead", serialize_with = "count")]
    pub cache_read: f64,
    #[serde(rename = "cacheWrite", serialize_with = "count")]
    pub cache_write: f64,
    #[serde(serialize_with = "count")]
    pub total: f64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.input += other.input;
        self.output += other.output;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
        self.total_tokens += other.total_tokens;
        self.cost.input += other.cost.input;
        self.cost.output += other.cost.output;
        self.cost.cache_read += other.cost.cache_read;
        self.cost.cache_write += other.cost.cache_write;
        self.cost.total += other.cost.total;
    }
}

/// `messageMetadata` of the `finish` chunk, and of an assistant message in the history.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FinishMetadata {
    pub usage: Usage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<crate::events::ModelRef>,
    #[serde(rename = "stopReason", skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
}

impl FinishMetadata {
    /// Counts one completed assistant message: its usage, its model, its stop reason.
    pub fn message(&mut self, usage: &RawValue, model: &RawValue, stop_reason: Option<&str>) {
        if let Ok(u) = serde_json::from_str::<Usage>(usage.get()) {
            self.usage.add(&u);
        }
        if let Ok(m) = serde_json::from_str(model.get()) {
            self.model = Some(m);
        }
        if let Some(r) = stop_reason {
            self.stop_reason = Some(r.to_string());
        }
    }
}

/// `data` of a `data-approval-request` part.
#[derive(Serialize)]
pub struct ApprovalData<'a> {
    #[serde(rename = "approvalId")]
    pub approval_id: &'a str,
    #[serde(rename = "toolCallId")]
    pub tool_call_id: &'a str,
    #[serde(rename = "toolName")]
    pub tool_name: &'a str,
    pub args: &'a RawValue,
    /// `pending`, `approved` or `denied`.
    pub status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<&'a str>,
    #[serde(rename = "expiresAt")]
    pub expires_at: u64,
}

#[derive(Serialize)]
pub struct Steering<'a> {
    pub text: &'a str,
    pub mode: &'a str,
}

pub fn push_chunk(out: &mut BytesMut, chunk: &Chunk<'_>) {
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
    /// Tool calls told `tool-output-denied`: their tool error is not sent after it.
    denied: std::collections::HashSet<String>,
    /// What the `finish` chunk's metadata says, once an assistant message completed.
    metadata: Option<FinishMetadata>,
}

impl Translator {
    /// The `start` chunk: the assistant message's id, which is the run id.
    pub fn start(&mut self, session_key: &str, message_id: &str, out: &mut BytesMut) {
        push_chunk(
            out,
            &Chunk::Start {
                message_id,
                message_metadata: Some(StartMetadata {
                    session_key,
                    run_id: message_id,
                }),
            },
        );
    }

    /// A `data-steering` part: `text` was handed to the run (`mode`: steer or followUp).
    pub fn steering(&mut self, text: &str, mode: &str, out: &mut BytesMut) {
        push_chunk(
            out,
            &Chunk::DataSteering {
                data: Steering { text, mode },
            },
        );
    }

    /// A tool call waits for `approval`: `tool-approval-request` (protocol 6 and 7), or a
    /// pending `data-approval-request` part (5).
    pub fn approval_request(&mut self, protocol: u8, approval: &Approval, out: &mut BytesMut) {
        if protocol >= 6 {
            push_chunk(
                out,
                &Chunk::ToolApprovalRequest {
                    approval_id: &approval.id,
                    tool_call_id: &approval.tool_call_id,
                },
            );
        } else {
            push_chunk(out, &approval_part(approval, None));
        }
    }

    /// `approval` was decided: a denial is `tool-output-denied` (protocol 6 and 7); with 5,
    /// its `data-approval-request` part is sent again with the decision.
    pub fn approval_resolved(
        &mut self,
        protocol: u8,
        approval: &Approval,
        decision: &Decision,
        out: &mut BytesMut,
    ) {
        if protocol < 6 {
            push_chunk(out, &approval_part(approval, Some(decision)));
        } else if !decision.approved && self.tools_started.contains_key(&approval.tool_call_id) {
            self.denied.insert(approval.tool_call_id.clone());
            push_chunk(
                out,
                &Chunk::ToolOutputDenied {
                    tool_call_id: &approval.tool_call_id,
                },
            );
        }
    }

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
                        dynamic: true,
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
                        dynamic: true,
                    },
                );
            }
            AgentEvent::ToolEnd {
                id,
                result,
                is_error,
                ..
            } => {
                if !self.tools_started.contains_key(id) || self.denied.contains(id) {
                    return;
                }
                if *is_error {
                    let text = tool_error_text(result);
                    push_chunk(
                        out,
                        &Chunk::ToolOutputError {
                            tool_call_id: id,
                            error_text: &text,
                            dynamic: true,
                        },
                    );
                } else {
                    push_chunk(
                        out,
                        &Chunk::ToolOutputAvailable {
                            tool_call_id: id,
                            output: result,
                            dynamic: true,
                        },
                    );
                }
            }
            AgentEvent::MessageComplete {
                usage,
                model,
                stop_reason,
                ..
            } => {
                self.metadata.get_or_insert_with(Default::default).message(
                    usage,
                    model,
                    stop_reason.as_deref(),
                );
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
                        message_metadata: self.metadata.as_ref(),
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

/// The `data-approval-request` part of `approval`, pending or decided.
fn approval_part<'a>(approval: &'a Approval, decision: Option<&'a Decision>) -> Chunk<'a> {
    Chunk::DataApprovalRequest {
        id: &approval.id,
        data: ApprovalData {
            approval_id: &approval.id,
            tool_call_id: &approval.tool_call_id,
            tool_name: &approval.tool_name,
            args: &approval.args,
            status: match decision {
                None => "pending",
                Some(d) if d.approved => "approved",
                Some(_) => "denied",
            },
            reason: decision.and_then(|d| d.reason.as_deref()),
            by: decision.map(|d| d.by.as_str()),
            expires_at: approval.expires_at,
        },
    }
}

/// The chunks that end a chat stream where its run waits for approvals: the step, and the
/// message for now (`finish` with `tool-calls`), then `[DONE]`. The client's next chat POST,
/// carrying the decisions, continues it.
pub fn pause(out: &mut BytesMut, step_open: bool) {
    if step_open {
        push_chunk(out, &Chunk::FinishStep);
    }
    push_chunk(
        out,
        &Chunk::Finish {
            finish_reason: "tool-calls",
            message_metadata: None,
        },
    );
    out.extend_from_slice(b"data: [DONE]\n\n");
}

/// A whole UI message stream for a run whose chunks are no longer in the log: `start`, its
/// answer as one text part, the closing chunk of its result and `[DONE]`.
pub fn whole(run_id: &str, result: &MessageResult) -> BytesMut {
    let mut out = BytesMut::new();
    let mut t = Translator::default();
    t.start(&result.session_key, run_id, &mut out);
    if !result.response.is_empty() {
        push_chunk(&mut out, &Chunk::TextStart { id: "text_0" });
        push_chunk(
            &mut out,
            &Chunk::TextDelta {
                id: "text_0",
                delta: &result.response,
            },
        );
        push_chunk(&mut out, &Chunk::TextEnd { id: "text_0" });
    }
    t.finish(result, false, &mut out);
    out
}

/// Where the first step starting in `chunks` begins (a `start-step` chunk), if one does.
/// Chunks are `data: <json>\n\n` and JSON holds no raw newline or unescaped quote inside a
/// string, so the pattern only matches a real chunk.
pub fn step_start(chunks: &[u8]) -> Option<usize> {
    const START_STEP: &[u8] = b"data: {\"type\":\"start-step\"}";
    let mut from = 0;
    while let Some(i) = find(&chunks[from..], START_STEP).map(|i| i + from) {
        if i == 0 || chunks[..i].ends_with(b"\n\n") {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// Where the closing chunk of a stream (`finish`, `abort` or `error`, before `[DONE]`) begins.
pub fn closing_chunk(chunks: &[u8]) -> Option<usize> {
    let done = find(chunks, b"data: [DONE]")?;
    let before = chunks[..done]
        .strip_suffix(b"\n\n")
        .unwrap_or(&chunks[..done]);
    Some(
        before
            .windows(2)
            .rposition(|w| w == b"\n\n")
            .map_or(0, |i| i + 2),
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The end of a chat stream whose reader fell behind the log: an `error` chunk, `[DONE]`.
pub fn lost(out: &mut BytesMut) {
    push_chunk(
        out,
        &Chunk::Error {
            error_text: "The chat stream fell too far behind and lost events",
        },
    );
    out.extend_from_slice(b"data: [DONE]\n\n");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::json_or_null;

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
        assert!(text.contains(r#"{"type":"tool-input-available","toolCallId":"c1","toolName":"read","input":{"path":"x"},"dynamic":true}"#));
        assert!(text.contains(
            r#"{"type":"tool-output-error","toolCallId":"c1","errorText":"ENOENT","dynamic":true}"#
        ));
    }

    #[test]
    fn a_stream_joining_midway_finds_the_next_step_and_the_closing_chunk() {
        let mut t = Translator::default();
        let mut out = BytesMut::new();
        t.event(&AgentEvent::TurnStart, &mut out);
        t.event(&AgentEvent::TextStart { index: 0 }, &mut out);
        // A delta that spells a chunk is escaped inside its JSON string: no false match.
        t.event(
            &AgentEvent::TextDelta {
                index: 0,
                delta: "\n\ndata: {\"type\":\"start-step\"}".into(),
            },
            &mut out,
        );
        assert_eq!(step_start(&out), Some(0));
        assert_eq!(step_start(&out[1..]), None, "only a whole chunk counts");
        let before = out.len();
        t.event(&AgentEvent::TurnStart, &mut out);
        assert!(step_start(&out[before..]).is_some());
        let mut end = BytesMut::new();
        t.finish(
            &MessageResult::failure("k", "Request was aborted", Outcome::Aborted),
            false,
            &mut end,
        );
        let at = closing_chunk(&end).expect("closing chunk");
        assert_eq!(
            &end[at..],
            b"data: {\"type\":\"abort\"}\n\ndata: [DONE]\n\n"
        );
        let mut steering = BytesMut::new();
        t.steering("use the other file", "steer", &mut steering);
        assert_eq!(
            &steering[..],
            b"data: {\"type\":\"data-steering\",\"data\":{\"text\":\"use the other file\",\"mode\":\"steer\"}}\n\n"
        );
    }
}
