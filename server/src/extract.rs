//! What a handler takes from a request: the caller and the addressed type ([`Call`]), a
//! JSON body ([`JsonBody`]) and a query string ([`Params`]), each failing with the
//! API's error body instead of axum's plain-text rejections.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use http_body_util::BodyExt;
use prismdb::{Database, ObjectType, Principal};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::auth::Keys;
use crate::error::ApiError;

/// What every handler shares: the database and the accepted keys.
#[derive(Clone)]
pub struct AppState {
    /// The open database (its job worker runs async imports).
    pub db: Arc<Database>,
    /// The API keys.
    pub keys: Arc<Keys>,
}

impl AppState {
    /// Runs `work` on the database off the async threads (writes wait for an fsync);
    /// a library error becomes its API error, a panicked task a 500.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> prismdb::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|e| ApiError::internal(format!("the request's task failed: {e}")))?
            .map_err(ApiError::from)
    }
}

/// The caller (from its bearer key) and the object type of the route, with the route's
/// other path parameters. Fails with 401 without a valid key, 404 for another team's
/// path or an unknown type, 400 for a team id that is not a UUID.
pub struct Call {
    /// Who is calling.
    pub principal: Principal,
    /// The addressed object type.
    pub ty: ObjectType,
    params: Vec<(String, String)>,
}

impl Call {
    /// The path parameter `name` (empty when the route has none of that name).
    pub fn param(&self, name: &str) -> String {
        param(&self.params, name).to_owned()
    }

    /// The path parameter `name` as a record id; 400 `invalid_id` when it is not a UUID.
    pub fn id(&self, name: &str) -> Result<Uuid, ApiError> {
        Ok(prismdb::parse_id(&self.param(name))?)
    }

    /// Fails with 404 on the write routes of `event`, which the API does not have
    /// (events are written by the embedding service through the library).
    pub fn writable(&self) -> Result<(), ApiError> {
        if self.ty == ObjectType::Event {
            return Err(ApiError::not_found(
                "event has no write routes: events are written by the embedding service",
            ));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Call {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Call, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        let principal = state.keys.principal(header)?;
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("path: {e}")))?;
        let params: Vec<(String, String)> = raw
            .iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
        check_team(param(&params, "teamId"), &principal)?;
        let type_name = param(&params, "objectType");
        let ty = type_name
            .parse()
            .map_err(|_| ApiError::not_found(format!("no object type {type_name:?}")))?;
        Ok(Call {
            principal,
            ty,
            params,
        })
    }
}

/// The value of path parameter `name` among `params` (empty when absent).
fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map_or("", |(_, value)| value.as_str())
}

/// The path's team must be the caller's: another team's data is not there for it.
fn check_team(text: &str, principal: &Principal) -> Result<(), ApiError> {
    let team = Uuid::parse_str(text)
        .map_err(|_| ApiError::bad_request(format!("teamId {text:?} is not a UUID")))?;
    if team != principal.team {
        return Err(ApiError::not_found(format!("team {team} not found")));
    }
    Ok(())
}

/// The most a request body may hold: 16 MiB (SPEC §7).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// A JSON request body parsed as `T`: 413 over [`MAX_BODY_BYTES`], 400
/// `invalid_request` naming the problem when it is not JSON or not `T`'s shape.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<JsonBody<T>, ApiError> {
        let bytes = read_body(request.into_body()).await?;
        // serde would also read a struct from a JSON array; every body here is an object.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("request body: {e}")))
    }
}

/// How much of a too-large body is read and dropped before the 413 goes out, so that a
/// client still sending gets the answer rather than a reset connection.
const DRAIN_BYTES: usize = 4 * MAX_BODY_BYTES;

/// The whole body, or 413 `limit_exceeded` past [`MAX_BODY_BYTES`] (after draining up to
/// [`DRAIN_BYTES`] of it), or 400 if it cannot be read.
async fn read_body(mut body: Body) -> Result<Bytes, ApiError> {
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total <= MAX_BODY_BYTES {
            kept.extend_from_slice(&data);
        } else if total > DRAIN_BYTES {
            break;
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit_exceeded",
            format!("the request body is over {MAX_BODY_BYTES} bytes"),
        ));
    }
    Ok(Bytes::from(kept))
}

/// A query string parsed as `T`; 400 `invalid_request` naming the bad parameter.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Params<T>, ApiError> {
        axum::extract::Query::try_from_uri(&parts.uri)
            .map(|query| Params(query.0))
            .map_err(|e| ApiError::bad_request(format!("query string: {}", e.body_text())))
    }
}
