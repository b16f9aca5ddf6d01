//! Range checks of the runner config (every problem, each named by its key), and a
//! "did you mean" for unknown keys.

use std::time::Duration;

use super::{Config, Interval};

/// The longest time limit of one API call the config accepts (МойСклад's own limit on
/// processing a request).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// The most requests per second `crm.rate_limit` accepts (retailCRM allows 10 per key; the
/// emulators more).
pub const MAX_CRM_RATE: u32 = 1000;

/// The longest interval accepted (30 days).
pub const MAX_INTERVAL: Duration = Duration::from_secs(30 * 86_400);

/// The most effects one plan may be allowed.
const MAX_EFFECTS: usize = 1_000_000;
/// The least and the most memory budget of one evaluation.
const MIN_EVAL_BYTES: super::ByteSize = super::ByteSize(1 << 20);
const MAX_EVAL_BYTES: super::ByteSize = super::ByteSize(8 << 30);
/// The most rows one part of a stock pass may be given (`0`, the whole pass, aside).
pub const MAX_STOCK_PART_ROWS: usize = 10_000_000;

/// The most journal entries kept.
pub const MAX_JOURNAL_ENTRIES: usize = 100_000;

/// The most days a journal entry is kept.
pub const MAX_JOURNAL_DAYS: u32 = 3650;

/// Every problem of a parsed config, each starting with the key it is about.
pub(super) fn problems(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if cfg.crm.api_key.is_empty() {
        out.push("crm.api_key is missing (or set SKLADSYNC_CRM_API_KEY)".into());
    }
    if cfg.moysklad.token.is_empty()
        && (cfg.moysklad.login.is_empty() || cfg.moysklad.password.is_empty())
    {
        out.push("moysklad needs `token`, or `login` and `password` (or SKLADSYNC_MS_TOKEN / SKLADSYNC_MS_LOGIN + SKLADSYNC_MS_PASSWORD)".into());
    }

    http_url("crm.url", &cfg.crm.url, &mut out);
    http_url("moysklad.url", &cfg.moysklad.url, &mut out);
    if let Some(u) = &cfg.webhooks.public_url {
        http_url("webhooks.public_url", u, &mut out);
    }

    if cfg.crm.rate_limit == 0 || cfg.crm.rate_limit > MAX_CRM_RATE {
        out.push(format!(
            "crm.rate_limit ({}) must be between 1 and {MAX_CRM_RATE} requests per second (retailCRM allows 10)",
            cfg.crm.rate_limit
        ));
    }

    timeouts("crm", cfg.crm.timeout, cfg.crm.connect_timeout, &mut out);
    timeouts(
        "moysklad",
        cfg.moysklad.timeout,
        cfg.moysklad.connect_timeout,
        &mut out,
    );

    let i = &cfg.intervals;
    for (name, v) in [
        ("crm_poll", i.crm_poll),
        ("stock", i.stock),
        ("purchase_prices", i.purchase_prices),
        ("reconcile", i.reconcile),
        ("retry_min", i.retry_min),
        ("retry_max", i.retry_max),
        ("reference_ttl", i.reference_ttl),
    ] {
        if v.0.is_zero() {
            out.push(format!("intervals.{name} must be more than zero"));
        } else if v.0 > MAX_INTERVAL {
            out.push(format!(
                "intervals.{name} ({v}) is longer than the most accepted, {}",
                Interval(MAX_INTERVAL)
            ));
        }
    }
    if i.retry_min.0 > i.retry_max.0 {
        out.push(format!(
            "intervals.retry_min ({}) is greater than intervals.retry_max ({})",
            i.retry_min, i.retry_max
        ));
    }

    let l = &cfg.limits;
    if l.max_effects == 0 || l.max_effects > MAX_EFFECTS {
        out.push(format!(
            "limits.max_effects ({}) must be between 1 and {MAX_EFFECTS}",
            l.max_effects
        ));
    }
    if l.max_eval_bytes.0 < MIN_EVAL_BYTES.0 || l.max_eval_bytes.0 > MAX_EVAL_BYTES.0 {
        out.push(format!(
            "limits.max_eval_bytes ({}) must be between {MIN_EVAL_BYTES} and {MAX_EVAL_BYTES}",
            l.max_eval_bytes
        ));
    }
    if l.stock_part_rows > MAX_STOCK_PART_ROWS {
        out.push(format!(
            "limits.stock_part_rows ({}) must be between 1 and {MAX_STOCK_PART_ROWS} rows, \
             or 0 for the whole stock pass in one event",
            l.stock_part_rows
        ));
    }

    let j = &cfg.journal;
    if j.max_entries == 0 || j.max_entries > MAX_JOURNAL_ENTRIES {
        out.push(format!(
            "journal.max_entries ({}) must be between 1 and {MAX_JOURNAL_ENTRIES}",
            j.max_entries
        ));
    }
    if j.max_days == 0 || j.max_days > MAX_JOURNAL_DAYS {
        out.push(format!(
            "journal.max_days ({}) must be between 1 and {MAX_JOURNAL_DAYS}",
            j.max_days
        ));
    }
    out
}

fn http_url(key: &str, text: &str, out: &mut Vec<String>) {
    match url::Url::parse(text) {
        Err(e) => out.push(format!("{key} ({text:?}) is not a URL: {e}")),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => out.push(format!(
            "{key} ({text:?}) must be an http:// or https:// URL"
        )),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => {
            out.push(format!("{key} ({text:?}) has no host"))
        }
        Ok(_) => {}
    }
}

fn timeouts(side: &str, total: Interval, connect: Interval, out: &mut Vec<String>) {
    if total.0.is_zero() {
        out.push(format!("{side}.timeout must be more than zero"));
    } else if total.0 > MAX_TIMEOUT {
        out.push(format!(
            "{side}.timeout ({total}) is longer than the most accepted, {}",
            Interval(MAX_TIMEOUT)
        ));
    }
    if connect.0.is_zero() {
        out.push(format!("{side}.connect_timeout must be more than zero"));
    } else if connect.0 > total.0 && !total.0.is_zero() {
        out.push(format!(
            "{side}.connect_timeout ({connect}) is longer than {side}.timeout ({total})"
        ));
    }
}

/// A YAML error message with a suggestion added when it is about an unknown key:
/// "crm: unknown field `rate_limt` (did you mean `rate_limit`?), expected one of …".
pub(super) fn explain_yaml_error(message: &str) -> String {
    const MARK: &str = "unknown field `";
    let Some(at) = message.find(MARK) else {
        return message.to_string();
    };
    let name_start = at + MARK.len();
    let Some(name_len) = message[name_start..].find('`') else {
        return message.to_string();
    };
    let name = &message[name_start..name_start + name_len];
    let after = name_start + name_len + 1;
    let expected: Vec<&str> = message[after..]
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| !s.is_empty())
        .collect();
    match closest(name, &expected) {
        Some(best) => format!(
            "{} (did you mean `{best}`?){}",
            &message[..after],
            &message[after..]
        ),
        None => message.to_string(),
    }
}

/// The candidate nearest to `name` by edit distance, if it is near enough to be a typo.
fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_key() {
        let m = "crm: unknown field `rate_limt`, expected one of `url`, `api_key`, `rate_limit`, `history_start` at line 3 column 3";
        let got = explain_yaml_error(m);
        assert!(
            got.starts_with(
                "crm: unknown field `rate_limt` (did you mean `rate_limit`?), expected one of"
            ),
            "{got}"
        );
        let far = "unknown field `zzzzzzzz`, expected `crm` at line 1 column 1";
        assert_eq!(explain_yaml_error(far), far);
        assert_eq!(explain_yaml_error("something else"), "something else");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
