//! What a plugin says about itself at load (`describe`), checked: a usable
//! name, a version, and the job types it handles.

use super::bindings::PluginInfo;
use super::routing::Pattern;

/// A plugin's self-description, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    pub name: String,
    pub version: String,
    pub handles: Vec<Pattern>,
}

impl Description {
    /// Checks what `describe` returned.
    pub fn check(info: PluginInfo) -> Result<Self, String> {
        let name_ok = !info.name.is_empty()
            && info
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(format!(
                "name {:?} must be non-empty ASCII letters, digits, '-', '_' or '.'",
                info.name
            ));
        }
        if info.version.trim().is_empty() {
            return Err("version is empty".into());
        }
        if info.handles.is_empty() {
            return Err("handles no job types".into());
        }
        let handles = info
            .handles
            .iter()
            .map(|text| Pattern::parse(text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Description {
            name: info.name,
            version: info.version,
            handles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_needs_a_name_a_version_and_types() {
        let info = |name: &str, version: &str, handles: &[&str]| PluginInfo {
            name: name.into(),
            version: version.into(),
            handles: handles.iter().map(|s| s.to_string()).collect(),
        };
        assert!(Description::check(info("orders", "1.0.0", &["orders.*"])).is_ok());
        assert!(Description::check(info("", "1.0.0", &["a"])).is_err());
        assert!(Description::check(info("a b", "1.0.0", &["a"])).is_err());
        assert!(Description::check(info("orders", " ", &["a"])).is_err());
        assert!(Description::check(info("orders", "1", &[])).is_err());
        assert!(Description::check(info("orders", "1", &["has space"])).is_err());
    }
}
