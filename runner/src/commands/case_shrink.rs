//! `skladsync case shrink`: rewrite cases so that they state only what differs from the
//! fragments they include, and only where the case still evaluates to the same plan.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use skladsync_engine::case::{included_base, layer, CaseFile};
use skladsync_engine::value::Map;
use skladsync_engine::{Case, RecordedWorld, RuleSet, Value};

use crate::cli::CaseShrinkArgs;

/// One case file as read.
struct Loaded {
    path: PathBuf,
    text: String,
    file: CaseFile,
    /// What the case evaluates to (the plan's JSON, or the error), as it was.
    outcome: String,
}

/// The outcome of a case text as the tests see it: the plan, or the evaluation error.
fn outcome_of(rules: &RuleSet, text: &str, dir: &Path) -> Result<String, String> {
    let case = Case::from_yaml_in(text, Some(dir))?;
    Ok(outcome(rules, &case))
}

fn outcome(rules: &RuleSet, case: &Case) -> String {
    match case.run(rules) {
        Ok(plan) => plan.to_json(),
        Err(e) => format!("!!! evaluation error: {e}"),
    }
}

/// The case files under `paths` (files as given, folders walked for `*.yaml`), sorted.
fn case_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path
                .extension()
                .is_some_and(|x| x == "yaml" || x == "yml")
            {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn dir_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// What `over` must say so that `layer(base, over, false)` is `full`: per map key, only keys
/// whose values differ (deeply), lists and scalars whole. `None` when that cannot be said
/// (`full` lacks or nulls something `base` has: a null in a case keeps the base value).
pub(crate) fn event_diff(base: &Value, full: &Value) -> Option<Value> {
    match (base, full) {
        (Value::Object(b), Value::Object(f)) => {
            let mut out = Map::default();
            for (k, bv) in b.iter() {
                match f.get(k) {
                    None => return None,
                    Some(fv) if fv.is_null() && !bv.is_null() => return None,
                    Some(_) => {}
                }
            }
            for (k, fv) in f.iter() {
                match b.get(k) {
                    Some(bv) if same(bv, fv) => {}
                    Some(bv @ Value::Object(_)) if matches!(fv, Value::Object(_)) => {
                        out.insert(k.clone(), event_diff(bv, fv)?);
                    }
                    _ => {
                        out.insert(k.clone(), fv.clone());
                    }
                }
            }
            Some(Value::object(out))
        }
        (b, f) if same(b, f) => Some(Value::Null),
        (b, Value::Null) if !b.is_null() => None,
        (_, f) => Some(f.clone()),
    }
}

/// Equal, key order included (a rule may walk a map in order).
fn same(a: &Value, b: &Value) -> bool {
    a.to_json() == b.to_json()
}

/// The case's world without what the base world already holds identically: list items
/// present in the base's list at the same place, map keys whose values are then empty.
pub(crate) fn world_diff(base: &Value, case: &Value) -> Value {
    match (base, case) {
        (Value::Object(b), Value::Object(c)) => {
            let mut out = Map::default();
            for (k, cv) in c.iter() {
                match b.get(k) {
                    Some(bv) => {
                        let d = world_diff(bv, cv);
                        if !is_empty(&d) || is_empty(cv) && !matches!(bv, Value::Object(_)) {
                            out.insert(k.clone(), d);
                        }
                    }
                    None => {
                        out.insert(k.clone(), cv.clone());
                    }
                }
            }
            Value::object(out)
        }
        (Value::Array(b), Value::Array(c)) => {
            let seen: Vec<String> = b.iter().map(Value::to_json).collect();
            Value::array(
                c.iter()
                    .filter(|v| !seen.contains(&v.to_json()))
                    .cloned()
                    .collect(),
            )
        }
        (_, c) => c.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

/// The event every one of `events` has in common: map keys all of them have (never null),
/// and for anything else the value most of them (at least two) share.
pub(crate) fn common_event(events: &[&Value]) -> Value {
    let Some(first) = events.first() else {
        return Value::Null;
    };
    if events.iter().all(|e| matches!(e, Value::Object(_))) {
        let mut out = Map::default();
        if let Value::Object(f) = first {
            for k in f.keys() {
                let subs: Option<Vec<&Value>> = events
                    .iter()
                    .map(|e| e.get_ref(k).filter(|v| !v.is_null()))
                    .collect();
                let Some(subs) = subs else { continue };
                let c = common_event(&subs);
                if !c.is_null() && !(matches!(c, Value::Object(_)) && is_empty(&c)) {
                    out.insert(k.clone(), c);
                }
            }
        }
        return Value::object(out);
    }
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::default();
    for (i, e) in events.iter().enumerate() {
        let entry = counts.entry(e.to_json()).or_insert((0, i));
        entry.0 += 1;
    }
    let best = counts
        .values()
        .filter(|(n, _)| *n >= 2)
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    match best {
        Some((_, i)) => events.get(*i).map_or(Value::Null, |v| (*v).clone()),
        None => Value::Null,
    }
}

/// The top-level blocks of a YAML text: (key, first line, end line exclusive); comment and
/// blank lines right before a key belong to that key's block's preamble, not to the block
/// before it.
fn blocks(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut starts = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let key: String = l
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !key.is_empty() && l[key.len()..].starts_with(':') {
            starts.push((key, i));
        }
    }
    let mut out = Vec::new();
    for (n, (key, start)) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(lines.len(), |(_, s)| *s);
        while end > start + 1 {
            let prev = lines[end - 1].trim_start();
            if lines[end - 1].starts_with('#') || prev.is_empty() {
                end -= 1;
            } else {
                break;
            }
        }
        out.push((key.clone(), *start, end));
    }
    out
}

/// `text` with the top-level `key` block replaced by `value` (removed when `None`), or added
/// before the first of `before` (at the end when none is there).
fn replace_block(text: &str, key: &str, value: Option<&Value>, before: &[&str]) -> Result<String, String> {
    let rendered = match value {
        Some(v) => {
            let mut one = Map::default();
            one.insert(key.into(), v.clone());
            serde_yaml::to_string(&Value::object(one)).map_err(|e| e.to_string())?
        }
        None => String::new(),
    };
    let lines: Vec<&str> = text.lines().collect();
    let bl = blocks(text);
    let (start, end) = match bl.iter().find(|(k, _, _)| k == key) {
        Some((_, s, e)) => (*s, *e),
        None => {
            let at = bl
                .iter()
                .find(|(k, _, _)| before.contains(&k.as_str()))
                .map_or(lines.len(), |(_, s, _)| {
                    // before the comments that lead into that block
                    let mut s = *s;
                    while s > 0 && lines[s - 1].starts_with('#') && s - 1 > 0 {
                        s -= 1;
                    }
                    s
                });
            (at, at)
        }
    };
    let mut out = String::new();
    for l in &lines[..start] {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&rendered);
    for l in &lines[end..] {
        out.push_str(l);
        out.push('\n');
    }
    Ok(out)
}

/// The event the case states: `event` (the name) first, then what differs from the base.
fn stated_event(base: &Value, full: &Value) -> Option<Value> {
    let diff = event_diff(base, full)?;
    let mut out = Map::default();
    if let Some(name) = full.get_ref("event") {
        out.insert("event".into(), name.clone());
    }
    if let Value::Object(d) = &diff {
        for (k, v) in d.iter() {
            if k.as_ref() != "event" {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Some(Value::object(out))
}

/// The shrunk text of one case over `base` (its includes' merged event, world), if it is
/// shorter and means the same (same merged event, same outcome); else `None`.
fn shrink_one(
    rules: &RuleSet,
    c: &Loaded,
    base: &(Value, Value, Value),
    need_shorter: bool,
) -> Option<String> {
    let full = layer(&base.0, &c.file.event, false);
    let mut text = c.text.clone();
    if !c.file.event.is_null() {
        if let Some(ev) = stated_event(&base.0, &full) {
            if !same(&ev, &c.file.event) {
                text = replace_block(&text, "event", Some(&ev), &["world", "settings", "expect"]).ok()?;
            }
        }
    }
    if !c.file.world.is_null() && !base.1.is_null() {
        let w = world_diff(&base.1, &c.file.world);
        if !same(&w, &c.file.world) {
            let w = (!is_empty(&w)).then_some(&w);
            text = replace_block(&text, "world", w, &["settings", "expect"]).ok()?;
        }
    }
    let dbg = std::env::var_os("SHRINK_DEBUG").is_some();
    if need_shorter && text.lines().count() >= c.text.lines().count() {
        if dbg { eprintln!("{}: not shorter", c.path.display()); }
        return None;
    }
    // The same meaning: the merged event unchanged, the same plan (or error).
    let file: CaseFile = match serde_yaml::from_str(&text) { Ok(f) => f, Err(e) => { if dbg { eprintln!("{}: {e}\n{text}", c.path.display()); } return None; } };
    if !same(&layer(&base.0, &file.event, false), &full) {
        if dbg { eprintln!("{}: event differs", c.path.display()); }
        return None;
    }
    let event = skladsync_engine::Event::from_document(&full).ok()?;
    let world = RecordedWorld::from_value(&layer(&base.1, &file.world, true)).ok()?;
    let case = Case {
        doc: file.doc,
        event,
        event_doc: full,
        world,
        settings: layer(&base.2, &file.settings, false),
        expect: file.expect,
    };
    let o = outcome(rules, &case);
    if dbg && o != c.outcome { eprintln!("{}: outcome differs\n{o}\n{}", c.path.display(), c.outcome); }
    (o == c.outcome).then_some(text)
}

/// The fragment a case lays on top (its last include), as a path.
fn top_fragment(c: &Loaded) -> Option<PathBuf> {
    let rel = c.file.include.last()?;
    let p = dir_of(&c.path).join(rel);
    Some(std::path::absolute(&p).unwrap_or(p))
}

/// `skladsync case shrink`: exit 0 when done (or, with `--check`, when nothing would shrink).
pub fn shrink(args: &CaseShrinkArgs) -> ExitCode {
    match shrink_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn shrink_inner(args: &CaseShrinkArgs) -> Result<ExitCode, String> {
    let rules = match super::load_rules_for_cases(&args.rules) {
        Ok((rules, _)) => rules,
        Err(diags) => {
            eprint!("{}", diags.render(super::use_color(args.rules.color)));
            return Ok(ExitCode::from(2));
        }
    };
    let mut cases = Vec::new();
    for path in case_paths(&args.paths)? {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: CaseFile = match serde_yaml::from_str(&text) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("skip {}: not a case ({e})", path.display());
                continue;
            }
        };
        let outcome = match outcome_of(&rules, &text, dir_of(&path)) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("skip {}: {e}", path.display());
                continue;
            }
        };
        cases.push(Loaded {
            path,
            text,
            file,
            outcome,
        });
    }
    let mut bases = Vec::new();
    for c in &cases {
        bases.push(if c.file.include.is_empty() {
            None
        } else {
            Some(included_base(dir_of(&c.path), &c.file.include)?)
        });
    }
    // Fragments with no event under them get one: what their cases' events share.
    let mut new_fragments: BTreeMap<PathBuf, (Value, String)> = BTreeMap::default();
    if args.base_event {
        let mut users: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::default();
        for (i, c) in cases.iter().enumerate() {
            if let (Some(frag), Some(base)) = (top_fragment(c), &bases[i]) {
                if base.0.is_null() && c.file.event.as_object().is_some() {
                    users.entry(frag).or_default().push(i);
                }
            }
        }
        for (frag, idx) in users {
            if idx.len() < 2 {
                continue;
            }
            let events: Vec<&Value> = idx.iter().map(|&i| &cases[i].file.event).collect();
            let mut common = common_event(&events);
            if let Value::Object(m) = &mut common {
                std::sync::Arc::make_mut(m).shift_remove("event");
            }
            if is_empty(&common) {
                continue;
            }
            let ftext = std::fs::read_to_string(&frag).map_err(|e| format!("{}: {e}", frag.display()))?;
            let new_text = replace_block(&ftext, "event", Some(&common), &["world", "settings"])?;
            // Every case of this fragment must keep its meaning over the new base.
            let all_ok = idx.iter().all(|&i| {
                let Some(old) = &bases[i] else { return false };
                let base = (layer(&old.0, &common, false), old.1.clone(), old.2.clone());
                shrink_one(&rules, &cases[i], &base, false).is_some()
            });
            if all_ok {
                for &i in &idx {
                    if let Some(b) = bases[i].as_mut() {
                        b.0 = layer(&b.0, &common, false);
                    }
                }
                new_fragments.insert(frag, (common, new_text));
            } else {
                eprintln!(
                    "{}: not given a base event (a case of it would not keep its plan)",
                    frag.display()
                );
            }
        }
    }
    let mut would = 0usize;
    let mut written: Vec<(usize, String)> = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let Some(base) = &bases[i] else { continue };
        let before = c.text.lines().count();
        let rebased = top_fragment(c).is_some_and(|f| new_fragments.contains_key(&f));
        match shrink_one(&rules, c, base, !rebased) {
            Some(text) if text == c.text => {}
            Some(text) => {
                would += 1;
                println!(
                    "{} {}: {before} → {} lines",
                    if args.check { "would shrink" } else { "shrunk" },
                    c.path.display(),
                    text.lines().count()
                );
                written.push((i, text));
            }
            None if rebased => {
                return Err(format!(
                    "{}: over the new base event it would not keep its plan",
                    c.path.display()
                ));
            }
            None => {}
        }
    }
    for frag in new_fragments.keys() {
        would += 1;
        println!(
            "{} {}: a base event its cases share",
            if args.check { "would add to" } else { "added to" },
            frag.display()
        );
    }
    if args.check {
        println!("{would} file(s) would change");
        return Ok(if would > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS });
    }
    let mut old_fragments = Vec::new();
    for (frag, (_, text)) in &new_fragments {
        let old = std::fs::read_to_string(frag).map_err(|e| format!("{}: {e}", frag.display()))?;
        old_fragments.push((frag.clone(), old));
        std::fs::write(frag, text).map_err(|e| format!("{}: {e}", frag.display()))?;
    }
    for (i, text) in &written {
        let c = &cases[*i];
        std::fs::write(&c.path, text).map_err(|e| format!("{}: {e}", c.path.display()))?;
    }
    // Read back from disk, as the tests will: should any case (written or not) evaluate
    // differently, every file this run wrote is put back as it was.
    let mut moved = Vec::new();
    for c in &cases {
        let text = std::fs::read_to_string(&c.path).map_err(|e| format!("{}: {e}", c.path.display()))?;
        match outcome_of(&rules, &text, dir_of(&c.path)) {
            Ok(o) if o == c.outcome => {}
            _ => moved.push(c.path.display().to_string()),
        }
    }
    if !moved.is_empty() {
        for (frag, text) in &old_fragments {
            std::fs::write(frag, text).map_err(|e| format!("{}: {e}", frag.display()))?;
        }
        for (i, _) in &written {
            let c = &cases[*i];
            std::fs::write(&c.path, &c.text).map_err(|e| format!("{}: {e}", c.path.display()))?;
        }
        return Err(format!(
            "read back, {} no longer evaluate(s) as before; every file is put back as it was",
            moved.join(", ")
        ));
    }
    println!("{} file(s) changed", written.len() + new_fragments.len());
    Ok(ExitCode::SUCCESS)
}
