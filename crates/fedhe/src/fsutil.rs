//! Writing files that must never be seen half-written or by other users.

use std::fs;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a sibling temporary file and a rename, so
/// a crash never leaves a half-written file. With `owner_only` the file is
/// created with mode 0600 (on Unix), so it is never readable by others, not
/// even briefly. Without `overwrite` an existing file is an
/// `AlreadyExists` error.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    overwrite: bool,
    owner_only: bool,
) -> std::io::Result<()> {
    let exists = || {
        std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists", path.display()),
        )
    };
    if !overwrite && path.exists() {
        return Err(exists());
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if owner_only { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = owner_only;
    let result = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        if !overwrite && path.exists() {
            return Err(exists());
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // Best effort: the temporary file may not exist.
        let _ = fs::remove_file(&tmp);
    }
    result
}
