//! Watching the plugins folder: turns bursts of file events into a list of
//! plugin files to reload.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use super::folder::is_plugin_file;

/// Events closer together than this are one change (an editor's save, a
/// build tool's temp-file-and-rename, `cp` writing in chunks).
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Watches `dir` until dropped, calling `on_change` with the plugin files
/// (`NAME.wasm`) whose component or manifest changed, appeared or vanished.
pub fn watch(
    dir: &Path,
    on_change: impl Fn(Vec<PathBuf>) + Send + 'static,
) -> notify::Result<Debouncer<notify::RecommendedWatcher, RecommendedCache>> {
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let Ok(events) = result else { return };
        let files: BTreeSet<PathBuf> = events
            .iter()
            // Reading a file (as loading it does) raises access events; only
            // changes count, or every load would trigger the next.
            .filter(|event| !matches!(event.kind, EventKind::Access(_)))
            .flat_map(|event| event.paths.iter())
            .filter_map(|path| plugin_file_for(path))
            .collect();
        if !files.is_empty() {
            on_change(files.into_iter().collect());
        }
    })?;
    debouncer.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(debouncer)
}

/// The plugin file a changed path belongs to: itself, or the component a manifest configures.
fn plugin_file_for(path: &Path) -> Option<PathBuf> {
    if is_plugin_file(path) {
        Some(path.to_owned())
    } else if path.extension().is_some_and(|ext| ext == "toml") {
        Some(path.with_extension("wasm"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_map_to_their_component_and_other_files_are_ignored() {
        assert_eq!(
            plugin_file_for(Path::new("/p/a.wasm")),
            Some(PathBuf::from("/p/a.wasm"))
        );
        assert_eq!(
            plugin_file_for(Path::new("/p/a.toml")),
            Some(PathBuf::from("/p/a.wasm"))
        );
        assert_eq!(plugin_file_for(Path::new("/p/a.wasm.tmp")), None);
        assert_eq!(plugin_file_for(Path::new("/p/.cache")), None);
    }
}
