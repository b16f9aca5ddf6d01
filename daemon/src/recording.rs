//! Recordings: every event the daemon evaluates, with what the two systems answered its
//! lookups and the plan it made, written as replayable cases (JSON Lines, one case a line).
//!
//! A recording line is a case file's content: `doc` (when, which subject, which rules),
//! `event`, `world`, `settings` (the `connection` block the daemon computed at start: the
//! accounts' time zones) and `expect` (the plan, or `{error: …}`). So `skladsync test DIR`
//! replays a recording (do the rules as they are now still make the plans the daemon made?),
//! `skladsync diff DIR --base …` shows what a rule change would do to real traffic, and
//! `skladsync case new --from FILE:LINE` turns one line into a case file.
//!
//! Files rotate: a file is closed at `max_file_bytes`, at most `max_files` are kept (the
//! oldest is deleted). Text under the `redact` keys is replaced by a keyed hash before it is
//! written; the key lives in the state, so one deployment always hashes a value the same way
//! (lookups by a hashed phone still replay) and nobody can hash guesses to find a value.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

use crate::config::RecordConfig;

/// Prefix of a file of recordings.
const PREFIX: &str = "events-";

/// Where recordings go, and how.
#[derive(Debug)]
pub struct Recordings {
    dir: PathBuf,
    max_file_bytes: u64,
    max_files: usize,
    redact: HashSet<String>,
    key: Vec<u8>,
    current: Mutex<Option<Current>>,
    /// The second and counter of the last file opened.
    last: Mutex<Option<(String, u64)>>,
}

#[derive(Debug)]
struct Current {
    file: std::fs::File,
    bytes: u64,
}

impl Recordings {
    /// Recordings under `dir` with the section's limits; `key` salts the redaction hash.
    pub fn new(cfg: &RecordConfig, dir: PathBuf, key: Vec<u8>) -> std::io::Result<Recordings> {
        std::fs::create_dir_all(&dir)?;
        Ok(Recordings {
            dir,
            max_file_bytes: u64::try_from(cfg.max_file_bytes.0).unwrap_or(u64::MAX),
            max_files: cfg.max_files.max(1),
            redact: cfg.redact.iter().map(|k| k.to_lowercase()).collect(),
            key,
            current: Mutex::new(None),
            last: Mutex::new(None),
        })
    }

    /// The folder written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The redacted form of a text.
    pub fn hash(&self, text: &str) -> String {
        let mut h = Sha256::new();
        h.update(&self.key);
        h.update(text.as_bytes());
        let d = h.finalize();
        let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("redacted:{hex}")
    }

    /// `v` with every text under a redacted key hashed, and every occurrence of such a
    /// text inside other texts too (a counterparty's `name` made of the buyer's names, a
    /// comment quoting the phone): rules that compose texts from redacted values compose the
    /// same hashes on replay.
    pub fn redacted(&self, v: &Json) -> Json {
        let mut secrets = Vec::new();
        self.collect(v, false, &mut secrets);
        secrets.sort_by_key(|s: &String| std::cmp::Reverse(s.chars().count()));
        secrets.dedup();
        let hashes: Vec<(String, String)> = secrets
            .into_iter()
            .map(|s| {
                let h = self.hash(&s);
                (s, h)
            })
            .collect();
        self.redact_in(v, false, &hashes)
    }

    fn collect(&self, v: &Json, hide: bool, out: &mut Vec<String>) {
        match v {
            // Short texts (a flat number, an initial) would hit too much else.
            Json::String(s) if hide && s.chars().count() >= 3 => out.push(s.clone()),
            Json::Array(items) => items.iter().for_each(|i| self.collect(i, hide, out)),
            Json::Object(map) => {
                for (k, x) in map {
                    let h = hide || self.redact.contains(&k.to_lowercase());
                    self.collect(x, h, out);
                }
            }
            _ => {}
        }
    }

    fn redact_in(&self, v: &Json, hide: bool, hashes: &[(String, String)]) -> Json {
        match v {
            Json::String(s) if hide => Json::String(self.hash(s)),
            Json::String(s) => {
                let mut t = s.clone();
                for (secret, hash) in hashes {
                    if t.contains(secret.as_str()) {
                        t = t.replace(secret.as_str(), hash);
                    }
                }
                Json::String(t)
            }
            Json::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|i| self.redact_in(i, hide, hashes))
                    .collect(),
            ),
            Json::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, x)| {
                        let h = hide || self.redact.contains(&k.to_lowercase());
                        (k.clone(), self.redact_in(x, h, hashes))
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Appends one recording (redacted), rotating files as needed.
    pub fn write(&self, case: &Json) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&self.redacted(case)).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let full = cur
            .as_ref()
            .is_some_and(|c| c.bytes > 0 && c.bytes + line.len() as u64 > self.max_file_bytes);
        if cur.is_none() || full {
            *cur = Some(self.next_file()?);
        }
        if let Some(c) = cur.as_mut() {
            c.file.write_all(&line)?;
            c.file.flush()?;
            c.bytes += line.len() as u64;
        }
        Ok(())
    }

    /// The recording files, oldest first.
    pub fn files(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(".jsonl"))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn next_file(&self) -> std::io::Result<Current> {
        let files = self.files()?;
        // Names sort by time, then by a counter for files opened within one second (past
        // every file of that second, deleted ones too: a new file never sorts before an
        // older one).
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string();
        let same_second = format!("{PREFIX}{stamp}-");
        let mut n = files
            .iter()
            .filter_map(|f| f.file_name().and_then(|n| n.to_str()))
            .filter_map(|name| name.strip_prefix(&same_second))
            .filter_map(|rest| rest.trim_end_matches(".jsonl").parse::<u64>().ok())
            .max()
            .map_or(0, |m| m + 1);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, m)) = last.as_ref() {
            if *s == stamp && *m >= n {
                n = m + 1;
            }
        }
        *last = Some((stamp.clone(), n));
        drop(last);
        let path = self.dir.join(format!("{PREFIX}{stamp}-{n:06}.jsonl"));
        // Room for the new one.
        let excess = (files.len() + 1).saturating_sub(self.max_files);
        for old in files.iter().take(excess) {
            std::fs::remove_file(old)?;
        }
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        Ok(Current { file, bytes: 0 })
    }
}

/// A recording line: the case of one evaluation.
///
/// `settings` are the overrides the daemon computed at start (the `connection` block: the
/// accounts' addresses and time zones), so that a replay sees what the daemon saw.
pub fn case_line(
    doc: String,
    event: &skladsync_engine::Event,
    world: &skladsync_engine::Value,
    settings: Json,
    outcome: Result<&skladsync_engine::Plan, String>,
) -> Json {
    let mut ev = serde_json::Map::new();
    ev.insert("event".into(), json!(event.name));
    if let Some(now) = event.now {
        ev.insert("now".into(), json!(now));
    }
    if let Ok(Json::Object(fields)) = serde_json::to_value(&event.payload) {
        for (k, v) in fields {
            if k != "event" && k != "now" {
                ev.insert(k, v);
            }
        }
    }
    let expect = match outcome {
        Ok(plan) => serde_json::to_value(plan).unwrap_or(Json::Null),
        Err(e) => json!({ "error": e }),
    };
    json!({
        "doc": doc,
        "event": Json::Object(ev),
        "world": serde_json::to_value(world).unwrap_or(Json::Null),
        "settings": settings,
        "expect": expect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    fn recordings(dir: &Path, max_file_bytes: usize, max_files: usize) -> Recordings {
        let cfg = RecordConfig {
            enabled: true,
            dir: None,
            max_file_bytes: ByteSize(max_file_bytes),
            max_files,
            ..RecordConfig::default()
        };
        Recordings::new(&cfg, dir.to_path_buf(), b"key".to_vec()).expect("recordings")
    }

    #[test]
    fn redacts_personal_data_the_same_way_everywhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = recordings(dir.path(), 1 << 20, 2);
        let v = json!({
            "counterparty": {"name": "Иванова Анна", "description": "звонить +79031234567"},
            "order": {"number": "A-1", "phone": "+79031234567", "email": "a@b.c",
                      "lastName": "Иванова", "firstName": "Анна",
                      "address": {"city": "Москва", "flat": "12"}, "phones": [{"number": "+7903"}]},
            "customers": [{"phone": "+79031234567", "id": 4}],
        });
        let out = r.redacted(&v);
        let text = out.to_string();
        for secret in [
            "+79031234567",
            "a@b.c",
            "Москва",
            "+7903\"",
            "Иванова",
            "Анна",
        ] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        assert_eq!(out["order"]["number"], "A-1");
        assert_eq!(out["customers"][0]["id"], 4);
        assert_eq!(out["order"]["phone"], out["customers"][0]["phone"]);
        // Composed texts carry the same hashes as the parts.
        assert_eq!(
            out["counterparty"]["name"],
            format!(
                "{} {}",
                out["order"]["lastName"].as_str().unwrap_or_default(),
                out["order"]["firstName"].as_str().unwrap_or_default()
            )
        );
        let other = Recordings::new(
            &RecordConfig::default(),
            dir.path().join("x"),
            b"other".to_vec(),
        )
        .expect("recordings");
        assert_ne!(other.redacted(&v)["order"]["phone"], out["order"]["phone"]);
    }

    #[test]
    fn files_rotate_and_the_oldest_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = recordings(dir.path(), 4096, 3);
        let big = "x".repeat(1500);
        for i in 0..20 {
            r.write(&json!({"doc": format!("n{i}"), "pad": big}))
                .expect("write");
        }
        let files = r.files().expect("files");
        assert_eq!(files.len(), 3, "{files:?}");
        let mut lines = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).expect("read");
            assert!(
                text.len() <= 4096,
                "{} has {} bytes",
                f.display(),
                text.len()
            );
            lines.extend(text.lines().map(|l| {
                serde_json::from_str::<Json>(l).expect("a line is JSON")["doc"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            }));
        }
        // The newest survive, in order.
        assert_eq!(lines.last().map(String::as_str), Some("n19"));
        let nums: Vec<usize> = lines
            .iter()
            .filter_map(|l| l.trim_start_matches('n').parse().ok())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert!(nums[0] > 0, "the oldest were not deleted: {nums:?}");
    }
}
