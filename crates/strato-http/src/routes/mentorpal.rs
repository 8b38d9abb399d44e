//! The MentorPal classifier service's API under `/classifier`, for its web client.
//!
//! Shapes follow the original: most bodies are wrapped in `{"data": …}`, `/questions` is not, and errors use the
//! original's bodies (`{"data": {"error", "message"}}` for status lookups, `{"message"}` for a missing model).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use strato_types::{ErrorCode, StratoError};

use crate::auth::Principal;
use crate::extract::QueryParams;
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/classifier/train", post(train))
        .route("/classifier/train/status/{id}", get(status))
        .route("/classifier/questions", get(questions))
        .route("/classifier/trainingdata/{mentor}", get(training_data))
        .route("/classifier/followups/category/{category}/{mentor}", post(followups))
        .route("/classifier/me/followups/category/{category}", post(my_followups))
}

fn message(status: StatusCode, m: impl Into<String>) -> Response {
    (status, Json(json!({"message": m.into()}))).into_response()
}

fn from_strato(e: StratoError) -> Response {
    let status = crate::error::status_of(e.code);
    message(status, e.message)
}

fn status_url(id: &str) -> String {
    format!("/classifier/train/status/{id}")
}

async fn train(p: Principal, State(s): State<AppState>, body: Bytes) -> Response {
    let mentor = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("mentor")?.as_str().map(String::from));
    let Some(mentor) = mentor else {
        return message(StatusCode::BAD_REQUEST, "missing required param 'mentor'");
    };
    if let Err(e) = p.may_edit_mentor(&mentor) {
        return e.into_response();
    }
    match s.strato.submit_mentor_training(&mentor, None).await {
        Ok(job) => Json(json!({"data": {
            "id": job.id, "mentor": mentor, "status": job.status.as_str(), "statusUrl": status_url(&job.id),
        }}))
        .into_response(),
        Err(e) => from_strato(e),
    }
}

async fn status(p: Principal, State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let job = match s.strato.job(&id).await {
        Ok(j) if j.kind == strato_types::JobKind::TrainMentor && p.may_see_job(&j).is_ok() => j,
        Ok(_) | Err(StratoError { code: ErrorCode::JobNotFound, .. }) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"data": {"error": "not found", "message": format!("{id} not found")}})),
            )
                .into_response()
        }
        Err(e) => return from_strato(e),
    };
    let mentor = job.payload.get("mentor_id").cloned().unwrap_or(Value::Null);
    Json(json!({"data": {
        "id": job.id,
        "status": job.status.as_str(),
        "state": job.status.as_str(),
        "mentor": mentor,
        "updated": job.updated_at,
        "statusUrl": status_url(&job.id),
        "progress": job.progress,
        "error": job.error,
    }}))
    .into_response()
}

#[derive(Deserialize)]
struct QuestionsQuery {
    mentor: Option<String>,
    query: Option<String>,
    chatsessionid: Option<String>,
}

async fn questions(p: Principal, State(s): State<AppState>, QueryParams(q): QueryParams<QuestionsQuery>) -> Response {
    let (Some(mentor), Some(query)) = (q.mentor, q.query.filter(|t| !t.trim().is_empty())) else {
        return message(StatusCode::BAD_REQUEST, "missing required query parameters 'mentor' and 'query'");
    };
    if let Err(e) = p.may_use_mentor(&mentor) {
        return e.into_response();
    }
    match s.strato.answer(&mentor, &query, q.chatsessionid).await {
        Ok(a) => Json(a).into_response(),
        Err(e) if matches!(e.code, ErrorCode::MentorNotTrained | ErrorCode::MentorNotFound) => {
            message(StatusCode::NOT_FOUND, format!("No models found for mentor {mentor}."))
        }
        Err(e) => from_strato(e),
    }
}

async fn training_data(p: Principal, State(s): State<AppState>, Path(mentor): Path<String>) -> Response {
    if let Err(e) = p.may_edit_mentor(&mentor) {
        return e.into_response();
    }
    match s.strato.mentor_training_csv(&mentor).await {
        // The original returns the CSV inside JSON, served with the CSV type and a download name.
        Ok(csv) => (
            [
                (header::CONTENT_TYPE, "text/csv".to_string()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename={mentor}-trainingdata.csv")),
            ],
            json!({"data": csv}).to_string(),
        )
            .into_response(),
        Err(e) => from_strato(e),
    }
}

async fn followups_for(p: &Principal, s: &AppState, mentor: &str, category: &str) -> Response {
    if let Err(e) = p.may_use_mentor(mentor) {
        return e.into_response();
    }
    match s.strato.followups(mentor, category).await {
        Ok(f) => Json(json!({"data": {"followups": f}})).into_response(),
        Err(e) => from_strato(e),
    }
}

async fn followups(
    p: Principal,
    State(s): State<AppState>,
    Path((category, mentor)): Path<(String, String)>,
) -> Response {
    followups_for(&p, &s, &mentor, &category).await
}

/// "me" is the caller's own mentor: the first of the token's owned mentors (`mentorIds`), or the one named by the
/// `X-Mentor-Id` header or the `mentor` query parameter.
async fn my_followups(
    p: Principal,
    State(s): State<AppState>,
    Path(category): Path<String>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<std::collections::HashMap<String, String>>,
) -> Response {
    let mentor =
        headers.get("x-mentor-id").and_then(|v| v.to_str().ok()).map(String::from).or(q.get("mentor").cloned());
    let mentor = mentor.or_else(|| p.owned_mentors.first().cloned());
    match mentor {
        Some(m) => followups_for(&p, &s, &m, &category).await,
        None => message(StatusCode::BAD_REQUEST, "name your mentor with the X-Mentor-Id header or ?mentor="),
    }
}
