//! Lookups gathered across the orders waiting in the inbox (issue 13, lever c).
//!
//! The rules are not read: the runner learns, from the evaluations it runs, which МойСклад
//! lookups of one field (`lookup("moysklad", E, {f: v})`) took their value `v` straight from
//! the event (e.g. `customerorder.externalCode` = the order id, `counterparty.phone` = the
//! order's phone). Before evaluating an order event it asks those lookups for the orders read
//! ahead (see `daemon::prefetch`) in one request per lookup kind — `filter=f=v1;f=v2;…`, which
//! МойСклад takes as an OR — and keeps each value's rows for a short while. A later evaluation
//! asking exactly that lookup gets them without a request.
//!
//! What keeps the answers right:
//! - `=` is an exact match, so the rows of a value are the rows whose field is that value; when
//!   МойСклад returns a row whose field equals none of the values exactly (a match this code
//!   cannot attribute), the whole batch is thrown away;
//! - every МойСклад write the runner makes drops the answers it may change: those of that
//!   entity type whose value the written entity now has (compared loosely: case, spaces and
//!   punctuation ignored) or whose rows hold the written entity; a delete drops the type's;
//! - answers live [`MAX_AGE`] at most (a change made by someone else is seen as late as it
//!   would be by a lookup made that long before).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};

use crate::clients::moysklad::{ListQuery, MoyskladClient, MoyskladError};

/// How long a gathered answer is used.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// Values per request.
pub const MAX_VALUES: usize = 50;
/// How deep a value is looked for in an event.
const MAX_DEPTH: usize = 4;

/// A lookup learned: entity, field, and where its value is in the event's `order`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Template {
    /// The МойСклад entity.
    pub entity: String,
    /// The filter field.
    pub field: String,
    /// The path of the value under the event payload's root object.
    pub path: Vec<String>,
}

type Key = (String, String, String);

#[derive(Debug, Default)]
struct Inner {
    templates: HashMap<String, BTreeSet<Template>>,
    answers: HashMap<Key, (Instant, Vec<Json>)>,
}

/// Learned lookups and gathered answers, shared by the worker, the evaluations and the
/// applier.
#[derive(Debug, Default)]
pub struct LookupPrefetch {
    inner: Mutex<Inner>,
}

/// The text of a scalar filter value (strings, numbers); `None` for anything else.
pub fn scalar_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) if !s.is_empty() && !s.contains(';') => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A single-field lookup's field and value text.
pub fn single(filter: &Map<String, Json>) -> Option<(&str, String)> {
    if filter.len() != 1 {
        return None;
    }
    let (k, v) = filter.iter().next()?;
    Some((k.as_str(), scalar_text(v)?))
}

/// Whether a create among `creates` (`(entity, body)`) may make a row one of `lookups`
/// (`(entity, field, value)`, as recorded by an evaluation) would find: same entity type and
/// the body's field loosely the value. A lookup of several fields (recorded with an empty
/// field) may find any create of its type.
pub fn may_find(lookups: &[(String, String, String)], creates: &[(String, Json)]) -> bool {
    lookups.iter().any(|(entity, field, value)| {
        creates.iter().any(|(e, body)| {
            e == entity
                && (field.is_empty()
                    || body
                        .get(field)
                        .and_then(scalar_text)
                        .is_some_and(|t| loose(&t) == loose(value)))
        })
    })
}

fn loose(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn find_paths(v: &Json, want: &str, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if path.len() > MAX_DEPTH {
        return;
    }
    match v {
        Json::Object(m) => {
            for (k, child) in m {
                path.push(k.clone());
                find_paths(child, want, path, out);
                path.pop();
            }
        }
        other => {
            if !path.is_empty() && scalar_text(other).as_deref() == Some(want) {
                out.push(path.clone());
            }
        }
    }
}

/// The value at `path` in `v`.
pub fn at<'a>(v: &'a Json, path: &[String]) -> Option<&'a Json> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

impl LookupPrefetch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Learns, from one evaluation of `event` over `root` (the payload's object the values
    /// are looked for in), which of its `lookups` (entity, field, value) took a value of it.
    pub fn learn(&self, event: &str, root: &Json, lookups: &[(String, String, String)]) {
        let mut found = Vec::new();
        for (entity, field, value) in lookups {
            if field.is_empty() {
                // A lookup of several fields: nothing to gather.
                continue;
            }
            let mut paths = Vec::new();
            find_paths(root, value, &mut Vec::new(), &mut paths);
            for path in paths {
                found.push(Template {
                    entity: entity.clone(),
                    field: field.clone(),
                    path,
                });
            }
        }
        if found.is_empty() {
            return;
        }
        self.lock()
            .templates
            .entry(event.to_string())
            .or_default()
            .extend(found);
    }

    /// The lookups learned for an event.
    pub fn templates(&self, event: &str) -> Vec<Template> {
        self.lock()
            .templates
            .get(event)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A gathered answer to `lookup("moysklad", entity, {field: value})`.
    pub fn answer(&self, entity: &str, field: &str, value: &str) -> Option<Vec<Json>> {
        let key = (entity.to_string(), field.to_string(), value.to_string());
        let mut m = self.lock();
        match m.answers.get(&key) {
            Some((at, rows)) if at.elapsed() < MAX_AGE => Some(rows.clone()),
            Some(_) => {
                m.answers.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Whether an answer for this value is held.
    fn holds(&self, entity: &str, field: &str, value: &str) -> bool {
        self.answer(entity, field, value).is_some()
    }

    /// Asks МойСклад, in one request, the lookups `entity.field = v` for the `values` not yet
    /// answered (at most [`MAX_VALUES`]), and keeps each value's rows. Returns how many values
    /// were answered.
    pub async fn gather(
        &self,
        ms: &MoyskladClient,
        entity: &str,
        field: &str,
        values: &[String],
    ) -> Result<usize, MoyskladError> {
        let mut wanted: Vec<String> = Vec::new();
        for v in values {
            if wanted.len() >= MAX_VALUES {
                break;
            }
            if !wanted.contains(v) && !self.holds(entity, field, v) {
                wanted.push(v.clone());
            }
        }
        if wanted.len() < 2 {
            return Ok(0);
        }
        let mut q = ListQuery::new();
        for v in &wanted {
            q = q.filter_eq(field, v);
        }
        let asked = Instant::now();
        let rows = ms.list_all(entity, &q).await?;
        let mut by_value: HashMap<&str, Vec<Json>> =
            wanted.iter().map(|v| (v.as_str(), Vec::new())).collect();
        for r in rows {
            let text = r.get(field).and_then(scalar_text);
            match text.as_deref().and_then(|t| by_value.get_mut(t)) {
                Some(list) => list.push(r),
                // A row this code cannot attribute: nothing from this batch is used.
                None => return Ok(0),
            }
        }
        let n = by_value.len();
        let mut m = self.lock();
        for (v, rows) in by_value {
            m.answers.insert(
                (entity.to_string(), field.to_string(), v.to_string()),
                (asked, rows),
            );
        }
        Ok(n)
    }

    /// The runner wrote МойСклад `entity` (its answer: the entity as it is now; `None` for a
    /// delete): drops the answers it may change.
    pub fn ms_wrote(&self, entity: &str, row: Option<&Json>) {
        let entity = entity.split('/').next().unwrap_or(entity);
        let mut m = self.lock();
        let Some(row) = row else {
            m.answers.retain(|(e, _, _), _| e != entity);
            return;
        };
        let id = row.get("id").and_then(Json::as_str);
        m.answers.retain(|(e, field, value), (_, rows)| {
            if e != entity {
                return true;
            }
            let now_matches = row
                .get(field)
                .and_then(scalar_text)
                .is_some_and(|t| loose(&t) == loose(value));
            let holds_it = id.is_some_and(|id| {
                rows.iter()
                    .any(|r| r.get("id").and_then(Json::as_str) == Some(id))
            });
            !now_matches && !holds_it
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_create_beside_conflicts_with_lookups_it_may_answer() {
        let creates = vec![(
            "counterparty".to_string(),
            json!({"name": "Петров Иван", "phone": "+7 900 555-00-01", "email": "p@x.ru"}),
        )];
        let by = |e: &str, f: &str, v: &str| vec![(e.to_string(), f.to_string(), v.to_string())];
        // The created body has the looked-up value (spaces and punctuation ignored).
        assert!(may_find(
            &by("counterparty", "phone", "+79005550001"),
            &creates
        ));
        assert!(may_find(&by("counterparty", "email", "P@X.RU"), &creates));
        // Another value, another field's value, another type: no.
        assert!(!may_find(
            &by("counterparty", "phone", "+79005550002"),
            &creates
        ));
        assert!(!may_find(
            &by("counterparty", "inn", "+79005550001"),
            &creates
        ));
        assert!(!may_find(
            &by("customerorder", "phone", "+79005550001"),
            &creates
        ));
        // A lookup of several fields of the type: it may.
        assert!(may_find(&by("counterparty", "", ""), &creates));
        assert!(!may_find(&[], &creates));
    }

    #[test]
    fn learns_where_a_lookup_value_comes_from() {
        let p = LookupPrefetch::default();
        let order = json!({"id": 42, "phone": "+79001234567", "customer": {"email": "a@b.ru"}});
        p.learn(
            "crm.order.changed",
            &order,
            &[
                ("customerorder".into(), "externalCode".into(), "42".into()),
                ("counterparty".into(), "phone".into(), "+79001234567".into()),
                ("counterparty".into(), "email".into(), "a@b.ru".into()),
                ("counterparty".into(), "phone".into(), "89001234567".into()),
            ],
        );
        let t = p.templates("crm.order.changed");
        assert_eq!(t.len(), 3, "{t:?}");
        assert!(t.contains(&Template {
            entity: "customerorder".into(),
            field: "externalCode".into(),
            path: vec!["id".into()],
        }));
        assert!(t.iter().any(|t| t.path == ["customer", "email"]));
        assert!(p.templates("other").is_empty());
    }

    #[test]
    fn our_writes_drop_the_answers_they_may_change() {
        let p = LookupPrefetch::default();
        {
            let mut m = p.lock();
            let at = Instant::now();
            for (f, v, rows) in [
                ("phone", "+7 900 111", vec![]),
                (
                    "phone",
                    "+7900222",
                    vec![json!({"id": "c2", "phone": "+7900222"})],
                ),
                ("email", "x@y.ru", vec![]),
            ] {
                m.answers
                    .insert(("counterparty".into(), f.into(), v.into()), (at, rows));
            }
            m.answers.insert(
                ("customerorder".into(), "externalCode".into(), "5".into()),
                (at, vec![]),
            );
        }
        // A new counterparty with that phone (spelt otherwise): its "none" answer goes.
        p.ms_wrote(
            "counterparty",
            Some(&json!({"id": "c9", "phone": "+7900111", "email": "other@y.ru"})),
        );
        assert!(p.answer("counterparty", "phone", "+7 900 111").is_none());
        assert!(p.answer("counterparty", "email", "x@y.ru").is_some());
        // An update of a counterparty an answer holds: that answer goes.
        p.ms_wrote(
            "counterparty",
            Some(&json!({"id": "c2", "phone": "+7900333"})),
        );
        assert!(p.answer("counterparty", "phone", "+7900222").is_none());
        assert!(p.answer("customerorder", "externalCode", "5").is_some());
        // A delete drops the type's answers.
        p.ms_wrote("customerorder", None);
        assert!(p.answer("customerorder", "externalCode", "5").is_none());
        assert!(p.answer("counterparty", "email", "x@y.ru").is_some());
    }
}
