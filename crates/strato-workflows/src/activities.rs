//! Activities: Task states whose resource is an activity (`arn:aws:states:<region>:<account>:activity:<name>`)
//! wait for a worker outside Strato, as AWS's do. The frame parks on a task token (as a callback task) and the
//! task is queued as a document in the same commit; `GetActivityTask` (long-polled) hands the oldest to a worker,
//! recording `ActivityStarted`, and the worker answers with `SendTaskSuccess` / `Failure` / `Heartbeat`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::durable::{close, decode, encode, frame_id, lock_execution, numbering, Frame, FrameStatus, FRAME_DOC};
use crate::history;
use crate::service::{validate_name, WorkflowError, Workflows};

type Result<T> = std::result::Result<T, WorkflowError>;

/// Activities, by name.
pub(crate) const ACTIVITY_DOC: &str = "sfn-activity";
/// Tasks waiting for a worker: `<activity>#<scheduled, ms, 16 digits>#<token>`, so a prefix lists them oldest first.
pub(crate) const ACTIVITY_TASK_DOC: &str = "sfn-activity-task";

/// How long `GetActivityTask` waits for a task (AWS: 60 seconds).
pub const POLL_WAIT: Duration = Duration::from_secs(60);

/// An activity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Activity {
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A task queued for an activity's workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct QueuedTask {
    pub token: String,
    pub input: Value,
    pub execution: String,
    pub frame: String,
}

/// The activity name an activity ARN (a Task's resource) names, in any region and account.
pub fn activity_of(resource: &str) -> Option<&str> {
    let rest = resource.strip_prefix("arn:aws:states:")?;
    let mut parts = rest.splitn(4, ':');
    let (_region, _account, kind, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (kind == "activity" && !name.is_empty() && !name.contains(':')).then_some(name)
}

/// A queued task's document id.
pub(crate) fn task_id(activity: &str, token: &str) -> String {
    format!("{activity}#{:016}#{token}", Utc::now().timestamp_millis())
}

fn missing(arn: &str) -> WorkflowError {
    WorkflowError::NotFound("ActivityDoesNotExist", format!("Activity Does Not Exist: '{arn}'"))
}

impl Workflows {
    /// An activity's ARN.
    pub fn activity_arn(&self, name: &str) -> String {
        format!("arn:aws:states:{}:{}:activity:{name}", self.region(), self.account())
    }

    /// The name an activity ARN names (this region and account).
    pub fn activity_name(&self, arn: &str) -> Result<String> {
        let prefix = format!("arn:aws:states:{}:{}:activity:", self.region(), self.account());
        match arn.strip_prefix(&prefix) {
            Some(name) if !name.is_empty() && !name.contains(':') => Ok(name.to_string()),
            _ => Err(WorkflowError::Invalid(
                "InvalidArn",
                format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
            )),
        }
    }

    /// `CreateActivity`: idempotent, as AWS's (the same name returns the existing activity).
    pub async fn create_activity(&self, name: &str) -> Result<Activity> {
        validate_name(name)?;
        let docs = self.store().documents();
        if let Some(d) = docs.get(ACTIVITY_DOC, name).await? {
            return decode(&d);
        }
        let a = Activity { name: name.to_string(), created_at: Utc::now() };
        if docs.create(ACTIVITY_DOC, name, &encode(&a)).await?.is_none() {
            // Created meanwhile by another caller: theirs is the activity.
            return self.describe_activity(name).await;
        }
        Ok(a)
    }

    /// `DescribeActivity`.
    pub async fn describe_activity(&self, name: &str) -> Result<Activity> {
        match self.store().documents().get(ACTIVITY_DOC, name).await? {
            Some(d) => decode(&d),
            None => Err(missing(&self.activity_arn(name))),
        }
    }

    /// `ListActivities`, by name.
    pub async fn list_activities(&self) -> Result<Vec<Activity>> {
        self.store().documents().list(ACTIVITY_DOC, "").await?.iter().map(decode).collect()
    }

    /// `DeleteActivity` (AWS answers success for an activity that does not exist); its queued tasks go with it.
    pub async fn delete_activity(&self, name: &str) -> Result<()> {
        let mut tx = self.store().begin().await?;
        tx.documents().delete(ACTIVITY_DOC, name).await?;
        tx.documents().delete_prefix(ACTIVITY_TASK_DOC, &format!("{name}#")).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `GetActivityTask`: the oldest task queued for the activity (its token and input), waiting up to `wait` for
    /// one; `None` when none came. Taking a task records `ActivityStarted` with the worker's name.
    pub async fn get_activity_task(&self, name: &str, worker: &str, wait: Duration) -> Result<Option<(String, Value)>> {
        self.describe_activity(name).await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a task queued while we look still wakes us.
            let queued = self.inner().activity_queued.notified();
            if let Some(task) = self.take_activity_task(name, worker).await? {
                return Ok(Some(task));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            // Another process may queue it: look again at least every second.
            let _ = tokio::time::timeout((deadline - now).min(Duration::from_secs(1)), queued).await;
        }
    }

    /// Takes the oldest queued task whose frame still waits on it (others are dropped), in one transaction with
    /// its `ActivityStarted` event.
    async fn take_activity_task(&self, name: &str, worker: &str) -> Result<Option<(String, Value)>> {
        let queued = self.store().documents().list(ACTIVITY_TASK_DOC, &format!("{name}#")).await?;
        for doc in queued {
            let task: QueuedTask = decode(&doc)?;
            let mut tx = self.store().begin().await?;
            // Locked in the same order as every commit: the execution first.
            let locked = lock_execution(&mut tx, &task.execution).await?;
            if !tx.documents().delete(ACTIVITY_TASK_DOC, &doc.id).await? {
                continue; // another worker took it
            }
            let fid = frame_id(&task.execution, &task.frame);
            let frame = match tx.documents().get_for_update(FRAME_DOC, &fid).await? {
                Some(d) => Some((decode::<Frame>(&d)?, d.revision)),
                None => None,
            };
            let (Some((xdoc, mut x)), Some((mut f, revision))) = (locked, frame) else {
                tx.commit().await?;
                continue;
            };
            if x.status != "RUNNING" || f.status != FrameStatus::Waiting || f.token.as_deref() != Some(&task.token) {
                // Stopped, timed out or answered: the task is gone.
                tx.commit().await?;
                continue;
            }
            let mut n = numbering(&x);
            let started =
                history::with("ActivityStarted", "activityStartedEventDetails", json!({"workerName": worker}));
            f.last_event = n.push(&started, f.last_event);
            // The execution runs on: `close` appends the event and writes the record, and queues nothing more.
            close(&mut tx, &task.execution, &xdoc, &mut x, n, None).await?;
            tx.documents().update(FRAME_DOC, &fid, revision, &encode(&f)).await?;
            tx.commit().await?;
            return Ok(Some((task.token, task.input)));
        }
        Ok(None)
    }
}
