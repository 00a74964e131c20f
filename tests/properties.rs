//! Property tests for the pure parts of request handling: path decoding, routing and
//! request-body text extraction. Whatever a client sends, these never panic, and what they
//! accept round-trips.

use pi_gateway::http::chat::extract_user_text;
use pi_gateway::http::router::{decode_segment, session_path, webhook_route, SessionPath};
use pi_gateway::session::Mode;
use pi_gateway::validate;
use proptest::prelude::*;
use serde_json::{json, Value};

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
