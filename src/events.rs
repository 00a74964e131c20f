//! Events: what enters Rust from the agent, and the gateway events that leave it.
//!
//! An agent event crosses from JS carrying only the fields the gateway needs (never the
//! partial message or message lists pi attaches), so its cost does not grow with the
//! length of the answer. A gateway event is encoded once into a [`Frame`] — the SSE bytes,
//! with the JSON inside them addressable — and that one buffer is shared by every
//! subscriber of the session.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// JSON that arrived as text and was checked once on entry.
pub type Json = Box<RawValue>;

/// An agent event as it enters the core. Indexes are the content index in the assistant
/// message; ids and names are the tool call's.
#[derive(Debug)]
pub enum AgentEvent {
    TurnStart,
    TurnEnd,
    MessageStart {
        role: String,
    },
    TextStart {
        index: u32,
    },
    TextDelta {
        index: u32,
        delta: String,
    },
    TextEnd {
        index: u32,
    },
    ThinkingStart {
        index: u32,
    },
    ThinkingDelta {
        index: u32,
        delta: String,
    },
    ThinkingEnd {
        index: u32,
    },
    ToolCallStart {
        index: u32,
        id: String,
        name: String,
    },
    ToolCallDelta {
        index: u32,
        id: String,
        delta: String,
    },
    ToolCallEnd {
        index: u32,
        id: String,
        name: String,
        input: Json,
    },
    ToolStart {
        id: String,
        name: String,
        args: Json,
    },
    ToolUpdate {
        id: String,
        name: String,
        partial: Json,
    },
    ToolEnd {
        id: String,
        name: String,
        result: Json,
        is_error: bool,
    },
    /// An assistant message ended; `text` is its text parts joined.
    MessageComplete {
        text: String,
        /// pi's `usage` of the message (`null` when it had none).
        usage: Json,
        stop_reason: Option<String>,
        /// `{provider, id}` of the model that wrote it (`null` when unknown).
        model: Json,
    },
    /// pi's `agent_start`: the run is under way (an abort asked for before it is applied now).
    AgentStart,
    /// pi's `agent_end`.
    AgentEnd,
    /// A session-level event of pi passed through with its fields (`type`, `sessionKey` and
    /// `runId` removed from them).
    Info {
        kind: InfoKind,
        fields: Map<String, Value>,
    },
    /// pi's `queue_update`: its pending steering and follow-up texts (JSON arrays of strings).
    QueueUpdate {
        steering: Json,
        follow_up: Json,
    },
    /// Nothing to tell subscribers; only the message count moved.
    Touch,
}

/// The pi events passed through as they are (SPEC section 12, "Fidelity").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoKind {
    CompactionStart,
    CompactionEnd,
    AutoRetryStart,
    AutoRetryEnd,
    ThinkingLevelChanged,
    SessionInfoChanged,
    ModelChanged,
}

impl InfoKind {
    pub const ALL: [InfoKind; 7] = [
        InfoKind::CompactionStart,
        InfoKind::CompactionEnd,
        InfoKind::AutoRetryStart,
        InfoKind::AutoRetryEnd,
        InfoKind::ThinkingLevelChanged,
        InfoKind::SessionInfoChanged,
        InfoKind::ModelChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InfoKind::CompactionStart => "compaction_start",
            InfoKind::CompactionEnd => "compaction_end",
            InfoKind::AutoRetryStart => "auto_retry_start",
            InfoKind::AutoRetryEnd => "auto_retry_end",
            InfoKind::ThinkingLevelChanged => "thinking_level_changed",
            InfoKind::SessionInfoChanged => "session_info_changed",
            InfoKind::ModelChanged => "model_changed",
        }
    }

    pub fn parse(text: &str) -> Option<InfoKind> {
        InfoKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// A pi event passed through, borrowing its fields for the one encoding.
pub struct InfoEvent<'a> {
    pub kind: InfoKind,
    pub session_key: &'a str,
    /// Its own fields (`type`, `sessionKey` and `runId` already removed).
    pub fields: &'a Map<String, Value>,
}

impl Serialize for InfoEvent<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.fields.len() + 2))?;
        map.serialize_entry("type", self.kind.as_str())?;
        map.serialize_entry("sessionKey", self.session_key)?;
        for (name, value) in self.fields {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// `GatewaySessionSnapshot`, as served.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub session_key: String,
    pub session_id: String,
    pub message_count: u32,
    pub queue_depth: u32,
    pub processing: bool,
    pub last_active_at: u64,
    pub created_at: u64,
    /// pi's session name, once one is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `{provider, id}` of the session's model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_level: Option<String>,
}

impl Snapshot {
    /// What a `hello` carries when the session cannot be asked: its key, nothing else.
    pub fn empty(key: &str) -> Snapshot {
        Snapshot {
            session_key: key.to_string(),
            session_id: String::new(),
            message_count: 0,
            queue_depth: 0,
            processing: false,
            last_active_at: 0,
            created_at: 0,
            name: None,
            model: None,
            thinking_level: None,
        }
    }
}

/// A model as the gateway names it: `{provider, id}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ModelRef {
    pub provider: String,
    pub id: String,
}

/// The events of SPEC section 5, borrowing their fields for the one encoding.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GatewayEvent<'a> {
    Hello {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
        snapshot: &'a Snapshot,
        /// Set when the log no longer reaches back to what the client asked to resume from.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        missed: bool,
    },
    SessionState {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
        snapshot: &'a Snapshot,
    },
    TurnStart {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
    },
    TurnEnd {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
    },
    MessageStart {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
        role: &'a str,
    },
    Token {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
        delta: &'a str,
        #[serde(rename = "contentIndex")]
        content_index: u32,
    },
    Thinking {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
        delta: &'a str,
        #[serde(rename = "contentIndex")]
        content_index: u32,
    },
    ToolStart {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        #[serde(rename = "toolName")]
        tool_name: &'a str,
        args: &'a RawValue,
    },
    ToolUpdate {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        #[serde(rename = "toolName")]
        tool_name: &'a str,
        #[serde(rename = "partialResult")]
        partial_result: &'a RawValue,
    },
    ToolComplete {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        #[serde(rename = "toolName")]
        tool_name: &'a str,
        result: &'a RawValue,
        #[serde(rename = "isError")]
        is_error: bool,
    },
    MessageComplete {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
        text: &'a str,
        usage: &'a RawValue,
        #[serde(rename = "stopReason", skip_serializing_if = "Option::is_none")]
        stop_reason: Option<&'a str>,
        model: &'a RawValue,
    },
    AgentStart {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
    },
    AgentEnd {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
    },
    Error {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
        error: &'a str,
    },
    Aborted {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
    },
    RunStart {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
    },
    QueueUpdate {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
        steering: &'a RawValue,
        #[serde(rename = "followUp")]
        follow_up: &'a RawValue,
    },
    RunEnd {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
        status: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    },
    /// A tool call waits for a person's decision (SPEC section 13).
    ApprovalRequest {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
        #[serde(rename = "approvalId")]
        approval_id: &'a str,
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        #[serde(rename = "toolName")]
        tool_name: &'a str,
        args: &'a RawValue,
        #[serde(rename = "expiresAt")]
        expires_at: u64,
    },
    /// A pending approval was decided: by a client, by its timeout, or by an abort.
    ApprovalResolved {
        #[serde(rename = "sessionKey")]
        session_key: &'a str,
        #[serde(rename = "approvalId")]
        approval_id: &'a str,
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        approved: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        by: &'a str,
    },
    /// A pi event passed through ([`InfoKind`]): `{type, sessionKey, ...its fields}`.
    #[serde(untagged)]
    Info(InfoEvent<'a>),
}

/// Every `type` an event can have, in [`GatewayEvent::type_index`] order.
pub const EVENT_TYPES: [&str; 27] = [
    "hello",
    "session_state",
    "turn_start",
    "turn_end",
    "message_start",
    "token",
    "thinking",
    "tool_start",
    "tool_update",
    "tool_complete",
    "message_complete",
    "agent_start",
    "agent_end",
    "error",
    "aborted",
    "run_start",
    "queue_update",
    "run_end",
    "approval_request",
    "approval_resolved",
    "compaction_start",
    "compaction_end",
    "auto_retry_start",
    "auto_retry_end",
    "thinking_level_changed",
    "session_info_changed",
    "model_changed",
];

impl GatewayEvent<'_> {
    /// Where its `type` is in [`EVENT_TYPES`]: a counter per type without hashing its name.
    pub fn type_index(&self) -> usize {
        match self {
            GatewayEvent::Hello { .. } => 0,
            GatewayEvent::SessionState { .. } => 1,
            GatewayEvent::TurnStart { .. } => 2,
            GatewayEvent::TurnEnd { .. } => 3,
            GatewayEvent::MessageStart { .. } => 4,
            GatewayEvent::Token { .. } => 5,
            GatewayEvent::Thinking { .. } => 6,
            GatewayEvent::ToolStart { .. } => 7,
            GatewayEvent::ToolUpdate { .. } => 8,
            GatewayEvent::ToolComplete { .. } => 9,
            GatewayEvent::MessageComplete { .. } => 10,
            GatewayEvent::AgentStart { .. } => 11,
            GatewayEvent::AgentEnd { .. } => 12,
            GatewayEvent::Error { .. } => 13,
            GatewayEvent::Aborted { .. } => 14,
            GatewayEvent::RunStart { .. } => 15,
            GatewayEvent::QueueUpdate { .. } => 16,
            GatewayEvent::RunEnd { .. } => 17,
            GatewayEvent::ApprovalRequest { .. } => 18,
            GatewayEvent::ApprovalResolved { .. } => 19,
            GatewayEvent::Info(info) => match info.kind {
                InfoKind::CompactionStart => 20,
                InfoKind::CompactionEnd => 21,
                InfoKind::AutoRetryStart => 22,
                InfoKind::AutoRetryEnd => 23,
                InfoKind::ThinkingLevelChanged => 24,
                InfoKind::SessionInfoChanged => 25,
                InfoKind::ModelChanged => 26,
            },
        }
    }

    /// Its `type`, as subscribers read it.
    pub fn type_name(&self) -> &'static str {
        EVENT_TYPES[self.type_index()]
    }
}

impl AgentEvent {
    /// The public event this agent event becomes, if any (chat-only detail has none).
    pub fn public<'a>(&'a self, session_key: &'a str) -> Option<GatewayEvent<'a>> {
        Some(match self {
            AgentEvent::TurnStart => GatewayEvent::TurnStart { session_key },
            AgentEvent::TurnEnd => GatewayEvent::TurnEnd { session_key },
            AgentEvent::MessageStart { role } => GatewayEvent::MessageStart { session_key, role },
            AgentEvent::TextDelta { index, delta } => GatewayEvent::Token {
                session_key,
                delta,
                content_index: *index,
            },
            AgentEvent::ThinkingDelta { index, delta } => GatewayEvent::Thinking {
                session_key,
                delta,
                content_index: *index,
            },
            AgentEvent::ToolStart { id, name, args } => GatewayEvent::ToolStart {
                session_key,
                tool_call_id: id,
                tool_name: name,
                args,
            },
            AgentEvent::ToolUpdate { id, name, partial } => GatewayEvent::ToolUpdate {
                session_key,
                tool_call_id: id,
                tool_name: name,
                partial_result: partial,
            },
            AgentEvent::ToolEnd {
                id,
                name,
                result,
                is_error,
            } => GatewayEvent::ToolComplete {
                session_key,
                tool_call_id: id,
                tool_name: name,
                result,
                is_error: *is_error,
            },
            AgentEvent::MessageComplete {
                text,
                usage,
                stop_reason,
                model,
            } => GatewayEvent::MessageComplete {
                session_key,
                text,
                usage,
                stop_reason: stop_reason.as_deref(),
                model,
            },
            AgentEvent::AgentStart => GatewayEvent::AgentStart { session_key },
            AgentEvent::AgentEnd => GatewayEvent::AgentEnd { session_key },
            AgentEvent::Info { kind, fields } => GatewayEvent::Info(InfoEvent {
                kind: *kind,
                session_key,
                fields,
            }),
            AgentEvent::QueueUpdate {
                steering,
                follow_up,
            } => GatewayEvent::QueueUpdate {
                session_key,
                steering,
                follow_up,
            },
            _ => return None,
        })
    }

    /// Whether the chat stream of the running message wants this event.
    pub fn is_chat_relevant(&self) -> bool {
        !matches!(
            self,
            AgentEvent::Touch
                | AgentEvent::AgentStart
                | AgentEvent::AgentEnd
                | AgentEvent::Info { .. }
                | AgentEvent::QueueUpdate { .. }
                | AgentEvent::MessageStart { .. }
        )
    }
}

/// One encoded event: `id: <seq>\ndata: <json>\n\n`, shared by every reader of the log.
#[derive(Debug, Clone)]
pub struct Frame {
    bytes: Bytes,
    json_start: usize,
    json_end: usize,
}

impl Frame {
    /// Encodes `event` with `id: <seq>`; `run_id` becomes its last field, `"runId"`.
    pub fn encode(seq: u64, event: &GatewayEvent<'_>, run_id: Option<&str>) -> Frame {
        thread_local! {
            /// Where frames are written before being copied out at their exact size: a log
            /// keeps thousands of them, and a buffer grown by doubling would keep its slack.
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            buf.clear();
            // Writing into a Vec cannot fail, and serializing borrowed strings, numbers,
            // booleans and already-validated raw JSON cannot either.
            let _ = std::io::Write::write_fmt(&mut *buf, format_args!("id: {seq}\ndata: "));
            let json_start = buf.len();
            let _ = serde_json::to_writer(&mut *buf, event);
            if let Some(run_id) = run_id {
                // The object's closing brace gives way to one more field. A run id is a
                // UUID: nothing in it needs escaping, but it goes through serde all the same.
                if buf.last() == Some(&b'}') {
                    buf.pop();
                    buf.extend_from_slice(b",\"runId\":");
                    let _ = serde_json::to_writer(&mut *buf, run_id);
                    buf.push(b'}');
                }
            }
            let json_end = buf.len();
            buf.extend_from_slice(b"\n\n");
            let frame = Frame {
                bytes: Bytes::copy_from_slice(&buf),
                json_start,
                json_end,
            };
            // A huge frame (a big tool result) does not pin its buffer for the thread's life.
            if buf.capacity() > 64 * 1024 {
                *buf = Vec::new();
            }
            frame
        })
    }

    /// A frame as [`Frame::sse`] gave it (`id: …\ndata: <json>\n\n`), read back (from another
    /// node's log). `None` for bytes of another shape.
    pub fn from_sse(bytes: Bytes) -> Option<Frame> {
        let json_start = bytes.windows(7).position(|w| w == b"\ndata: ")? + 7;
        let json_end = bytes.len().checked_sub(2)?;
        if !bytes.starts_with(b"id: ") || !bytes.ends_with(b"\n\n") || json_end < json_start {
            return None;
        }
        Some(Frame {
            bytes,
            json_start,
            json_end,
        })
    }

    /// The whole SSE frame.
    pub fn sse(&self) -> Bytes {
        self.bytes.clone()
    }

    /// Bytes held by this frame.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The event's JSON alone.
    pub fn json(&self) -> Bytes {
        self.bytes.slice(self.json_start..self.json_end)
    }
}

/// Parses JSON text that crossed from JS; anything unparsable (or absent) becomes `null`.
pub fn json_or_null(text: Option<String>) -> Json {
    text.and_then(|t| RawValue::from_string(t).ok())
        .unwrap_or_else(null_json)
}

/// `[]`: pi's queue lists before it has reported any.
pub fn empty_list_json() -> Json {
    // "[]" is valid JSON: this cannot fail.
    RawValue::from_string("[]".to_string()).unwrap_or_else(|_| unreachable!())
}

pub fn null_json() -> Json {
    // "null" is valid JSON: this cannot fail.
    RawValue::from_string("null".to_string()).unwrap_or_else(|_| unreachable!())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_event_type_name_is_the_type_it_is_sent_with() {
        use super::*;
        let snapshot = Snapshot::empty("k");
        let raw = null_json();
        let fields = Map::new();
        let k = "k";
        let mut events = vec![
            GatewayEvent::Hello {
                session_key: k,
                snapshot: &snapshot,
                missed: false,
            },
            GatewayEvent::SessionState {
                session_key: k,
                snapshot: &snapshot,
            },
            GatewayEvent::TurnStart { session_key: k },
            GatewayEvent::TurnEnd { session_key: k },
            GatewayEvent::MessageStart {
                session_key: k,
                role: "user",
            },
            GatewayEvent::Token {
                session_key: k,
                delta: "d",
                content_index: 0,
            },
            GatewayEvent::Thinking {
                session_key: k,
                delta: "d",
                content_index: 0,
            },
            GatewayEvent::ToolStart {
                session_key: k,
                tool_call_id: "t",
                tool_name: "n",
                args: &raw,
            },
            GatewayEvent::ToolUpdate {
                session_key: k,
                tool_call_id: "t",
                tool_name: "n",
                partial_result: &raw,
            },
            GatewayEvent::ToolComplete {
                session_key: k,
                tool_call_id: "t",
                tool_name: "n",
                result: &raw,
                is_error: false,
            },
            GatewayEvent::MessageComplete {
                session_key: k,
                text: "",
                usage: &raw,
                stop_reason: None,
                model: &raw,
            },
            GatewayEvent::AgentStart { session_key: k },
            GatewayEvent::AgentEnd { session_key: k },
            GatewayEvent::Error {
                session_key: k,
                error: "e",
            },
            GatewayEvent::Aborted { session_key: k },
            GatewayEvent::RunStart { session_key: k },
            GatewayEvent::QueueUpdate {
                session_key: k,
                steering: &raw,
                follow_up: &raw,
            },
            GatewayEvent::RunEnd {
                session_key: k,
                status: "succeeded",
                error: None,
            },
            GatewayEvent::ApprovalRequest {
                session_key: k,
                approval_id: "a",
                tool_call_id: "t",
                tool_name: "n",
                args: &raw,
                expires_at: 0,
            },
            GatewayEvent::ApprovalResolved {
                session_key: k,
                approval_id: "a",
                tool_call_id: "t",
                approved: true,
                reason: None,
                by: "client",
            },
        ];
        for kind in InfoKind::ALL {
            events.push(GatewayEvent::Info(InfoEvent {
                kind,
                session_key: k,
                fields: &fields,
            }));
        }
        assert_eq!(events.len(), EVENT_TYPES.len());
        for (i, event) in events.iter().enumerate() {
            let json: serde_json::Value = serde_json::to_value(event).expect("serializes");
            assert_eq!(json["type"], event.type_name(), "{json}");
            assert_eq!(event.type_index(), i);
        }
    }

    use super::*;

    #[test]
    fn a_frame_carries_id_and_json_once() {
        let ev = AgentEvent::TextDelta {
            index: 2,
            delta: "hé\"llo".into(),
        };
        let f = Frame::encode(7, &ev.public("k").expect("public"), Some("r-1"));
        let json = f.json();
        let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(v["type"], "token");
        assert_eq!(v["sessionKey"], "k");
        assert_eq!(v["delta"], "hé\"llo");
        assert_eq!(v["contentIndex"], 2);
        let sse = f.sse();
        assert!(sse.starts_with(b"id: 7\ndata: {\"type\":\"token\""));
        assert!(sse.ends_with(b",\"runId\":\"r-1\"}\n\n"));
        assert_eq!(v["runId"], "r-1");
    }

    #[test]
    fn a_passed_through_event_is_its_type_key_and_fields() {
        let mut fields = Map::new();
        fields.insert("reason".into(), "manual".into());
        let ev = AgentEvent::Info {
            kind: InfoKind::CompactionStart,
            fields,
        };
        let f = Frame::encode(3, &ev.public("k").expect("public"), Some("r-1"));
        assert_eq!(
            &f.json()[..],
            br#"{"type":"compaction_start","sessionKey":"k","reason":"manual","runId":"r-1"}"#
        );
    }

    #[test]
    fn chat_only_events_have_no_public_form() {
        assert!(AgentEvent::TextStart { index: 0 }.public("k").is_none());
        assert!(AgentEvent::Touch.public("k").is_none());
        let raw = json_or_null(Some("{not json".into()));
        assert_eq!(raw.get(), "null");
    }
}
