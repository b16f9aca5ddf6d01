//! The `record:` section: the daemon keeps what it evaluated (each event, what the two
//! systems answered its lookups, and the plan) as replayable cases.

use std::path::PathBuf;

use serde::Deserialize;

use super::receiver::ByteSize;

/// `record:` in the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// Record while the daemon runs (default off).
    pub enabled: bool,
    /// The folder the recordings go to (default `recordings` next to the state; relative to
    /// the config file).
    pub dir: Option<PathBuf>,
    /// A recording file is closed when it reaches this size (default 16 MiB).
    pub max_file_bytes: ByteSize,
    /// At most this many files are kept; the oldest goes first (default 8).
    pub max_files: usize,
    /// Keys whose text values (and every text under them) are replaced by a keyed hash
    /// before anything is written: the same value always gives the same hash, so lookups by
    /// it still replay. Default: personal data of buyers.
    pub redact: Vec<String>,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            enabled: false,
            dir: None,
            max_file_bytes: ByteSize(16 * 1024 * 1024),
            max_files: 8,
            redact: [
                "phone",
                "phones",
                "email",
                "firstName",
                "lastName",
                "patronymic",
                "address",
                "actualAddress",
                "legalAddress",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        }
    }
}

impl RecordConfig {
    /// What is wrong with the section, each with its key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_files == 0 {
            out.push("record.max_files: at least 1".to_string());
        }
        if self.max_file_bytes.0 < 4096 {
            out.push(format!(
                "record.max_file_bytes: {} is too small for one recorded event (at least 4 KiB)",
                self.max_file_bytes
            ));
        }
        out
    }
}
