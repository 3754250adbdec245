//! Compiled plugins cached on disk, so a restart with unchanged plugins skips
//! compilation.
//!
//! An entry is keyed by the component's content hash and the engine's
//! compatibility hash (wasmtime version and settings), and carries a checksum
//! of its own bytes: a stale entry is never found, and a corrupt one is
//! detected, rebuilt and replaced — never loaded.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a component's compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// Loaded from the cache.
    Hit,
    /// Compiled, then stored.
    Miss,
    /// The entry was corrupt: compiled again and replaced.
    Rebuilt,
    /// No cache configured.
    Off,
}

impl CacheUse {
    pub fn label(self) -> &'static str {
        match self {
            CacheUse::Hit => "hit",
            CacheUse::Miss => "miss",
            CacheUse::Rebuilt => "rebuilt",
            CacheUse::Off => "off",
        }
    }
}

/// The on-disk cache of compiled components.
#[derive(Debug, Clone)]
pub struct CodeCache {
    dir: Option<PathBuf>,
}

/// Hex SHA-256 of `bytes`.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl CodeCache {
    /// A cache in `dir`, or none.
    pub fn new(dir: Option<PathBuf>) -> Self {
        CodeCache { dir }
    }

    /// The component for `bytes` (whose hash is `hash`), from the cache when possible.
    pub fn component(
        &self,
        engine: &Engine,
        bytes: &[u8],
        hash: &str,
    ) -> wasmtime::Result<(Component, CacheUse)> {
        let Some(dir) = &self.dir else {
            return Ok((compile(engine, bytes)?, CacheUse::Off));
        };
        let path = dir.join(format!("{hash}-{:016x}.cwasm", engine_key(engine)));
        let mut found_corrupt = false;
        if let Ok(stored) = std::fs::read(&path) {
            match checked(&stored) {
                // SAFETY: the bytes are ones this cache wrote for this engine's
                // settings (the key), and the checksum proves them unaltered.
                Some(code) => match unsafe { Component::deserialize(engine, code) } {
                    Ok(component) => return Ok((component, CacheUse::Hit)),
                    Err(_) => found_corrupt = true,
                },
                None => found_corrupt = true,
            }
        }
        let component = compile(engine, bytes)?;
        if let Err(error) = store(&path, &component.serialize()?) {
            tracing::warn!(path = %path.display(), %error, "cannot write the compiled-code cache");
        }
        let used = if found_corrupt {
            CacheUse::Rebuilt
        } else {
            CacheUse::Miss
        };
        Ok((component, used))
    }
}

/// Compiles `bytes`, then hands the compiler's working memory back to the
/// system: glibc keeps freed memory in its arenas, and compiling a large
/// component (an 18 MB Python plugin) would otherwise leave an idle host
/// holding some 300 MiB it no longer uses.
fn compile(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    let component = Component::new(engine, bytes);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's own
    // arenas to the system; it touches nothing in use.
    unsafe {
        libc::malloc_trim(0);
    }
    component
}

/// Identifies the engine's compiled-code format: wasmtime version and settings.
fn engine_key(engine: &Engine) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

/// The code of a stored entry, if its checksum matches.
fn checked(stored: &[u8]) -> Option<&[u8]> {
    if stored.len() < 32 {
        return None;
    }
    let (sum, code) = stored.split_at(32);
    (Sha256::digest(code).as_slice() == sum).then_some(code)
}

/// Writes checksum + code atomically (temp file, then rename).
fn store(path: &std::path::Path, code: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut bytes = Sha256::digest(code).to_vec();
    bytes.extend_from_slice(code);
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_rejects_altered_entries() {
        let code = b"compiled code".to_vec();
        let mut stored = Sha256::digest(&code).to_vec();
        stored.extend_from_slice(&code);
        assert_eq!(checked(&stored), Some(code.as_slice()));
        let last = stored.len() - 1;
        stored[last] ^= 1;
        assert_eq!(checked(&stored), None);
        assert_eq!(checked(b"short"), None);
    }
}
