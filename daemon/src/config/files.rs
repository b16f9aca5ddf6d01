//! Config files that hold credentials: written owner-only, and a warning when one is readable
//! by others.

use std::io::Write;
use std::path::Path;

/// Writes `contents` to `path` as a file only its owner can read (mode 0600 on unix): the
/// text goes to a new file created with that mode beside `path`, which then replaces `path`.
/// No moment exists at which the text is readable by others, even when `path` existed with
/// a wider mode.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        )
    })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A leftover of an earlier attempt of this process id.
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(contents)?;
        f.sync_all()
    });
    let result = written.and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The keys of a config file that hold credentials.
const CREDENTIAL_KEYS: [(&str, &str); 6] = [
    ("crm", "api_key"),
    ("moysklad", "login"),
    ("moysklad", "password"),
    ("moysklad", "token"),
    ("webhooks", "secret"),
    ("http", "operator_token"),
];

/// A warning when the config file at `path` holds credentials and can be read by its group
/// or by others; `None` when it holds none, is owner-only, or cannot be examined (reading it
/// is [`Config::load`](super::Config::load)'s business, and fails there with a clear error).
pub fn credential_exposure(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        if mode & 0o044 == 0 {
            return None;
        }
        let text = std::fs::read_to_string(path).ok()?;
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
        let held: Vec<String> = CREDENTIAL_KEYS
            .iter()
            .filter(|(section, key)| {
                doc.get(section).and_then(|s| s.get(key)).is_some_and(|v| {
                    !matches!(v, serde_yaml::Value::Null)
                        && v.as_str().is_none_or(|s| !s.is_empty())
                })
            })
            .map(|(section, key)| format!("{section}.{key}"))
            .collect();
        if held.is_empty() {
            return None;
        }
        Some(format!(
            "config file {p} holds credentials ({keys}) and is readable by {who} (mode {mode:04o}): \
             run `chmod 600 {p}`, or move the credentials to the environment \
             (SKLADSYNC_CRM_API_KEY, SKLADSYNC_MS_TOKEN, …)",
            p = path.display(),
            keys = held.join(", "),
            who = match (mode & 0o040 != 0, mode & 0o004 != 0) {
                (true, true) => "its group and by others",
                (true, false) => "its group",
                _ => "others",
            },
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600_even_over_a_wider_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("skladsync.yaml");
        std::fs::write(&p, "old").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_private(&p, b"crm: {api_key: k}\n").expect("write_private");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(
            std::fs::read_to_string(&p).expect("read"),
            "crm: {api_key: k}\n"
        );
        let fresh = dir.path().join("new.yaml");
        write_private(&fresh, b"x").expect("write_private");
        assert_eq!(mode(&fresh), 0o600);
        // Nothing left beside them.
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 2);
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_file_with_credentials_is_reported() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.yaml");
        std::fs::write(
            &p,
            "crm: {url: x, api_key: secret-1}\nmoysklad: {token: t}\n",
        )
        .expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let w = credential_exposure(&p).expect("a warning");
        assert!(w.contains("crm.api_key, moysklad.token"), "{w}");
        assert!(w.contains("chmod 600"), "{w}");
        assert!(w.contains(&p.display().to_string()), "{w}");
        assert!(!w.contains("secret-1"), "{w}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(credential_exposure(&p), None);
        // Readable, but the credentials come from the environment.
        std::fs::write(&p, "crm: {url: x}\nmoysklad: {token: ''}\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(credential_exposure(&p), None);
    }
}
