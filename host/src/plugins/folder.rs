//! The plugins folder: which of its files are plugins.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// The plugins folder could not be read.
#[derive(Debug, Error)]
#[error("plugins folder {}: {error}; create it or pass --plugins DIR", .dir.display())]
pub struct DirError {
    pub dir: PathBuf,
    pub error: std::io::Error,
}

/// The `*.wasm` files in `dir`, sorted.
pub fn wasm_files(dir: &Path) -> Result<Vec<PathBuf>, DirError> {
    let error = |error| DirError {
        dir: dir.to_owned(),
        error,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(error)? {
        let path = entry.map_err(error)?.path();
        if is_plugin_file(&path) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Whether `path` names a plugin component.
pub fn is_plugin_file(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "wasm")
}
