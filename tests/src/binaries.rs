//! The things under test, built fresh: the `jobhost` binary and the plugins
//! under `plugins/` (through `scripts/build-plugins`), once per test process,
//! so no test ever runs a stale build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tempfile::TempDir;

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_owned()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs a build. Cargo gives a running test the variables of its own
/// package (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, ...); build scripts such
/// as ring's rerun when those change, so a build that inherited them would
/// rebuild ring, rustls, redis and jobhost, and the next `cargo` run outside
/// the tests would rebuild them back.
fn run(what: &str, command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || name.starts_with("CARGO_CRATE_")
            || name.starts_with("CARGO_BIN_")
            || name == "CARGO_PRIMARY_PACKAGE"
            || name == "CARGO_TARGET_TMPDIR"
        {
            command.env_remove(&*name);
        }
    }
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `jobhost` binary, built (debug) on first use.
pub fn jobhost_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_jobhost("debug", &[]))
}

/// The `jobhost` binary built with `--release` on first use, for measures
/// (the bench) rather than tests: optimising wasmtime takes minutes.
pub fn jobhost_release_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_jobhost("release", &["--release"]))
}

fn build_jobhost(profile: &str, flags: &[&str]) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run(
        &format!("cargo build -p jobhost ({profile})"),
        Command::new(cargo)
            .args(["build", "--quiet", "-p", "jobhost", "--bin", "jobhost"])
            .args(flags)
            .current_dir(workspace_root()),
    );
    target_dir().join(profile).join("jobhost")
}

/// A folder holding every plugin of `plugins/` and every test-only guest of
/// `tests/guests/`, built on first use.
pub fn built_plugins() -> &'static Path {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        run(
            "scripts/build-plugins",
            Command::new("bash")
                .arg(workspace_root().join("scripts/build-plugins"))
                .arg(dir.path())
                .arg("tests/guests")
                .current_dir(workspace_root()),
        );
        dir
    })
    .path()
}

/// A compiled-code cache (`jobhost run --cache-dir`) shared by every test
/// run of this target folder. Plugins in other languages take seconds to
/// compile even with an optimised compiler; tests that load them share their
/// compiled code instead of compiling them again each (the cache is keyed by
/// content hash and engine, and written atomically, so sharing is safe).
pub fn shared_code_cache() -> PathBuf {
    target_dir().join("e2e-code-cache")
}

/// Runs `start` (which starts a host on [`shared_code_cache`] and waits until
/// it has loaded its plugins) while holding a lock on that cache, so that
/// tests starting at the same time compile a plugin once, one after the
/// other, rather than each at once on a busy machine.
pub fn with_shared_code_cache<T>(start: impl FnOnce(&Path) -> T) -> T {
    let dir = shared_code_cache();
    std::fs::create_dir_all(&dir).expect("shared code cache folder");
    let lock = std::fs::File::create(dir.join(".lock")).expect("shared code cache lock");
    // SAFETY: flock on a file descriptor this function owns; released when
    // `lock` is closed at the end of the function (or by the kernel if the
    // test dies).
    let locked = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(locked, 0, "flock the shared code cache");
    start(&dir)
}

/// A plugins folder of a test's own, holding copies of chosen plugins.
pub struct PluginDir {
    dir: TempDir,
}

impl PluginDir {
    /// A folder with copies of the named plugins (e.g. `["orders", "hello"]`).
    pub fn with(names: &[&str]) -> Self {
        let folder = PluginDir {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for name in names {
            folder.add(name);
        }
        folder
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies built plugin `name` in as `name.wasm`.
    pub fn add(&self, name: &str) {
        self.add_as(name, name);
    }

    /// Copies built plugin `name` in as `file.wasm`.
    pub fn add_as(&self, name: &str, file: &str) {
        let from = built_plugins().join(format!("{name}.wasm"));
        std::fs::copy(&from, self.dir.path().join(format!("{file}.wasm")))
            .unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }

    /// Writes raw bytes as `file`.
    pub fn write(&self, file: &str, bytes: &[u8]) {
        std::fs::write(self.dir.path().join(file), bytes).expect("write into the plugin folder");
    }
}
