//! The sled implementation of [`Store`]: one tree, batches applied atomically, the directory
//! and its files owner-only (0700 / 0600).

use std::path::Path;

use super::{BatchOp, Entries, StateError, Store};

/// State in a sled database directory.
pub struct SledStore {
    db: sled::Db,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SledStore")
    }
}

fn db_err(e: sled::Error) -> StateError {
    StateError::Db(e.to_string())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Creates `path` (and missing parents) as a directory only its owner can enter.
fn private_dir(path: &Path) -> Result<(), StateError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !path.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(io_err(path))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(path))?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(path).map_err(io_err(path))?;
    Ok(())
}

/// Makes every file under `path` 0600 and every directory 0700.
fn tighten(path: &Path) -> Result<(), StateError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let entries = std::fs::read_dir(path).map_err(io_err(path))?;
        for entry in entries {
            let entry = entry.map_err(io_err(path))?;
            let p = entry.path();
            let meta = entry.metadata().map_err(io_err(&p))?;
            let mode = if meta.is_dir() { 0o700 } else { 0o600 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                .map_err(io_err(&p))?;
            if meta.is_dir() {
                tighten(&p)?;
            }
        }
    }
    Ok(())
}

impl SledStore {
    /// Opens or creates the database directory `path` (owner-only).
    pub fn open(path: &Path) -> Result<Self, StateError> {
        private_dir(path)?;
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(Some(200))
            .open()
            .map_err(db_err)?;
        tighten(path)?;
        Ok(SledStore { db })
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.db.get(key).map_err(db_err)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StateError> {
        self.db
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(db_err))
            .collect()
    }

    fn apply(&self, ops: Vec<BatchOp>) -> Result<(), StateError> {
        let mut batch = sled::Batch::default();
        for (k, v) in ops {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.db.apply_batch(batch).map_err(db_err)
    }

    fn flush(&self) -> Result<(), StateError> {
        self.db.flush().map(|_| ()).map_err(db_err)
    }
}
