//! The MentorPal classifier service's API under `/classifier`, for its web client.
//!
//! Shapes follow the original: most bodies are wrapped in `{"data": …}`, `/questions` is not, and errors use the
//! original's bodies (`{"data": {"error", "message"}}` for status lookups, `{"message"}` for a missing model).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use strato_types::{ErrorCode, StratoError};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::extract::QueryParams;
use crate::AppState;
use strato_types::{Action, ResourceRef};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(train))
        .routes(routes!(status))
        .routes(routes!(questions))
        .routes(routes!(training_data))
        .routes(routes!(followups))
        .routes(routes!(my_followups))
}

/// `POST /classifier/train` body.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // read leniently from JSON, as the original did; this type documents it
pub(crate) struct MentorPalTrain {
    /// Mentor id.
    mentor: String,
}

/// `{"data": …}`, MentorPal's envelope.
#[derive(Serialize, ToSchema)]
pub(crate) struct Data<T> {
    data: T,
}

/// A training job just started.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TrainStarted {
    id: String,
    mentor: String,
    #[schema(value_type = strato_types::JobStatus)]
    status: &'static str,
    status_url: String,
}

/// A training job's state.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TrainStatus {
    id: String,
    #[schema(value_type = strato_types::JobStatus)]
    status: &'static str,
    /// Same as `status`, for older clients.
    #[schema(value_type = strato_types::JobStatus)]
    state: &'static str,
    mentor: Value,
    updated: chrono::DateTime<chrono::Utc>,
    status_url: String,
    /// 0-100.
    progress: i32,
    error: Option<String>,
}

/// Suggested follow-up questions.
#[derive(Serialize, ToSchema)]
pub(crate) struct Followups {
    followups: Vec<crate::views::FollowupView>,
}

/// The original's error bodies: `{"message"}`, `{"data": {"error", "message"}}` for an unknown job, and the
/// gateway's native `{"error": {"code", "message"}}` refusals.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documents the bodies written below and by `ApiError`
pub(crate) enum MentorPalError {
    Message { message: String },
    NotFound { data: NotFound },
    Native { error: crate::error::ErrorDetail },
}

/// An unknown training job.
#[derive(Serialize, ToSchema)]
pub(crate) struct NotFound {
    /// `not found`.
    error: String,
    message: String,
}

/// `GET /classifier/questions` parameters.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct QuestionsQuery {
    /// Mentor id.
    #[param(required = true, value_type = String)]
    mentor: Option<String>,
    /// The user's question.
    #[param(required = true, value_type = String, pattern = "\\S")]
    query: Option<String>,
    /// Chat session, recorded with the question.
    chatsessionid: Option<String>,
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

#[utoipa::path(post, path = "/classifier/train", tag = "mentorpal", request_body = MentorPalTrain,
    responses((status = 200, body = Data<TrainStarted>)))]
/// Trains a mentor's classifier (a job).
async fn train(p: Principal, State(s): State<AppState>, body: Bytes) -> Response {
    let mentor = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("mentor")?.as_str().map(String::from));
    let Some(mentor) = mentor else {
        return message(StatusCode::BAD_REQUEST, "missing required param 'mentor'");
    };
    if let Err(e) = p.may(Action::Edit, &ResourceRef::mentor(&mentor)) {
        return e.into_response();
    }
    match s.strato.mentors().submit_training(&mentor, None).await {
        Ok(job) => {
            let data =
                TrainStarted { status_url: status_url(&job.id), id: job.id, mentor, status: job.status.as_str() };
            Json(Data { data }).into_response()
        }
        Err(e) => from_strato(e),
    }
}

#[utoipa::path(get, path = "/classifier/train/status/{id}", tag = "mentorpal",
    params(("id" = String, Path, description = "Training job id")), responses((status = 200, body = Data<TrainStatus>)))]
/// A training job's state.
async fn status(p: Principal, State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let job = match s.strato.jobs().get(&id).await {
        Ok(j)
            if j.kind == <strato_service::TrainMentorArgs as strato_types::JobArgs>::KIND
                && p.may_see_job(&j).is_ok() =>
        {
            j
        }
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
    let data = TrainStatus {
        status_url: status_url(&job.id),
        id: job.id,
        status: job.status.as_str(),
        state: job.status.as_str(),
        mentor,
        updated: job.updated_at,
        progress: job.progress,
        error: job.error,
    };
    Json(Data { data }).into_response()
}

#[utoipa::path(get, path = "/classifier/questions", tag = "mentorpal", params(QuestionsQuery),
    responses((status = 200, body = crate::views::AnswerView)))]
/// Answers a user's question.
async fn questions(p: Principal, State(s): State<AppState>, QueryParams(q): QueryParams<QuestionsQuery>) -> Response {
    let (Some(mentor), Some(query)) = (q.mentor, q.query.filter(|t| !t.trim().is_empty())) else {
        return message(StatusCode::BAD_REQUEST, "missing required query parameters 'mentor' and 'query'");
    };
    if let Err(e) = p.may(Action::Use, &ResourceRef::mentor(&mentor)) {
        return e.into_response();
    }
    match s.strato.mentors().answer(&mentor, &query, q.chatsessionid).await {
        Ok(a) => Json(crate::views::AnswerView::from(a)).into_response(),
        Err(e) if matches!(e.code, ErrorCode::MentorNotTrained | ErrorCode::MentorNotFound) => {
            message(StatusCode::NOT_FOUND, format!("No models found for mentor {mentor}."))
        }
        Err(e) => from_strato(e),
    }
}

#[utoipa::path(get, path = "/classifier/trainingdata/{mentor}", tag = "mentorpal",
    params(("mentor" = String, Path, description = "Mentor id")),
    responses((status = 200, description = "`{\"data\": \"<csv>\"}`, served as a CSV download as the original did",
        content_type = "text/csv", body = String)))]
/// The mentor's training data.
async fn training_data(p: Principal, State(s): State<AppState>, Path(mentor): Path<String>) -> Response {
    if let Err(e) = p.may(Action::Edit, &ResourceRef::mentor(&mentor)) {
        return e.into_response();
    }
    match s.strato.mentors().training_csv(&mentor).await {
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
    if let Err(e) = p.may(Action::Use, &ResourceRef::mentor(mentor)) {
        return e.into_response();
    }
    match s.strato.mentors().followups(mentor, category).await {
        Ok(f) => Json(Data { data: Followups { followups: f.into_iter().map(Into::into).collect() } }).into_response(),
        Err(e) => from_strato(e),
    }
}

#[utoipa::path(post, path = "/classifier/followups/category/{category}/{mentor}", tag = "mentorpal",
    params(("category" = String, Path, description = "Answer category"), ("mentor" = String, Path, description = "Mentor id")),
    responses((status = 200, body = Data<Followups>)))]
/// Follow-up questions for a category of the mentor's answers.
async fn followups(
    p: Principal,
    State(s): State<AppState>,
    Path((category, mentor)): Path<(String, String)>,
) -> Response {
    followups_for(&p, &s, &mentor, &category).await
}

/// "me" is the caller's own mentor: the first of the token's owned mentors (`mentorIds`), or the one named by the
/// `X-Mentor-Id` header or the `mentor` query parameter.
#[utoipa::path(post, path = "/classifier/me/followups/category/{category}", tag = "mentorpal",
    params(("category" = String, Path, description = "Answer category"),
           ("X-Mentor-Id" = Option<String>, Header, description = "The mentor, when the token owns several or none"),
           ("mentor" = Option<String>, Query, description = "The mentor, instead of the header")),
    responses((status = 200, body = Data<Followups>)))]
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
