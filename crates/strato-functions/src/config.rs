//! A function's configuration, as Lambda names and bounds it, and its validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{FunctionError, Result};

/// Shortest and longest time limit of a synchronous invocation, in seconds (Lambda's bounds).
pub const TIMEOUT_RANGE: (u32, u32) = (1, 900);
/// Smallest and largest memory size, in MB (Lambda's bounds).
pub const MEMORY_RANGE: (u32, u32) = (128, 10_240);
/// Longest run of the notebook model runner, in seconds (its runs are jobs, not held requests).
pub const NOTEBOOK_MAX_TIMEOUT: u32 = 12 * 3600;
/// The notebook model runner's runtime identifier.
pub const NOTEBOOK_RUNTIME: &str = "strato.notebook";
/// Lambda's default time limit, in seconds.
pub const DEFAULT_TIMEOUT: u32 = 3;
/// Lambda's default memory size, in MB.
pub const DEFAULT_MEMORY: u32 = 128;

/// How a function's code runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Runtime {
    /// `python3.x`: the interpreter runs AWS's runtime client (`python -m awslambdaric <handler>`).
    Python(String),
    /// `provided`, `provided.al2`, `provided.al2023`: the code's own executable `bootstrap`.
    Provided(String),
    /// `strato.notebook`: the built-in model runner (Quetzal's contract), a job on the `notebooks` queue.
    Notebook,
}

impl Runtime {
    /// Parses Lambda's runtime identifier.
    pub fn parse(s: &str) -> Result<Self> {
        let python = s.strip_prefix("python3.").is_some_and(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()));
        if python {
            Ok(Self::Python(s.to_string()))
        } else if matches!(s, "provided" | "provided.al2" | "provided.al2023") {
            Ok(Self::Provided(s.to_string()))
        } else if s == NOTEBOOK_RUNTIME {
            Ok(Self::Notebook)
        } else {
            Err(FunctionError::Invalid(format!(
                "runtime {s:?} is not supported: use python3.<minor> (run by AWS's runtime client, awslambdaric), \
                 provided / provided.al2 / provided.al2023 (the code's own executable `bootstrap`) or \
                 {NOTEBOOK_RUNTIME} (the notebook model runner)"
            )))
        }
    }

    /// Lambda's identifier.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Python(s) | Self::Provided(s) => s,
            Self::Notebook => NOTEBOOK_RUNTIME,
        }
    }
}

/// Where a version's code is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum CodeRef {
    /// A zip archive in blob storage, unpacked once per content into the code cache.
    Zip {
        /// SHA-256 of the archive (hex): its blob key and its cache directory.
        sha256: String,
        /// Archive size in bytes.
        size: u64,
    },
    /// A directory on the server, used in place (development; admins only).
    Directory {
        /// Absolute path.
        path: String,
    },
}

/// A function's configuration: what `CreateFunction` and `UpdateFunctionConfiguration` set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionConfig {
    /// The name (1-64 of `A-Za-z0-9-_`).
    pub name: String,
    /// Lambda's runtime identifier.
    pub runtime: String,
    /// `module.function` for Python; passed as `_HANDLER` to any runtime.
    pub handler: String,
    /// Variables set for the code (never Strato's own).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Time limit of an invocation, in seconds.
    pub timeout: u32,
    /// Memory size in MB, reported to the code and in `REPORT` lines.
    pub memory_size: u32,
    /// Most instances running at once; `None` shares the process-wide limit.
    #[serde(default)]
    pub reserved_concurrency: Option<u32>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// The execution role's ARN Lambda's clients send; kept and shown, not used (Strato has no IAM roles).
    #[serde(default)]
    pub role: String,
    /// Retries of a failed asynchronous invocation (0 to 2; Lambda's default 2).
    #[serde(default)]
    pub maximum_retry_attempts: Option<u32>,
    /// Seconds an asynchronous event may wait and be retried before it is dropped (60 to 21,600; default 21,600).
    #[serde(default)]
    pub maximum_event_age: Option<u32>,
    /// The code.
    pub code: CodeRef,
}

/// Variables Lambda reserves: a function may not set them.
const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// Checks a function name: Lambda's characters and length.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(FunctionError::Invalid(format!(
            "function name {name:?} is not valid: use 1 to 64 letters, digits, '-' or '_'"
        )))
    }
}

impl FunctionConfig {
    /// Every problem with the configuration, in one message.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        let mut problems = Vec::new();
        let runtime = Runtime::parse(&self.runtime);
        if let Err(e) = &runtime {
            problems.push(e.to_string());
        }
        let handler_ok = !self.handler.is_empty()
            && self.handler.len() <= 128
            && !self.handler.chars().any(|c| c.is_control() || c.is_whitespace());
        if !handler_ok {
            problems.push(format!("handler {:?} is not valid: 1 to 128 characters, no spaces", self.handler));
        } else if matches!(runtime, Ok(Runtime::Python(_))) && !self.handler.contains('.') {
            problems.push(format!("handler {:?} must be module.function for a Python runtime", self.handler));
        }
        let max_timeout = if matches!(runtime, Ok(Runtime::Notebook)) { NOTEBOOK_MAX_TIMEOUT } else { TIMEOUT_RANGE.1 };
        if !(TIMEOUT_RANGE.0..=max_timeout).contains(&self.timeout) {
            problems.push(format!(
                "timeout {} s is out of range: {} to {max_timeout} seconds",
                self.timeout, TIMEOUT_RANGE.0
            ));
        }
        if !(MEMORY_RANGE.0..=MEMORY_RANGE.1).contains(&self.memory_size) {
            problems.push(format!(
                "memory size {} MB is out of range: {} to {} MB",
                self.memory_size, MEMORY_RANGE.0, MEMORY_RANGE.1
            ));
        }
        if self.reserved_concurrency == Some(0) {
            // Lambda's "throttle this function"; kept simple here: it would refuse every call.
            problems
                .push("reserved concurrency 0 would refuse every invocation: leave it unset or use 1 or more".into());
        }
        if self.maximum_retry_attempts.is_some_and(|r| r > 2) {
            problems.push("maximum retry attempts must be 0, 1 or 2".into());
        }
        if self.maximum_event_age.is_some_and(|a| !(60..=21_600).contains(&a)) {
            problems.push("maximum event age must be 60 to 21,600 seconds".into());
        }
        if self.description.len() > 256 {
            problems.push("description is longer than 256 characters".into());
        }
        let mut env_bytes = 0;
        for (k, v) in &self.environment {
            env_bytes += k.len() + v.len();
            let name_ok = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name_ok {
                problems.push(format!(
                    "environment variable name {k:?} is not valid: a letter, then letters, digits or '_'"
                ));
            } else if RESERVED_ENV.contains(&k.as_str()) {
                problems.push(format!("environment variable {k} is reserved by the runtime and cannot be set"));
            }
            if v.contains('\0') {
                problems.push(format!("environment variable {k} contains a NUL character"));
            }
        }
        if env_bytes > 4096 {
            problems.push(format!("environment variables take {env_bytes} bytes; Lambda's limit is 4 KB"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(FunctionError::Invalid(problems.join("; ")))
        }
    }

    /// The parsed runtime (the configuration was validated when stored).
    pub fn runtime(&self) -> Result<Runtime> {
        Runtime::parse(&self.runtime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FunctionConfig {
        FunctionConfig {
            name: "echo".into(),
            runtime: "python3.11".into(),
            handler: "app.handler".into(),
            environment: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
            memory_size: DEFAULT_MEMORY,
            reserved_concurrency: None,
            description: String::new(),
            role: String::new(),
            maximum_retry_attempts: None,
            maximum_event_age: None,
            code: CodeRef::Zip { sha256: "00".repeat(32), size: 1 },
        }
    }

    #[test]
    fn lambdas_bounds_and_names_are_checked_all_at_once() {
        config().validate().unwrap();
        let mut c = config();
        c.timeout = 901;
        c.memory_size = 64;
        c.runtime = "ruby3.2".into();
        c.environment.insert("AWS_REGION".into(), "x".into());
        c.environment.insert("1BAD".into(), "x".into());
        let e = c.validate().unwrap_err().to_string();
        for needle in ["timeout 901", "memory size 64", "ruby3.2", "AWS_REGION is reserved", "\"1BAD\""] {
            assert!(e.contains(needle), "{needle} missing from {e}");
        }
        for bad in ["", "a b", "x".repeat(65).as_str(), "ünï"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        let mut c = config();
        c.handler = "handler".into();
        assert!(c.validate().unwrap_err().to_string().contains("module.function"));
        c.runtime = "provided.al2023".into();
        c.validate().unwrap();
    }
}
