//! Amazon States Language workflows, run by Strato: the definition (`definition.rs`, checked whole as
//! `ValidateStateMachineDefinition` checks it), paths (`path.rs`), payload templates (`template.rs`), intrinsic
//! functions (`intrinsics.rs`), choice rules (`choice.rs`) and the in-memory interpreter (`interpreter.rs`) that runs
//! every state type's data flow, Retry and Catch over a [`interpreter::TaskRunner`].
//!
//! Served (`api.rs`, `service.rs`): state machines stored as documents and the Step Functions JSON protocol's
//! CRUD, validation and express executions (`StartSyncExecution`), with Task states calling Strato's functions.
//!
//! Built so far: the JSONPath query language. Not yet: JSONata and variables, durable standard executions on the
//! job queue with history and redrive, task tokens and activities (issue 25 goes on).

pub mod api;
pub mod choice;
pub mod definition;
pub mod error;
pub mod interpreter;
pub mod intrinsics;
pub mod path;
pub mod service;
pub mod template;

pub use api::{api_routes, routes, STATE_MACHINE};
pub use definition::{Diagnostic, Machine};
pub use error::StatesError;
pub use service::{StateMachine, WorkflowError, Workflows};

/// The registration: the `state-machine` resource kind, so grants may name state machines.
pub fn registrar() -> impl FnOnce(&mut strato_service::Registration<'_>) + Send + 'static {
    |r| {
        r.resources.register(STATE_MACHINE);
    }
}
