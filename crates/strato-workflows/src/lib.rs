//! Amazon States Language workflows, run by Strato: the definition (`definition.rs`, checked whole as
//! `ValidateStateMachineDefinition` checks it), paths (`path.rs`), payload templates (`template.rs`), intrinsic
//! functions (`intrinsics.rs`), choice rules (`choice.rs`) and the in-memory interpreter (`interpreter.rs`) that runs
//! every state type's data flow, Retry and Catch over a [`interpreter::TaskRunner`].
//!
//! Built so far: the JSONPath query language. Not yet: JSONata and variables, durable standard executions on the
//! job queue with history and redrive, task tokens and activities, the Step Functions API (issue 25 goes on).

pub mod choice;
pub mod definition;
pub mod error;
pub mod interpreter;
pub mod intrinsics;
pub mod path;
pub mod template;

pub use definition::{Diagnostic, Machine};
pub use error::StatesError;
