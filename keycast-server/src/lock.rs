//! One server per data dir: an advisory `flock` on `<data_dir>/keycast.lock`.
//!
//! The kernel drops the lock when the process dies, however it dies, so a crash never
//! leaves a stale lock behind (unlike a pidfile). The file's content is informational.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

use crate::error::{Result, ServerError};

/// Held for the life of the server; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Creates `dir` (mode 0700) if needed and takes the lock without waiting.
    pub fn acquire(dir: &Path) -> Result<Self> {
        create_private_dir(dir)?;
        let path = dir.join("keycast.lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ServerError::io(format!("open {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(ServerError::Locked(dir.display().to_string()))
            }
            Err(TryLockError::Error(e)) => {
                return Err(ServerError::io(format!("lock {}", path.display()), e))
            }
        }
        // Best effort: who holds it, for an operator looking at the file.
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(Self { _file: file })
    }
}

/// Creates `dir` and its parents; the leaf gets mode 0700 (it holds the master key).
pub fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| ServerError::io(format!("create data dir {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_the_lock_frees_on_drop() {
        let dir = std::env::temp_dir().join(format!("keycast-lock-{}", uuid::Uuid::new_v4()));
        let first = DataDirLock::acquire(&dir).expect("first");
        let err = DataDirLock::acquire(&dir).expect_err("second");
        assert!(matches!(err, ServerError::Locked(_)), "{err}");
        drop(first);
        DataDirLock::acquire(&dir).expect("free again");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
