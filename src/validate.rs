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
        image_data(&format!("images[{i}].data"), mime, data, config)?;
        out.push(json!({"type": "image", "data": data, "mimeType": mime}));
    }
    Ok(Some(Value::Array(out).to_string()))
}

/// The checks every image's data goes through: base64, at most `limits.maxImageBytes`
/// decoded, really of its declared type. `field` names it in the error.
fn image_data(field: &str, mime: &str, data: &str, config: &Config) -> Result<(), String> {
    // Refuse by length before decoding anything: 4 characters carry 3 bytes.
    if data.len() / 4 * 3 > config.max_image_bytes + 3 {
        return Err(format!(
            "Invalid {field}: larger than {} bytes decoded",
            config.max_image_bytes
        ));
    }
    let bytes = BASE64
        .decode(data)
        .map_err(|e| format!("Invalid {field}: not base64 ({e})"))?;
    if bytes.len() > config.max_image_bytes {
        return Err(format!(
            "Invalid {field}: larger than {} bytes decoded",
            config.max_image_bytes
        ));
    }
    if !has_signature(mime, &bytes) {
        return Err(format!(
            "Invalid {field}: not a {mime} image (its first bytes do not match)"
        ));
    }
    Ok(())
}

/// The `file` parts of a chat request's user message (`messages[index]`), which must be
/// images `{type:"file", mediaType, url:"data:<mediaType>;base64,<data>"}` with the limits of
/// `images`. Returns the pi images JSON, or `None` when there are none.
pub fn chat_files(
    message: &Value,
    index: usize,
    config: &Config,
) -> Result<Option<String>, String> {
    let Some(parts) = message.get("parts").and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        if part.get("type").and_then(Value::as_str) != Some("file") {
            continue;
        }
        let field = format!("messages[{index}].parts[{j}]");
        let mime = match part.get("mediaType") {
            Some(Value::String(m)) if IMAGE_TYPES.contains(&m.as_str()) => m.as_str(),
            other => {
                return Err(format!(
                    "Invalid {field}.mediaType: only images are accepted (image/png, image/jpeg, image/gif or image/webp), got {}",
                    other.map(short).unwrap_or_else(|| "nothing".into())
                ))
            }
        };
        let prefix = format!("data:{mime};base64,");
        let data = match part.get("url") {
            Some(Value::String(url)) if url.len() > prefix.len() && url.starts_with(&prefix) => {
                &url[prefix.len()..]
            }
            other => {
                return Err(format!(
                    "Invalid {field}.url: expected a {prefix}… URL, got {}",
                    other.map(short).unwrap_or_else(|| "nothing".into())
                ))
            }
        };
        if out.len() == config.max_images {
            return Err(format!(
                "Invalid messages[{index}].parts: at most {} images per message",
                config.max_images
            ));
        }
        image_data(&format!("{field}.url"), mime, data, config)?;
        out.push(json!({"type": "image", "data": data, "mimeType": mime}));
    }
    Ok((!out.is_empty()).then(|| Value::Array(out).to_string()))
}

/// The longest session name.
pub const MAX_NAME_CHARS: usize = 200;

/// `PATCH /sessions/:key {name}`: a string of 1 to [`MAX_NAME_CHARS`] characters once trimmed,
/// without control characters. Returns it trimmed.
pub fn name(value: Option<&Value>) -> Result<String, String> {
    let Some(Value::String(text)) = value else {
        return Err(format!(
            "Invalid name: expected a string, got {}",
            value.map(short).unwrap_or_else(|| "nothing".into())
        ));
    };
    let trimmed = text.trim();
    let chars = trimmed.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(format!(
            "Invalid name: expected 1 to {MAX_NAME_CHARS} characters, got {chars}"
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err("Invalid name: control characters are not allowed".into());
    }
    Ok(trimmed.to_string())
}

/// pi's thinking levels.
pub const THINKING_LEVELS: [&str; 6] = ["off", "minimal", "low", "medium", "high", "xhigh"];

/// `PUT …/thinking {level}`.
pub fn thinking_level(value: Option<&Value>) -> Result<&'static str, String> {
    let text = value.and_then(Value::as_str).unwrap_or("");
    THINKING_LEVELS
        .into_iter()
        .find(|l| *l == text)
        .ok_or_else(|| {
            format!(
                "Invalid level: expected one of {}, got {}",
                THINKING_LEVELS.join(", "),
                value.map(short).unwrap_or_else(|| "nothing".into())
            )
        })
}

/// The longest provider or model id.
pub const MAX_MODEL_ID_BYTES: usize = 256;

/// `PUT …/model {provider, id}`: two non-empty strings of at most [`MAX_MODEL_ID_BYTES`].
pub fn model_ref(body: &Map<String, Value>) -> Result<(String, String), String> {
    let field = |name: &str| match body.get(name) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_MODEL_ID_BYTES => Ok(s.clone()),
        other => Err(format!(
            "Invalid {name}: expected a string of 1 to {MAX_MODEL_ID_BYTES} bytes, got {}",
            other.map(short).unwrap_or_else(|| "nothing".into())
        )),
    };
    Ok((field("provider")?, field("id")?))
}

/// The longest compaction instructions, in characters.
pub const MAX_INSTRUCTIONS_CHARS: usize = 10_000;

/// `POST …/compact {instructions?}`.
pub fn instructions(value: Option<&Value>) -> Result<String, String> {
    match value {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) if s.chars().count() <= MAX_INSTRUCTIONS_CHARS => Ok(s.clone()),
        Some(other) => Err(format!(
            "Invalid instructions: expected a string of at most {MAX_INSTRUCTIONS_CHARS} characters, got {}",
            short(other)
        )),
    }
}

/// The history's page size: default and largest.
pub const HISTORY_DEFAULT_LIMIT: usize = 100;
pub const HISTORY_MAX_LIMIT: usize = 1000;

/// `?limit=` of the history route.
pub fn history_limit(text: Option<&str>) -> Result<usize, String> {
    match text {
        None => Ok(HISTORY_DEFAULT_LIMIT),
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=HISTORY_MAX_LIMIT).contains(n) && !t.starts_with('+'))
            .ok_or_else(|| {
                format!("Invalid limit: expected an integer from 1 to {HISTORY_MAX_LIMIT}")
            }),
    }
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
