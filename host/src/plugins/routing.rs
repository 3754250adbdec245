//! Which plugin handles which job type: exact names beat patterns, and among
//! patterns the most specific (most literal characters) wins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// A job type a plugin handles: an exact name or a pattern where `*` matches
/// any run of characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern(String);

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.chars().any(char::is_whitespace) {
            return Err(format!(
                "{text:?} is not a job type or pattern (non-empty, no whitespace)"
            ));
        }
        Ok(Pattern(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn is_exact(&self) -> bool {
        !self.0.contains('*')
    }

    fn literal_len(&self) -> usize {
        self.0.chars().filter(|&c| c != '*').count()
    }

    /// Glob match where `*` matches any (possibly empty) run of characters.
    pub fn matches(&self, job_type: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or("");
        let Some(mut rest) = job_type.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.ends_with(last)
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Two plugins claim the same type or pattern.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("plugin {}: {pattern} is already handled by {}; not loaded", .file.display(), .owner.display())]
pub struct Conflict {
    pub file: PathBuf,
    pub pattern: Pattern,
    pub owner: PathBuf,
}

/// The routing table: job type → plugin.
#[derive(Debug, Clone)]
pub struct Routes<P> {
    exact: HashMap<String, (PathBuf, P)>,
    /// Sorted most specific first.
    patterns: Vec<(Pattern, PathBuf, P)>,
}

impl<P> Default for Routes<P> {
    fn default() -> Self {
        Routes {
            exact: HashMap::new(),
            patterns: Vec::new(),
        }
    }
}

impl<P: Clone> Routes<P> {
    /// Adds every type `plugin` handles, or none of them if one is taken.
    pub fn insert(&mut self, file: &Path, handles: &[Pattern], plugin: P) -> Result<(), Conflict> {
        for pattern in handles {
            let owner = if pattern.is_exact() {
                self.exact.get(pattern.as_str()).map(|(f, _)| f)
            } else {
                self.patterns
                    .iter()
                    .find(|(p, _, _)| p == pattern)
                    .map(|(_, f, _)| f)
            };
            if let Some(owner) = owner {
                return Err(Conflict {
                    file: file.to_owned(),
                    pattern: pattern.clone(),
                    owner: owner.clone(),
                });
            }
        }
        for pattern in handles {
            if pattern.is_exact() {
                self.exact
                    .insert(pattern.0.clone(), (file.to_owned(), plugin.clone()));
            } else {
                self.patterns
                    .push((pattern.clone(), file.to_owned(), plugin.clone()));
            }
        }
        self.patterns
            .sort_by_key(|(p, _, _)| std::cmp::Reverse(p.literal_len()));
        Ok(())
    }

    /// The plugin that handles `job_type`, if any.
    pub fn route(&self, job_type: &str) -> Option<&P> {
        if let Some((_, plugin)) = self.exact.get(job_type) {
            return Some(plugin);
        }
        self.patterns
            .iter()
            .find(|(p, _, _)| p.matches(job_type))
            .map(|(_, _, plugin)| plugin)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.patterns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(list: &[&str]) -> Vec<Pattern> {
        list.iter().map(|p| Pattern::parse(p).unwrap()).collect()
    }

    #[test]
    fn glob_matches_any_run_of_characters() {
        let p = Pattern::parse("orders.*").unwrap();
        assert!(p.matches("orders.created"));
        assert!(p.matches("orders."));
        assert!(!p.matches("order.created"));
        let p = Pattern::parse("*.created").unwrap();
        assert!(p.matches("orders.created"));
        assert!(!p.matches("orders.created.v2"));
        let p = Pattern::parse("a*b*c").unwrap();
        assert!(p.matches("abc") && p.matches("a-b-c") && !p.matches("a-c"));
        assert!(Pattern::parse("*").unwrap().matches("anything"));
    }

    #[test]
    fn exact_beats_pattern_and_specific_pattern_beats_broad() {
        let mut routes = Routes::default();
        routes
            .insert(Path::new("all.wasm"), &pats(&["*"]), "all")
            .unwrap();
        routes
            .insert(Path::new("orders.wasm"), &pats(&["orders.*"]), "orders")
            .unwrap();
        routes
            .insert(
                Path::new("created.wasm"),
                &pats(&["orders.created"]),
                "created",
            )
            .unwrap();
        assert_eq!(routes.route("orders.created"), Some(&"created"));
        assert_eq!(routes.route("orders.paid"), Some(&"orders"));
        assert_eq!(routes.route("users.new"), Some(&"all"));
    }

    #[test]
    fn same_exact_type_in_two_plugins_is_a_conflict_naming_both_files() {
        let mut routes = Routes::default();
        routes
            .insert(Path::new("a.wasm"), &pats(&["x.y"]), 1)
            .unwrap();
        let err = routes
            .insert(Path::new("b.wasm"), &pats(&["z", "x.y"]), 2)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("a.wasm") && text.contains("b.wasm"), "{text}");
        // Nothing of the refused plugin was routed.
        assert_eq!(routes.route("z"), None);
        assert_eq!(routes.route("x.y"), Some(&1));
    }
}
