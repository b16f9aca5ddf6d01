//! The sled implementation of [`Store`]: one tree, batches applied atomically, the directory
//! and its files owner-only (0700 / 0600).
//!
//! Opening checks the directory before and after sled reads it, so that a damaged, missing or
//! foreign state is a [`StateError::Damaged`] that says what happened and what to do, never a
//! panic:
//!
//! * a path that is a file, or that cannot be read;
//! * a non-empty directory without sled's files (someone else's directory);
//! * sled's files with the database file `db` missing;
//! * sled failing, or panicking, while reading the files (a truncated `db`);
//! * a database without skladsync's marker ([`FORMAT_KEY`]) that holds anything but
//!   skladsync's keys (another program's sled database), or that holds nothing at all although
//!   its files existed (truncated to nothing);
//! * a marker of a newer format;
//! * a directory another process has open.
//!
//! A new state gets the marker `misc/format` = `{"app": "skladsync", "version": 1}` when it is
//! created. A state written before the marker existed is recognised by its keys and gets it.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, Weak};

use serde_json::{json, Value};

use super::{BatchOp, Entries, StateError, Store};

/// State in a sled database directory: the database's default tree (pair `default`, the
/// single-pair layout), or the tree `pair/<id>` of one pair in a multi-pair runner.
pub struct SledStore {
    /// The database (kept open while any pair's store uses it).
    db: Arc<sled::Db>,
    /// This pair's tree in it.
    tree: sled::Tree,
}

/// The databases this process has open, by path: every pair of a multi-pair runner is a tree
/// of the one database (one file lock, one flusher thread, one page cache for all pairs).
static OPEN: Mutex<Option<HashMap<PathBuf, Weak<sled::Db>>>> = Mutex::new(None);

/// The tree of pair `pair` (the default tree for [`super::DEFAULT_PAIR`]).
fn pair_tree(db: &sled::Db, pair: &str) -> Result<sled::Tree, StateError> {
    if pair == super::DEFAULT_PAIR {
        return Ok((**db).clone());
    }
    db.open_tree(format!("pair/{pair}")).map_err(db_err)
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
    move |e| access(path, &e)
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

/// The key of skladsync's marker in the state.
pub const FORMAT_KEY: &[u8] = b"misc/format";

/// The state format this runner writes and reads.
pub const FORMAT_VERSION: u64 = 1;

const APP: &str = "skladsync";

/// The key prefixes skladsync's state uses (see the key layout in [`super`]); a database
/// without the marker whose keys all start with one of them is a state written before the
/// marker existed.
const OUR_PREFIXES: &[&[u8]] = &[
    b"link/",
    b"cursor/",
    b"statuses/",
    b"inbox/",
    b"inboxsubj/",
    b"outbox",
    b"plan/",
    b"done/",
    b"key/",
    b"dedupe/",
    b"journal/",
    b"task/",
    b"msseen/",
    b"msown/",
    b"msgone/",
    b"msread/",
    b"written/",
    b"stock/",
    b"misc/",
];

const REBUILD: &str = "Stop the runner, move the directory aside (keep it for inspection) and \
start again with an empty state: the runner finds what it created before by its keys and links \
come back from both systems, see \"Rebuilding lost state\" in docs/runner.md";

const FOREIGN: &str = "It is not a skladsync state: point state.path at a new or empty \
directory, or move these files away (if the state was lost, see \"Rebuilding lost state\" in \
docs/runner.md)";

const NOT_DIR: &str = "state.path must name a directory the runner owns: move the file away or \
point state.path elsewhere";

const ACCESS: &str = "Give the user the runner runs as read and write access to it (the runner \
keeps it owner-only, 0700), or point state.path elsewhere";

const IN_USE: &str = "Another process (another runner?) has it open: stop that process first; \
one state directory serves one runner";

const NEWER: &str = "Run the skladsync version that wrote it, or rebuild the state with this \
one, see \"Rebuilding lost state\" in docs/runner.md";

fn damaged(path: &Path, problem: impl Into<String>, remedy: &str) -> StateError {
    StateError::Damaged {
        path: path.display().to_string(),
        problem: problem.into(),
        remedy: remedy.to_string(),
    }
}

fn access(path: &Path, e: &std::io::Error) -> StateError {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            damaged(path, format!("cannot be read or written ({e})"), ACCESS)
        }
        std::io::ErrorKind::NotADirectory => damaged(
            path,
            format!("a part of the path is not a directory ({e})"),
            NOT_DIR,
        ),
        _ => damaged(path, format!("cannot be prepared ({e})"), ACCESS),
    }
}

/// What the directory held before sled opened it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    /// Nothing: a new state.
    Nothing,
    /// sled's files.
    Database,
}

fn is_sled_file(name: &str) -> bool {
    matches!(name, "db" | "conf" | "blobs") || name.starts_with("snap.")
}

/// Looks at the directory before sled touches it (sled would create what is missing).
fn inspect(path: &Path) -> Result<Found, StateError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) => return Err(access(path, &e)),
        Ok(m) if !m.is_dir() => return Err(damaged(path, "is not a directory", NOT_DIR)),
        Ok(_) => {}
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| access(path, &e))? {
        let entry = entry.map_err(|e| access(path, &e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.retain(|n| n != "lost+found");
    names.sort();
    if names.is_empty() {
        return Ok(Found::Nothing);
    }
    if !names.iter().any(|n| is_sled_file(n)) {
        let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
        let more = if names.len() > shown.len() {
            ", …"
        } else {
            ""
        };
        return Err(damaged(
            path,
            format!(
                "holds files that are not a skladsync state ({}{more})",
                shown.join(", ")
            ),
            FOREIGN,
        ));
    }
    for required in ["db", "conf"] {
        if !names.iter().any(|n| n == required) {
            let left: Vec<&str> = names
                .iter()
                .filter(|n| is_sled_file(n))
                .map(String::as_str)
                .collect();
            return Err(damaged(
                path,
                format!(
                    "the database file `{required}` is missing (left: {}); the state was damaged or partly deleted",
                    left.join(", ")
                ),
                REBUILD,
            ));
        }
    }
    if !path.join("db").is_file() {
        return Err(damaged(
            path,
            "`db` is not a file; the state was damaged or replaced",
            REBUILD,
        ));
    }
    Ok(Found::Database)
}

thread_local! {
    /// Set while this thread opens sled: its panics are caught and reported as errors.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

static QUIET_HOOK: Once = Once::new();

/// Runs `f` with the panic hook silent for this thread only (other threads' panics are
/// reported as before).
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let out = f();
    QUIET.with(|q| q.set(false));
    out
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// sled's `open`, its errors and panics turned into [`StateError::Damaged`].
fn open_sled(path: &Path) -> Result<sled::Db, StateError> {
    let config = sled::Config::new()
        .path(path)
        .flush_every_ms(Some(200))
        .cache_capacity(SLED_CACHE_BYTES);
    // sled lets go of its file lock only when its background flusher has let go of the
    // database too, a moment after the last handle is dropped: a database just closed (the
    // one made to create the state, or a previous open in this process) may still be locked
    // for a few milliseconds. Another process holding it stays locked: reported after that.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match guarded_open(path, || config.open()) {
            Err(StateError::Damaged { ref remedy, .. })
                if remedy == IN_USE && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// sled's page cache (its default is 1 GiB, which it fills as pages are read and written: the
/// daemon's resident memory grew with the state). The state's hot part (inbox, outbox, ids,
/// digests) is small; a miss reads the page from the OS's file cache.
const SLED_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// How long an open waits for a lock that sled may still hold.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs `open`, its errors and panics turned into [`StateError::Damaged`].
fn guarded_open(
    path: &Path,
    open: impl FnOnce() -> sled::Result<sled::Db>,
) -> Result<sled::Db, StateError> {
    let opened = quietly(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => {
            Err(damaged(path, "is in use by another process", IN_USE))
        }
        Ok(Err(sled::Error::Io(e))) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(access(path, &e))
        }
        Ok(Err(e)) => Err(damaged(
            path,
            format!("the database cannot be read ({e}); it is damaged"),
            REBUILD,
        )),
        Err(payload) => Err(damaged(
            path,
            format!(
                "the database cannot be read (sled failed: {}); it is damaged, e.g. a truncated `db` file",
                panic_text(payload.as_ref())
            ),
            REBUILD,
        )),
    }
}

fn marker() -> Value {
    json!({"app": APP, "version": FORMAT_VERSION})
}

fn write_marker(db: &sled::Db) -> Result<(), StateError> {
    let bytes = serde_json::to_vec(&marker())?;
    db.insert(FORMAT_KEY, bytes).map_err(db_err)?;
    db.flush().map_err(db_err)?;
    Ok(())
}

/// Checks skladsync's marker, writing it into a new state (or one written before markers).
fn check_marker(path: &Path, db: &sled::Db, found: Found) -> Result<(), StateError> {
    if let Some(bytes) = db.get(FORMAT_KEY).map_err(db_err)? {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if v.get("app").and_then(Value::as_str) != Some(APP) {
            return Err(damaged(
                path,
                format!(
                    "its database has a format marker that is not skladsync's ({})",
                    String::from_utf8_lossy(&bytes)
                ),
                FOREIGN,
            ));
        }
        return match v.get("version").and_then(Value::as_u64) {
            Some(n) if n <= FORMAT_VERSION => Ok(()),
            Some(n) => Err(damaged(
                path,
                format!("was written by a newer skladsync (state format {n}; this one reads up to {FORMAT_VERSION})"),
                NEWER,
            )),
            None => Err(damaged(
                path,
                format!(
                    "its format marker is unreadable ({})",
                    String::from_utf8_lossy(&bytes)
                ),
                REBUILD,
            )),
        };
    }
    let other_trees: Vec<String> = db
        .tree_names()
        .into_iter()
        .filter(|n| n.as_ref() != b"__sled__default")
        .map(|n| String::from_utf8_lossy(&n).into_owned())
        .collect();
    if !other_trees.is_empty() {
        return Err(damaged(
            path,
            format!(
                "is a sled database of another program (it has trees {}; skladsync uses one)",
                other_trees.join(", ")
            ),
            FOREIGN,
        ));
    }
    if db.is_empty() {
        if found == Found::Database {
            return Err(damaged(
                path,
                "its database files exist but hold nothing, not even skladsync's format marker: \
                 the state was truncated or replaced",
                REBUILD,
            ));
        }
        return write_marker(db);
    }
    for key in db.iter().keys() {
        let key = key.map_err(db_err)?;
        if !OUR_PREFIXES.iter().any(|p| key.starts_with(p)) {
            return Err(damaged(
                path,
                format!(
                    "is a sled database without skladsync's format marker that holds other \
                     data (key {:?})",
                    String::from_utf8_lossy(&key)
                ),
                FOREIGN,
            ));
        }
    }
    tracing::info!(path = %path.display(), "state written before format markers: marking it as skladsync's");
    write_marker(db)
}

/// Creates a new, marked state at `path` (which does not exist or is empty): built beside
/// it under a hidden name and renamed into place, so that a crash while creating leaves no
/// half-made state at `path` (one without its marker would be refused as damaged). Returns
/// whether it did; `false` when the rename is impossible (`path` a mount point, say): the
/// caller then creates the state in place.
fn create_marked(path: &Path) -> Result<bool, StateError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(false);
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let tmp = parent.join(format!(".{}.new", name.to_string_lossy()));
    // A leftover of a creation that crashed: nothing in it was ever used.
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    private_dir(&tmp)?;
    {
        let db = open_sled(&tmp)?;
        write_marker(&db)?;
    }
    if std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(false);
    }
    Ok(true)
}

impl SledStore {
    /// Opens or creates the database directory `path` (owner-only). A damaged, missing,
    /// foreign, inaccessible or busy state is a [`StateError::Damaged`] saying what happened
    /// and what to do; sled's panics on damaged files are caught.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let mut found = inspect(path)?;
        if found == Found::Nothing && create_marked(path)? {
            found = Found::Database;
        }
        private_dir(path)?;
        let db = open_sled(path)?;
        check_marker(path, &db, found)?;
        tighten(path)?;
        let tree = (*db).clone();
        Ok(SledStore {
            db: Arc::new(db),
            tree,
        })
    }

    /// The store of pair `pair` in the database at `path`, shared by every pair this process
    /// opens there: opened (and checked, as [`SledStore::open`] does) by the first pair,
    /// closed when the last pair's store is dropped. Pair `default` is the default tree, so a
    /// single-pair state directory is the `default` pair of a multi-pair runner as it is.
    pub fn open_pair(path: &Path, pair: &str) -> Result<Self, StateError> {
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        let map = open.get_or_insert_with(HashMap::new);
        map.retain(|_, w| w.strong_count() > 0);
        let shared = match map.get(&key).and_then(Weak::upgrade) {
            Some(db) => db,
            None => {
                let fresh = SledStore::open(path)?;
                let db = fresh.db;
                // Canonical once it exists (the first open creates it).
                let key = std::fs::canonicalize(path).unwrap_or(key);
                map.insert(key, Arc::downgrade(&db));
                db
            }
        };
        let tree = pair_tree(&shared, pair)?;
        Ok(SledStore { db: shared, tree })
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.tree.get(key).map_err(db_err)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StateError> {
        self.tree
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
        self.tree.apply_batch(batch).map_err(db_err)
    }

    fn flush(&self) -> Result<(), StateError> {
        self.db.flush().map(|_| ()).map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_sled_is_an_error_naming_the_remedy() {
        let path = Path::new("/var/lib/skladsync/state");
        // What sled does on some damaged files.
        let err = match guarded_open(path, || {
            let pages: Vec<sled::Db> = Vec::new();
            let i = pages.len() + 7;
            Ok(pages[i].clone())
        }) {
            Ok(_) => panic!("opened"),
            Err(e) => e,
        };
        let text = err.to_string();
        assert!(
            text.starts_with("state directory /var/lib/skladsync/state: the database cannot be read (sled failed: index out of bounds"),
            "{text}"
        );
        assert!(
            text.contains("\"Rebuilding lost state\" in docs/runner.md"),
            "{text}"
        );
        // The thread is usable and quiet is off again.
        assert!(!QUIET.with(Cell::get));
    }

    #[test]
    fn sled_errors_are_damage_with_the_remedy() {
        let path = Path::new("/s");
        let err = match guarded_open(path, || Err(sled::Error::Unsupported("bad conf".into()))) {
            Ok(_) => panic!("opened"),
            Err(e) => e,
        };
        assert!(matches!(err, StateError::Damaged { .. }), "{err:?}");
        assert!(err.to_string().contains("bad conf"), "{err}");
    }
}
