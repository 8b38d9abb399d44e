//! Group → resource grants, from a JSON or TOML file (Quetzal's `cognito_group_access.json` kept working).
//!
//! Accepted shapes:
//! - Quetzal's flat map of group → model names: `{"analysts": ["model-a", "model-b"]}`;
//! - the full form, JSON or TOML: `{"groups": {"analysts": {"models": ["model-a"], "mentors": ["*"]}}}`.
//!
//! `"*"` grants every resource of that kind.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

/// What one group may use.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupGrant {
    /// Model ids, or `"*"`.
    #[serde(default)]
    pub models: Vec<String>,
    /// Mentor ids, or `"*"`.
    #[serde(default)]
    pub mentors: Vec<String>,
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
            groups: flat.into_iter().map(|(g, models)| (g, GroupGrant { models, mentors: Vec::new() })).collect(),
        })
    }

    /// Whether any of `groups` may use model `id`.
    pub fn allows_model(&self, groups: &[String], id: &str) -> bool {
        self.any(groups, |g| &g.models, id)
    }

    /// Whether any of `groups` may use mentor `id`.
    pub fn allows_mentor(&self, groups: &[String], id: &str) -> bool {
        self.any(groups, |g| &g.mentors, id)
    }

    fn any(&self, groups: &[String], list: impl Fn(&GroupGrant) -> &Vec<String>, id: &str) -> bool {
        groups.iter().filter_map(|g| self.groups.get(g)).any(|g| list(g).iter().any(|x| x == "*" || x == id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quetzal_flat_map_grants_models() {
        let p = Policy::parse(r#"{"planners": ["quetzal_test", "paris"]}"#, false).unwrap();
        let g = vec!["planners".to_string()];
        assert!(p.allows_model(&g, "paris"));
        assert!(!p.allows_model(&g, "lyon"));
        assert!(!p.allows_mentor(&g, "paris"));
        assert!(!p.allows_model(&["others".to_string()], "paris"));
    }

    #[test]
    fn full_form_in_json_and_toml_with_wildcards() {
        let json = Policy::parse(r#"{"groups": {"staff": {"models": ["*"], "mentors": ["m1"]}}}"#, false).unwrap();
        let toml = Policy::parse("[groups.staff]\nmodels = [\"*\"]\nmentors = [\"m1\"]\n", true).unwrap();
        assert_eq!(json, toml);
        let g = vec!["staff".to_string()];
        assert!(json.allows_model(&g, "anything"));
        assert!(json.allows_mentor(&g, "m1"));
        assert!(!json.allows_mentor(&g, "m2"));
    }

    #[test]
    fn typos_are_refused_with_the_reason() {
        let e = Policy::parse(r#"{"groups": {"staff": {"modles": ["a"]}}}"#, false).unwrap_err();
        assert!(e.contains("modles"), "{e}");
    }
}
