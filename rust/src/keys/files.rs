//! Key files on disk: a private key is read only from a regular file that no one else can
//! access, and both files are written atomically with their final permissions from the first
//! byte.

#![forbid(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::rand;

use crate::error::{CoreError, CoreResult};
use crate::secret::LockedBuf;

/// Largest key file we read (a 16384-bit encrypted key is ~13 KiB of PEM).
const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// Read a private key file into locked memory after checking its permissions.
pub(super) fn read_private_key_file(path: &Path) -> CoreResult<LockedBuf> {
    let mut file = open_for_reading(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(CoreError::KeyFormat(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    #[cfg(windows)]
    super::windows::check_not_shared(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CoreError::KeyPermission(format!(
                "the private key file {} is accessible by group or others (mode {mode:o}); \
                 fix it with: chmod 600 {}",
                path.display(),
                path.display()
            )));
        }
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(CoreError::KeyFormat(format!(
            "{} is too large to be a key file",
            path.display()
        )));
    }
    // Read straight into locked memory; a file that grows meanwhile is cut at its stat size.
    let mut buf = LockedBuf::zeroed(meta.len() as usize)?;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf.as_mut_slice()[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Write `contents` to `path` atomically: a temp file in the same directory created with
/// `mode` from its first byte (O_CREAT|O_EXCL), fsync, rename over `path`, fsync the directory.
pub(super) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> CoreResult<()> {
    let file_name = path.file_name().ok_or_else(|| {
        CoreError::InvalidArgument(format!("{} is not a file path", path.display()))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_dir(&dir)?;
    let mut suffix = [0u8; 8];
    rand::fill(&mut suffix).map_err(|_| CoreError::Memory("no randomness".into()))?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{}.{suffix}.tmp", file_name.to_string_lossy()));

    let result = (|| -> CoreResult<()> {
        let mut file = open_exclusive(&tmp, mode)?;
        // The umask may have removed bits from `mode` (never added any): set it exactly.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        // Windows has no mode bits: an owner-only file gets an owner-only DACL instead,
        // before anything is written to it.
        #[cfg(windows)]
        if mode & 0o077 == 0 {
            super::windows::restrict_to_owner(&tmp)?;
        }
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Open without blocking on a FIFO or device (only regular files are read afterwards).
#[cfg(unix)]
pub(super) fn open_for_reading(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(not(unix))]
pub(super) fn open_for_reading(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

#[cfg(unix)]
pub(super) fn open_exclusive(path: &Path, mode: u32) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(not(unix))]
pub(super) fn open_exclusive(path: &Path, _mode: u32) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
pub(super) fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
pub(super) fn create_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
pub(super) fn sync_dir(dir: &Path) -> CoreResult<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
pub(super) fn sync_dir(_dir: &Path) -> CoreResult<()> {
    Ok(())
}
