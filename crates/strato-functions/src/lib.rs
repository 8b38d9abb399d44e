//! Functions written for AWS Lambda, run by Strato unchanged: code kept in blob storage and unpacked once per
//! content, warm instances per version behind the Lambda Runtime API (AWS's own runtime client for Python, any
//! `bootstrap` for `provided`), synchronous and durable asynchronous invocations, Lambda's log lines, and the
//! Invoke API that AWS clients and the Runtime Interface Emulator's callers already speak.
//!
//! The pieces: `config.rs` (what a function is and Lambda's bounds), `code.rs` (archives and the code cache),
//! `runtime_api.rs` (one loopback listener per instance), `instance.rs` (its process), `pool.rs` (warm instances
//! and concurrency), `service.rs` ([`Functions`]: functions, versions, invocations, logs), `jobs.rs` (asynchronous
//! invocations on the job queue), `http.rs` (the routes).

mod aliases;
mod aws;
pub mod code;
pub mod config;
mod http;
mod instance;
mod jobs;
mod logs;
mod notebook;
mod pool;
mod runtime_api;
mod service;

use std::sync::{Arc, OnceLock};

pub use aliases::Alias;
pub use config::{CodeRef, FunctionConfig, Runtime};
pub use http::{api_routes, routes};
pub use instance::RunAs;
pub use jobs::{InvokeEventArgs, InvokeEventWorker};
pub use notebook::{NotebookRunArgs, NotebookWorker};
pub use runtime_api::MAX_PAYLOAD_BYTES;
pub use service::{
    ConfigPatch, FunctionView, Functions, FunctionsOptions, InvokeRequest, InvokeResponse, NewCode, NewFunction,
};
use strato_types::{ErrorCode, ResourceKind, StratoError};

/// The resource kind grants name functions by.
pub const FUNCTION: ResourceKind = ResourceKind::new("function");

/// What went wrong with a function operation.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// A bad request: the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// No such function or version.
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this (the same answer whether or not the function exists).
    #[error("{0}")]
    Forbidden(String),
    /// It exists already, or changed meanwhile.
    #[error("{0}")]
    Conflict(String),
    /// The function is at its concurrency limit.
    #[error("{0}")]
    Throttled(String),
    /// The request payload is over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// Strato's side failed (storage, the database, a process that could not start).
    #[error("{0}")]
    Internal(String),
}

/// Result of function operations.
pub type Result<T> = std::result::Result<T, FunctionError>;

impl From<FunctionError> for StratoError {
    fn from(e: FunctionError) -> Self {
        let code = match &e {
            FunctionError::Invalid(_) => ErrorCode::InvalidRequest,
            FunctionError::NotFound(_) => ErrorCode::ResourceNotFound,
            FunctionError::Conflict(_) => ErrorCode::Conflict,
            FunctionError::Forbidden(_) => ErrorCode::Forbidden,
            FunctionError::Throttled(_) => ErrorCode::RateLimited,
            FunctionError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            FunctionError::Internal(_) => ErrorCode::Internal,
        };
        StratoError::new(code, e.to_string())
    }
}

impl From<strato_store::StoreError> for FunctionError {
    fn from(e: strato_store::StoreError) -> Self {
        Self::Internal(format!("the metadata store: {e}"))
    }
}

/// Where the composition root's registration leaves the [`Functions`] it built, for the routes and the CLI.
#[derive(Clone, Default)]
pub struct FunctionsSlot(Arc<OnceLock<Functions>>);

impl FunctionsSlot {
    /// The registration: builds [`Functions`] over the service's store and blob storage, registers the
    /// asynchronous-invocation job kind and the `function` resource kind.
    pub fn registrar(
        &self,
        opts: FunctionsOptions,
    ) -> impl FnOnce(&mut strato_service::Registration<'_>) + Send + 'static {
        let slot = self.0.clone();
        move |r| {
            let functions = Functions::new(r.store.clone(), r.blobs.clone(), opts);
            r.workers.add(InvokeEventWorker::new(functions.clone()));
            r.workers.add(NotebookWorker::new(functions.clone()));
            r.resources.register(FUNCTION);
            let _ = slot.set(functions);
        }
    }

    /// The functions, once the service is open.
    pub fn get(&self) -> Option<Functions> {
        self.0.get().cloned()
    }
}
