//! Group → resource grants, from a JSON or TOML file (Quetzal's `cognito_group_access.json` kept working).
//!
//! Accepted shapes:
//! - Quetzal's flat map of group → model names: `{"analysts": ["model-a", "model-b"]}`;
//! - the full form, JSON or TOML: `{"groups": {"analysts": {"models": ["model-a"], "mentors": ["*"],
//!   "grants": [{"kind": "widget", "id": "w-*", "actions": ["use"]}]}}}`.
//!
//! `models` and `mentors` list ids (`"*"`: all) and grant every action the caller's role allows; `grants` name any
//! registered resource kind, an id pattern and the actions, still capped by the role.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use strato_types::{Actions, Grant, ResourceKind};

/// What one group may do.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupGrant {
    /// Model ids, or `"*"`.
    #[serde(default)]
    pub models: Vec<String>,
    /// Mentor ids, or `"*"`.
    #[serde(default)]
    pub mentors: Vec<String>,
    /// Grants over any resource kind.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

impl GroupGrant {
    /// Everything the group grants, as grants.
    fn all(&self) -> impl Iterator<Item = Grant> + '_ {
        let ids = |kind: ResourceKind, ids: &'_ [String]| {
            ids.iter().map(move |id| Grant::new(kind.as_str(), id.as_str(), Actions::ALL)).collect::<Vec<_>>()
        };
        ids(ResourceKind::MODEL, &self.models)
            .into_iter()
            .chain(ids(ResourceKind::MENTOR, &self.mentors))
            .chain(self.grants.iter().cloned())
    }
}

/// Every group's grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Group name → grants.
    pub groups: HashMap<String, GroupGrant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Full {
    groups: HashMap<String, GroupGrant>,
}

impl Policy {
    /// Reads a policy file; `.toml` files are TOML, anything else JSON.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let is_toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        Self::parse(&text, is_toml).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses a policy document.
    pub fn parse(text: &str, is_toml: bool) -> Result<Self, String> {
        if is_toml {
            let full: Full = toml::from_str(text).map_err(|e| e.to_string())?;
            return Ok(Self { groups: full.groups });
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if value.get("groups").is_some_and(|g| g.is_object()) {
            let full: Full = serde_json::from_value(value).map_err(|e| e.to_string())?;
            return Ok(Self { groups: full.groups });
        }
        let flat: HashMap<String, Vec<String>> = serde_json::from_value(value)
            .map_err(|e| format!("expected {{\"group\": [\"model\", …]}} or {{\"groups\": {{…}}}}: {e}"))?;
        Ok(Self {
            groups: flat
                .into_iter()
                .map(|(g, models)| (g, GroupGrant { models, mentors: Vec::new(), grants: Vec::new() }))
                .collect(),
        })
    }

    /// Every grant of any of `groups` (before the caller's role caps them).
    pub fn grants_for(&self, groups: &[String]) -> Vec<Grant> {
        groups.iter().filter_map(|g| self.groups.get(g)).flat_map(GroupGrant::all).collect()
    }

    /// Checks every grant's shape and that it names a registered resource kind: a typo must stop the start, not
    /// grant nothing in silence.
    pub fn check(&self, kinds: &strato_service::ResourceKinds) -> Result<(), String> {
        let mut names: Vec<&String> = self.groups.keys().collect();
        names.sort();
        for name in names {
            for (i, g) in self.groups[name].grants.iter().enumerate() {
                kinds.check_grant(g).map_err(|e| format!("group {name:?}, grants[{i}]: {}", e.message))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use strato_types::{Action, ResourceRef};

    use super::*;

    fn allows(p: &Policy, groups: &[String], kind: ResourceKind, id: &str) -> bool {
        p.grants_for(groups).iter().any(|g| g.allows(&ResourceRef::new(kind.clone(), id), Action::Use))
    }

    #[test]
    fn quetzal_flat_map_grants_models() {
        let p = Policy::parse(r#"{"planners": ["quetzal_test", "paris"]}"#, false).unwrap();
        let g = vec!["planners".to_string()];
        assert!(allows(&p, &g, ResourceKind::MODEL, "paris"));
        assert!(!allows(&p, &g, ResourceKind::MODEL, "lyon"));
        assert!(!allows(&p, &g, ResourceKind::MENTOR, "paris"));
        assert!(!allows(&p, &["others".to_string()], ResourceKind::MODEL, "paris"));
    }

    #[test]
    fn full_form_in_json_and_toml_with_wildcards() {
        let json = Policy::parse(r#"{"groups": {"staff": {"models": ["*"], "mentors": ["m1"]}}}"#, false).unwrap();
        let toml = Policy::parse("[groups.staff]\nmodels = [\"*\"]\nmentors = [\"m1\"]\n", true).unwrap();
        assert_eq!(json, toml);
        let g = vec!["staff".to_string()];
        assert!(allows(&json, &g, ResourceKind::MODEL, "anything"));
        assert!(allows(&json, &g, ResourceKind::MENTOR, "m1"));
        assert!(!allows(&json, &g, ResourceKind::MENTOR, "m2"));
    }

    #[test]
    fn grants_over_any_registered_kind() {
        let text = r#"{"groups": {"makers": {"grants": [{"kind": "widget", "id": "w-*", "actions": ["use"]}]}}}"#;
        let p = Policy::parse(text, false).unwrap();
        let g = vec!["makers".to_string()];
        assert!(allows(&p, &g, ResourceKind::new("widget"), "w-1"));
        assert!(!allows(&p, &g, ResourceKind::new("widget"), "x-1"));
        let mut kinds = strato_service::ResourceKinds::core();
        let e = p.check(&kinds).unwrap_err();
        assert!(e.contains("makers") && e.contains("unknown resource kind \"widget\""), "{e}");
        kinds.register(ResourceKind::new("widget"));
        assert!(p.check(&kinds).is_ok());
    }

    #[test]
    fn typos_are_refused_with_the_reason() {
        let e = Policy::parse(r#"{"groups": {"staff": {"modles": ["a"]}}}"#, false).unwrap_err();
        assert!(e.contains("modles"), "{e}");
    }
}
