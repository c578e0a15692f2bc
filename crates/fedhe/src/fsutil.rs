//! Writing files that must never be seen half-written or by other users.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// A command's output path that names one of its inputs (or another of its
/// outputs): writing there would destroy that file.
#[derive(Debug, thiserror::Error)]
#[error(
    "{output_flag} {} is the same file as {other_flag} {}: writing there would overwrite {what}; choose another {output_flag}",
    .output.display(), .other.display()
)]
pub struct OutputOverInput {
    /// The output's flag, e.g. `--out`.
    pub output_flag: String,
    pub output: PathBuf,
    /// The input's (or the other output's) flag, e.g. `--data`.
    pub other_flag: String,
    pub other: PathBuf,
    /// "the input" or "the other output".
    pub what: &'static str,
}

/// An output path that cannot be written: its folder is missing, or it is
/// a folder itself. Checked before the work, not after it.
#[derive(Debug, thiserror::Error)]
pub enum OutputPathError {
    #[error("{flag} {}: the folder {} does not exist; create it first", .path.display(), .folder.display())]
    NoFolder {
        flag: String,
        path: PathBuf,
        folder: PathBuf,
    },
    #[error("{flag} {}: is a folder; give a file name", .path.display())]
    IsFolder { flag: String, path: PathBuf },
}

/// Refuses, before any work, an output whose folder does not exist or
/// that is a folder.
pub fn check_output_folder(flag: &str, path: &Path) -> Result<(), OutputPathError> {
    if path.is_dir() {
        return Err(OutputPathError::IsFolder {
            flag: flag.into(),
            path: path.into(),
        });
    }
    let folder = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(OutputPathError::NoFolder {
            flag: flag.into(),
            path: path.into(),
            folder: folder.into(),
        });
    }
    Ok(())
}

/// `p` made absolute through its folder: the whole path canonical when it
/// exists, else its folder canonical with the file name appended.
fn resolved(p: &Path) -> Option<PathBuf> {
    fs::canonicalize(p).ok().or_else(|| {
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some(fs::canonicalize(parent).ok()?.join(p.file_name()?))
    })
}

/// Whether `a` and `b` name the same file, whatever the spelling: `./x`,
/// `d/../x`, a symlink, or (on Unix) a hard link, compared by device and
/// inode. A path that does not exist yet is compared through its folder.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(ma), Ok(mb)) = (fs::metadata(a), fs::metadata(b)) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
        #[cfg(not(unix))]
        let _ = (ma, mb);
    }
    matches!((resolved(a), resolved(b)), (Some(x), Some(y)) if x == y)
}

/// Refuses, before any work, a command whose outputs name one of its inputs
/// or each other (with or without `--force`). Each entry is the flag and the
/// path, e.g. `("--out", "t.csv")`.
pub fn check_outputs(
    outputs: &[(&str, &Path)],
    inputs: &[(&str, &Path)],
) -> Result<(), OutputOverInput> {
    let clash = |(of, o): (&str, &Path), (f, p): (&str, &Path), what| OutputOverInput {
        output_flag: of.into(),
        output: o.into(),
        other_flag: f.into(),
        other: p.into(),
        what,
    };
    for (i, &out) in outputs.iter().enumerate() {
        if let Some(&input) = inputs.iter().find(|(_, p)| same_file(out.1, p)) {
            return Err(clash(out, input, "the input"));
        }
        if let Some(&other) = outputs[i + 1..].iter().find(|(_, p)| same_file(out.1, p)) {
            return Err(clash(other, out, "the other output"));
        }
    }
    Ok(())
}

/// The largest client state file read (`session::ClientState`): its token,
/// secrets, pins and the server optimizer's state (three vectors of the
/// model's size as exact bits) stay far below; a model file has the same cap.
pub const MAX_STATE_FILE_BYTES: u64 = 1 << 28;

/// Reads a file that is used whole (a model, a key, a plan, a state file),
/// refusing one larger than `cap` bytes before reading it (a regular file)
/// or after `cap` bytes (a device or a pipe such as `/dev/zero`): an
/// `io::ErrorKind::FileTooLarge` error naming the cap and `what`.
pub fn read_capped(path: &Path, cap: u64, what: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let too_large = || {
        std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than {cap} bytes, the most a {what} may have"),
        )
    };
    let f = fs::File::open(path)?;
    let meta = f.metadata()?;
    if meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "a folder, not a file",
        ));
    }
    if meta.len() > cap {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_large());
    }
    Ok(bytes)
}

/// [`read_capped`] as UTF-8 text.
pub fn read_capped_text(path: &Path, cap: u64, what: &str) -> std::io::Result<String> {
    String::from_utf8(read_capped(path, cap, what)?).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (a {what} is text)"),
        )
    })
}
