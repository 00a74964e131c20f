//! Validation at the door: every field a message carries, checked before it is queued, so no
//! request can hand the agent something that breaks the session for the messages after it.
//!
//! Shared by the HTTP routes and the JS API (`enqueueMessage`). Errors name the field:
//! `Invalid images[1].mimeType: ...`.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::session::Mode;

/// The longest session key, route or sender, in bytes (after percent-decoding).
pub const MAX_KEY_BYTES: usize = 1024;

/// Input sources pi's `prompt()` knows (`InputSource`).
pub const SOURCES: [&str; 3] = ["interactive", "rpc", "extension"];

/// Image types every provider pi talks to accepts.
pub const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Standard alphabet; padding optional (some encoders drop it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A session key: 1 to [`MAX_KEY_BYTES`] bytes.
pub fn session_key(key: &str, field: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err(format!("Invalid {field}: must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "Invalid {field}: longer than {MAX_KEY_BYTES} bytes ({} bytes)",
            key.len()
        ));
    }
    Ok(())
}

/// `source`: absent, or one of [`SOURCES`].
pub fn source(value: Option<&Value>) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if SOURCES.contains(&s.as_str()) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "Invalid source: expected one of \"interactive\", \"rpc\", \"extension\", got {}",
            short(other)
        )),
    }
}

/// `metadata`: absent, or an object (kept for the caller; the agent never sees it).
pub fn metadata(value: Option<&Value>) -> Result<(), String> {
    match value {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(other) => Err(format!(
            "Invalid metadata: expected an object, got {}",
            short(other)
        )),
    }
}

/// What a message carries besides its text and key, once checked.
#[derive(Debug, Default)]
pub struct MessageFields {
    /// The normalized `images` JSON handed to the agent.
    pub images_json: Option<String>,
    /// `None`: the engine's default (`extension`).
    pub source: Option<String>,
    /// `None`: `session.defaultMode`.
    pub mode: Option<Mode>,
}

/// `images`, `source` and `metadata` of a message body (HTTP or `enqueueMessage`), checked
/// together: the one place both doors go through.
pub fn message_fields(body: &Map<String, Value>, config: &Config) -> Result<MessageFields, String> {
    let images_json = images(body.get("images"), config)?;
    let source = source(body.get("source"))?;
    metadata(body.get("metadata"))?;
    let mode = mode(body.get("mode"))?;
    Ok(MessageFields {
        images_json,
        source,
        mode,
    })
}

/// `mode`: absent, `null`, or one of the five modes, spelled exactly.
pub fn mode(value: Option<&Value>) -> Result<Option<Mode>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Mode::parse(text).map(Some).ok_or_else(|| mode_error(value)),
        Some(_) => Err(mode_error(value)),
    }
}

fn mode_error(value: Option<&Value>) -> String {
    format!(
        "Invalid mode: expected one of {}, got {}",
        Mode::EXPECTED,
        value.map(short).unwrap_or_default()
    )
}

/// `images`: absent, or an array of at most `limits.maxImages` images
/// `{type?: "image", data: base64, mimeType}`, each at most `limits.maxImageBytes` decoded and
/// really of its declared type. Returns the normalized JSON handed to the agent
/// (`[{type:"image", data, mimeType}]`), or `None` when there are no images.
pub fn images(value: Option<&Value>, config: &Config) -> Result<Option<String>, String> {
    let items = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(format!(
                "Invalid images: expected an array, got {}",
                short(other)
            ))
        }
    };
    if items.len() > config.max_images {
        return Err(format!(
            "Invalid images: at most {} images per message, got {}",
            config.max_images,
            items.len()
        ));
    }
    if items.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(image) = item else {
            return Err(format!(
                "Invalid images[{i}]: expected an object {{type: \"image\", data, mimeType}}, got {}",
                short(item)
            ));
        };
        match image.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == "image" => {}
            Some(other) => {
                return Err(format!(
                    "Invalid images[{i}].type: expected \"image\", got {}",
                    short(other)
                ))
            }
        }
        let mime = match image.get("mimeType") {
            Some(Value::String(m)) if IMAGE_TYPES.contains(&m.as_str()) => m.as_str(),
            other => {
                return Err(format!(
                    "Invalid images[{i}].mimeType: expected image/png, image/jpeg, image/gif or image/webp, got {}",
                    other.map(short).unwrap_or_else(|| "nothing".into())
                ))
            }
        };
        let data = match image.get("data") {
            Some(Value::String(d)) if !d.is_empty() => d.as_str(),
            other => {
                return Err(format!(
                    "Invalid images[{i}].data: expected base64 text, got {}",
                    other.map(short).unwrap_or_else(|| "nothing".into())
                ))
            }
        };
        // Refuse by length before decoding anything: 4 characters carry 3 bytes.
        if data.len() / 4 * 3 > config.max_image_bytes + 3 {
            return Err(format!(
                "Invalid images[{i}].data: larger than {} bytes decoded",
                config.max_image_bytes
            ));
        }
        let bytes = BASE64
            .decode(data)
            .map_err(|e| format!("Invalid images[{i}].data: not base64 ({e})"))?;
        if bytes.len() > config.max_image_bytes {
            return Err(format!(
                "Invalid images[{i}].data: larger than {} bytes decoded",
                config.max_image_bytes
            ));
        }
        if !has_signature(mime, &bytes) {
            return Err(format!(
                "Invalid images[{i}].data: not a {mime} image (its first bytes do not match)"
            ));
        }
        out.push(json!({"type": "image", "data": data, "mimeType": mime}));
    }
    Ok(Some(Value::Array(out).to_string()))
}

/// Whether `bytes` start as a file of type `mime` does.
fn has_signature(mime: &str, bytes: &[u8]) -> bool {
    match mime {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/gif" => bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a"),
        "image/webp" => bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
        _ => false,
    }
}

/// A value as it may appear in an error message: short, never the whole of a large input.
fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() <= 40 {
        return text;
    }
    let mut end = 40;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

    fn check(v: Value) -> Result<Option<String>, String> {
        images(Some(&v), &Config::for_tests())
    }

    #[test]
    fn good_images_are_normalized() {
        let out = check(json!([{"data": PNG_1X1, "mimeType": "image/png", "extra": 1}]))
            .expect("valid")
            .expect("some");
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(
            v,
            json!([{"type": "image", "data": PNG_1X1, "mimeType": "image/png"}])
        );
        assert_eq!(check(json!([])).expect("empty ok"), None);
    }

    #[test]
    fn bad_images_name_the_field() {
        let cases = [
            (json!("not-an-array"), "Invalid images:"),
            (json!([{}]), "Invalid images[0].mimeType"),
            (json!([null]), "Invalid images[0]:"),
            (json!(["str"]), "Invalid images[0]:"),
            (
                json!([{"type": "text", "text": 123}]),
                "Invalid images[0].type",
            ),
            (
                json!([{"data": "!!!", "mimeType": "image/png"}]),
                "Invalid images[0].data",
            ),
            (
                json!([{"data": PNG_1X1, "mimeType": "image/jpeg"}]),
                "Invalid images[0].data: not a image/jpeg",
            ),
            (
                json!([{"data": PNG_1X1, "mimeType": "image/svg+xml"}]),
                "Invalid images[0].mimeType",
            ),
            (
                json!([{"data": PNG_1X1, "mimeType": "image/png"}, {"data": 5, "mimeType": "image/png"}]),
                "Invalid images[1].data",
            ),
        ];
        for (value, want) in cases {
            let err = check(value.clone()).expect_err("must be refused");
            assert!(err.starts_with(want), "{value}: {err}");
        }
        let many = Value::Array(vec![json!({"data": PNG_1X1, "mimeType": "image/png"}); 9]);
        assert!(check(many).expect_err("too many").contains("at most 8"));
    }

    #[test]
    fn sources_metadata_and_keys() {
        assert_eq!(source(None), Ok(None));
        assert_eq!(source(Some(&json!("rpc"))), Ok(Some("rpc".into())));
        assert!(source(Some(&json!("evil"))).is_err());
        assert!(source(Some(&json!(5))).is_err());
        assert!(metadata(Some(&json!({"a": 1}))).is_ok());
        assert!(metadata(Some(&json!(5)))
            .expect_err("number")
            .starts_with("Invalid metadata"));
        assert!(session_key("", "sessionKey").is_err());
        assert!(session_key(&"k".repeat(1024), "sessionKey").is_ok());
        assert!(session_key(&"k".repeat(1025), "sessionKey").is_err());
    }
}
