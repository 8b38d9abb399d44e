//! Errors as the States Language names them: an error name (`States.Runtime`, a task's own) and a cause.

use serde::{Deserialize, Serialize};

/// A state's failure: what `Retry` and `Catch` match by `error`, and what an execution fails with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{error}: {cause}")]
pub struct StatesError {
    /// The error name.
    pub error: String,
    /// Why, in words.
    pub cause: String,
}

impl StatesError {
    /// An error of any name.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self { error: error.into(), cause: cause.into() }
    }

    /// `States.Runtime`: a path, a payload or a value was not as the state needs it.
    pub fn runtime(cause: impl Into<String>) -> Self {
        Self::new("States.Runtime", cause)
    }

    /// `States.IntrinsicFailure`: an intrinsic function could not be applied.
    pub fn intrinsic(cause: impl Into<String>) -> Self {
        Self::new("States.IntrinsicFailure", cause)
    }

    /// `States.NoChoiceMatched`.
    pub fn no_choice(state: &str) -> Self {
        Self::new("States.NoChoiceMatched", format!("No Matches! (in state {state:?})"))
    }

    /// `States.ResultPathMatchFailure`.
    pub fn result_path(cause: impl Into<String>) -> Self {
        Self::new("States.ResultPathMatchFailure", cause)
    }

    /// `States.DataLimitExceeded`.
    pub fn data_limit(cause: impl Into<String>) -> Self {
        Self::new("States.DataLimitExceeded", cause)
    }
}
