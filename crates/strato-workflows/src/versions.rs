//! State machine versions and aliases, as AWS's: a version is a numbered, frozen copy of the machine
//! (`<machine ARN>:<n>`), an alias (`<machine ARN>:<name>`) routes starts to one or two versions by weight. An
//! execution started through either runs that version's definition, whatever the machine becomes later.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::durable::{decode, encode};
use crate::service::{validate_name, StateMachine, WorkflowError, Workflows};

type Result<T> = std::result::Result<T, WorkflowError>;

/// Versions: `<machine>:<n, 10 digits>`, so a prefix lists them in order.
pub(crate) const VERSION_DOC: &str = "sfn-version";
/// Aliases: `<machine>:<alias>`.
pub(crate) const ALIAS_DOC: &str = "sfn-alias";

/// A published version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Version {
    /// Its number (1, 2, …, per machine; never reused).
    pub number: u64,
    /// The machine as it was when published.
    pub machine: StateMachine,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// When it was published.
    pub created_at: DateTime<Utc>,
}

/// One route of an alias: a version and its share of starts (percent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// The version.
    pub version: u64,
    /// Its weight, 0-100; an alias's weights add up to 100.
    pub weight: u32,
}

/// An alias.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alias {
    /// The machine.
    pub machine: String,
    /// Its name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Where starts go.
    pub routing: Vec<Route>,
    /// When it was created, and last changed.
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// A machine as an execution starts it: the definition to run, and the version and alias it came through.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The machine (a version's frozen copy when one was named).
    pub machine: StateMachine,
    /// The version's ARN, when started through a version or an alias.
    pub version_arn: Option<String>,
    /// The alias's ARN, when started through one.
    pub alias_arn: Option<String>,
}

fn version_id(machine: &str, n: u64) -> String {
    format!("{machine}:{n:010}")
}

fn conflict(message: String) -> WorkflowError {
    WorkflowError::Conflict("ConflictException", message)
}

fn invalid(message: impl Into<String>) -> WorkflowError {
    WorkflowError::Invalid("ValidationException", message.into())
}

impl Workflows {
    /// A version's ARN.
    pub fn version_arn(&self, machine: &str, n: u64) -> String {
        format!("{}:{n}", self.arn(machine))
    }

    /// An alias's ARN.
    pub fn alias_arn(&self, machine: &str, alias: &str) -> String {
        format!("{}:{alias}", self.arn(machine))
    }

    /// A state machine ARN with an optional qualifier (`…:stateMachine:<name>[:<version or alias>]`): the name, and
    /// the qualifier.
    pub fn qualified_of(&self, arn: &str) -> Result<(String, Option<String>)> {
        let prefix = format!("arn:aws:states:{}:{}:stateMachine:", self.region(), self.account());
        let bad = || {
            WorkflowError::Invalid(
                "InvalidArn",
                format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
            )
        };
        let rest = arn.strip_prefix(&prefix).ok_or_else(bad)?;
        match rest.split_once(':') {
            None if !rest.is_empty() => Ok((rest.to_string(), None)),
            Some((m, q)) if !m.is_empty() && !q.is_empty() && !q.contains(':') => {
                Ok((m.to_string(), Some(q.to_string())))
            }
            _ => Err(bad()),
        }
    }

    /// `PublishStateMachineVersion` (and `publish: true` on create or update): a new version of the machine as it
    /// is now, or the latest one when nothing changed since it was published (as AWS).
    pub async fn publish_version(&self, machine: &str, description: &str) -> Result<Version> {
        for _ in 0..5 {
            let sm = self.get(machine).await?;
            let versions = self.list_versions(machine).await?;
            if let Some(latest) = versions.first() {
                if latest.machine.definition == sm.definition && latest.machine.role_arn == sm.role_arn {
                    return Ok(latest.clone());
                }
            }
            let number = versions.first().map_or(1, |v| v.number + 1);
            let v = Version { number, machine: sm, description: description.to_string(), created_at: Utc::now() };
            if self.store().documents().create(VERSION_DOC, &version_id(machine, number), &encode(&v)).await?.is_some()
            {
                return Ok(v);
            }
            // Another publisher took that number: look again.
        }
        Err(conflict(format!("versions of {machine:?} are being published by someone else")))
    }

    /// The machine's versions, newest first.
    pub async fn list_versions(&self, machine: &str) -> Result<Vec<Version>> {
        let mut v: Vec<Version> = self
            .store()
            .documents()
            .list(VERSION_DOC, &format!("{machine}:"))
            .await?
            .iter()
            .map(decode)
            .collect::<Result<_>>()?;
        v.reverse();
        Ok(v)
    }

    /// One version.
    pub async fn version(&self, machine: &str, n: u64) -> Result<Version> {
        match self.store().documents().get(VERSION_DOC, &version_id(machine, n)).await? {
            Some(d) => decode(&d),
            None => Err(WorkflowError::NotFound(
                "ResourceNotFound",
                format!("Resource not found: '{}'", self.version_arn(machine, n)),
            )),
        }
    }

    /// `DeleteStateMachineVersion`: refused while an alias routes to it (as AWS); deleting one that does not exist
    /// succeeds.
    pub async fn delete_version(&self, machine: &str, n: u64) -> Result<()> {
        if let Some(a) = self.list_aliases(machine).await?.iter().find(|a| a.routing.iter().any(|r| r.version == n)) {
            return Err(conflict(format!(
                "Version to be deleted must not be referenced by an alias. Current list of aliases referencing this \
                 version: [{}]",
                self.alias_arn(machine, &a.name)
            )));
        }
        self.store().documents().delete(VERSION_DOC, &version_id(machine, n)).await?;
        Ok(())
    }

    async fn check_routing(&self, machine: &str, routing: &[Route]) -> Result<()> {
        if routing.is_empty() || routing.len() > 2 {
            return Err(invalid("routingConfiguration must name one or two versions"));
        }
        if routing.iter().map(|r| r.weight).sum::<u32>() != 100 || routing.iter().any(|r| r.weight > 100) {
            return Err(invalid("the weights of routingConfiguration must add up to 100"));
        }
        if routing.len() == 2 && routing[0].version == routing[1].version {
            return Err(invalid("routingConfiguration names the same version twice"));
        }
        for r in routing {
            self.version(machine, r.version).await?;
        }
        Ok(())
    }

    /// `CreateStateMachineAlias`.
    pub async fn create_alias(
        &self,
        machine: &str,
        name: &str,
        description: &str,
        routing: Vec<Route>,
    ) -> Result<Alias> {
        validate_name(name)?;
        if name.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid(format!("alias name {name:?} must not be a number (numbers name versions)")));
        }
        self.get(machine).await?;
        self.check_routing(machine, &routing).await?;
        let a = Alias {
            machine: machine.to_string(),
            name: name.to_string(),
            description: description.to_string(),
            routing,
            created_at: Utc::now(),
            updated_at: None,
        };
        match self.store().documents().create(ALIAS_DOC, &format!("{machine}:{name}"), &encode(&a)).await? {
            Some(_) => Ok(a),
            None => Err(conflict(format!("Alias already exists: '{}'", self.alias_arn(machine, name)))),
        }
    }

    /// One alias.
    pub async fn alias(&self, machine: &str, name: &str) -> Result<Alias> {
        match self.store().documents().get(ALIAS_DOC, &format!("{machine}:{name}")).await? {
            Some(d) => decode(&d),
            None => Err(WorkflowError::NotFound(
                "ResourceNotFound",
                format!("Resource not found: '{}'", self.alias_arn(machine, name)),
            )),
        }
    }

    /// `UpdateStateMachineAlias`: its description and/or routing.
    pub async fn update_alias(
        &self,
        machine: &str,
        name: &str,
        description: Option<&str>,
        routing: Option<Vec<Route>>,
    ) -> Result<Alias> {
        if let Some(r) = &routing {
            self.check_routing(machine, r).await?;
        }
        let id = format!("{machine}:{name}");
        for _ in 0..5 {
            let doc = self.store().documents().get(ALIAS_DOC, &id).await?;
            let Some(doc) = doc else { return self.alias(machine, name).await };
            let mut a: Alias = decode(&doc)?;
            if let Some(d) = description {
                a.description = d.to_string();
            }
            if let Some(r) = &routing {
                a.routing = r.clone();
            }
            a.updated_at = Some(Utc::now());
            if self.store().documents().update(ALIAS_DOC, &id, doc.revision, &encode(&a)).await?.is_some() {
                return Ok(a);
            }
        }
        Err(conflict(format!("alias {name:?} is being changed by someone else")))
    }

    /// `DeleteStateMachineAlias`.
    pub async fn delete_alias(&self, machine: &str, name: &str) -> Result<()> {
        self.store().documents().delete(ALIAS_DOC, &format!("{machine}:{name}")).await?;
        Ok(())
    }

    /// The machine's aliases, by name.
    pub async fn list_aliases(&self, machine: &str) -> Result<Vec<Alias>> {
        self.store().documents().list(ALIAS_DOC, &format!("{machine}:")).await?.iter().map(decode).collect()
    }

    /// The machine a start names (`<machine>` or `<machine>:<version or alias>`): its latest definition, a
    /// version's frozen copy, or the version an alias routes this start to (by weight).
    pub async fn resolve(&self, target: &str) -> Result<Resolved> {
        let (machine, qualifier) = match target.split_once(':') {
            Some((m, q)) => (m, Some(q)),
            None => (target, None),
        };
        let Some(q) = qualifier else {
            return Ok(Resolved { machine: self.get(machine).await?, version_arn: None, alias_arn: None });
        };
        if let Ok(n) = q.parse::<u64>() {
            let v = self.version(machine, n).await?;
            return Ok(Resolved {
                machine: v.machine,
                version_arn: Some(self.version_arn(machine, n)),
                alias_arn: None,
            });
        }
        let a = self.alias(machine, q).await?;
        let mut pick = rand::random_range(0..100u32);
        let route = a
            .routing
            .iter()
            .find(|r| {
                if pick < r.weight {
                    true
                } else {
                    pick -= r.weight;
                    false
                }
            })
            .or(a.routing.last())
            .ok_or_else(|| WorkflowError::Internal(format!("alias {q:?} routes nowhere")))?;
        let v = self.version(machine, route.version).await?;
        Ok(Resolved {
            machine: v.machine,
            version_arn: Some(self.version_arn(machine, route.version)),
            alias_arn: Some(self.alias_arn(machine, q)),
        })
    }

    /// Deletes a machine's versions and aliases (with the machine).
    pub(crate) async fn delete_versions_and_aliases(&self, machine: &str) -> Result<()> {
        let mut tx = self.store().begin().await?;
        tx.documents().delete_prefix(VERSION_DOC, &format!("{machine}:")).await?;
        tx.documents().delete_prefix(ALIAS_DOC, &format!("{machine}:")).await?;
        tx.commit().await?;
        Ok(())
    }
}
