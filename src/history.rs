//! The conversation as `GET /sessions/:key/messages` serves it: pi's message entries on the
//! session's current branch, as AI SDK `UIMessage`s (`ui`) or as they are (`pi`), one page at a
//! time.
//!
//! The gateway marks where each of its runs begins with a pi custom entry
//! (`pi-gateway.run {runId}`, written by `index.js` before the run's prompt), so the assistant
//! message of a run keeps the run's id — the `messageId` its chat stream started with — after a
//! reload and a restart.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::ui_stream::{FinishMetadata, Usage};

/// `customType` of the entry that marks the start of a gateway run.
pub const RUN_MARKER: &str = "pi-gateway.run";

/// One entry of pi's session, as `index.js` hands it over.
#[derive(Debug, Deserialize)]
pub struct Entry {
    pub id: String,
    #[serde(rename = "parentId", default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub timestamp: Value,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub message: Option<Value>,
    #[serde(rename = "customType", default)]
    pub custom_type: Option<String>,
    #[serde(default)]
    pub data: Option<Value>,
}

impl Entry {
    /// The run id this entry marks the start of, if it is a run marker.
    fn run_marker(&self) -> Option<&str> {
        if self.kind != "custom" || self.custom_type.as_deref() != Some(RUN_MARKER) {
            return None;
        }
        self.data.as_ref()?.get("runId")?.as_str()
    }

    fn role(&self) -> Option<&str> {
        if self.kind != "message" {
            return None;
        }
        self.message.as_ref()?.get("role")?.as_str()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ui,
    Pi,
}

impl Format {
    pub fn parse(text: Option<&str>) -> Result<Format, String> {
        match text {
            None | Some("ui") => Ok(Format::Ui),
            Some("pi") => Ok(Format::Pi),
            Some(_) => Err("Invalid format: expected ui or pi".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Ui => "ui",
            Format::Pi => "pi",
        }
    }
}

/// One page of the history, oldest first.
#[derive(Debug)]
pub struct Page {
    pub messages: Vec<Value>,
    /// Older messages exist before the first one.
    pub has_more: bool,
}

/// Cuts the entries of a running run: what follows its user message is still being written
/// and arrives through the resume route.
pub fn cut_at_run(entries: &mut Vec<Entry>, run_id: &str) {
    let Some(marker) = entries.iter().position(|e| e.run_marker() == Some(run_id)) else {
        return;
    };
    let end = entries[marker + 1..]
        .iter()
        .position(|e| e.role() == Some("user"))
        .map_or(marker, |i| marker + 1 + i);
    entries.truncate(end + 1);
}

/// The page of `limit` messages before the one with id `before` (the end when `None`).
pub fn page(
    entries: Vec<Entry>,
    format: Format,
    limit: usize,
    before: Option<&str>,
) -> Result<Page, String> {
    let all = match format {
        Format::Ui => ui_messages(entries),
        Format::Pi => entries
            .into_iter()
            .filter(|e| e.kind == "message" && e.message.is_some())
            .map(|e| {
                json!({
                    "id": e.id,
                    "parentId": e.parent_id,
                    "timestamp": e.timestamp,
                    "message": e.message,
                })
            })
            .collect(),
    };
    let end = match before {
        None => all.len(),
        Some(id) => all
            .iter()
            .position(|m| m.get("id").and_then(Value::as_str) == Some(id))
            .ok_or_else(|| format!("Invalid before: no message with id {id}"))?,
    };
    let start = end.saturating_sub(limit);
    let mut all = all;
    all.truncate(end);
    let messages = all.split_off(start);
    Ok(Page {
        messages,
        has_more: start > 0,
    })
}

/// The assistant message being built for a run (or for answers outside any run).
struct Assistant {
    id: String,
    run_id: Option<String>,
    parts: Vec<Value>,
    meta: FinishMetadata,
}

impl Assistant {
    fn into_value(self) -> Value {
        let mut metadata = Map::new();
        if let Some(run_id) = self.run_id {
            metadata.insert("runId".into(), run_id.into());
        }
        if let Ok(Value::Object(rest)) = serde_json::to_value(&self.meta) {
            metadata.extend(rest);
        }
        json!({
            "id": self.id,
            "role": "assistant",
            "metadata": metadata,
            "parts": self.parts,
        })
    }
}

/// pi's messages as AI SDK `UIMessage`s: a user message per user entry (`text` and `file`
/// parts); the assistant messages, tool results and steps of one run as one assistant message
/// (a user message steered into a run splits it: the rest gets the id `<runId>-<n>`).
pub fn ui_messages(entries: Vec<Entry>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut run: Option<String> = None;
    let mut segment = 0u32;
    let mut current: Option<Assistant> = None;
    for entry in entries {
        if let Some(run_id) = entry.run_marker() {
            out.extend(current.take().map(Assistant::into_value));
            // A run prompts again for a message handed to it after its prompt ended: the same
            // run goes on, and its next assistant message is a further part of it.
            if run.as_deref() != Some(run_id) {
                run = Some(run_id.to_string());
                segment = 0;
            }
            continue;
        }
        let Some(message) = entry.message.as_ref().filter(|_| entry.kind == "message") else {
            continue;
        };
        match message.get("role").and_then(Value::as_str) {
            Some("user") => {
                out.extend(current.take().map(Assistant::into_value));
                out.push(json!({
                    "id": entry.id,
                    "role": "user",
                    "parts": user_parts(message.get("content")),
                }));
            }
            Some("assistant") => {
                let assistant = current.get_or_insert_with(|| {
                    let id = match &run {
                        Some(r) if segment == 0 => r.clone(),
                        Some(r) => format!("{r}-{segment}"),
                        None => entry.id.clone(),
                    };
                    segment += 1;
                    Assistant {
                        id,
                        run_id: run.clone(),
                        parts: Vec::new(),
                        meta: FinishMetadata::default(),
                    }
                });
                assistant_parts(message, assistant);
            }
            Some("toolResult") => {
                if let Some(assistant) = current.as_mut() {
                    tool_result(message, assistant);
                }
            }
            _ => {}
        }
    }
    out.extend(current.take().map(Assistant::into_value));
    out
}

fn user_parts(content: Option<&Value>) -> Vec<Value> {
    let mut parts = Vec::new();
    match content {
        Some(Value::String(text)) => parts.push(json!({"type": "text", "text": text})),
        Some(Value::Array(blocks)) => {
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                        parts.push(json!({"type": "text", "text": text}));
                    }
                    Some("image") => {
                        let mime = block
                            .get("mimeType")
                            .and_then(Value::as_str)
                            .unwrap_or("image/png");
                        let data = block.get("data").and_then(Value::as_str).unwrap_or("");
                        parts.push(json!({
                            "type": "file",
                            "mediaType": mime,
                            "url": format!("data:{mime};base64,{data}"),
                        }));
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    parts
}

fn assistant_parts(message: &Value, assistant: &mut Assistant) {
    assistant.parts.push(json!({"type": "step-start"}));
    if let Some(blocks) = message.get("content").and_then(Value::as_array) {
        for block in blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                    if !text.is_empty() {
                        assistant
                            .parts
                            .push(json!({"type": "text", "text": text, "state": "done"}));
                    }
                }
                Some("thinking") => {
                    let text = block.get("thinking").and_then(Value::as_str).unwrap_or("");
                    if !text.is_empty() {
                        assistant
                            .parts
                            .push(json!({"type": "reasoning", "text": text, "state": "done"}));
                    }
                }
                Some("toolCall") => {
                    let id = block.get("id").and_then(Value::as_str).unwrap_or("");
                    let name = block.get("name").and_then(Value::as_str).unwrap_or("");
                    let input = block.get("arguments").cloned().unwrap_or_else(|| json!({}));
                    assistant.parts.push(json!({
                        "type": "dynamic-tool",
                        "toolName": name,
                        "toolCallId": id,
                        "state": "input-available",
                        "input": input,
                    }));
                }
                _ => {}
            }
        }
    }
    if let Some(usage) = message.get("usage") {
        if let Ok(u) = serde_json::from_value::<Usage>(usage.clone()) {
            assistant.meta.usage.add(&u);
        }
    }
    if let (Some(provider), Some(id)) = (
        message.get("provider").and_then(Value::as_str),
        message.get("model").and_then(Value::as_str),
    ) {
        assistant.meta.model = Some(crate::events::ModelRef {
            provider: provider.to_string(),
            id: id.to_string(),
        });
    }
    if let Some(reason) = message.get("stopReason").and_then(Value::as_str) {
        assistant.meta.stop_reason = Some(reason.to_string());
    }
}

/// Completes the tool part a result answers: `output-available` with `{content, details}` (what
/// the chat stream sent), or `output-error` with the result's text.
fn tool_result(message: &Value, assistant: &mut Assistant) {
    let Some(call_id) = message.get("toolCallId").and_then(Value::as_str) else {
        return;
    };
    let Some(part) = assistant.parts.iter_mut().rev().find(|p| {
        p.get("type").and_then(Value::as_str) == Some("dynamic-tool")
            && p.get("toolCallId").and_then(Value::as_str) == Some(call_id)
    }) else {
        return;
    };
    let Some(part) = part.as_object_mut() else {
        return;
    };
    let content = message.get("content").cloned().unwrap_or_else(|| json!([]));
    if message.get("isError").and_then(Value::as_bool) == Some(true) {
        let text: String = content
            .as_array()
            .map(|blocks| {
                blocks
                    .iter()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("")
            })
            .unwrap_or_default();
        part.insert("state".into(), "output-error".into());
        part.insert("errorText".into(), text.into());
    } else {
        let mut output = Map::new();
        output.insert("content".into(), content);
        if let Some(details) = message.get("details") {
            output.insert("details".into(), details.clone());
        }
        part.insert("state".into(), "output-available".into());
        part.insert("output".into(), Value::Object(output));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(v: Value) -> Vec<Entry> {
        serde_json::from_value(v).expect("entries")
    }

    fn conversation() -> Value {
        json!([
            {"id": "m", "type": "custom", "customType": RUN_MARKER, "data": {"runId": "run-1"}},
            {"id": "u1", "type": "message", "message": {"role": "user", "content": [
                {"type": "text", "text": "read it"},
                {"type": "image", "data": "AAAA", "mimeType": "image/png"}
            ]}},
            {"id": "a1", "type": "message", "message": {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm"},
                {"type": "toolCall", "id": "t1", "name": "read", "arguments": {"path": "x"}}
            ], "usage": {"input": 3, "output": 4, "totalTokens": 7, "cost": {"total": 0.5}},
               "provider": "faux", "model": "faux-1", "stopReason": "toolUse"}},
            {"id": "r1", "type": "message", "message": {"role": "toolResult", "toolCallId": "t1",
               "content": [{"type": "text", "text": "data"}], "isError": false}},
            {"id": "a2", "type": "message", "message": {"role": "assistant", "content": [
                {"type": "text", "text": "done"}
            ], "usage": {"input": 1, "output": 1, "totalTokens": 2, "cost": {"total": 0.25}},
               "provider": "faux", "model": "faux-1", "stopReason": "stop"}},
            {"id": "m2", "type": "custom", "customType": RUN_MARKER, "data": {"runId": "run-2"}},
            {"id": "u2", "type": "message", "message": {"role": "user", "content": "again"}},
            {"id": "a3", "type": "message", "message": {"role": "assistant", "content": [
                {"type": "text", "text": "partial"}
            ]}}
        ])
    }

    #[test]
    fn a_run_becomes_one_assistant_message_with_its_id_and_usage() {
        let ui = ui_messages(entries(conversation()));
        assert_eq!(ui.len(), 4);
        assert_eq!(ui[0]["id"], "u1");
        assert_eq!(ui[0]["parts"][1]["url"], "data:image/png;base64,AAAA");
        let a = &ui[1];
        assert_eq!(a["id"], "run-1");
        assert_eq!(a["metadata"]["runId"], "run-1");
        assert_eq!(a["metadata"]["usage"]["totalTokens"], 9.0);
        assert_eq!(a["metadata"]["usage"]["cost"]["total"], 0.75);
        assert_eq!(
            a["metadata"]["model"],
            json!({"provider": "faux", "id": "faux-1"})
        );
        assert_eq!(a["metadata"]["stopReason"], "stop");
        let types: Vec<&str> = a["parts"]
            .as_array()
            .expect("parts")
            .iter()
            .map(|p| p["type"].as_str().expect("type"))
            .collect();
        assert_eq!(
            types,
            [
                "step-start",
                "reasoning",
                "dynamic-tool",
                "step-start",
                "text"
            ]
        );
        assert_eq!(a["parts"][2]["state"], "output-available");
        assert_eq!(a["parts"][2]["output"]["content"][0]["text"], "data");
        assert_eq!(ui[3]["id"], "run-2");
    }

    #[test]
    fn a_running_run_is_cut_at_its_user_message() {
        let mut list = entries(conversation());
        cut_at_run(&mut list, "run-2");
        let ui = ui_messages(list);
        assert_eq!(ui.last().expect("last")["id"], "u2");
        let mut list = entries(conversation());
        cut_at_run(&mut list, "unknown");
        assert_eq!(list.len(), 8);
    }

    #[test]
    fn pages_walk_back_from_the_end() {
        let p = page(entries(conversation()), Format::Ui, 2, None).expect("page");
        assert!(p.has_more);
        assert_eq!(p.messages[0]["id"], "u2");
        let first = p.messages[0]["id"].as_str().expect("id").to_string();
        let p = page(entries(conversation()), Format::Ui, 2, Some(&first)).expect("page");
        assert!(!p.has_more);
        assert_eq!(p.messages[0]["id"], "u1");
        assert!(page(entries(conversation()), Format::Ui, 2, Some("nope")).is_err());
        let p = page(entries(conversation()), Format::Pi, 100, None).expect("pi");
        assert_eq!(p.messages.len(), 6);
        assert_eq!(p.messages[0]["id"], "u1");
    }

    #[test]
    fn a_steered_message_splits_the_run() {
        let ui = ui_messages(entries(json!([
            {"id": "m", "type": "custom", "customType": RUN_MARKER, "data": {"runId": "r"}},
            {"id": "u1", "type": "message", "message": {"role": "user", "content": "a"}},
            {"id": "a1", "type": "message", "message": {"role": "assistant", "content": [{"type": "text", "text": "x"}]}},
            {"id": "u2", "type": "message", "message": {"role": "user", "content": "b"}},
            {"id": "a2", "type": "message", "message": {"role": "assistant", "content": [{"type": "text", "text": "y"}]}}
        ])));
        let ids: Vec<&str> = ui.iter().map(|m| m["id"].as_str().expect("id")).collect();
        assert_eq!(ids, ["u1", "r", "u2", "r-1"]);
        // The same, when the run prompted again for the steered message (a second marker).
        let ui = ui_messages(entries(json!([
            {"id": "m", "type": "custom", "customType": RUN_MARKER, "data": {"runId": "r"}},
            {"id": "u1", "type": "message", "message": {"role": "user", "content": "a"}},
            {"id": "a1", "type": "message", "message": {"role": "assistant", "content": [{"type": "text", "text": "x"}]}},
            {"id": "m2", "type": "custom", "customType": RUN_MARKER, "data": {"runId": "r"}},
            {"id": "u2", "type": "message", "message": {"role": "user", "content": "b"}},
            {"id": "a2", "type": "message", "message": {"role": "assistant", "content": [{"type": "text", "text": "y"}]}}
        ])));
        let ids: Vec<&str> = ui.iter().map(|m| m["id"].as_str().expect("id")).collect();
        assert_eq!(ids, ["u1", "r", "u2", "r-1"]);
    }
}
