//! `/v1/mentors` and `/v1/user-questions`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use strato_store::UserQuestionFilter;
use strato_types::{AnswerType, ErrorCode, Grade, Mentor};

use crate::auth::Principal;
use crate::extract::QueryParams;
use crate::extract::{body_error, IdempotencyKey, JsonBody};
use crate::views::{AnswerView, SubmittedJob, UserQuestionList};
use crate::{ApiError, AppState};
use strato_types::{Action, ResourceRef};

#[utoipa::path(put, path = "/v1/mentors/{id}", tag = "mentors", params(("id" = String, Path, description = "Mentor id", example = "demo")), request_body = Mentor,
    responses((status = 200, description = "The mentor as stored", body = Mentor)))]
/// Creates or replaces a mentor (MentorPal's data model).
pub(crate) async fn put(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(mentor): JsonBody<Mentor>,
) -> Result<Json<Mentor>, ApiError> {
    p.may(Action::Edit, &ResourceRef::mentor(&id))?;
    Ok(Json(s.strato.mentors().put(&id, mentor).await?))
}

#[utoipa::path(get, path = "/v1/mentors/{id}", tag = "mentors", params(("id" = String, Path, description = "Mentor id", example = "demo")), responses((status = 200, body = Mentor)))]
/// A mentor with its answers.
pub(crate) async fn show(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Mentor>, ApiError> {
    p.may(Action::Use, &ResourceRef::mentor(&id))?;
    Ok(Json(s.strato.mentors().get(&id).await?))
}

#[utoipa::path(delete, path = "/v1/mentors/{id}", tag = "mentors", params(("id" = String, Path, description = "Mentor id", example = "scratch")),
    responses((status = 204, description = "Deleted with its classifier and user questions")))]
/// Deletes a mentor.
pub(crate) async fn delete(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.may(Action::Edit, &ResourceRef::mentor(&id))?;
    s.strato.mentors().delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/mentors/{id}/import", tag = "mentors", params(("id" = String, Path, description = "Mentor id", example = "demo")),
    request_body(description = "MentorPal's training-data CSV (`id,question,paraphrases,answer,...`)", content_type = "text/csv", content = String),
    responses((status = 200, description = "The mentor as stored", body = Mentor)))]
/// Creates or replaces a mentor from a CSV export.
pub(crate) async fn import(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Mentor>, ApiError> {
    p.may(Action::Edit, &ResourceRef::mentor(&id))?;
    let body = body.map_err(body_error)?;
    Ok(Json(s.strato.mentors().import_csv(&id, body).await?))
}

#[utoipa::path(get, path = "/v1/mentors/{id}/trainingdata", tag = "mentors", params(("id" = String, Path, description = "Mentor id", example = "demo")),
    responses((status = 200, description = "The training data as a CSV download", content_type = "text/csv", body = String)))]
/// The training data as a CSV download.
pub(crate) async fn training_data(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    p.may(Action::Edit, &ResourceRef::mentor(&id))?;
    let csv = s.strato.mentors().training_csv(&id).await?;
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

#[utoipa::path(post, path = "/v1/mentors/{id}/train", tag = "mentors", params(("id" = String, Path, description = "Mentor id", example = "demo"), crate::extract::IdempotencyHeader),
    responses((status = 202, description = "Training job accepted", body = SubmittedJob)))]
/// Trains the mentor's classifier (a job).
pub(crate) async fn train(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
) -> Result<(StatusCode, Json<SubmittedJob>), ApiError> {
    p.may(Action::Edit, &ResourceRef::mentor(&id))?;
    let job = s.strato.mentors().submit_training(&id, key).await?;
    Ok((StatusCode::ACCEPTED, Json(SubmittedJob::new(job, Some(id)))))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AnswerQuery {
    /// What the user asked.
    #[param(required = true, value_type = String, pattern = "\\S", example = "what is your name")]
    query: Option<String>,
    /// Chat session, recorded with the question.
    chat_session_id: Option<String>,
}

#[utoipa::path(get, path = "/v1/mentors/{id}/answer", tag = "mentors", params(("id" = String, Path, description = "Mentor id", example = "demo"), AnswerQuery),
    responses((status = 200, body = AnswerView)))]
/// Answers a user's question; the question is recorded for grading.
pub(crate) async fn answer(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<AnswerQuery>,
) -> Result<Json<AnswerView>, ApiError> {
    p.may(Action::Use, &ResourceRef::mentor(&id))?;
    let query = q
        .query
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "the query parameter `query` is required"))?;
    Ok(Json(s.strato.mentors().answer(&id, &query, q.chat_session_id).await?.into()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UserQuestionsQuery {
    /// Only answers of this type: EXACT, PARAPHRASE, CLASSIFIER or OFF_TOPIC.
    #[serde(rename = "type")]
    #[param(value_type = Option<AnswerType>)]
    answer_type: Option<String>,
    /// Only questions not graded yet.
    #[serde(default)]
    ungraded: Option<bool>,
    /// Most questions returned, newest first.
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/mentors/{id}/user-questions", tag = "mentors", params(("id" = String, Path, description = "Mentor id", example = "demo"), UserQuestionsQuery),
    responses((status = 200, body = UserQuestionList)))]
/// Questions users asked the mentor, for grading.
pub(crate) async fn user_questions(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<UserQuestionsQuery>,
) -> Result<Json<UserQuestionList>, ApiError> {
    p.may(Action::Edit, &ResourceRef::mentor(&id))?;
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
    let list = s.strato.mentors().user_questions(&id, &filter).await?;
    Ok(Json(UserQuestionList { user_questions: list }))
}

/// Exactly one of `answer_id` (the right answer) or `off_topic: true`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GradeBody {
    answer_id: Option<String>,
    off_topic: Option<bool>,
}

#[utoipa::path(put, path = "/v1/user-questions/{feedback_id}/grade", tag = "mentors",
    params(("feedback_id" = String, Path, description = "The `feedback_id` of an answer")), request_body = GradeBody,
    responses((status = 200, body = strato_types::UserQuestionRecord)))]
/// Grades an answered question; graded questions answer as paraphrases from then on.
pub(crate) async fn grade(
    p: Principal,
    State(s): State<AppState>,
    Path(feedback_id): Path<String>,
    JsonBody(g): JsonBody<GradeBody>,
) -> Result<Json<strato_types::UserQuestionRecord>, ApiError> {
    let q = s.strato.mentors().user_question(&feedback_id).await?;
    if p.may(Action::Edit, &ResourceRef::mentor(&q.mentor_id)).is_err() {
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
    Ok(Json(s.strato.mentors().grade(&feedback_id, grade).await?))
}
