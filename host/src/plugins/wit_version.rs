//! Which version of the jobhost WIT a component was built for, read from the
//! names of the `jobhost:plugin` interfaces it exports and imports
//! (`jobhost:plugin/handler@0.2.0`). It is read before linking, so that a
//! plugin built for a version this host does not support is refused with
//! that version named, not with the linker's complaint about one function,
//! and a supported one is matched to its world (`world.rs`).

use std::fmt;

/// The contract's WIT package, without its version.
pub const PACKAGE: &str = "jobhost:plugin";

/// The versions of [`PACKAGE`] this host supports, newest first: one world
/// each in `world.rs`.
pub const SUPPORTED: [&str; 2] = ["0.2.0", "0.1.0"];

/// The version of [`PACKAGE`] a component names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitVersion {
    /// `None` for a component built from an unversioned `package jobhost:plugin;`.
    version: Option<String>,
}

impl WitVersion {
    /// The version of the jobhost interfaces among a component's `exports`
    /// and `imports`: the exported `handler`'s when there is one (it is what
    /// the host calls), else the first one named; `None` when it names none.
    pub fn of<'a>(
        exports: impl IntoIterator<Item = &'a str>,
        imports: impl IntoIterator<Item = &'a str>,
    ) -> Option<Self> {
        let exports: Vec<_> = exports.into_iter().filter_map(jobhost_interface).collect();
        let handler = exports
            .iter()
            .find(|(interface, _)| *interface == "handler");
        let (_, version) = handler
            .or(exports.first())
            .copied()
            .or_else(|| imports.into_iter().find_map(jobhost_interface))?;
        Some(WitVersion {
            version: version.map(str::to_owned),
        })
    }

    /// The version itself (`0.2.0`), `None` when the package has none.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Whether this host has a world for it.
    pub fn is_supported(&self) -> bool {
        self.version
            .as_deref()
            .is_some_and(|version| SUPPORTED.contains(&version))
    }
}

impl fmt::Display for WitVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{PACKAGE}@{version}"),
            None => write!(f, "{PACKAGE} (no version)"),
        }
    }
}

/// The supported versions in words: `jobhost:plugin 0.2.0 or 0.1.0`.
pub fn supported() -> String {
    format!("{PACKAGE} {}", SUPPORTED.join(" or "))
}

/// `jobhost:plugin/handler@0.2.0` → (`handler`, `Some("0.2.0")`); `None`
/// for an interface of another package.
fn jobhost_interface(name: &str) -> Option<(&str, Option<&str>)> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    Some(match rest.split_once('@') {
        Some((interface, version)) => (interface, Some(version)),
        None => (rest, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASI: &str = "wasi:cli/stdout@0.2.6";

    fn of(exports: &[&str], imports: &[&str]) -> Option<String> {
        WitVersion::of(exports.iter().copied(), imports.iter().copied()).map(|v| v.to_string())
    }

    #[test]
    fn the_exported_handler_names_the_version() {
        let imports = [
            "jobhost:plugin/types@0.2.0",
            "jobhost:plugin/host@0.2.0",
            WASI,
        ];
        assert_eq!(
            of(&["jobhost:plugin/handler@0.2.0"], &imports).as_deref(),
            Some("jobhost:plugin@0.2.0")
        );
        assert_eq!(
            of(&["jobhost:plugin/handler@0.1.0"], &[WASI]).as_deref(),
            Some("jobhost:plugin@0.1.0")
        );
    }

    #[test]
    fn the_handler_wins_over_other_jobhost_interfaces() {
        let exports = ["jobhost:plugin/types@0.2.0", "jobhost:plugin/handler@9.0.0"];
        assert_eq!(
            of(&exports, &["jobhost:plugin/host@0.2.0"]).as_deref(),
            Some("jobhost:plugin@9.0.0")
        );
    }

    #[test]
    fn without_a_handler_the_imports_name_the_version() {
        assert_eq!(
            of(
                &["wasi:http/incoming-handler@0.2.0"],
                &["jobhost:plugin/host@0.3.0"]
            )
            .as_deref(),
            Some("jobhost:plugin@0.3.0")
        );
    }

    #[test]
    fn other_packages_name_no_version() {
        assert_eq!(of(&["test:other/greet", "greet"], &[WASI]), None);
        // A package whose name only starts like jobhost's is another package.
        assert_eq!(of(&["jobhost:plugins/handler@0.2.0"], &[]), None);
    }

    #[test]
    fn the_supported_versions_are_those_of_the_worlds_bindgen_reads() {
        let current = include_str!("../../../wit/jobhost.wit");
        let old = include_str!("../../wit/plugin-0.1.0/jobhost.wit");
        for (wit, version) in [(current, SUPPORTED[0]), (old, SUPPORTED[1])] {
            let package = format!("\npackage {PACKAGE}@{version};\n");
            assert!(wit.contains(&package), "{package:?}");
        }
    }

    #[test]
    fn only_the_versions_with_a_world_are_supported() {
        let version = |exports: &[&str]| WitVersion::of(exports.iter().copied(), []).unwrap();
        assert!(version(&["jobhost:plugin/handler@0.2.0"]).is_supported());
        assert!(version(&["jobhost:plugin/handler@0.1.0"]).is_supported());
        assert!(!version(&["jobhost:plugin/handler@0.2.1"]).is_supported());
        assert!(!version(&["jobhost:plugin/handler@9.0.0"]).is_supported());
        let unversioned = version(&["jobhost:plugin/handler"]);
        assert!(!unversioned.is_supported());
        assert_eq!(unversioned.to_string(), "jobhost:plugin (no version)");
        assert_eq!(supported(), "jobhost:plugin 0.2.0 or 0.1.0");
    }
}
