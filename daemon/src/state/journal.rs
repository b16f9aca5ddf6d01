//! The journal: what went wrong (or was deliberately not done), one entry per (subject, code).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// When it was last written (unix ms).
    pub time: i64,
    /// When it was first written (unix ms).
    pub first: i64,
    /// How many times it was written.
    pub count: u32,
    /// `crm→moysklad`, `moysklad→crm`, `stock`, `settings`, `runner`.
    pub direction: String,
    /// The rule that wrote it (or `runner`).
    pub rule: String,
    /// A stable code (`STORE_NOT_MAPPED`, `MS_API_ERROR`, …).
    pub code: String,
    /// `error`, `warning` or `info`.
    pub level: String,
    /// Human text.
    pub text: String,
    /// Ids of the entities concerned.
    pub subject: Value,
    /// The raw API error, for API failures.
    pub raw: Value,
}

impl JournalEntry {
    /// The identity of an entry: its subject and code.
    pub fn digest(&self) -> String {
        let text = format!("{}\u{1f}{}", self.subject, self.code);
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, text.as_bytes())
            .simple()
            .to_string()
    }

    /// This entry written again over `old`: first time and count carry over.
    pub fn refreshing(mut self, old: &JournalEntry) -> JournalEntry {
        self.first = old.first;
        self.count = old.count.saturating_add(1);
        self
    }
}

/// How much journal is kept: at most `max_entries`, none older than `max_age_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalLimits {
    /// Entries kept (the module keeps 50).
    pub max_entries: usize,
    /// Age limit in milliseconds (the module keeps 5 days).
    pub max_age_ms: i64,
}

impl Default for JournalLimits {
    fn default() -> Self {
        JournalLimits {
            max_entries: 50,
            max_age_ms: 5 * 24 * 3600 * 1000,
        }
    }
}

impl JournalLimits {
    /// Indexes of the entries to keep: young enough, and the newest `max_entries`.
    pub(crate) fn select(&self, entries: Vec<&JournalEntry>, now: i64) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..entries.len())
            .filter(|&i| now - entries[i].time <= self.max_age_ms)
            .collect();
        idx.sort_by(|&a, &b| entries[b].time.cmp(&entries[a].time).then(b.cmp(&a)));
        idx.truncate(self.max_entries);
        idx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SyncState;
    use serde_json::json;

    fn entry(time: i64, code: &str, subject: Value) -> JournalEntry {
        JournalEntry {
            time,
            first: time,
            count: 1,
            direction: "crm→moysklad".into(),
            rule: "r".into(),
            code: code.into(),
            level: "error".into(),
            text: String::new(),
            subject,
            raw: Value::Null,
        }
    }

    #[test]
    fn repeats_refresh_and_limits_cut_oldest_first() {
        let s = SyncState::in_memory();
        let limits = JournalLimits {
            max_entries: 3,
            max_age_ms: 1000,
        };
        s.journal(entry(1, "A", json!({"o": 1})), limits).unwrap();
        s.journal(entry(2, "A", json!({"o": 1})), limits).unwrap();
        let all = s.journal_entries(limits, 2).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].count, all[0].first, all[0].time), (2, 1, 2));
        for i in 0..4 {
            s.journal(entry(10 + i, "B", json!({"o": i})), limits)
                .unwrap();
        }
        let all = s.journal_entries(limits, 13).unwrap();
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|e| e.code == "B"));
        assert_eq!(all[0].time, 13);
        // Too old.
        assert!(s.journal_entries(limits, 5000).unwrap().is_empty());
    }
}
