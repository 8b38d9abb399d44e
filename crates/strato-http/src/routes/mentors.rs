//! `/v1/mentors` and `/v1/user-questions`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use strato_store::UserQuestionFilter;
use strato_types::{AnswerType, ErrorCode, Grade, Mentor};

use crate::auth::Principal;
use crate::extract::QueryParams;
use crate::extract::{body_error, IdempotencyKey, JsonBody};
use crate::views::JobView;
use crate::{ApiError, AppState};

pub(crate) async fn put(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(mentor): JsonBody<Mentor>,
) -> Result<Json<Mentor>, ApiError> {
    p.may_edit_mentor(&id)?;
    Ok(Json(s.strato.put_mentor(&id, mentor).await?))
}

pub(crate) async fn show(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Mentor>, ApiError> {
    p.may_use_mentor(&id)?;
    Ok(Json(s.strato.mentor(&id).await?))
}

pub(crate) async fn delete(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.may_edit_mentor(&id)?;
    s.strato.delete_mentor(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn import(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Mentor>, ApiError> {
    p.may_edit_mentor(&id)?;
    let body = body.map_err(body_error)?;
    Ok(Json(s.strato.import_mentor_csv(&id, body).await?))
}

/// The training data as a CSV download.
pub(crate) async fn training_data(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    p.may_edit_mentor(&id)?;
    let csv = s.strato.mentor_training_csv(&id).await?;
    Ok(csv_attachment(&id, csv))
}

pub(crate) fn csv_attachment(id: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename={id}-trainingdata.csv")),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn train(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    p.may_edit_mentor(&id)?;
    let job = s.strato.submit_mentor_training(&id, key).await?;
    let url = format!("/v1/jobs/{}", job.id);
    let mut v = serde_json::to_value(JobView::from(job)).unwrap_or_default();
    v["status_url"] = json!(url);
    v["mentor"] = json!(id);
    Ok((StatusCode::ACCEPTED, Json(v)))
}

#[derive(Deserialize)]
pub(crate) struct AnswerQuery {
    query: Option<String>,
    chat_session_id: Option<String>,
}

pub(crate) async fn answer(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<AnswerQuery>,
) -> Result<Json<strato_service::AnswerResult>, ApiError> {
    p.may_use_mentor(&id)?;
    let query = q
        .query
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "the query parameter `query` is required"))?;
    Ok(Json(s.strato.answer(&id, &query, q.chat_session_id).await?))
}

#[derive(Deserialize)]
pub(crate) struct UserQuestionsQuery {
    #[serde(rename = "type")]
    answer_type: Option<String>,
    #[serde(default)]
    ungraded: Option<bool>,
    limit: Option<i64>,
}

pub(crate) async fn user_questions(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<UserQuestionsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    p.may_edit_mentor(&id)?;
    let answer_type = q
        .answer_type
        .map(|t| {
            AnswerType::parse(&t.to_ascii_uppercase()).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("unknown type {t:?}: use EXACT, PARAPHRASE, CLASSIFIER or OFF_TOPIC"),
                )
            })
        })
        .transpose()?;
    let filter = UserQuestionFilter { answer_type, ungraded: q.ungraded.unwrap_or(false), limit: q.limit };
    let list = s.strato.user_questions(&id, &filter).await?;
    Ok(Json(json!({"user_questions": list})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GradeBody {
    answer_id: Option<String>,
    off_topic: Option<bool>,
}

pub(crate) async fn grade(
    p: Principal,
    State(s): State<AppState>,
    Path(feedback_id): Path<String>,
    JsonBody(g): JsonBody<GradeBody>,
) -> Result<Json<strato_types::UserQuestionRecord>, ApiError> {
    let q = s.strato.user_question(&feedback_id).await?;
    if p.may_edit_mentor(&q.mentor_id).is_err() {
        // The same answer as an unknown id: feedback ids cannot be probed.
        return Err(ApiError::new(ErrorCode::FeedbackNotFound, format!("user question {feedback_id:?} not found")));
    }
    let grade = match (g.answer_id, g.off_topic) {
        (Some(a), None | Some(false)) => Grade::Answer(a),
        (None, Some(true)) => Grade::OffTopic,
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "give exactly one of {\"answer_id\": \"...\"} or {\"off_topic\": true}",
            ))
        }
    };
    Ok(Json(s.strato.grade(&feedback_id, grade).await?))
}
