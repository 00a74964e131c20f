//! The routes of session management (SPEC section 12): the history, delete, rename, stats,
//! compact, the models and a session's model and thinking level.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::agent::{Op, PromptKind};
use crate::error::GatewayError;
use crate::history::Format;
use crate::session::{HistoryQuery, MessageRequest, Mode, Submit};
use crate::validate;

use super::body::{error, json, Body};
use super::router::{core_error, query_param, read_body, submit_message, wait_field, Ctx};

/// An op's JSON answer as an object, with `ok` and `sessionKey` added.
fn answer(key: &str, text: &str) -> Response<Body> {
    let mut object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    object.insert("ok".into(), true.into());
    object.insert("sessionKey".into(), key.into());
    json(StatusCode::OK, &Value::Object(object))
}

/// `GET /sessions/:key`: the snapshot, loading a stored session first.
pub async fn snapshot(ctx: &Ctx, key: &str) -> Response<Body> {
    // A struct, not json!(): serde_json's map would sort the snapshot's keys.
    #[derive(serde::Serialize)]
    struct One {
        session: crate::events::Snapshot,
    }
    let gateway = &ctx.gateway;
    if let Some(session) = gateway.snapshot(key) {
        return json(StatusCode::OK, &One { session });
    }
    match gateway.loaded_session(key).await {
        Ok(session) => json(
            StatusCode::OK,
            &One {
                session: session.snapshot(),
            },
        ),
        Err(e) => core_error(&e),
    }
}

/// `GET /sessions/:key/messages?format=&limit=&before=`.
pub async fn history(ctx: &Ctx, req: &Request<Incoming>, key: &str) -> Response<Body> {
    let uri = req.uri();
    let query = Format::parse(query_param(uri, "format")).and_then(|format| {
        let limit = validate::history_limit(query_param(uri, "limit"))?;
        let before = match query_param(uri, "before") {
            None => None,
            Some(raw) => Some(
                super::router::decode_segment(raw)
                    .filter(|id| !id.is_empty() && id.len() <= validate::MAX_KEY_BYTES)
                    .ok_or_else(|| "Invalid before: expected a message id".to_string())?,
            ),
        };
        Ok(HistoryQuery {
            format,
            limit,
            before,
        })
    });
    let query = match query {
        Ok(q) => q,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    match ctx.gateway.history(key, &query).await {
        Ok(page) => json(
            StatusCode::OK,
            &json!({
                "sessionKey": key,
                "format": query.format.as_str(),
                "messages": page.messages,
                "hasMore": page.has_more,
            }),
        ),
        Err(e) => core_error(&e),
    }
}

/// `DELETE /sessions/:key[?purge=true]`.
pub async fn delete(ctx: &Ctx, req: &Request<Incoming>, key: &str) -> Response<Body> {
    let purge = match query_param(req.uri(), "purge") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Invalid purge: expected true or false",
            )
        }
    };
    match ctx.gateway.delete_session(key, purge).await {
        Ok(purged) => json(
            StatusCode::OK,
            &json!({"ok": true, "sessionKey": key, "purged": purged}),
        ),
        Err(e) => core_error(&e),
    }
}

/// Reads a JSON object body, or answers the `400`/`413`/`415` that refuses it.
async fn object(ctx: &Ctx, req: Request<Incoming>) -> Result<Map<String, Value>, Response<Body>> {
    read_body(ctx, req).await.map_err(|e| e.response())
}

/// A management call whose arguments come from a JSON body: `args` checks the body (its `Err`
/// is the `400`), the session answers, and its answer goes out with `ok` and `sessionKey`.
async fn op_route(
    ctx: &Ctx,
    req: Request<Incoming>,
    key: &str,
    op: Op,
    args: impl FnOnce(&Map<String, Value>) -> Result<Value, String>,
) -> Response<Body> {
    let body = match object(ctx, req).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let args = match args(&body) {
        Ok(a) => a,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    match ctx.gateway.session_op(key, op, args).await {
        Ok(text) => answer(key, &text),
        Err(e) => core_error(&e),
    }
}

/// `PATCH /sessions/:key {name}`.
pub async fn rename(ctx: &Ctx, req: Request<Incoming>, key: &str) -> Response<Body> {
    op_route(ctx, req, key, Op::SetName, |body| {
        Ok(json!({ "name": validate::name(body.get("name"))? }))
    })
    .await
}

/// `GET /sessions/:key/stats`.
pub async fn stats(ctx: &Ctx, key: &str) -> Response<Body> {
    match ctx.gateway.session_op(key, Op::Stats, json!({})).await {
        Ok(text) => {
            let mut object = match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            };
            object.insert("sessionKey".into(), key.into());
            json(StatusCode::OK, &Value::Object(object))
        }
        Err(e) => core_error(&e),
    }
}

/// `PUT /sessions/:key/model {provider, id}`.
pub async fn set_model(ctx: &Ctx, req: Request<Incoming>, key: &str) -> Response<Body> {
    op_route(ctx, req, key, Op::SetModel, |body| {
        let (provider, id) = validate::model_ref(body)?;
        Ok(json!({"provider": provider, "id": id}))
    })
    .await
}

/// `PUT /sessions/:key/thinking {level}`.
pub async fn set_thinking(ctx: &Ctx, req: Request<Incoming>, key: &str) -> Response<Body> {
    op_route(ctx, req, key, Op::SetThinking, |body| {
        Ok(json!({ "level": validate::thinking_level(body.get("level"))? }))
    })
    .await
}

/// `GET /models`.
pub async fn models(ctx: &Ctx) -> Response<Body> {
    match ctx.gateway.models().await {
        Ok(text) => match serde_json::from_str::<Value>(&text) {
            Ok(value) => json(StatusCode::OK, &value),
            Err(_) => core_error(&GatewayError::Agent(
                "models: unexpected answer from JavaScript".into(),
            )),
        },
        Err(e) => core_error(&e),
    }
}

/// `POST /sessions/:key/compact {instructions?, wait?}`: a run of its own, through the queue.
pub async fn compact(
    ctx: &Ctx,
    req: Request<Incoming>,
    key: String,
    raw_key: &str,
) -> Response<Body> {
    let uri = req.uri().clone();
    let body = match object(ctx, req).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let checked = validate::instructions(body.get("instructions"))
        .and_then(|text| Ok((text, wait_field(&uri, &body)?)));
    let (instructions, wait) = match checked {
        Ok(c) => c,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    match ctx.gateway.can_compact(&key).await {
        Ok(true) => {}
        Ok(false) => {
            return core_error(&GatewayError::Op(
                501,
                "Not supported by this session: compact()".into(),
            ))
        }
        Err(e) => return core_error(&e),
    }
    let submit = Submit {
        request: MessageRequest {
            session_key: key,
            text: instructions,
            images_json: None,
            source: None,
            kind: PromptKind::Compact,
        },
        chat_id: None,
        cancel_if_abandoned: wait,
        callback: None,
        idempotency: None,
        // A compaction is never handed to a running prompt: it waits its turn.
        mode: Some(Mode::Queue),
    };
    submit_message(ctx, submit, wait, Some(raw_key)).await
}
