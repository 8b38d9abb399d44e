//! Amazon States Language workflows, run by Strato: the definition (`definition.rs`, checked whole as
//! `ValidateStateMachineDefinition` checks it), paths (`path.rs`), payload templates (`template.rs`), intrinsic
//! functions (`intrinsics.rs`), choice rules (`choice.rs`) and the in-memory interpreter (`interpreter.rs`) that runs
//! every state type's data flow, Retry and Catch over a [`interpreter::TaskRunner`].
//!
//! Served (`api.rs`, `service.rs`, `executions.rs`): state machines stored as documents and the Step Functions JSON
//! protocol: CRUD, validation, express executions (`StartSyncExecution`, in memory), and standard executions run
//! durably on the job queue (`durable.rs`: frames per Parallel branch and Map iteration, commits at task and park
//! points, history events in AWS's shapes (`history.rs`), task tokens, stop, redrive, timeouts), with Task states
//! calling Strato's functions.
//!
//! Both query languages: JSONPath (`path.rs`, `template.rs`, `intrinsics.rs`) and JSONata (`jsonata.rs`), with
//! workflow variables (`Assign`); `dataflow.rs` is a state's data flow in either. Task resources beyond functions:
//! activities (`activities.rs`), nested executions (`nested.rs`), HTTP APIs (`http_task.rs`); Map items from and
//! results to files (`items.rs`); versions and aliases (`versions.rs`); failed executions as dead letters and
//! metrics (`failures.rs`); Strato's own routes (`http.rs`); Strato's training jobs as task resources
//! (`jobs_task.rs`); Distributed Map's Map Runs and child executions (`map_run.rs`).

pub mod activities;
pub mod api;
pub mod choice;
pub mod dataflow;
pub mod definition;
pub mod durable;
pub mod error;
pub mod executions;
pub mod failures;
pub mod history;
pub mod http;
pub mod http_task;
pub mod interpreter;
pub mod intrinsics;
pub mod items;
pub mod jobs_task;
pub mod jsonata;
pub mod map_run;
pub mod nested;
pub mod path;
pub mod service;
pub mod template;
pub mod versions;

pub use api::{api_routes, routes, ACTIVITY, STATE_MACHINE};
pub use definition::{Diagnostic, Machine};
pub use error::StatesError;
pub use service::{StateMachine, WorkflowError, Workflows};

/// Where the composition root's registration leaves the [`Workflows`] it built, for the routes and the CLI.
#[derive(Clone, Default)]
pub struct WorkflowsSlot(std::sync::Arc<std::sync::OnceLock<Workflows>>);

impl WorkflowsSlot {
    /// The registration: the `state-machine` resource kind, and (once the functions capability registered) the
    /// workflows over the service's store with the `workflow.advance` job kind on the `workflows` queue.
    pub fn registrar(
        &self,
        functions: strato_functions::FunctionsSlot,
    ) -> impl FnOnce(&mut strato_service::Registration<'_>) + Send + 'static {
        let slot = self.0.clone();
        move |r| {
            r.resources.register(STATE_MACHINE);
            r.resources.register(api::ACTIVITY);
            if let Some(f) = functions.get() {
                let w = Workflows::new(r.store.clone(), f);
                w.observe(&r.metrics.registry);
                w.use_storage(r.blobs.clone());
                r.workers.add(durable::AdvanceWorker::new(w.clone()));
                r.workers.add(failures::FailedWorker::new(w.clone()));
                r.workers.add(jobs_task::AwaitJobWorker::new(w.clone()));
                // Training tasks wake when their job ends.
                use strato_types::JobArgs as _;
                let training = [strato_service::TrainModelArgs::KIND, strato_service::TrainMentorArgs::KIND];
                r.workers.on_end(training, w.end_hook());
                r.workers.add(failures::ExpireWorker::new(w.clone()));
                // Executions mostly wait on their tasks: a few run side by side in each process.
                r.workers.default_concurrency(strato_types::QueueName::new("workflows"), 8);
                let _ = slot.set(w);
            }
        }
    }

    /// The workflows, once the service is open.
    pub fn get(&self) -> Option<Workflows> {
        self.0.get().cloned()
    }
}
