//! Names in scope while compiling one rule, flow or function.

use std::collections::HashSet;

/// What a name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binding {
    Local(u32),
    Global(u32),
}

/// The kind of body being compiled, which decides the globals it sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScopeKind {
    /// A rule: `settings`, `event` and the fields of its events.
    Rule,
    /// A flow or a function: `settings` only, plus parameters.
    Flow,
    /// A settings check: `settings` only.
    Settings,
}

/// The names visible at one point, innermost last.
pub(crate) struct Scope {
    pub kind: ScopeKind,
    names: Vec<(String, u32)>,
    /// Globals visible here: (name, index into the program's globals).
    globals: Vec<(String, u32)>,
    /// `as` names and lets defined further down, for a precise error.
    pub later: HashSet<String>,
    next_slot: u32,
    pub frame_size: u32,
    /// The rule listens to an undeclared event (already reported): unknown names are not
    /// reported again.
    pub lenient: bool,
}

impl Scope {
    pub fn new(kind: ScopeKind, globals: Vec<(String, u32)>) -> Scope {
        Scope {
            kind,
            names: Vec::new(),
            globals,
            later: HashSet::new(),
            next_slot: 0,
            frame_size: 0,
            lenient: false,
        }
    }

    /// Declares a name in a new slot.
    pub fn declare(&mut self, name: &str) -> u32 {
        let slot = self.next_slot;
        self.next_slot += 1;
        self.frame_size = self.frame_size.max(self.next_slot);
        self.names.push((name.to_owned(), slot));
        self.later.remove(name);
        slot
    }

    /// Declares a name, reusing its slot when it is already declared (an `as` in a loop).
    pub fn declare_or_reuse(&mut self, name: &str) -> u32 {
        match self.local(name) {
            Some(slot) => slot,
            None => self.declare(name),
        }
    }

    /// Removes the innermost binding of a name (end of a lambda or loop body).
    pub fn undeclare(&mut self, name: &str) {
        if let Some(i) = self.names.iter().rposition(|(n, _)| n == name) {
            self.names.remove(i);
        }
    }

    fn local(&self, name: &str) -> Option<u32> {
        self.names
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
    }

    /// What a name refers to here.
    pub fn resolve(&self, name: &str) -> Option<Binding> {
        if let Some(slot) = self.local(name) {
            return Some(Binding::Local(slot));
        }
        self.globals
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, i)| Binding::Global(*i))
    }

    /// Every visible name, for "did you mean".
    pub fn visible(&self) -> Vec<&str> {
        self.names
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(self.globals.iter().map(|(n, _)| n.as_str()))
            .collect()
    }
}

/// The closest candidate to a misspelt name, if it is close enough.
pub(crate) fn suggest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = distance(name, c);
        let limit = (name.chars().count().max(c.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_owned())
}

fn distance(a: &str, b: &str) -> usize {
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
    fn suggestions() {
        assert_eq!(suggest("ordr", ["order", "settings"]), Some("order".into()));
        assert_eq!(suggest("xyz", ["order", "settings"]), None);
    }
}
