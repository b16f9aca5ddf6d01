//! Rule coverage across test cases: did each rule fire, was each condition (of the rules
//! and of the flows) seen both true and false, and was each effect guard (`if:` on an
//! effect or a group) seen both taken and not?
//!
//! The percentage counts points: one per rule (it fired in some case) and two per
//! condition and per effect guard (seen true, seen false); a flow's conditions and guards
//! count once, however many rules use the flow. Coverage is covered points / all points × 100 (100 when there are none).

use serde::Serialize;
use skladsync_engine::trace::Outcome;
use skladsync_engine::{RuleSet, Trace};

use super::paint::Paint;

/// One condition.
#[derive(Clone, Debug, Serialize)]
pub struct CondCoverage {
    /// Its text.
    pub text: String,
    /// `path:line:col`.
    pub location: String,
    /// Seen true in some case.
    pub seen_true: bool,
    /// Seen false in some case.
    pub seen_false: bool,
}

/// One rule or flow.
#[derive(Clone, Debug, Serialize)]
pub struct UnitCoverage {
    /// Rule id or flow name.
    pub name: String,
    /// `path:line:col` (rules only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub location: String,
    /// Whether it fired (rules only; always true for flows).
    pub fired: bool,
    /// Its conditions.
    pub conditions: Vec<CondCoverage>,
    /// Its effects' `if:` guards.
    pub branches: Vec<CondCoverage>,
}

/// Coverage of a rule set.
#[derive(Clone, Debug, Serialize)]
pub struct Coverage {
    /// Rules, in evaluation order.
    pub rules: Vec<UnitCoverage>,
    /// Flows.
    pub flows: Vec<UnitCoverage>,
}

fn conds(list: &[(String, String)]) -> Vec<CondCoverage> {
    list.iter()
        .map(|(text, location)| CondCoverage {
            text: text.clone(),
            location: location.clone(),
            seen_true: false,
            seen_false: false,
        })
        .collect()
}

impl Coverage {
    /// Nothing covered yet.
    pub fn new(rules: &RuleSet) -> Coverage {
        Coverage {
            rules: rules
                .rules()
                .into_iter()
                .map(|r| UnitCoverage {
                    name: r.id,
                    location: r.location,
                    fired: false,
                    conditions: conds(&r.conditions),
                    branches: conds(&r.branches),
                })
                .collect(),
            flows: rules
                .flows()
                .into_iter()
                .map(|f| UnitCoverage {
                    name: f.name,
                    location: String::new(),
                    fired: true,
                    conditions: conds(&f.conditions),
                    branches: conds(&f.branches),
                })
                .collect(),
        }
    }

    /// Adds what one evaluation showed.
    pub fn add(&mut self, trace: &Trace) {
        for rt in &trace.rules {
            if let Some(unit) = self.rules.iter_mut().find(|u| u.name == rt.rule) {
                if rt.outcome == Outcome::Fired {
                    unit.fired = true;
                }
            }
            for c in &rt.conditions {
                let unit = match &c.flow {
                    None => self.rules.iter_mut().find(|u| u.name == rt.rule),
                    Some(f) => self.flows.iter_mut().find(|u| &u.name == f),
                };
                if let Some(cond) = unit.and_then(|u| u.conditions.get_mut(c.index)) {
                    if c.holds {
                        cond.seen_true = true;
                    } else {
                        cond.seen_false = true;
                    }
                }
            }
            for b in &rt.branches {
                let unit = match &b.flow {
                    None => self.rules.iter_mut().find(|u| u.name == rt.rule),
                    Some(f) => self.flows.iter_mut().find(|u| &u.name == f),
                };
                // A guard is known by where it is written.
                let guard =
                    unit.and_then(|u| u.branches.iter_mut().find(|g| g.location == b.location));
                if let Some(g) = guard {
                    if b.holds {
                        g.seen_true = true;
                    } else {
                        g.seen_false = true;
                    }
                }
            }
        }
    }

    /// (covered points, all points).
    pub fn points(&self) -> (usize, usize) {
        let mut covered = 0;
        let mut all = 0;
        for u in &self.rules {
            all += 1;
            covered += usize::from(u.fired);
        }
        for u in self.rules.iter().chain(&self.flows) {
            for c in u.conditions.iter().chain(&u.branches) {
                all += 2;
                covered += usize::from(c.seen_true) + usize::from(c.seen_false);
            }
        }
        (covered, all)
    }

    /// Covered points as a percentage.
    pub fn percent(&self) -> f64 {
        let (covered, all) = self.points();
        if all == 0 {
            100.0
        } else {
            covered as f64 * 100.0 / all as f64
        }
    }

    /// A report: one line per rule and flow, one per condition not seen both ways.
    pub fn render(&self, paint: Paint) -> String {
        let mut s = String::new();
        let (covered, all) = self.points();
        s.push_str(&format!(
            "{} {:.1}% ({covered} of {all} points: each rule fired, each condition and effect `if:` seen true and false)\n",
            paint.bold("coverage:"),
            self.percent()
        ));
        let mark = |b: bool| {
            if b {
                paint.green("yes")
            } else {
                paint.red("no")
            }
        };
        for u in &self.rules {
            let both = u
                .conditions
                .iter()
                .filter(|c| c.seen_true && c.seen_false)
                .count();
            let status = if u.fired {
                paint.green("fired")
            } else {
                paint.red("never fired")
            };
            s.push_str(&format!(
                "  rule {}  {status}, {both}/{} conditions both ways{}  {}\n",
                paint.bold(&u.name),
                u.conditions.len(),
                branches_both(&u.branches),
                paint.dim(&u.location)
            ));
            render_conds(&mut s, &u.conditions, &mark, paint);
            render_branches(&mut s, &u.branches, &mark, paint);
        }
        for u in &self.flows {
            let both = u
                .conditions
                .iter()
                .filter(|c| c.seen_true && c.seen_false)
                .count();
            s.push_str(&format!(
                "  flow {}  {both}/{} conditions both ways{}\n",
                paint.bold(&u.name),
                u.conditions.len(),
                branches_both(&u.branches)
            ));
            render_conds(&mut s, &u.conditions, &mark, paint);
            render_branches(&mut s, &u.branches, &mark, paint);
        }
        s
    }
}

fn render_conds(
    s: &mut String,
    conds: &[CondCoverage],
    mark: &dyn Fn(bool) -> String,
    paint: Paint,
) {
    for (i, c) in conds.iter().enumerate() {
        if c.seen_true && c.seen_false {
            continue;
        }
        s.push_str(&format!(
            "      when[{i}] true: {}, false: {}  {}  {}\n",
            mark(c.seen_true),
            mark(c.seen_false),
            one_line(&c.text),
            paint.dim(&c.location)
        ));
    }
}

/// `, n/m effect ifs both ways` (nothing when there are none).
fn branches_both(branches: &[CondCoverage]) -> String {
    if branches.is_empty() {
        return String::new();
    }
    let both = branches
        .iter()
        .filter(|c| c.seen_true && c.seen_false)
        .count();
    format!(", {both}/{} effect ifs both ways", branches.len())
}

fn render_branches(
    s: &mut String,
    branches: &[CondCoverage],
    mark: &dyn Fn(bool) -> String,
    paint: Paint,
) {
    for c in branches {
        if c.seen_true && c.seen_false {
            continue;
        }
        s.push_str(&format!(
            "      if taken: {}, not: {}  {}  {}\n",
            mark(c.seen_true),
            mark(c.seen_false),
            one_line(&c.text),
            paint.dim(&c.location)
        ));
    }
}

/// An expression's text on one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
