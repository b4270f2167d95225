//! Atomic file writes: a temporary file in the same directory, fsync, rename, fsync the
//! directory. A reader sees either the old file or the whole new one, never half a file.
//! Owns file modes (0600 for secrets); owns nothing about what the bytes mean.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::PkiError;

/// Writes `contents` to `path` atomically with mode 0600 (owner read/write only).
///
/// The gateway reuses this for every secret it writes (keys, tokens).
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    write_atomic(path, contents, 0o600)
}

/// Writes `contents` to `path` atomically with mode 0644 (certificates, CRLs).
pub fn write_public_file(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    write_atomic(path, contents, 0o644)
}

fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| PkiError::InvalidRequest(format!("{}: not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{:016x}",
        file_name.to_string_lossy(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut f = create_new_with_mode(&tmp, mode)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| PkiError::io(path, e))
}

#[cfg(unix)]
fn create_new_with_mode(path: &Path, mode: u32) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

#[cfg(not(unix))]
fn create_new_with_mode(path: &Path, _mode: u32) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Makes a rename or a new file in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Creates `dir` (and parents) with mode 0700 when it does not exist yet.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| PkiError::io(dir, e))
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir).map_err(|e| PkiError::io(dir, e))
    }
}
