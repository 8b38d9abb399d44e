//! Aliases: a name (`prod`, `live`) pointing at `$LATEST` or a published version, moved by an update, used
//! wherever a qualifier is (`name:alias`, `Qualifier=alias`, an alias ARN). Stored as documents beside the
//! function's; deleted with it.

use serde::{Deserialize, Serialize};

use crate::service::Functions;
use crate::{FunctionError, Result};

pub(crate) const ALIAS_DOC: &str = "function-alias";

/// An alias as stored and shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Alias {
    /// The function.
    pub function: String,
    /// The alias's name.
    pub name: String,
    /// `$LATEST` or a version number.
    pub function_version: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Revision of the stored alias (changes with every update).
    #[serde(default)]
    pub revision: i64,
}

/// Lambda's alias names: 1-128 of letters, digits, `-` and `_`, not only digits (those are versions).
pub(crate) fn validate_alias_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(FunctionError::Invalid(format!(
            "alias name {name:?} is not valid: 1-128 letters, digits, '-' or '_', not only digits"
        )))
    }
}

impl Functions {
    async fn check_target(&self, function: &str, version: &str) -> Result<()> {
        if version != "$LATEST" && version.parse::<u64>().is_err() {
            return Err(FunctionError::Invalid(format!(
                "FunctionVersion {version:?} must be $LATEST or a published version number"
            )));
        }
        self.exists(function, Some(version)).await
    }

    fn alias_of(&self, d: &strato_store::Document) -> Result<Alias> {
        let mut a: Alias = serde_json::from_value(d.body.clone())
            .map_err(|e| FunctionError::Internal(format!("stored alias {:?} is unreadable: {e}", d.id)))?;
        a.revision = d.revision;
        Ok(a)
    }

    /// Creates an alias of a function.
    pub async fn create_alias(&self, function: &str, name: &str, version: &str, description: &str) -> Result<Alias> {
        validate_alias_name(name)?;
        self.check_target(function, version).await?;
        let alias = Alias {
            function: function.into(),
            name: name.into(),
            function_version: version.into(),
            description: description.into(),
            revision: 0,
        };
        let body = serde_json::to_value(&alias).map_err(|e| FunctionError::Internal(e.to_string()))?;
        match self.store().documents().create(ALIAS_DOC, &format!("{function}:{name}"), &body).await? {
            Some(d) => self.alias_of(&d),
            None => Err(FunctionError::Conflict(format!("Alias already exists: {}", self.arn(function, Some(name))))),
        }
    }

    /// One alias.
    pub async fn alias(&self, function: &str, name: &str) -> Result<Alias> {
        validate_alias_name(name).map_err(|_| self.alias_missing(function, name))?;
        let d = self
            .store()
            .documents()
            .get(ALIAS_DOC, &format!("{function}:{name}"))
            .await?
            .ok_or_else(|| self.alias_missing(function, name))?;
        self.alias_of(&d)
    }

    fn alias_missing(&self, function: &str, name: &str) -> FunctionError {
        FunctionError::NotFound(format!("Alias not found: {}", self.arn(function, Some(name))))
    }

    /// A function's aliases, by name.
    pub async fn aliases(&self, function: &str) -> Result<Vec<Alias>> {
        self.exists(function, None).await?;
        let docs = self.store().documents().list(ALIAS_DOC, &format!("{function}:")).await?;
        docs.iter().map(|d| self.alias_of(d)).collect()
    }

    /// Points an alias elsewhere or changes its description; with `revision`, only if it is still at it.
    pub async fn update_alias(
        &self,
        function: &str,
        name: &str,
        version: Option<&str>,
        description: Option<&str>,
        revision: Option<i64>,
    ) -> Result<Alias> {
        let current = self.alias(function, name).await?;
        if revision.is_some_and(|r| r != current.revision) {
            return Err(FunctionError::Conflict(format!(
                "alias {name:?} changed since revision {}: it is at {}",
                revision.unwrap_or_default(),
                current.revision
            )));
        }
        let mut next = current.clone();
        if let Some(v) = version {
            self.check_target(function, v).await?;
            next.function_version = v.into();
        }
        if let Some(d) = description {
            next.description = d.into();
        }
        let body = serde_json::to_value(&next).map_err(|e| FunctionError::Internal(e.to_string()))?;
        match self.store().documents().update(ALIAS_DOC, &format!("{function}:{name}"), current.revision, &body).await?
        {
            Some(d) => self.alias_of(&d),
            None => Err(FunctionError::Conflict(format!("alias {name:?} is being changed by someone else: try again"))),
        }
    }

    /// Deletes an alias.
    pub async fn delete_alias(&self, function: &str, name: &str) -> Result<()> {
        validate_alias_name(name).map_err(|_| self.alias_missing(function, name))?;
        if self.store().documents().delete(ALIAS_DOC, &format!("{function}:{name}")).await? {
            Ok(())
        } else {
            Err(self.alias_missing(function, name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_names_follow_lambdas_rule() {
        for ok in ["prod", "live-2", "v_1", "a1"] {
            validate_alias_name(ok).unwrap();
        }
        for bad in ["", "12", "$LATEST", "has space", "x".repeat(129).as_str()] {
            assert!(validate_alias_name(bad).is_err(), "{bad:?}");
        }
    }
}
