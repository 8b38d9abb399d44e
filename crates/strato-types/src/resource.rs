//! Resources and what callers may do with them: the nouns of authorization.
//!
//! Every protected thing is a [`ResourceRef`] (`model:tc-01`, `mentor:clint`, or a kind a capability registers);
//! a [`Grant`] allows a set of [`Action`]s on the resources whose kind and id match its patterns. API keys, token
//! claims and the group policy file all become grants, so a new resource kind needs no new authorization code.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::job::{identifier, is_identifier};
use crate::{ErrorCode, StratoError};

identifier!(
    /// A kind of resource (`model`, `mentor`, …). Capabilities register theirs; grants and checks name them.
    ResourceKind,
    "resource kind"
);

impl ResourceKind {
    /// Text classifiers.
    pub const MODEL: ResourceKind = ResourceKind::new("model");
    /// Question-answering mentors.
    pub const MENTOR: ResourceKind = ResourceKind::new("mentor");
    /// Files in storage, by key (`uploads/*`).
    pub const FILE: ResourceKind = ResourceKind::new("file");
}

/// One resource: its kind and id. Displayed (and used as a job key) as `kind:id`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceRef {
    /// Its kind.
    pub kind: ResourceKind,
    /// Its id within the kind.
    pub id: String,
}

impl ResourceRef {
    /// The resource `kind:id`.
    pub fn new(kind: ResourceKind, id: impl Into<String>) -> Self {
        Self { kind, id: id.into() }
    }

    /// The model `id`.
    pub fn model(id: impl Into<String>) -> Self {
        Self::new(ResourceKind::MODEL, id)
    }

    /// The mentor `id`.
    pub fn mentor(id: impl Into<String>) -> Self {
        Self::new(ResourceKind::MENTOR, id)
    }

    /// Parses `kind:id` as stored (the id may itself contain `:`).
    pub fn parse_stored(s: &str) -> Option<Self> {
        let (kind, id) = s.split_once(':')?;
        Some(Self { kind: ResourceKind::from_stored(kind.to_string()), id: id.to_string() })
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

impl fmt::Debug for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Something a caller does to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// See it exists and read it.
    Read,
    /// Put it to work: predict with a model, ask a mentor, invoke a function.
    Use,
    /// Change it: train, replace, delete; see its jobs.
    Edit,
    /// Everything, including what only administrators do.
    Admin,
}

impl Action {
    /// Every action, weakest first.
    pub const ALL: [Action; 4] = [Action::Read, Action::Use, Action::Edit, Action::Admin];

    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Use => "use",
            Self::Edit => "edit",
            Self::Admin => "admin",
        }
    }
}

/// A set of actions.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Actions(u8);

impl Actions {
    /// No action.
    pub const NONE: Actions = Actions(0);
    /// Read and use: what a user may do with what it is granted.
    pub const USE: Actions = Actions(0b0011);
    /// Read, use and edit: what an editor (or an owner) may do.
    pub const EDIT: Actions = Actions(0b0111);
    /// Every action.
    pub const ALL: Actions = Actions(0b1111);

    /// Whether `a` is in the set.
    pub fn contains(self, a: Action) -> bool {
        self.0 & a.bit() != 0
    }

    /// The actions in both sets.
    pub fn intersect(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Action> for Actions {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Self {
        Actions(iter.into_iter().fold(0, |bits, a| bits | a.bit()))
    }
}

impl fmt::Debug for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(Action::ALL.iter().filter(|a| self.contains(**a)).map(|a| a.as_str())).finish()
    }
}

impl Serialize for Actions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(Action::ALL.iter().filter(|a| self.contains(**a)))
    }
}

impl<'de> Deserialize<'de> for Actions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Action>::deserialize(d)?.into_iter().collect())
    }
}

/// Allows `actions` on every resource whose kind matches `kind` and whose id matches `id`. Both are patterns: `*`
/// matches anything, and a `*` inside matches any run of characters (`tc-*`, `*-prod`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// A resource kind, or `*` for every kind.
    #[schema(example = "model")]
    pub kind: String,
    /// An id pattern.
    #[schema(example = "tc-*")]
    pub id: String,
    /// What may be done.
    #[schema(value_type = Vec<Action>)]
    pub actions: Actions,
}

impl Grant {
    /// A grant of `actions` on resources of `kind` whose id matches `id`.
    pub fn new(kind: impl Into<String>, id: impl Into<String>, actions: Actions) -> Self {
        Self { kind: kind.into(), id: id.into(), actions }
    }

    /// Every action on everything.
    pub fn everything() -> Self {
        Self::new("*", "*", Actions::ALL)
    }

    /// Whether this grant allows `action` on `r`.
    pub fn allows(&self, r: &ResourceRef, action: Action) -> bool {
        self.actions.contains(action) && glob(&self.kind, r.kind.as_str()) && glob(&self.id, &r.id)
    }

    /// The same grant with its actions cut down to `cap`.
    pub fn capped(mut self, cap: Actions) -> Self {
        self.actions = self.actions.intersect(cap);
        self
    }

    /// Checks the grant's shape: its kind is `*` or a kind name, its id pattern is not empty, it allows something.
    pub fn validate(&self) -> Result<(), StratoError> {
        let bad = |m: String| Err(StratoError::new(ErrorCode::InvalidRequest, m));
        if self.kind != "*" && !is_identifier(&self.kind) {
            return bad(format!("grant kind {:?} is not a resource kind or \"*\"", self.kind));
        }
        if self.id.is_empty() || self.id.len() > 256 {
            return bad(format!("grant id pattern {:?} must be 1-256 characters (\"*\" for all)", self.id));
        }
        if self.actions.is_empty() {
            return bad("a grant needs at least one action: read, use, edit or admin".into());
        }
        Ok(())
    }
}

/// Matches `text` against `pattern`, where each `*` stands for any run of characters (none included).
pub fn glob(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else { return pattern == text };
    let Some(mut text) = text.strip_prefix(first) else { return false };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let last = parts.pop().unwrap_or_default();
    for part in parts {
        match text.find(part) {
            Some(i) => text = &text[i + part.len()..],
            None => return false,
        }
    }
    text.len() >= last.len() && text.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        for (p, t, ok) in [
            ("*", "anything", true),
            ("tc-01", "tc-01", true),
            ("tc-01", "tc-011", false),
            ("tc-*", "tc-01", true),
            ("tc-*", "tc-", true),
            ("tc-*", "xtc-01", false),
            ("*-prod", "a-prod", true),
            ("*-prod", "a-prod-x", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("a*a", "a", false),
            ("a**", "abc", true),
        ] {
            assert_eq!(glob(p, t), ok, "{p} ~ {t}");
        }
    }

    #[test]
    fn grants_match_kind_id_and_action() {
        let g = Grant::new("model", "tc-*", Actions::USE);
        let tc = ResourceRef::new(ResourceKind::MODEL, "tc-01");
        assert!(g.allows(&tc, Action::Use) && g.allows(&tc, Action::Read));
        assert!(!g.allows(&tc, Action::Edit));
        assert!(!g.allows(&ResourceRef::new(ResourceKind::MENTOR, "tc-01"), Action::Use));
        assert!(Grant::everything().allows(&ResourceRef::new(ResourceKind::new("widget"), "w"), Action::Admin));
        assert!(!g.clone().capped(Actions::NONE).allows(&tc, Action::Read));
        let json: Grant = serde_json::from_str(r#"{"kind": "widget", "id": "w-*", "actions": ["use"]}"#).unwrap();
        assert_eq!(json, Grant::new("widget", "w-*", [Action::Use].into_iter().collect()));
        assert!(serde_json::from_str::<Grant>(r#"{"kind": "m", "id": "x", "actions": ["fly"]}"#).is_err());
        assert!(Grant::new("Bad Kind", "*", Actions::USE).validate().is_err());
        assert!(Grant::new("model", "", Actions::USE).validate().is_err());
        assert!(Grant::new("model", "*", Actions::NONE).validate().is_err());
    }
}
