//! A damaged, missing, foreign or unusable state directory is a clear error naming the
//! directory and the remedy, never a panic (sled panics inside `open` on some damaged files).

use std::path::{Path, PathBuf};

use serde_json::json;
use skladsync_runner::state::{Link, StateError, SyncState};

/// A state with some links and a cursor, closed; `reopened`: opened and closed once more, as
/// a runner that restarted.
fn written_state(dir: &Path, reopened: bool) -> PathBuf {
    let path = dir.join("state");
    let s = SyncState::open(&path).expect("open a new state");
    for n in 0..200 {
        s.put_link(&Link {
            kind: "order".into(),
            ids: [
                ("crm".to_string(), json!(n)),
                ("moysklad".to_string(), json!(format!("ms-{n}"))),
            ]
            .into_iter()
            .collect(),
        })
        .expect("link");
    }
    s.set_cursor("crm.history.orders", &json!(42))
        .expect("cursor");
    s.flush().expect("flush");
    drop(s);
    if reopened {
        drop(SyncState::open(&path).expect("reopen"));
    }
    path
}

/// A copy of the state directory `from` at `to`.
fn copy_state(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("ls") {
        let entry = entry.expect("entry");
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        } else {
            std::fs::create_dir_all(to.join(entry.file_name())).expect("mkdir");
        }
    }
}

fn truncate(file: &Path, len: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .expect("open");
    f.set_len(len).expect("truncate");
}

/// Opens `path` and expects a refusal that names it and says what to do.
fn refused(path: &Path, what: &str, remedy: &str) -> String {
    let err = match SyncState::open(path) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e,
    };
    assert!(
        matches!(err, StateError::Damaged { .. }),
        "not a Damaged error: {err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("state directory {}: ", path.display())),
        "{text}"
    );
    assert!(text.contains(what), "wanted {what:?} in: {text}");
    assert!(text.contains(remedy), "wanted {remedy:?} in: {text}");
    text
}

const REBUILD: &str = "see \"Rebuilding lost state\" in docs/runner.md";

#[test]
fn a_new_state_is_marked_as_skladsyncs_and_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = written_state(dir.path(), true);
    let s = SyncState::open(&path).expect("reopen");
    assert_eq!(
        s.misc("format").expect("read"),
        Some(json!({"app": "skladsync", "version": 1}))
    );
    assert_eq!(s.links().expect("links").len(), 200);
}

#[test]
fn a_truncated_db_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = written_state(dir.path(), true);
    let len = std::fs::metadata(path.join("db")).expect("db").len();
    // Cuts across the file: none may panic; each is refused as damage, or opens with what
    // sled recovered up to its last whole record (the marker, written first, still there:
    // the cut lost recent writes, which the rebuild rules cover, not the state).
    let mut refused_cuts = 0;
    for k in 0..12u64 {
        let keep = len * k / 12;
        let copy = dir.path().join(format!("cut-{keep}"));
        copy_state(&path, &copy);
        truncate(&copy.join("db"), keep);
        match SyncState::open(&copy) {
            Err(e) => {
                refused_cuts += 1;
                let text = e.to_string();
                assert!(matches!(e, StateError::Damaged { .. }), "{keep}: {e:?}");
                assert!(text.contains(&copy.display().to_string()), "{text}");
                assert!(text.contains(REBUILD), "{text}");
            }
            Ok(s) => assert_eq!(
                s.misc("format").expect("read"),
                Some(json!({"app": "skladsync", "version": 1})),
                "cut at {keep} of {len} opened without the marker"
            ),
        }
    }
    assert!(refused_cuts > 0, "no cut was refused");
}

#[test]
fn a_db_file_truncated_to_nothing_is_refused() {
    for reopened in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = written_state(dir.path(), reopened);
        truncate(&path.join("db"), 0);
        refused(&path, "the database cannot be read", REBUILD);
    }
}

#[test]
fn a_deleted_db_file_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = written_state(dir.path(), true);
    std::fs::remove_file(path.join("db")).expect("rm db");
    assert!(path.join("conf").exists());
    let text = refused(&path, "the database file `db` is missing", REBUILD);
    assert!(text.contains("conf"), "{text}");
    // Nothing was recreated over the remains.
    assert!(!path.join("db").exists());
}

#[test]
fn a_deleted_conf_file_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = written_state(dir.path(), true);
    std::fs::remove_file(path.join("conf")).expect("rm conf");
    refused(&path, "the database file `conf` is missing", REBUILD);
}

#[test]
fn a_foreign_directory_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("photos");
    std::fs::create_dir_all(&path).expect("mkdir");
    std::fs::write(path.join("cat.jpg"), b"\xff\xd8\xff").expect("write");
    std::fs::write(path.join("notes.txt"), b"hello").expect("write");
    let text = refused(
        &path,
        "holds files that are not a skladsync state (cat.jpg, notes.txt)",
        "point state.path at a new or empty directory",
    );
    assert!(text.contains("docs/runner.md"), "{text}");
    // Untouched: no sled files added, permissions kept.
    let names: Vec<_> = std::fs::read_dir(&path)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn another_programs_sled_database_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other");
    {
        let db = sled::open(&path).expect("sled");
        db.insert(b"users/1", b"alice".to_vec()).expect("insert");
        db.flush().expect("flush");
    }
    refused(
        &path,
        "a sled database without skladsync's format marker that holds other data (key \"users/1\")",
        "It is not a skladsync state",
    );
    // The other program's data is still there, unmarked.
    let db = sled::open(&path).expect("sled");
    assert!(db.get(b"misc/format").expect("get").is_none());
    assert_eq!(db.len(), 1);
}

#[test]
fn a_sled_database_with_other_trees_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other");
    {
        let db = sled::open(&path).expect("sled");
        db.open_tree("accounts")
            .expect("tree")
            .insert(b"1", b"x".to_vec())
            .expect("insert");
        db.flush().expect("flush");
    }
    refused(
        &path,
        "a sled database of another program",
        "It is not a skladsync state",
    );
}

#[test]
fn a_state_from_before_the_marker_is_recognised_by_its_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old");
    {
        let db = sled::open(&path).expect("sled");
        db.insert(b"cursor/crm.history.orders", b"42".to_vec())
            .expect("insert");
        db.insert(b"outbox", b"null".to_vec()).expect("insert");
        db.flush().expect("flush");
    }
    let s = SyncState::open(&path).expect("an unmarked state of ours opens");
    assert_eq!(
        s.cursor("crm.history.orders").expect("cursor"),
        Some(json!(42))
    );
    assert_eq!(
        s.misc("format").expect("read"),
        Some(json!({"app": "skladsync", "version": 1}))
    );
}

#[test]
fn an_emptied_database_is_not_taken_for_a_new_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("emptied");
    {
        // sled's files, nothing in them (a state whose data was lost, or replaced).
        let db = sled::open(&path).expect("sled");
        db.flush().expect("flush");
    }
    refused(&path, "hold nothing", REBUILD);
}

#[test]
fn a_newer_format_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = written_state(dir.path(), true);
    {
        let db = sled::open(&path).expect("sled");
        db.insert(
            b"misc/format",
            br#"{"app":"skladsync","version":99}"#.to_vec(),
        )
        .expect("insert");
        db.flush().expect("flush");
    }
    refused(
        &path,
        "newer skladsync (state format 99",
        "Run the skladsync version that wrote it",
    );
}

#[test]
fn a_file_where_the_directory_should_be_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state");
    std::fs::write(&path, b"not a directory").expect("write");
    refused(
        &path,
        "is not a directory",
        "state.path must name a directory",
    );
    // Its content and mode are left as they were.
    assert_eq!(std::fs::read(&path).expect("read"), b"not a directory");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_ne!(mode, 0o700);
    }
    // A path under a file.
    refused(&path.join("inner"), "not a directory", "state.path");
}

#[test]
fn a_state_open_elsewhere_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = written_state(dir.path(), true);
    let first = SyncState::open(&path).expect("open");
    refused(
        &path,
        "in use by another process",
        "stop that process first",
    );
    drop(first);
}

#[test]
fn a_creation_cut_short_is_not_taken_for_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state");
    // What a runner killed while creating its state leaves: sled's files without the marker,
    // under the hidden name the state is built at before it is renamed into place.
    let leftover = dir.path().join(".state.new");
    {
        let db = sled::open(&leftover).expect("sled");
        db.flush().expect("flush");
    }
    let s = SyncState::open(&path).expect("a new state");
    assert_eq!(
        s.misc("format").expect("read"),
        Some(json!({"app": "skladsync", "version": 1}))
    );
    drop(s);
    assert!(!leftover.exists());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("state")]);
    // An empty directory made beforehand is filled the same way.
    let empty = dir.path().join("made-by-hand");
    std::fs::create_dir(&empty).expect("mkdir");
    drop(SyncState::open(&empty).expect("state in an empty directory"));
    assert!(SyncState::open(&empty).is_ok());
}
