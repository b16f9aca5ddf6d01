//! The demo's printed summary: per cycle what the rules did in each direction, then the
//! orders on both sides, the stock rows that changed in CRM, documents, and the journal.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::apply::StatsSnapshot;
use crate::daemon::{now_ms, Daemon};
use crate::state::JournalEntry;

use super::lab::Lab;

/// One cycle: what it was, and what changed in the counters during it.
#[derive(Debug, Default)]
struct CycleNote {
    title: String,
    events: BTreeMap<String, u64>,
    effects: BTreeMap<String, u64>,
    links: u64,
    journal: u64,
    failures: u64,
}

/// One order on both sides at the end.
#[derive(Debug)]
struct OrderLine {
    number: String,
    crm_status: String,
    shipped: bool,
    ms_state: Option<String>,
}

/// The summary.
#[derive(Debug, Default)]
pub struct Summary {
    rules: String,
    start_stock: BTreeMap<(String, String), f64>,
    start_docs: BTreeMap<String, usize>,
    last: StatsSnapshot,
    cycles: Vec<CycleNote>,
    orders: Vec<OrderLine>,
    stock_rows: Vec<(String, String, Option<f64>, f64)>,
    docs: BTreeMap<String, (usize, usize)>,
    journal: Vec<JournalEntry>,
    totals: StatsSnapshot,
    elapsed: Duration,
}

fn stock(lab: &Lab) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for o in lab.crm.offers() {
        let x = o.xml_id.clone().unwrap_or_else(|| o.name.clone());
        for (store, s) in &o.stores {
            out.insert((x.clone(), store.clone()), s.quantity);
        }
    }
    out
}

const DOCS: &[&str] = &[
    "customerorder",
    "counterparty",
    "demand",
    "paymentin",
    "cashin",
    "move",
    "salesreturn",
];

fn docs(lab: &Lab) -> BTreeMap<String, usize> {
    DOCS.iter()
        .map(|t| (t.to_string(), lab.ms.list(t).len()))
        .collect()
}

fn delta(now: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    now.iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

impl Summary {
    /// Records the starting point.
    pub fn begin(lab: &Lab, daemon: &Daemon, rules: &Path) -> Summary {
        let _ = daemon;
        Summary {
            rules: rules.display().to_string(),
            start_stock: stock(lab),
            start_docs: docs(lab),
            ..Summary::default()
        }
    }

    /// Records a cycle.
    pub fn cycle(&mut self, lab: &Lab, daemon: &Daemon, title: &str) {
        let _ = lab;
        let now = daemon.stats();
        self.cycles.push(CycleNote {
            title: title.to_string(),
            events: delta(&now.events, &self.last.events),
            effects: delta(&now.effects, &self.last.effects),
            links: now.links.saturating_sub(self.last.links),
            journal: now.journal.saturating_sub(self.last.journal),
            failures: now.failures.saturating_sub(self.last.failures),
        });
        self.last = now;
    }

    /// Records the end state.
    pub fn finish(&mut self, lab: &Lab, daemon: &Daemon, elapsed: Duration) {
        self.elapsed = elapsed;
        self.totals = daemon.stats();
        let ms_orders = lab.ms.list("customerorder");
        for o in lab.crm.orders() {
            let number = o["number"].as_str().unwrap_or_default().to_string();
            let ms = daemon
                .state()
                .linked("order", "crm", &o["id"])
                .ok()
                .flatten()
                .and_then(|l| l.ids.get("moysklad").cloned())
                .and_then(|id| ms_orders.iter().find(|m| m["id"] == id).cloned());
            let ms_state = ms.map(|m| {
                let id = m["state"]["meta"]["href"]
                    .as_str()
                    .and_then(|h| h.rsplit('/').next())
                    .unwrap_or_default()
                    .to_string();
                lab.shop
                    .state_names
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| "—".to_string())
            });
            self.orders.push(OrderLine {
                number,
                crm_status: o["status"].as_str().unwrap_or_default().to_string(),
                shipped: o["shipped"] == Value::Bool(true),
                ms_state,
            });
        }
        let end = stock(lab);
        for ((x, store), q) in &end {
            let before = self.start_stock.get(&(x.clone(), store.clone())).copied();
            if before != Some(*q) {
                self.stock_rows.push((x.clone(), store.clone(), before, *q));
            }
        }
        let end_docs = docs(lab);
        for (t, n) in end_docs {
            let before = self.start_docs.get(&t).copied().unwrap_or(0);
            self.docs.insert(t, (before, n));
        }
        self.journal = daemon
            .state()
            .journal_entries(daemon.journal_limits(), now_ms())
            .unwrap_or_default();
    }
}

fn direction(effect: &str) -> &'static str {
    if effect.contains(" moysklad.") {
        "CRM → МойСклад"
    } else if effect.contains(" crm.") {
        "МойСклад → CRM"
    } else {
        "other"
    }
}

fn short(text: &str, n: usize) -> String {
    let t: String = text.chars().take(n).collect();
    if text.chars().count() > n {
        format!("{t}…")
    } else {
        t
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "skladsync demo: a sample shop synced between the retailCRM and МойСклад emulators (loopback, no accounts)")?;
        writeln!(f, "rules: {}", self.rules)?;
        for (i, c) in self.cycles.iter().enumerate() {
            writeln!(f)?;
            writeln!(f, "Cycle {}: {}", i + 1, c.title)?;
            if c.events.is_empty() {
                writeln!(f, "  no events")?;
            } else {
                let ev: Vec<String> = c.events.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
                writeln!(f, "  events: {}", ev.join(", "))?;
            }
            for dir in ["CRM → МойСклад", "МойСклад → CRM"] {
                let eff: Vec<String> = c
                    .effects
                    .iter()
                    .filter(|(k, _)| direction(k) == dir)
                    .map(|(k, v)| format!("{k} ×{v}"))
                    .collect();
                if !eff.is_empty() {
                    writeln!(f, "  {dir}: {}", eff.join(", "))?;
                }
            }
            writeln!(
                f,
                "  links written: {}, journal entries: {}, failed effects (retried): {}",
                c.links, c.journal, c.failures
            )?;
        }
        writeln!(f)?;
        writeln!(f, "Orders at the end")?;
        writeln!(
            f,
            "  {:<8} {:<20} {:<8} МойСклад order state",
            "number", "CRM status", "shipped"
        )?;
        for o in &self.orders {
            writeln!(
                f,
                "  {:<8} {:<20} {:<8} {}",
                o.number,
                o.crm_status,
                if o.shipped { "yes" } else { "no" },
                o.ms_state.as_deref().unwrap_or("not uploaded")
            )?;
        }
        writeln!(f)?;
        writeln!(f, "Stock rows updated in CRM: {}", self.stock_rows.len())?;
        for (x, store, a, b) in &self.stock_rows {
            let a = a.map_or_else(|| "—".to_string(), |a| a.to_string());
            writeln!(f, "  {x:<14} {store:<12} {a} → {b}")?;
        }
        writeln!(f)?;
        writeln!(f, "Documents in МойСклад (before → after)")?;
        for (t, (a, b)) in &self.docs {
            if a != b || *b > 0 {
                writeln!(f, "  {t:<14} {a} → {b}")?;
            }
        }
        writeln!(f)?;
        writeln!(f, "Journal: {} entries", self.journal.len())?;
        for e in &self.journal {
            writeln!(
                f,
                "  {:<7} {:<24} {} {}",
                e.level,
                e.code,
                short(&e.text, 90),
                if e.subject.is_null() {
                    String::new()
                } else {
                    short(&e.subject.to_string(), 60)
                }
            )?;
        }
        writeln!(f)?;
        let t = &self.totals;
        writeln!(
            f,
            "Done in {:.1} s: {} events, {} effects, {} links, {} echoes of our own writes ignored.",
            self.elapsed.as_secs_f64(),
            t.events.values().sum::<u64>(),
            t.effects.values().sum::<u64>(),
            t.links,
            t.echoes
        )
    }
}
