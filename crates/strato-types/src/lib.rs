//! Ids, records, statuses and error codes shared by every Strato crate.
//!
//! Nothing here does I/O: these are the nouns the store persists, the service manipulates and the HTTP
//! layer turns into views.

mod access;
mod error;
mod job;
mod mentor;
mod model;
mod resource;

pub use access::{ApiKeyRecord, UsagePlan};
pub use error::{ErrorCode, StratoError};
pub use job::{
    AttemptEnd, JobArgs, JobAttempt, JobDefaults, JobKind, JobRecord, JobStatus, NewJob, QueueName,
    DEFAULT_MAX_ATTEMPTS,
};
pub use mentor::{
    Answer, AnswerStatus, AnswerType, Grade, Media, Mentor, MentorType, Question, QuestionType, UserQuestionRecord,
    OFF_TOPIC,
};
pub use model::{DatasetRecord, ModelRecord, ModelVersionRecord};
pub use resource::{glob, Action, Actions, Grant, ResourceKind, ResourceRef};

use chrono::{DateTime, Utc};

/// The timestamp type used in every record.
pub type Timestamp = DateTime<Utc>;

/// Validates a user-chosen name (dataset, model, mentor): 1–128 chars of `[A-Za-z0-9._-]`, not starting with `.`.
///
/// Names end up in blob keys and URLs, so anything outside this set is rejected rather than escaped.
pub fn validate_name(kind: &str, name: &str) -> Result<(), StratoError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(StratoError::new(
            ErrorCode::InvalidName,
            format!(
                "invalid {kind} name {name:?}: use 1-128 characters from A-Z a-z 0-9 . _ - (not starting with '.')"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("model", "tc-01").is_ok());
        assert!(validate_name("model", "a.b_c-9").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "ünï", &"x".repeat(129)] {
            let err = validate_name("model", bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidName, "{bad}");
        }
    }
}
