//! The resource kinds this build knows: the core's (`model`, `mentor`) and each capability's. Grants name them;
//! a grant naming a kind nobody registered is refused where it is written (an API key, the policy file) instead of
//! silently granting nothing.

use std::collections::BTreeSet;

use strato_types::{ErrorCode, Grant, ResourceKind, StratoError};

/// The registered resource kinds.
#[derive(Debug, Clone, Default)]
pub struct ResourceKinds(BTreeSet<ResourceKind>);

impl ResourceKinds {
    /// The core's kinds: models, mentors and files.
    pub fn core() -> Self {
        let mut k = Self::default();
        k.register(ResourceKind::MODEL).register(ResourceKind::MENTOR).register(ResourceKind::FILE);
        k
    }

    /// Registers a kind (registering one twice is harmless: capabilities may share a kind).
    pub fn register(&mut self, kind: ResourceKind) -> &mut Self {
        self.0.insert(kind);
        self
    }

    /// Whether `kind` is registered.
    pub fn contains(&self, kind: &str) -> bool {
        self.0.iter().any(|k| k.as_str() == kind)
    }

    /// Every registered kind, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &ResourceKind> {
        self.0.iter()
    }

    /// Checks a grant's shape and that it names a registered kind (or `*`).
    pub fn check_grant(&self, g: &Grant) -> Result<(), StratoError> {
        g.validate()?;
        if g.kind != "*" && !self.contains(&g.kind) {
            let known: Vec<&str> = self.0.iter().map(|k| k.as_str()).collect();
            return Err(StratoError::new(
                ErrorCode::InvalidRequest,
                format!("unknown resource kind {:?}: use one of {} or \"*\"", g.kind, known.join(", ")),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use strato_types::Actions;

    use super::*;

    #[test]
    fn grants_must_name_a_registered_kind() {
        let mut kinds = ResourceKinds::core();
        assert!(kinds.check_grant(&Grant::new("model", "tc-*", Actions::USE)).is_ok());
        assert!(kinds.check_grant(&Grant::new("*", "*", Actions::USE)).is_ok());
        let widget = Grant::new("widget", "w-*", Actions::USE);
        let e = kinds.check_grant(&widget).unwrap_err();
        assert!(
            e.message.contains("unknown resource kind \"widget\"") && e.message.contains("file, mentor, model"),
            "{e}"
        );
        kinds.register(ResourceKind::new("widget"));
        assert!(kinds.check_grant(&widget).is_ok());
    }
}
