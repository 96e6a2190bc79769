//! Writing files and folders so that readers see the old one or the new one, never half of either.

use std::path::{Path, PathBuf};

/// Fills a fresh temporary folder beside `dir` with `fill`, then swaps it in for `dir` by renaming.
///
/// A crash while `fill` runs leaves `dir` as it was (plus a stray `.NAME.tmp*` folder). Replacing an existing
/// folder takes two renames (old out of the way, new in), so a crash between them leaves the complete old copy
/// as `.NAME.old*` beside it; nothing written before is ever partly overwritten.
pub fn write_dir_atomically<E>(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<(PathBuf, std::io::Error)>,
{
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    std::fs::create_dir_all(&parent).map_err(|e| E::from((parent.clone(), e)))?;
    let tmp = crate::staged_dir(&parent, &format!(".{name}.tmp"))
        .map_err(|e| E::from((parent.clone(), e)))?;
    fill(tmp.path())?;
    sync_dir(tmp.path());
    let staged = tmp.keep();
    if dir.exists() {
        let old = tempfile::Builder::new()
            .prefix(&format!(".{name}.old"))
            .tempdir_in(&parent)
            .map_err(|e| E::from((parent.clone(), e)))?
            .keep();
        // `old` is an empty folder: rename replaces it.
        std::fs::rename(dir, &old).map_err(|e| E::from((dir.to_path_buf(), e)))?;
        std::fs::rename(&staged, dir).map_err(|e| E::from((dir.to_path_buf(), e)))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&staged, dir).map_err(|e| E::from((dir.to_path_buf(), e)))?;
    }
    sync_dir(&parent);
    Ok(())
}

/// Replaces the file `path` with `bytes` atomically: written to a temporary file beside it, synced, renamed.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = crate::staged_file(parent)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `bytes` to `path` durably (write, fsync).
pub fn write_file_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) {
    // Best effort: not every platform lets a folder be opened for fsync.
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(#[allow(dead_code)] String);
    impl From<(PathBuf, std::io::Error)> for E {
        fn from((p, e): (PathBuf, std::io::Error)) -> Self {
            E(format!("{}: {e}", p.display()))
        }
    }

    #[test]
    fn failed_fill_keeps_the_old_folder() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("adapter");
        write_dir_atomically(&dir, |d| {
            write_file_synced(&d.join("a.txt"), b"first").map_err(|e| E(e.to_string()))
        })
        .unwrap();
        let r: Result<(), E> = write_dir_atomically(&dir, |d| {
            write_file_synced(&d.join("a.txt"), b"half").map_err(|e| E(e.to_string()))?;
            Err(E("interrupted".into()))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"first");
        write_dir_atomically(&dir, |d| {
            write_file_synced(&d.join("b.txt"), b"second").map_err(|e| E(e.to_string()))
        })
        .unwrap();
        assert!(
            !dir.join("a.txt").exists(),
            "the new folder replaces the old"
        );
        assert_eq!(std::fs::read(dir.join("b.txt")).unwrap(), b"second");
        let stray: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".old"))
            .collect();
        assert!(stray.is_empty(), "old copies are removed: {stray:?}");
    }
}
