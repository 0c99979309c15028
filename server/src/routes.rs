//! The routes of SPEC §2, §3 and §7 under `/v2/prism/{teamId}/{objectType}`, each a thin
//! handler that parses its input into the wire types of [`crate::api`], runs one library
//! call and writes the answer. The OpenAPI document is generated from these handlers'
//! annotations and the wire types ([`router`] returns both).

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use prismdb::{Grant, ObjectType};
use utoipa::openapi::schema::{Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, OpenApi as OpenApiDoc, RefOr};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::api::*;
use crate::error::ApiError;
use crate::extract::{AppState, Call, JsonBody, Params};

/// A string enum of the object types `keep` takes, listed from the library's
/// [`ObjectType::ALL`] so that the document follows the library.
fn type_schema(description: &str, keep: fn(&ObjectType) -> bool) -> RefOr<Schema> {
    let names: Vec<&str> = ObjectType::ALL
        .iter()
        .filter(|ty| keep(ty))
        .map(|ty| ty.as_str())
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .description(Some(description))
        .into()
}

/// Every object type, as route segments name them.
struct TypeName;

impl PartialSchema for TypeName {
    fn schema() -> RefOr<Schema> {
        type_schema("An object type.", |_| true)
    }
}

impl ToSchema for TypeName {}

/// The object types with write routes (every type but `event`).
struct WritableTypeName;

impl PartialSchema for WritableTypeName {
    fn schema() -> RefOr<Schema> {
        type_schema("An object type with write routes (not event).", |ty| {
            *ty != ObjectType::Event
        })
    }
}

impl ToSchema for WritableTypeName {}

/// The object types whose records carry grants.
struct GrantTypeName;

impl PartialSchema for GrantTypeName {
    fn schema() -> RefOr<Schema> {
        type_schema("An object type whose records carry grants.", |ty| {
            ty.has_grants()
        })
    }
}

impl ToSchema for GrantTypeName {}

/// `{teamId}/{objectType}` of a read route.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(names("teamId", "objectType"), parameter_in = Path)]
struct ReadPath(Uuid, TypeName);

/// `{teamId}/{objectType}` of a write route.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(names("teamId", "objectType"), parameter_in = Path)]
struct WritePath(Uuid, WritableTypeName);

/// `{teamId}/{objectType}/{id}` of a read route.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(names("teamId", "objectType", "id"), parameter_in = Path)]
struct ReadRecordPath(Uuid, TypeName, Uuid);

/// `{teamId}/{objectType}/{id}` of a write route.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(names("teamId", "objectType", "id"), parameter_in = Path)]
struct WriteRecordPath(Uuid, WritableTypeName, Uuid);

/// `{teamId}/{objectType}/{id}` of a grant route.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(names("teamId", "objectType", "id"), parameter_in = Path)]
struct GrantPath(Uuid, GrantTypeName, Uuid);

/// `{teamId}/{objectType}/by/{slug}/{value}` of find.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(names("teamId", "objectType", "slug", "value"), parameter_in = Path)]
struct FindPath(Uuid, TypeName, String, String);

/// `{teamId}/{objectType}/by/{slug}/{value}` of upsert.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(names("teamId", "objectType", "slug", "value"), parameter_in = Path)]
struct UpsertPath(Uuid, WritableTypeName, String, String);

/// `{teamId}/{objectType}/imports/{jobId}`.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(names("teamId", "objectType", "jobId"), parameter_in = Path)]
struct JobPath(Uuid, WritableTypeName, Uuid);

/// `{teamId}/{objectType}/properties/{slug}`.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(names("teamId", "objectType", "slug"), parameter_in = Path)]
struct PropertyPath(Uuid, TypeName, String);

/// The failures every authenticated route can answer.
#[allow(dead_code)]
#[derive(IntoResponses)]
enum Failures {
    /// Malformed input: JSON, ids, values, filters, cursors.
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorResponse),
    /// No valid bearer key.
    #[response(status = 401)]
    Unauthenticated(ErrorResponse),
    /// The caller may read the record but not make this change, or may not change the
    /// schema.
    #[response(status = 403)]
    Forbidden(ErrorResponse),
    /// No such team, type, record or route for this caller.
    #[response(status = 404)]
    NotFound(ErrorResponse),
    /// A unique value taken, several matches, or a conflicting change.
    #[response(status = 409)]
    Conflict(ErrorResponse),
    /// A body over 16 MiB or more than 1,000 items.
    #[response(status = 413)]
    TooLarge(ErrorResponse),
}

/// The server's OpenAPI document: everything but the paths, which the router adds.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "prismdb",
        description = "The Prism objects API on an embedded prismdb file."
    ),
    components(schemas(TypeName, WritableTypeName, GrantTypeName, ErrorResponse, ErrorDetail, KindName)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The application: every route with its state and the body limit, and the OpenAPI
/// document that describes them.
pub fn router(state: AppState) -> (Router, OpenApiDoc) {
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_record, list_records))
        .routes(routes!(get_record, patch_record, delete_record))
        .routes(routes!(query_records))
        .routes(routes!(count_records))
        .routes(routes!(find_record, upsert_record))
        .routes(routes!(import_records))
        .routes(routes!(import_status))
        .routes(routes!(bulk_update))
        .routes(routes!(bulk_delete))
        .routes(routes!(duplicate_record))
        .routes(routes!(restore_record))
        .routes(routes!(get_grant, put_grant))
        .routes(routes!(list_properties, add_property))
        .routes(routes!(get_property, patch_property, remove_property))
        .split_for_parts();
    let document = doc.clone();
    let app = api
        .route("/openapi.json", get(move || async move { Json(document) }))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        // `JsonBody` enforces the limit itself, draining the rest before it answers 413.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state);
    (app, doc)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> impl IntoResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        format!("{} does not take {method}", uri.path()),
    )
}

type Answer<T> = Result<T, ApiError>;

/// Create a record.
#[utoipa::path(post, path = "/v2/prism/{teamId}/{objectType}", params(WritePath),
    request_body = RecordBody,
    responses((status = 201, description = "The new record", body = RecordResponse), Failures))]
async fn create_record(
    State(state): State<AppState>,
    call: Call,
    JsonBody(body): JsonBody<RecordBody>,
) -> Answer<(StatusCode, Json<RecordResponse>)> {
    call.writable()?;
    let record = state
        .run(move |db| db.create(&call.principal, call.ty, &body.into_input()))
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// List records in id order.
#[utoipa::path(get, path = "/v2/prism/{teamId}/{objectType}", params(ReadPath, ListParams),
    responses((status = 200, description = "A page", body = PageResponse), Failures))]
async fn list_records(
    State(state): State<AppState>,
    call: Call,
    Params(params): Params<ListParams>,
) -> Answer<Json<PageResponse>> {
    let page = state
        .run(move |db| db.list(&call.principal, call.ty, &params.into_request()))
        .await?;
    Ok(Json(page.into()))
}

/// Get a live record the caller can read.
#[utoipa::path(get, path = "/v2/prism/{teamId}/{objectType}/{id}", params(ReadRecordPath),
    responses((status = 200, description = "The record", body = RecordResponse), Failures))]
async fn get_record(State(state): State<AppState>, call: Call) -> Answer<Json<RecordResponse>> {
    let id = call.id("id")?;
    let record = state
        .run(move |db| db.get(&call.principal, call.ty, id))
        .await?;
    Ok(Json(record.into()))
}

/// Merge properties into a record; null removes one.
#[utoipa::path(patch, path = "/v2/prism/{teamId}/{objectType}/{id}", params(WriteRecordPath),
    request_body = RecordBody,
    responses((status = 200, description = "The record after the patch", body = RecordResponse), Failures))]
async fn patch_record(
    State(state): State<AppState>,
    call: Call,
    JsonBody(body): JsonBody<RecordBody>,
) -> Answer<Json<RecordResponse>> {
    call.writable()?;
    let id = call.id("id")?;
    let record = state
        .run(move |db| db.patch(&call.principal, call.ty, id, &body.into_input()))
        .await?;
    Ok(Json(record.into()))
}

/// Soft-delete a record (it moves to the trash).
#[utoipa::path(delete, path = "/v2/prism/{teamId}/{objectType}/{id}", params(WriteRecordPath),
    responses((status = 204, description = "Deleted"), Failures))]
async fn delete_record(State(state): State<AppState>, call: Call) -> Answer<StatusCode> {
    call.writable()?;
    let id = call.id("id")?;
    state
        .run(move |db| db.delete(&call.principal, call.ty, id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Filter, sort and page records (or the trash, with `deleted: true`).
#[utoipa::path(post, path = "/v2/prism/{teamId}/{objectType}/query", params(ReadPath),
    request_body = QueryBody,
    responses((status = 200, description = "A page", body = PageResponse), Failures))]
async fn query_records(
    State(state): State<AppState>,
    call: Call,
    JsonBody(body): JsonBody<QueryBody>,
) -> Answer<Json<PageResponse>> {
    let page = state
        .run(move |db| db.query(&call.principal, call.ty, &body.into_request()))
        .await?;
    Ok(Json(page.into()))
}

/// Count the live records the caller can read.
#[utoipa::path(get, path = "/v2/prism/{teamId}/{objectType}/count", params(ReadPath),
    responses((status = 200, description = "The count", body = CountResponse), Failures))]
async fn count_records(State(state): State<AppState>, call: Call) -> Answer<Json<CountResponse>> {
    let total = state
        .run(move |db| db.count(&call.principal, call.ty))
        .await?;
    Ok(Json(CountResponse { total }))
}

/// Find the one live record whose property equals the value.
#[utoipa::path(get, path = "/v2/prism/{teamId}/{objectType}/by/{slug}/{value}", params(FindPath),
    responses((status = 200, description = "The record", body = RecordResponse), Failures))]
async fn find_record(State(state): State<AppState>, call: Call) -> Answer<Json<RecordResponse>> {
    let (slug, value) = (call.param("slug"), call.param("value"));
    let record = state
        .run(move |db| db.find(&call.principal, call.ty, &slug, &value))
        .await?;
    Ok(Json(record.into()))
}

/// Patch the one record whose property equals the value, or create it with that value.
#[utoipa::path(put, path = "/v2/prism/{teamId}/{objectType}/by/{slug}/{value}", params(UpsertPath),
    request_body = RecordBody,
    responses(
        (status = 200, description = "The updated record", body = RecordResponse),
        (status = 201, description = "The new record", body = RecordResponse),
        Failures))]
async fn upsert_record(
    State(state): State<AppState>,
    call: Call,
    JsonBody(body): JsonBody<RecordBody>,
) -> Answer<(StatusCode, Json<RecordResponse>)> {
    call.writable()?;
    let (slug, value) = (call.param("slug"), call.param("value"));
    let (record, created) = state
        .run(move |db| db.upsert(&call.principal, call.ty, &slug, &value, &body.into_input()))
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record.into())))
}

/// Import rows: sync (up to 1,000 rows, results inline) or as an async job.
#[utoipa::path(post, path = "/v2/prism/{teamId}/{objectType}/import", params(WritePath),
    request_body = ImportBody,
    responses(
        (status = 200, description = "A finished sync import", body = ImportJobResponse),
        (status = 202, description = "An async job, applied by the server's worker", body = ImportJobResponse),
        Failures))]
async fn import_records(
    State(state): State<AppState>,
    call: Call,
    JsonBody(body): JsonBody<ImportBody>,
) -> Answer<(StatusCode, Json<ImportJobResponse>)> {
    call.writable()?;
    let job = state
        .run(move |db| db.import(&call.principal, call.ty, &body.into_request()))
        .await?;
    let status = match job.status {
        prismdb::JobStatus::Processing => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    Ok((status, Json(job.into())))
}

/// An import job's status (its owner or a team admin).
#[utoipa::path(get, path = "/v2/prism/{teamId}/{objectType}/imports/{jobId}", params(JobPath),
    responses((status = 200, description = "The job", body = ImportJobResponse), Failures))]
async fn import_status(
    State(state): State<AppState>,
    call: Call,
) -> Answer<Json<ImportJobResponse>> {
    call.writable()?;
    let job_id = call.id("jobId")?;
    let job = state
        .run(move |db| db.import_status(&call.principal, job_id))
        .await?;
    Ok(Json(job.into()))
}

/// Patch up to 1,000 records, each applied or refused on its own, in one commit.
#[utoipa::path(post, path = "/v2/prism/{teamId}/{objectType}/batch/update", params(WritePath),
    request_body = BulkUpdateBody,
    responses((status = 200, description = "Per-item results", body = BulkResponseBody), Failures))]
async fn bulk_update(
    State(state): State<AppState>,
    call: Call,
    JsonBody(body): JsonBody<BulkUpdateBody>,
) -> Answer<Json<BulkResponseBody>> {
    call.writable()?;
    let items = body.into_items();
    let response = state
        .run(move |db| db.bulk_update(&call.principal, call.ty, &items))
        .await?;
    Ok(Json(response.into()))
}

/// Soft-delete up to 1,000 records, each applied or refused on its own, in one commit.
#[utoipa::path(post, path = "/v2/prism/{teamId}/{objectType}/batch/delete", params(WritePath),
    request_body = BulkDeleteBody,
    responses((status = 200, description = "Per-item results", body = BulkResponseBody), Failures))]
async fn bulk_delete(
    State(state): State<AppState>,
    call: Call,
    JsonBody(body): JsonBody<BulkDeleteBody>,
) -> Answer<Json<BulkResponseBody>> {
    call.writable()?;
    let ids = body.into_ids();
    let response = state
        .run(move |db| db.bulk_delete(&call.principal, call.ty, &ids))
        .await?;
    Ok(Json(response.into()))
}

/// Copy a record, leaving out its unique properties.
#[utoipa::path(post, path = "/v2/prism/{teamId}/{objectType}/{id}/duplicate", params(WriteRecordPath),
    responses((status = 201, description = "The copy", body = RecordResponse), Failures))]
async fn duplicate_record(
    State(state): State<AppState>,
    call: Call,
) -> Answer<(StatusCode, Json<RecordResponse>)> {
    call.writable()?;
    let id = call.id("id")?;
    let record = state
        .run(move |db| db.duplicate(&call.principal, call.ty, id))
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// Bring a soft-deleted record back.
#[utoipa::path(post, path = "/v2/prism/{teamId}/{objectType}/{id}/restore", params(WriteRecordPath),
    responses((status = 200, description = "The restored record", body = RecordResponse), Failures))]
async fn restore_record(State(state): State<AppState>, call: Call) -> Answer<Json<RecordResponse>> {
    call.writable()?;
    let id = call.id("id")?;
    let record = state
        .run(move |db| db.restore(&call.principal, call.ty, id))
        .await?;
    Ok(Json(record.into()))
}

fn grant_body(grant: &Grant, team: Uuid) -> Answer<GrantBody> {
    GrantBody::from_value(grant.to_json(team))
        .map_err(|e| ApiError::internal(format!("grant shape: {e}")))
}

/// A record's grant (needs read access).
#[utoipa::path(get, path = "/v2/prism/{teamId}/{objectType}/{id}/grant", params(GrantPath),
    responses((status = 200, description = "The grant", body = GrantBody), Failures))]
async fn get_grant(State(state): State<AppState>, call: Call) -> Answer<Json<GrantBody>> {
    let id = call.id("id")?;
    let team = call.principal.team;
    let grant = state
        .run(move |db| db.grant(&call.principal, call.ty, id))
        .await?;
    Ok(Json(grant_body(&grant, team)?))
}

/// Replace a record's grant (needs `a`); an entry left out grants nothing.
#[utoipa::path(put, path = "/v2/prism/{teamId}/{objectType}/{id}/grant", params(GrantPath),
    request_body = GrantBody,
    responses((status = 200, description = "The new grant", body = GrantBody), Failures))]
async fn put_grant(
    State(state): State<AppState>,
    call: Call,
    JsonBody(body): JsonBody<GrantBody>,
) -> Answer<Json<GrantBody>> {
    let id = call.id("id")?;
    let team = call.principal.team;
    let grant = Grant::from_json(team, &body.to_value())?;
    let grant = state
        .run(move |db| db.update_grant(&call.principal, call.ty, id, &grant))
        .await?;
    Ok(Json(grant_body(&grant, team)?))
}

fn property_response(property: &prismdb::Property) -> Answer<PropertyResponse> {
    PropertyResponse::from_property(property).map_err(ApiError::internal)
}

/// The type's property catalog.
#[utoipa::path(get, path = "/v2/prism/{teamId}/{objectType}/properties", params(ReadPath),
    responses((status = 200, description = "The catalog", body = Vec<PropertyResponse>), Failures))]
async fn list_properties(
    State(state): State<AppState>,
    call: Call,
) -> Answer<Json<Vec<PropertyResponse>>> {
    let catalog = state
        .run(move |db| db.schema(&call.principal, call.ty))
        .await?;
    let properties = catalog.properties().iter().map(property_response);
    Ok(Json(properties.collect::<Answer<Vec<_>>>()?))
}

/// Add a property (admin role).
#[utoipa::path(post, path = "/v2/prism/{teamId}/{objectType}/properties", params(ReadPath),
    request_body = PropertyBody,
    responses((status = 201, description = "The new property", body = PropertyResponse), Failures))]
async fn add_property(
    State(state): State<AppState>,
    call: Call,
    JsonBody(body): JsonBody<PropertyBody>,
) -> Answer<(StatusCode, Json<PropertyResponse>)> {
    let spec = body.into_spec();
    let property = state
        .run(move |db| db.add_property(&call.principal, call.ty, &spec))
        .await?;
    Ok((StatusCode::CREATED, Json(property_response(&property)?)))
}

/// One property of the catalog.
#[utoipa::path(get, path = "/v2/prism/{teamId}/{objectType}/properties/{slug}", params(PropertyPath),
    responses((status = 200, description = "The property", body = PropertyResponse), Failures))]
async fn get_property(State(state): State<AppState>, call: Call) -> Answer<Json<PropertyResponse>> {
    let slug = call.param("slug");
    let ty = call.ty;
    let catalog = state
        .run(move |db| db.schema(&call.principal, call.ty))
        .await?;
    let property = catalog
        .property(&slug)
        .ok_or_else(|| ApiError::not_found(format!("{ty} has no property {slug:?}")))?;
    Ok(Json(property_response(property)?))
}

/// Change a property: unique, options added, renamed or removed (admin role).
#[utoipa::path(patch, path = "/v2/prism/{teamId}/{objectType}/properties/{slug}", params(PropertyPath),
    request_body = PropertyPatchBody,
    responses((status = 200, description = "The property after the change", body = PropertyResponse), Failures))]
async fn patch_property(
    State(state): State<AppState>,
    call: Call,
    JsonBody(body): JsonBody<PropertyPatchBody>,
) -> Answer<Json<PropertyResponse>> {
    let slug = call.param("slug");
    let change = body.into_change();
    let property = state
        .run(move |db| db.update_property(&call.principal, call.ty, &slug, &change))
        .await?;
    Ok(Json(property_response(&property)?))
}

/// Remove a property; refused while records hold values, unless `?force=true` (admin
/// role).
#[utoipa::path(delete, path = "/v2/prism/{teamId}/{objectType}/properties/{slug}",
    params(PropertyPath, ForceParams),
    responses((status = 204, description = "Removed"), Failures))]
async fn remove_property(
    State(state): State<AppState>,
    call: Call,
    Params(params): Params<ForceParams>,
) -> Answer<StatusCode> {
    let slug = call.param("slug");
    let force = params.force.unwrap_or(false);
    state
        .run(move |db| db.remove_property(&call.principal, call.ty, &slug, force))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
