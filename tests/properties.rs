//! Property tests for the pure parts of request handling: path decoding, routing and
//! request-body text extraction. Whatever a client sends, these never panic, and what they
//! accept round-trips.

use pi_gateway::http::chat::extract_user_text;
use pi_gateway::http::router::{decode_segment, session_path, webhook_route, SessionPath};
use pi_gateway::session::Mode;
use pi_gateway::validate;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

proptest! {
    #[test]
    fn any_encoded_key_decodes_back_to_itself(key in "\\PC{1,40}") {
        prop_assert_eq!(decode_segment(&encode(&key)), Some(key));
    }

    #[test]
    fn decoding_arbitrary_text_never_panics(raw in "[%0-9a-fA-FzZ/]{0,24}") {
        if let Some(decoded) = decode_segment(&raw) {
            prop_assert!(decoded.len() <= raw.len());
        }
    }

    #[test]
    fn a_session_path_yields_the_key_segment_untouched(key in "[^/]{1,30}", action in "(events|messages|abort|reset|chat)") {
        let base = format!("/sessions/{key}");
        prop_assert_eq!(session_path(&base), SessionPath::Session(key.as_str()));
        let with_action = format!("{base}/{action}");
        prop_assert_eq!(session_path(&with_action), SessionPath::Action(key.as_str(), action.as_str()));
    }

    #[test]
    fn routing_arbitrary_paths_never_panics(path in "/[a-z/%.]{0,40}") {
        let _ = session_path(&path);
        let _ = webhook_route("/webhook", &path);
    }

    #[test]
    fn webhook_routes_stay_below_the_base_path(suffix in "[a-z0-9/-]{0,20}") {
        let path = format!("/webhook{suffix}");
        match webhook_route("/webhook", &path) {
            Some(route) => prop_assert!(suffix.is_empty() || suffix.starts_with('/'), "{route}"),
            None => prop_assert!(!suffix.is_empty() && !suffix.starts_with('/')),
        }
    }

    #[test]
    fn text_beats_prompt_beats_messages(text in "\\PC{0,12}", prompt in "\\PC{0,12}", last in "\\PC{0,12}") {
        let body = json!({
            "text": text, "prompt": prompt,
            "messages": [{"role": "user", "parts": [{"type": "text", "text": last}]}]
        });
        let Value::Object(body) = body else { unreachable!() };
        let expected = [&text, &prompt, &last]
            .into_iter()
            .find(|s| !s.trim().is_empty())
            .cloned();
        prop_assert_eq!(extract_user_text(&body), expected);
    }

    #[test]
    fn extraction_from_arbitrary_json_never_panics(v in arb_json()) {
        if let Value::Object(map) = v {
            let _ = extract_user_text(&map);
        }
    }

    #[test]
    fn only_the_five_modes_spelled_exactly_are_accepted(v in arb_json(), text in "\\PC{0,12}") {
        const MODES: [&str; 5] = ["queue", "steer", "followUp", "interrupt", "reject"];
        for value in [v, Value::String(text)] {
            let checked = validate::mode(Some(&value));
            match &value {
                Value::Null => prop_assert_eq!(checked, Ok(None)),
                Value::String(s) if MODES.contains(&s.as_str()) => {
                    prop_assert_eq!(checked.ok().flatten().map(Mode::as_str), Some(s.as_str()));
                }
                _ => {
                    let message = checked.err().unwrap_or_default();
                    prop_assert!(message.starts_with("Invalid mode: expected one of queue, steer, followUp, interrupt, reject, got "), "{}", message);
                }
            }
        }
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "\\PC{0,8}".prop_map(Value::String),
        Just(json!("user")),
        Just(json!("text")),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("text".to_string()),
                        Just("prompt".to_string()),
                        Just("messages".to_string()),
                        Just("role".to_string()),
                        Just("parts".to_string()),
                        Just("content".to_string()),
                        Just("type".to_string())
                    ],
                    inner
                ),
                0..4
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// Issue 14: the body validators of the new routes and fields (SPEC section 12), and the history
// (pages, `before` walks, UIMessage ids and roles). Each property states the contract's rule on
// its own terms (a model written from the contract) and checks the validator against it.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use pi_gateway::config::Config;
use pi_gateway::history::{self, Format, RUN_MARKER};

const LEVELS: [&str; 6] = ["off", "minimal", "low", "medium", "high", "xhigh"];
const INVALID_LEVEL: &str =
    "Invalid level: expected one of off, minimal, low, medium, high, xhigh, got ";
const INVALID_LIMIT: &str = "Invalid limit: expected an integer from 1 to 1000";
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// A control character (Unicode category Cc): C0, DEL and C1.
fn is_cc(c: char) -> bool {
    c < ' ' || ('\u{7f}'..='\u{9f}').contains(&c)
}

/// Strings around the edges the validators care about: whitespace and control characters,
/// multi-byte characters, and lengths near a bound (`around` characters of one kind, give or
/// take a few, with optional padding).
fn edgy_string(around: usize) -> impl Strategy<Value = String> {
    let lo = around.saturating_sub(4);
    prop_oneof![
        "\\PC{0,12}",
        "[ \t\n\r\u{0}\u{1}\u{1f}\u{7f}\u{85}\u{9f}\u{a0}\u{2003}\u{feff}aZ0é😀]{0,14}",
        (
            "[ \t\n]{0,3}",
            lo..=around + 4,
            prop::sample::select(vec!['x', 'é', '😀', '\u{7}']),
            "[ \t\n]{0,3}"
        )
            .prop_map(|(l, n, c, r)| format!("{l}{}{r}", c.to_string().repeat(n))),
    ]
}

/// A JSON value or a string (the shapes a body field arrives in).
fn field_value(around: usize) -> impl Strategy<Value = Value> {
    prop_oneof![arb_json(), edgy_string(around).prop_map(Value::String)]
}

proptest! {
    #[test]
    fn thinking_level_accepts_exactly_the_six_levels(v in arb_json(), s in "\\PC{0,8}", pick in 0usize..6) {
        for value in [v, Value::String(s), json!(LEVELS[pick]), json!(LEVELS[pick].to_uppercase()), json!(format!(" {}", LEVELS[pick]))] {
            let checked = validate::thinking_level(Some(&value));
            match value.as_str() {
                Some(text) if LEVELS.contains(&text) => prop_assert_eq!(checked, Ok(LEVELS[LEVELS.iter().position(|l| *l == text).unwrap()])),
                _ => {
                    let message = checked.err().unwrap_or_default();
                    prop_assert!(message.starts_with(INVALID_LEVEL), "{}", message);
                }
            }
        }
        let missing = validate::thinking_level(None).err().unwrap_or_default();
        prop_assert!(missing.starts_with(INVALID_LEVEL), "{}", missing);
    }

    #[test]
    fn name_accepts_iff_trimmed_1_to_200_chars_without_control_chars_and_returns_it_trimmed(value in field_value(200)) {
        let checked = validate::name(Some(&value));
        match &value {
            Value::String(text) => {
                let trimmed = text.trim();
                let n = trimmed.chars().count();
                if (1..=200).contains(&n) && !trimmed.chars().any(is_cc) {
                    prop_assert_eq!(checked, Ok(trimmed.to_string()));
                } else {
                    let message = checked.err().unwrap_or_default();
                    prop_assert!(message.starts_with("Invalid name: "), "{:?} → {}", text, message);
                }
            }
            _ => {
                let message = checked.err().unwrap_or_default();
                prop_assert!(message.starts_with("Invalid name: expected a string"), "{}", message);
            }
        }
    }

    #[test]
    fn an_accepted_name_is_never_blank_padded_long_or_controlled(value in field_value(200)) {
        if let Ok(name) = validate::name(Some(&value)) {
            prop_assert!(!name.is_empty());
            prop_assert_eq!(name.trim(), name.as_str());
            prop_assert!(name.chars().count() <= 200);
            prop_assert!(!name.chars().any(is_cc));
        }
    }

    #[test]
    fn history_limit_accepts_exactly_decimal_1_to_1000(
        text in prop_oneof![
            "\\PC{0,6}",
            "[0-9+\\-. eE_x]{0,6}",
            (0u32..2000, "(|0|00|\\+|-| )", "(| |\\.0|0)").prop_map(|(n, pre, post)| format!("{pre}{n}{post}")),
            "0{0,30}[0-9]{1,3}",
            "[0-9]{18,30}",
        ]
    ) {
        let checked = validate::history_limit(Some(text.as_str()));
        let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        let significant = text.trim_start_matches('0');
        let value = (digits && significant.len() <= 4).then(|| significant.parse::<usize>().unwrap_or(0));
        match value.filter(|n| (1..=1000).contains(n)) {
            Some(n) => prop_assert_eq!(checked, Ok(n)),
            None => prop_assert_eq!(checked, Err(INVALID_LIMIT.to_string()), "{:?}", text),
        }
        prop_assert_eq!(validate::history_limit(None), Ok(100));
    }

    #[test]
    fn model_ref_accepts_iff_both_are_strings_of_1_to_256_bytes(
        provider in prop::option::of(field_value(256)),
        id in prop::option::of(field_value(256)),
        extra in arb_json(),
    ) {
        let mut body = Map::new();
        if let Some(p) = &provider { body.insert("provider".into(), p.clone()); }
        if let Some(i) = &id { body.insert("id".into(), i.clone()); }
        body.insert("model".into(), extra);
        let good = |v: &Option<Value>| match v {
            Some(Value::String(s)) if (1..=256).contains(&s.len()) => Some(s.clone()),
            _ => None,
        };
        let checked = validate::model_ref(&body);
        match (good(&provider), good(&id)) {
            (Some(p), Some(i)) => prop_assert_eq!(checked, Ok((p, i))),
            (None, _) => {
                let message = checked.err().unwrap_or_default();
                prop_assert!(message.starts_with("Invalid provider: "), "{}", message);
            }
            (Some(_), None) => {
                let message = checked.err().unwrap_or_default();
                prop_assert!(message.starts_with("Invalid id: "), "{}", message);
            }
        }
    }

    #[test]
    fn instructions_accept_absent_null_or_strings_of_at_most_10000_chars(
        value in prop_oneof![
            arb_json(),
            "\\PC{0,20}".prop_map(Value::String),
            (9_990usize..=10_010, prop::sample::select(vec!['a', 'é', '😀', '\n'])).prop_map(|(n, c)| Value::String(c.to_string().repeat(n))),
        ]
    ) {
        let checked = validate::instructions(Some(&value));
        match &value {
            Value::Null => prop_assert_eq!(checked, Ok(String::new())),
            Value::String(s) if s.chars().count() <= 10_000 => prop_assert_eq!(checked, Ok(s.clone())),
            _ => {
                let message = checked.err().unwrap_or_default();
                prop_assert!(message.starts_with("Invalid instructions: "), "{}", message);
            }
        }
        prop_assert_eq!(validate::instructions(None), Ok(String::new()));
    }
}

// ---- chat file parts

/// The limits the chat-file properties run with: small, so that the bounds are reached.
fn file_config() -> Config {
    let mut config = Config::for_tests();
    config.max_images = 3;
    config.max_image_bytes = 64;
    config
}

/// Bytes that start like an image of `kind` (0 PNG, 1 JPEG, 2 GIF, 3 WEBP, else none), then `tail`.
fn image_bytes(kind: usize, tail: &[u8]) -> Vec<u8> {
    let mut bytes = match kind {
        0 => b"\x89PNG\r\n\x1a\n".to_vec(),
        1 => vec![0xFF, 0xD8, 0xFF, 0xE0],
        2 => b"GIF89a".to_vec(),
        3 => {
            let mut b = b"RIFF".to_vec();
            b.extend_from_slice(&[0x10, 0, 0, 0]);
            b.extend_from_slice(b"WEBPVP8 ");
            b
        }
        _ => Vec::new(),
    };
    bytes.extend_from_slice(tail);
    bytes
}

/// Whether `bytes` are an image of type `mime` by the contract: its signature.
fn is_image(mime: &str, bytes: &[u8]) -> bool {
    match mime {
        "image/png" => {
            bytes.len() >= 8 && bytes[..8] == [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]
        }
        "image/jpeg" => bytes.len() >= 3 && bytes[..3] == [0xFF, 0xD8, 0xFF],
        "image/gif" => bytes.len() >= 6 && (&bytes[..6] == b"GIF87a" || &bytes[..6] == b"GIF89a"),
        "image/webp" => bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
        _ => false,
    }
}

/// A `file` part as a chat client might send it, right or wrong in every field.
fn arb_file_part() -> impl Strategy<Value = Value> {
    let media = prop_oneof![
        4 => prop::sample::select(IMAGE_TYPES.to_vec()).prop_map(|m| Some(json!(m))),
        1 => prop::sample::select(vec!["image/svg+xml", "IMAGE/PNG", "image/png ", "", "text/plain", "application/pdf", "image/bmp"]).prop_map(|m| Some(json!(m))),
        1 => arb_json().prop_map(Some),
        1 => Just(None),
    ];
    let url_shape = 0usize..12;
    (
        media,
        0usize..6,
        prop::collection::vec(any::<u8>(), 0..80),
        url_shape,
        "\\PC{0,12}",
        any::<prop::sample::Index>(),
    )
        .prop_map(|(media, kind, tail, shape, junk, at)| {
            let declared = media
                .as_ref()
                .and_then(Value::as_str)
                .unwrap_or("image/png")
                .to_string();
            let bytes = image_bytes(kind, &tail);
            let b64 = STANDARD.encode(&bytes);
            let url = match shape {
                0..=3 => Some(json!(format!("data:{declared};base64,{b64}"))),
                4 => Some(json!(format!(
                    "data:{declared};base64,{}",
                    STANDARD_NO_PAD.encode(&bytes)
                ))),
                5 => Some(json!(format!(
                    "data:{};base64,{b64}",
                    IMAGE_TYPES[kind % 4]
                ))),
                6 => Some(json!(format!("data:{declared},{b64}"))),
                7 => {
                    // One junk character somewhere in a good URL.
                    let mut url = format!("data:{declared};base64,{b64}");
                    let mut i = at.index(url.len() + 1);
                    while !url.is_char_boundary(i) {
                        i -= 1;
                    }
                    url.insert_str(i, if junk.is_empty() { "*" } else { &junk });
                    Some(json!(url))
                }
                8 => Some(json!(format!("data:{declared};base64,"))),
                9 => Some(json!(junk)),
                10 => Some(json!(5)),
                _ => None,
            };
            let mut part = Map::new();
            part.insert("type".into(), json!("file"));
            if let Some(m) = media {
                part.insert("mediaType".into(), m);
            }
            if let Some(u) = url {
                part.insert("url".into(), u);
            }
            part.insert("filename".into(), json!("x.png"));
            Value::Object(part)
        })
}

/// A valid image `file` part (of at most 8 + 40 bytes: within [`file_config`]'s limit).
fn good_file_part() -> impl Strategy<Value = Value> {
    (0usize..4, prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(kind, tail)| {
        let mime = IMAGE_TYPES[kind];
        json!({"type": "file", "mediaType": mime, "url": format!("data:{mime};base64,{}", STANDARD.encode(image_bytes(kind, &tail)))})
    })
}

/// A chat message: a user message whose parts mix file parts (good and bad), text parts and
/// junk, or junk.
fn arb_chat_message() -> impl Strategy<Value = Value> {
    let part = prop_oneof![
        3 => good_file_part(),
        3 => arb_file_part(),
        1 => "\\PC{0,8}".prop_map(|t| json!({"type": "text", "text": t})),
        1 => arb_json(),
    ];
    prop_oneof![
        6 => (prop::collection::vec(part, 0..7), prop::sample::select(vec!["user", "assistant", "USER"]))
            .prop_map(|(parts, role)| json!({"role": role, "parts": parts})),
        1 => arb_json().prop_map(|parts| json!({"role": "user", "parts": parts})),
        1 => arb_json(),
    ]
}

/// What the contract says of a message's file parts: the pi images `(mime, base64)` in order,
/// or the prefix of the error that refuses the first bad one (`messages[i].parts[j].<field>`),
/// or the error of one image too many.
fn expected_files(
    message: &Value,
    i: usize,
    config: &Config,
) -> Result<Vec<(String, String)>, String> {
    let Some(parts) = message.get("parts").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut images = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        if part.get("type").and_then(Value::as_str) != Some("file") {
            continue;
        }
        let Some(mime) = part
            .get("mediaType")
            .and_then(Value::as_str)
            .filter(|m| IMAGE_TYPES.contains(m))
        else {
            return Err(format!("Invalid messages[{i}].parts[{j}].mediaType: "));
        };
        let url_error = format!("Invalid messages[{i}].parts[{j}].url: ");
        let Some(data) = part
            .get("url")
            .and_then(Value::as_str)
            .and_then(|u| u.strip_prefix(&format!("data:{mime};base64,")))
            .filter(|d| !d.is_empty())
        else {
            return Err(url_error);
        };
        if images.len() == config.max_images {
            return Err(format!(
                "Invalid messages[{i}].parts: at most {} images per message",
                config.max_images
            ));
        }
        let bytes = STANDARD
            .decode(data)
            .or_else(|_| STANDARD_NO_PAD.decode(data));
        match bytes {
            Ok(b) if b.len() <= config.max_image_bytes && is_image(mime, &b) => {
                images.push((mime.to_string(), data.to_string()))
            }
            _ => return Err(url_error),
        }
    }
    Ok(images)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn chat_files_never_panics_on_arbitrary_json(message in arb_json(), index in any::<usize>()) {
        let _ = validate::chat_files(&message, index, &file_config());
        let _ = validate::chat_files(&json!({"role": "user", "parts": [message]}), index, &Config::for_tests());
    }

    #[test]
    fn chat_files_passes_only_valid_image_data_urls_and_names_the_first_bad_part(message in arb_chat_message(), index in 0usize..20) {
        let config = file_config();
        let checked = validate::chat_files(&message, index, &config);
        match expected_files(&message, index, &config) {
            Ok(images) => {
                let got = checked.map_err(|e| TestCaseError::fail(format!("refused a valid message: {e}\n{message}")))?;
                let expected = (!images.is_empty()).then(|| {
                    Value::Array(images.iter().map(|(m, d)| json!({"type": "image", "data": d, "mimeType": m})).collect())
                });
                prop_assert_eq!(got.map(|s| serde_json::from_str::<Value>(&s).expect("images JSON")), expected);
            }
            Err(prefix) => {
                let message_text = checked.err().unwrap_or_else(|| "accepted".into());
                prop_assert!(message_text.starts_with(&prefix), "expected {:?}…, got {:?}\n{}", prefix, message_text, message);
            }
        }
    }

    #[test]
    fn every_chat_file_refusal_names_messages_i_parts(message in arb_chat_message(), index in 0usize..20) {
        if let Err(e) = validate::chat_files(&message, index, &file_config()) {
            prop_assert!(e.starts_with(&format!("Invalid messages[{index}].parts")), "{}", e);
        }
    }
}

// ---- history

/// One entry of a realistic pi session (before ids): a user message, an assistant message
/// (text, thinking, tool calls, usage), a tool result, a run marker, another custom entry, a
/// compaction, or a message of an odd shape.
fn arb_entry_kind() -> impl Strategy<Value = Value> {
    let block = prop_oneof![
        "\\PC{0,6}".prop_map(|t| json!({"type": "text", "text": t})),
        "\\PC{0,6}".prop_map(|t| json!({"type": "thinking", "thinking": t})),
        (0u8..4).prop_map(|k| json!({"type": "toolCall", "id": format!("t{k}"), "name": "read", "arguments": {"path": "x"}})),
        arb_json(),
    ];
    let usage = json!({"input": 2, "output": 3, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 5,
        "cost": {"input": 0.5, "output": 0.25, "cacheRead": 0, "cacheWrite": 0, "total": 0.75}});
    prop_oneof![
        4 => "\\PC{0,6}".prop_map(|t| json!({"type": "message", "message": {"role": "user", "content": t}})),
        1 => "\\PC{0,6}".prop_map(|t| json!({"type": "message", "message": {"role": "user", "content": [
            {"type": "text", "text": t}, {"type": "image", "data": "AAAA", "mimeType": "image/png"}]}})),
        5 => (prop::collection::vec(block, 0..4), any::<bool>()).prop_map(move |(content, with_usage)| {
            let mut m = json!({"role": "assistant", "content": content, "provider": "faux", "model": "faux-1", "stopReason": "stop"});
            if with_usage { m["usage"] = usage.clone(); }
            json!({"type": "message", "message": m})
        }),
        2 => ((0u8..4), any::<bool>()).prop_map(|(k, err)| json!({"type": "message", "message": {
            "role": "toolResult", "toolCallId": format!("t{k}"), "isError": err, "content": [{"type": "text", "text": "out"}]}})),
        3 => Just(json!({"type": "custom", "customType": RUN_MARKER})),
        1 => Just(json!({"type": "custom", "customType": "other", "data": {"runId": "not-a-run"}})),
        1 => Just(json!({"type": "compaction", "summary": "s"})),
        1 => arb_json().prop_map(|m| json!({"type": "message", "message": m})),
    ]
}

/// A realistic session: unique entry ids (`e<n>`), each run marker with a run id of its own
/// (`run<n>`), parent ids chaining the entries.
fn arb_session() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(arb_entry_kind(), 0..40).prop_map(|kinds| {
        kinds
            .into_iter()
            .enumerate()
            .map(|(n, mut e)| {
                e["id"] = json!(format!("e{n}"));
                e["parentId"] = if n == 0 {
                    Value::Null
                } else {
                    json!(format!("e{}", n - 1))
                };
                e["timestamp"] = json!(format!("2025-01-01T00:00:{:02}Z", n % 60));
                if e["customType"] == RUN_MARKER {
                    e["data"] = json!({"runId": format!("run{n}")});
                }
                e
            })
            .collect()
    })
}

/// Entries of any shape that still parse as entries: ids that repeat, any type, any message.
fn arb_wild_entries() -> impl Strategy<Value = Vec<Value>> {
    let entry = (
        "(a|b|c|run1|e0|)",
        prop::sample::select(vec!["message", "custom", "compaction", "x"]),
        prop::option::of(arb_json()),
        prop::option::of(prop::sample::select(vec![RUN_MARKER, "other"])),
        prop::option::of(prop_oneof![
            arb_json(),
            "(a|b|run1)".prop_map(|r| json!({"runId": r}))
        ]),
        prop::option::of(arb_json()),
    )
        .prop_map(|(id, kind, message, custom, data, parent)| {
            let mut e = json!({"id": id, "type": kind});
            if let Some(m) = message {
                e["message"] = m;
            }
            if let Some(c) = custom {
                e["customType"] = json!(c);
            }
            if let Some(d) = data {
                e["data"] = d;
            }
            if let Some(p) = parent {
                e["parentId"] = p;
            }
            e
        });
    prop::collection::vec(
        prop_oneof![3 => entry, 2 => arb_entry_kind().prop_map(|mut e| { e["id"] = json!("w"); e })],
        0..30,
    )
}

fn parse_entries(values: &[Value]) -> Vec<history::Entry> {
    values
        .iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect()
}

/// The whole history of `entries` in `format`, walked back from the end `limit` at a time with
/// `before` = the first id of the page just read; checks each page's size and `hasMore`.
fn walk(entries: &[Value], format: Format, limit: usize) -> Result<Vec<Value>, TestCaseError> {
    let mut pages: Vec<Vec<Value>> = Vec::new();
    let mut before: Option<String> = None;
    for _ in 0..=entries.len() + 1 {
        let page = history::page(parse_entries(entries), format, limit, before.as_deref())
            .map_err(|e| TestCaseError::fail(format!("page before {before:?}: {e}")))?;
        prop_assert!(page.messages.len() <= limit);
        if page.has_more {
            prop_assert_eq!(
                page.messages.len(),
                limit,
                "a page with older messages before it is full"
            );
            before = Some(page.messages[0]["id"].as_str().expect("an id").to_string());
            pages.push(page.messages);
        } else {
            pages.push(page.messages);
            return Ok(pages.into_iter().rev().flatten().collect());
        }
    }
    Err(TestCaseError::fail("the walk did not end"))
}

proptest! {
    #[test]
    fn format_parse_accepts_exactly_ui_and_pi(text in prop_oneof!["\\PC{0,4}", "(ui|pi|UI|Pi|ui |xml|)"]) {
        let parsed = Format::parse(Some(text.as_str()));
        match text.as_str() {
            "ui" => prop_assert_eq!(parsed, Ok(Format::Ui)),
            "pi" => prop_assert_eq!(parsed, Ok(Format::Pi)),
            _ => prop_assert_eq!(parsed, Err("Invalid format: expected ui or pi".to_string())),
        }
        prop_assert_eq!(Format::parse(None), Ok(Format::Ui));
    }

    #[test]
    fn page_never_panics_on_arbitrary_entries(
        entries in arb_wild_entries(),
        limit in prop_oneof![1usize..5, Just(1000usize), Just(usize::MAX)],
        before in prop::option::of("(a|b|c|run1|e0|w|run1-1|zz)"),
        run in "(a|b|run1|zz)",
    ) {
        for format in [Format::Ui, Format::Pi] {
            if let Ok(page) = history::page(parse_entries(&entries), format, limit, before.as_deref()) {
                prop_assert!(page.messages.len() <= limit);
            }
        }
        let _ = history::ui_messages(parse_entries(&entries));
        let mut cut = parse_entries(&entries);
        history::cut_at_run(&mut cut, &run);
        let _ = history::ui_messages(cut);
    }

    #[test]
    fn walking_pages_with_before_visits_every_message_once_in_order(entries in arb_session(), limit in 1usize..8) {
        let ui = history::ui_messages(parse_entries(&entries));
        prop_assert_eq!(walk(&entries, Format::Ui, limit)?, ui.clone());
        prop_assert_eq!(walk(&entries, Format::Ui, 1000)?, ui);
        // pi: the message entries as they are, oldest first.
        let pi: Vec<Value> = entries
            .iter()
            .filter(|e| e["type"] == "message" && !e["message"].is_null())
            .map(|e| json!({"id": e["id"], "parentId": e["parentId"], "timestamp": e["timestamp"], "message": e["message"]}))
            .collect();
        prop_assert_eq!(walk(&entries, Format::Pi, limit)?, pi);
    }

    #[test]
    fn an_unknown_before_is_refused_naming_it(entries in arb_session(), id in "(nope|e999|run999|)") {
        for format in [Format::Ui, Format::Pi] {
            let refused = history::page(parse_entries(&entries), format, 10, Some(&id));
            prop_assert_eq!(refused.err(), Some(format!("Invalid before: no message with id {id}")));
        }
    }

    #[test]
    fn ui_messages_have_unique_ids_and_only_user_and_assistant_roles(entries in arb_session(), cut_at in any::<prop::sample::Index>()) {
        let check = |ui: &[Value]| -> Result<(), TestCaseError> {
            let mut seen = std::collections::HashSet::new();
            for m in ui {
                let id = m["id"].as_str().unwrap_or_default().to_string();
                prop_assert!(!id.is_empty(), "an empty id: {}", m);
                prop_assert!(seen.insert(id), "a repeated id: {}", m);
                prop_assert!(m["role"] == "user" || m["role"] == "assistant", "role: {}", m);
                prop_assert!(m["parts"].is_array(), "parts: {}", m);
                if m["role"] == "assistant" {
                    prop_assert!(m["metadata"].is_object(), "metadata: {}", m);
                }
            }
            Ok(())
        };
        check(&history::ui_messages(parse_entries(&entries)))?;
        // …and after the cut of a running run (any of them): the history ends at its user message.
        let runs: Vec<String> = entries
            .iter()
            .filter(|e| e["customType"] == RUN_MARKER)
            .filter_map(|e| e["data"]["runId"].as_str().map(str::to_string))
            .collect();
        if !runs.is_empty() {
            let run = &runs[cut_at.index(runs.len())];
            let mut cut = parse_entries(&entries);
            history::cut_at_run(&mut cut, run);
            let marker = entries
                .iter()
                .position(|e| e["customType"] == RUN_MARKER && e["data"]["runId"] == run.as_str())
                .expect("marker");
            let user_after = entries[marker + 1..].iter().position(|e| e["type"] == "message" && e["message"]["role"] == "user");
            let kept = user_after.map_or(marker + 1, |i| marker + 2 + i);
            prop_assert_eq!(cut.len(), kept, "cut after the run's user message");
            let ui = history::ui_messages(cut);
            check(&ui)?;
            if let Some(i) = user_after {
                let last = ui.last().expect("the user message");
                prop_assert_eq!(&last["role"], "user");
                prop_assert_eq!(last["id"].as_str(), entries[marker + 1 + i]["id"].as_str());
            }
        }
    }
}

/// The chat-file and name properties are not vacuous: their generators reach every outcome
/// (accepted with images, each kind of refusal; names accepted, too long, with control characters).
#[test]
fn the_generators_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let config = file_config();
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for _ in 0..4000 {
        let message = arb_chat_message()
            .new_tree(&mut runner)
            .expect("tree")
            .current();
        let outcome = match validate::chat_files(&message, 2, &config) {
            Ok(Some(_)) => "images",
            Ok(None) => "none",
            Err(e) if e.contains("].mediaType: ") => "mediaType",
            Err(e) if e.contains("not base64") => "url: not base64",
            Err(e) if e.contains("larger than") => "url: too large",
            Err(e) if e.contains("first bytes") => "url: not that image",
            Err(e) if e.contains("].url: ") => "url: not a data URL",
            Err(e) if e.contains("at most") => "too many",
            Err(_) => "other",
        };
        *seen.entry(outcome).or_default() += 1;
    }
    for outcome in [
        "images",
        "none",
        "mediaType",
        "url: not base64",
        "url: too large",
        "url: not that image",
        "url: not a data URL",
        "too many",
    ] {
        assert!(
            seen.get(outcome).copied().unwrap_or(0) >= 5,
            "chat files: {outcome} reached too rarely: {seen:?}"
        );
    }
    let mut names = std::collections::BTreeMap::<&str, usize>::new();
    for _ in 0..4000 {
        let value = field_value(200)
            .new_tree(&mut runner)
            .expect("tree")
            .current();
        let outcome = match validate::name(Some(&value)) {
            Ok(_) => "ok",
            Err(e) if e.contains("control") => "control",
            Err(e) if e.contains("got 0") => "blank",
            Err(e) if e.contains("characters, got") => "too long",
            Err(_) => "not a string",
        };
        *names.entry(outcome).or_default() += 1;
    }
    for outcome in ["ok", "control", "blank", "too long", "not a string"] {
        assert!(
            names.get(outcome).copied().unwrap_or(0) >= 5,
            "names: {outcome} reached too rarely: {names:?}"
        );
    }
}
