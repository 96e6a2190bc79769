//! Temporary files for atomic writes (written beside the target, then renamed over it).

use std::path::Path;

use tempfile::NamedTempFile;

/// A temporary file in `dir` that becomes world-readable (0644 on Unix) when renamed into place: `tempfile`
/// creates files as 0600, and a rename keeps that, which would leave adapters and exported models readable
/// only by their owner.
pub fn staged_file(dir: &Path) -> std::io::Result<NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".engram-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    builder.tempfile_in(dir)
}

/// A temporary folder in `dir`, named `PREFIX…`, that is world-readable (0755 on Unix) when renamed into
/// place: `tempfile` creates folders as 0700, for the same reason as [`staged_file`].
pub fn staged_dir(dir: &Path, prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o755));
    }
    builder.tempdir_in(dir)
}

/// Makes a file that another library wrote through its own temporary file (0600) world-readable (0644 on
/// Unix) before it is renamed into place.
pub fn make_readable(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn renamed_files_are_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = super::staged_file(dir.path()).unwrap();
        let target = dir.path().join("out.json");
        tmp.persist(&target).unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o044, 0o044, "group and others can read: {mode:o}");
    }

    #[test]
    fn renamed_folders_are_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = super::staged_dir(dir.path(), ".x.tmp").unwrap().keep();
        let target = dir.path().join("adapter");
        std::fs::rename(&tmp, &target).unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o055, 0o055, "group and others can list: {mode:o}");
    }
}
