//! `skladsync case shrink`: rewrite cases so that they state only what differs from the
//! fragments they include, and only where the case still evaluates to the same plan.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use skladsync_engine::case::{included_base, layer, CaseFile};
use skladsync_engine::value::Map;
use skladsync_engine::{Case, RecordedWorld, RuleSet, Value};

use crate::cli::CaseShrinkArgs;

/// How many shared fragments `--base` writes beside one fragment at most.
const MAX_SHARED: usize = 4;

/// How many cases a shared fragment `--base` writes must carry at least.
const MIN_SHARING: usize = 3;

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
            } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
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
        (b, c) if same(b, c) => Value::Null,
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
fn replace_block(
    text: &str,
    key: &str,
    value: Option<&Value>,
    before: &[&str],
) -> Result<String, String> {
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
            if k.as_str() != "event" {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Some(Value::object(out))
}

/// Where a case is to be rewritten over: the bases it was merged over and is to be merged
/// over (event, world, settings), and an include to swap for another (`old`, `new` as written).
struct Plan<'a> {
    old: &'a (Value, Value, Value),
    new: &'a (Value, Value, Value),
    swap: Option<(&'a str, &'a str)>,
    need_shorter: bool,
}

/// `v` with object keys sorted and, when `rows`, every list sorted and without repeats: equal
/// when two events say the same whatever the order of their keys, or two worlds hold the same
/// rows (a row held twice, once by the fragment and once by the case, counts once here; the
/// plan is compared too).
fn canon(v: &Value, rows: bool) -> Value {
    match v {
        Value::Object(m) => {
            let mut items: Vec<(&skladsync_engine::value::Str, Value)> =
                m.iter().map(|(k, v)| (k, canon(v, rows))).collect();
            items.sort_by(|a, b| a.0.cmp(b.0));
            let mut out = Map::default();
            for (k, v) in items {
                out.insert(k.clone(), v);
            }
            Value::object(out)
        }
        Value::Array(a) => {
            let mut items: Vec<Value> = a.iter().map(|v| canon(v, rows)).collect();
            if rows {
                items.sort_by_key(Value::to_json);
                items.dedup_by(|a, b| a.to_json() == b.to_json());
            }
            Value::array(items)
        }
        other => other.clone(),
    }
}

/// `text` with the include `old` (as written) swapped for `new` in its `include:` block;
/// with `old` empty, `include: [new]` added before the event.
fn swap_include(text: &str, old: &str, new: &str) -> Option<String> {
    if old.is_empty() {
        let line = format!("include: [{new}]\n");
        let at = blocks(text)
            .into_iter()
            .find(|(k, _, _)| ["event", "world", "settings", "expect"].contains(&k.as_str()));
        let mut out = String::new();
        let mut added = false;
        for (i, l) in text.lines().enumerate() {
            if !added && at.as_ref().is_some_and(|(_, s, _)| *s == i) {
                out.push_str(&line);
                added = true;
            }
            out.push_str(l);
            out.push('\n');
        }
        if !added {
            out.push_str(&line);
        }
        return Some(out);
    }
    let (_, start, end) = blocks(text).into_iter().find(|(k, _, _)| k == "include")?;
    let mut out = String::new();
    let mut done = false;
    for (i, l) in text.lines().enumerate() {
        if !done && i >= start && i < end && l.contains(old) {
            out.push_str(&l.replacen(old, new, 1));
            done = true;
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    done.then_some(out)
}

/// The shrunk text of one case, if it means the same afterwards (the same merged event, the
/// same world rows, the same plan or error) and, when asked, is shorter; else `None`.
fn shrink_one(rules: &RuleSet, c: &Loaded, plan: &Plan) -> Option<String> {
    let full = layer(&plan.old.0, &c.file.event, false);
    let world_before = canon(&layer(&plan.old.1, &c.file.world, true), true);
    let settings_full = layer(&plan.old.2, &c.file.settings, false);
    let mut text = c.text.clone();
    if let Some((old, new)) = plan.swap {
        text = swap_include(&text, old, new)?;
    }
    if !c.file.event.is_null() || plan.swap.is_some() {
        let ev = stated_event(&plan.new.0, &full)?;
        if !same(&ev, &c.file.event) {
            text =
                replace_block(&text, "event", Some(&ev), &["world", "settings", "expect"]).ok()?;
        }
    }
    if !c.file.world.is_null() && !plan.new.1.is_null() {
        let w = world_diff(&plan.new.1, &c.file.world);
        if !same(&w, &c.file.world) {
            let w = (!is_empty(&w)).then_some(&w);
            text = replace_block(&text, "world", w, &["settings", "expect"]).ok()?;
        }
    }
    // Settings overrides merge as the event does (maps key by key, lists whole).
    if !c.file.settings.is_null() && !plan.new.2.is_null() {
        match event_diff(&plan.new.2, &settings_full) {
            Some(d) if !same(&d, &c.file.settings) => {
                let d = (!is_empty(&d)).then_some(&d);
                text = replace_block(&text, "settings", d, &["expect"]).ok()?;
            }
            Some(_) => {}
            None if same(&plan.new.2, &plan.old.2) => {}
            None => return None,
        }
    }
    if text == c.text || plan.need_shorter && text.lines().count() >= c.text.lines().count() {
        return None;
    }
    let file: CaseFile = serde_yaml::from_str(&text).ok()?;
    let event_after = layer(&plan.new.0, &file.event, false);
    if !same(&canon(&event_after, false), &canon(&full, false)) {
        return None;
    }
    let world = layer(&plan.new.1, &file.world, true);
    if !same(&canon(&world, true), &world_before) {
        return None;
    }
    let settings = layer(&plan.new.2, &file.settings, false);
    if !same(&canon(&settings, false), &canon(&settings_full, false)) {
        return None;
    }
    let case = Case {
        doc: file.doc,
        event: skladsync_engine::Event::from_document(&event_after).ok()?,
        event_doc: event_after,
        world: RecordedWorld::from_value(&world).ok()?,
        settings,
        expect: file.expect,
    };
    (outcome(rules, &case) == c.outcome).then_some(text)
}

/// The event `min` of `events` have in common: map keys at least `min` of them have (not
/// null), and for anything else the value most of them share (at least two: a case with
/// another value states its own, as it would anyway).
pub(crate) fn common_event(events: &[&Value], min: usize) -> Value {
    let objects: Vec<&Value> = events
        .iter()
        .copied()
        .filter(|e| matches!(e, Value::Object(_)))
        .collect();
    if objects.len() >= min.max(1) {
        let mut out = Map::default();
        for k in keys_of(&objects) {
            let subs: Vec<&Value> = objects
                .iter()
                .filter_map(|o| o.get_ref(&k).filter(|v| !v.is_null()))
                .collect();
            if subs.len() < min {
                continue;
            }
            let c = common_event(&subs, min);
            if !(c.is_null() || matches!(c, Value::Object(_)) && is_empty(&c)) {
                out.insert(k.clone(), c);
            }
        }
        return Value::object(out);
    }
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
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

/// The keys of maps, in the order they first appear.
fn keys_of(objects: &[&Value]) -> Vec<skladsync_engine::value::Str> {
    let mut keys: Vec<skladsync_engine::value::Str> = Vec::new();
    for o in objects {
        if let Value::Object(m) = o {
            for k in m.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    keys
}

/// The world rows at least `min` of `worlds` hold (lists under any map key), in the order
/// they first appear.
pub(crate) fn common_world(worlds: &[&Value], min: usize) -> Value {
    let lists: Vec<&[Value]> = worlds.iter().filter_map(|w| w.as_array()).collect();
    if !lists.is_empty() {
        let mut order: Vec<String> = Vec::new();
        let mut rows: BTreeMap<String, (usize, Value)> = BTreeMap::new();
        for list in &lists {
            let mut mine: Vec<String> = Vec::new();
            for item in list.iter() {
                let key = item.to_json();
                if mine.contains(&key) {
                    continue;
                }
                mine.push(key.clone());
                let entry = rows.entry(key.clone()).or_insert_with(|| {
                    order.push(key);
                    (0, item.clone())
                });
                entry.0 += 1;
            }
        }
        let kept: Vec<Value> = order
            .iter()
            .filter_map(|k| {
                rows.get(k)
                    .filter(|(n, _)| *n >= min)
                    .map(|(_, v)| v.clone())
            })
            .collect();
        return if kept.is_empty() {
            Value::Null
        } else {
            Value::array(kept)
        };
    }
    let objects: Vec<&Value> = worlds
        .iter()
        .copied()
        .filter(|e| matches!(e, Value::Object(_)))
        .collect();
    if objects.is_empty() {
        // Scalars: the value at least `min` (and two) of them have.
        let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (i, w) in worlds.iter().enumerate().filter(|(_, w)| !w.is_null()) {
            counts.entry(w.to_json()).or_insert((0, i)).0 += 1;
        }
        let best = counts
            .values()
            .filter(|(n, _)| *n >= min.max(2))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        return best.map_or(Value::Null, |(_, i)| worlds[*i].clone());
    }
    let mut out = Map::default();
    for k in keys_of(&objects) {
        let subs: Vec<&Value> = objects.iter().filter_map(|o| o.get_ref(&k)).collect();
        let c = common_world(&subs, min);
        if !is_empty(&c) {
            out.insert(k.clone(), c);
        }
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::object(out)
    }
}

/// The fragment a case lays on top (its last include): the path, and as written.
fn top_fragment(c: &Loaded) -> Option<(PathBuf, String)> {
    let rel = c.file.include.last()?;
    let p = dir_of(&c.path).join(rel);
    Some((tidy(&std::path::absolute(&p).unwrap_or(p)), rel.clone()))
}

/// The `n`th shared fragment `case shrink --base` writes beside `frag` (`NAME.common.yaml`,
/// `NAME.common-2.yaml`, …); none beside a shared fragment.
fn common_path(frag: &Path, n: usize, kind: &str) -> Option<PathBuf> {
    let name = frag.file_name()?.to_str()?;
    if name.contains(".common") || name.contains(".shared") {
        return None;
    }
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))?;
    Some(frag.with_file_name(if n <= 1 {
        format!("{stem}.{kind}.yaml")
    } else {
        format!("{stem}.{kind}-{n}.yaml")
    }))
}

/// The `worlds/` folder beside a folder above `dir` (where the shared fragments live).
fn worlds_dir(dir: &Path) -> Option<PathBuf> {
    let abs = tidy(&std::path::absolute(dir).ok()?);
    abs.ancestors()
        .map(|a| a.join("worlds"))
        .find(|w| w.is_dir())
}

/// The path of `to` relative to the folder `from` (both absolute and tidy).
fn relative(from: &Path, to: &Path) -> String {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_owned(); f.len() - common];
    parts.extend(
        t[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

/// `p` without `.` and `dir/..` (lexically).
fn tidy(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `rel` (an include as written) pointing at `new_name` in the same folder.
fn sibling_rel(rel: &str, new_name: &str) -> String {
    match rel.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{new_name}"),
        None => new_name.to_owned(),
    }
}

/// Cases rewritten: (index, new text).
type Rewritten = Vec<(usize, String)>;

/// The shared fragments on disk a case could include instead of its last include (or, with
/// none, in addition): (the include as written or "", the new include, the new include list).
fn shared_candidates(c: &Loaded) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    if let Some((frag, rel)) = top_fragment(c) {
        for n in 1..=MAX_SHARED {
            let Some(path) = common_path(&frag, n, "common") else {
                break;
            };
            if !path.is_file() {
                continue;
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let new_rel = sibling_rel(&rel, &name);
            let mut includes = c.file.include.clone();
            includes.pop();
            includes.push(new_rel.clone());
            out.push((rel.clone(), new_rel, includes));
        }
    } else if c.file.include.is_empty() {
        let dir = dir_of(&c.path);
        let (Some(worlds), Some(folder), Some(event), Ok(abs)) = (
            worlds_dir(dir),
            std::path::absolute(dir)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned())),
            c.file.event.get_ref("event").and_then(Value::as_str),
            std::path::absolute(dir),
        ) else {
            return out;
        };
        let at = worlds.join(format!("{folder}__{event}.yaml"));
        for n in 1..=MAX_SHARED {
            let Some(path) = common_path(&at, n, "shared") else {
                break;
            };
            if path.is_file() {
                let new_rel = relative(&tidy(&abs), &path);
                out.push((String::new(), new_rel.clone(), vec![new_rel]));
            }
        }
    }
    out
}

/// A new shared fragment for the cases of one fragment.
struct Gathered {
    path: PathBuf,
    text: String,
    /// (case index, its rewritten text)
    cases: Vec<(usize, String)>,
}

/// What most of the given cases of `frag` share beyond it, as a fragment beside it that
/// includes it; the cases that keep their meaning over it include it instead. `None` when
/// fewer than [`MIN_SHARING`] cases would, or nothing is shared.
fn gather(
    rules: &RuleSet,
    cases: &[Loaded],
    bases: &[Option<(Value, Value, Value)>],
    frag: Option<&Path>,
    path: PathBuf,
    users: &[usize],
) -> Result<Option<Gathered>, String> {
    let none = (Value::Null, Value::Null, Value::Null);
    let name_of = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned()
    };
    let (name, frag_name) = (name_of(&path), frag.map(name_of).unwrap_or_default());
    let mut members: Vec<usize> = users.to_vec();
    let mut result: Option<(Value, Value, Value, Rewritten)> = None;
    // Round one: what half of them share; round two: what all that kept their plan share.
    for round in 0..2 {
        if members.len() < MIN_SHARING {
            return Ok(None);
        }
        let min = if round == 0 {
            members.len().div_ceil(2)
        } else {
            members.len()
        };
        let fulls: Vec<Value> = members
            .iter()
            .map(|&i| {
                layer(
                    &bases[i].as_ref().unwrap_or(&none).0,
                    &cases[i].file.event,
                    false,
                )
            })
            .collect();
        let refs: Vec<&Value> = fulls.iter().collect();
        let mut event = common_event(&refs, min);
        if let Value::Object(m) = &mut event {
            std::sync::Arc::make_mut(m).shift_remove("event");
        }
        let worlds: Vec<&Value> = members.iter().map(|&i| &cases[i].file.world).collect();
        let world = common_world(&worlds, min);
        let settings_full: Vec<Value> = members
            .iter()
            .map(|&i| {
                layer(
                    &bases[i].as_ref().unwrap_or(&none).2,
                    &cases[i].file.settings,
                    false,
                )
            })
            .collect();
        let refs: Vec<&Value> = settings_full.iter().collect();
        let settings = common_event(&refs, min);
        if is_empty(&event) && is_empty(&world) && is_empty(&settings) {
            return Ok(None);
        }
        let mut kept = Vec::new();
        for &i in &members {
            let (old, rel, new_rel) = match (&bases[i], frag) {
                (Some(old), Some(_)) => {
                    let Some((_, rel)) = top_fragment(&cases[i]) else {
                        continue;
                    };
                    let new_rel = sibling_rel(&rel, &name);
                    (old, rel, new_rel)
                }
                (None, None) => {
                    let dir = tidy(
                        &std::path::absolute(dir_of(&cases[i].path)).map_err(|e| e.to_string())?,
                    );
                    (&none, String::new(), relative(&dir, &path))
                }
                _ => continue,
            };
            let new = (
                layer(&old.0, &event, false),
                layer(&old.1, &world, true),
                layer(&old.2, &settings, false),
            );
            let plan = Plan {
                old,
                new: &new,
                swap: Some((&rel, &new_rel)),
                need_shorter: true,
            };
            if let Some(text) = shrink_one(rules, &cases[i], &plan) {
                kept.push((i, text));
            }
        }
        members = kept.iter().map(|(i, _)| *i).collect();
        result = Some((event, world, settings, kept));
    }
    let Some((event, world, settings, kept)) = result else {
        return Ok(None);
    };
    if kept.len() < MIN_SHARING {
        return Ok(None);
    }
    let mut text = format!(
        "# yaml-language-server: $schema={}\n",
        super::case::schema_ref(&path)
    );
    if frag.is_some() {
        text.push_str(&format!(
            "doc: 'What most cases of {frag_name} share beyond it (gathered by `skladsync case shrink --base`); a case that includes this states only what differs.'\n"
        ));
        text.push_str(&format!("include: [{frag_name}]\n"));
    } else {
        text.push_str("doc: 'What most cases of this event in their folder share (gathered by `skladsync case shrink --base`); a case that includes this states only what differs.'\n");
    }
    let mut body = Map::default();
    if !is_empty(&event) {
        body.insert("event".into(), event);
    }
    if !is_empty(&world) {
        body.insert("world".into(), world);
    }
    if !is_empty(&settings) {
        body.insert("settings".into(), settings);
    }
    text.push_str(&serde_yaml::to_string(&Value::object(body)).map_err(|e| e.to_string())?);
    Ok(Some(Gathered {
        path,
        text,
        cases: kept,
    }))
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
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
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
    let verb = |now: &str, later: &str| {
        if args.check {
            later.to_owned()
        } else {
            now.to_owned()
        }
    };
    // With --base: what most cases of a fragment share, gathered into a fragment beside it.
    let mut gathered: Vec<Gathered> = Vec::new();
    let mut texts: BTreeMap<usize, String> = BTreeMap::new();
    if args.base {
        // Cases of a fragment by that fragment; cases that include none by where a fragment
        // of theirs would be: `worlds/FOLDER__EVENT.shared.yaml`.
        let mut users: BTreeMap<(PathBuf, bool), Vec<usize>> = BTreeMap::new();
        for (i, c) in cases.iter().enumerate() {
            if let (Some((frag, _)), Some(_)) = (top_fragment(c), &bases[i]) {
                users.entry((frag, true)).or_default().push(i);
            } else if c.file.include.is_empty() {
                let (Some(worlds), Some(folder), Some(event)) = (
                    worlds_dir(dir_of(&c.path)),
                    std::path::absolute(dir_of(&c.path))
                        .ok()
                        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned())),
                    c.file.event.get_ref("event").and_then(Value::as_str),
                ) else {
                    continue;
                };
                let at = worlds.join(format!("{folder}__{event}.yaml"));
                users.entry((at, false)).or_default().push(i);
            }
        }
        for ((frag, real), idx) in users {
            // Cluster by cluster: the cases the first shared fragment cannot carry may share
            // another.
            let mut rest = idx.clone();
            for n in 1..=MAX_SHARED {
                let kind = if real { "common" } else { "shared" };
                let Some(path) = common_path(&frag, n, kind) else {
                    break;
                };
                if path.exists() {
                    continue;
                }
                let of = real.then_some(frag.as_path());
                let Some(g) = gather(&rules, &cases, &bases, of, path, &rest)? else {
                    break;
                };
                println!(
                    "{} {}: what {} of {} cases over {} share",
                    verb("wrote", "would write"),
                    g.path.display(),
                    g.cases.len(),
                    rest.len(),
                    frag.file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                );
                rest.retain(|i| !g.cases.iter().any(|(j, _)| j == i));
                for (i, text) in &g.cases {
                    texts.insert(*i, text.clone());
                }
                gathered.push(g);
            }
        }
    }
    for (i, c) in cases.iter().enumerate() {
        if texts.contains_key(&i) {
            continue;
        }
        let none = (Value::Null, Value::Null, Value::Null);
        let base = bases[i].as_ref().unwrap_or(&none);
        let mut best: Option<String> = None;
        let mut consider = |text: Option<String>| {
            if let Some(t) = text {
                if best
                    .as_ref()
                    .is_none_or(|b| t.lines().count() < b.lines().count())
                {
                    best = Some(t);
                }
            }
        };
        if bases[i].is_some() {
            let plan = Plan {
                old: base,
                new: base,
                swap: None,
                need_shorter: true,
            };
            consider(shrink_one(&rules, c, &plan));
        }
        // Shared fragments a run of --base wrote before (beside the case's fragment, or for
        // a case of no fragment in worlds/): a case edited or added since may fit one.
        for (rel, new_rel, includes) in shared_candidates(c) {
            let Ok(new) = included_base(dir_of(&c.path), &includes) else {
                continue;
            };
            let plan = Plan {
                old: base,
                new: &new,
                swap: Some((&rel, &new_rel)),
                need_shorter: true,
            };
            consider(shrink_one(&rules, c, &plan));
        }
        if let Some(text) = best {
            texts.insert(i, text);
        }
    }
    for (i, text) in &texts {
        let c = &cases[*i];
        println!(
            "{} {}: {} → {} lines",
            verb("shrunk", "would shrink"),
            c.path.display(),
            c.text.lines().count(),
            text.lines().count()
        );
    }
    let changed = texts.len() + gathered.len();
    if args.check {
        println!("{changed} file(s) would change");
        return Ok(if changed > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    let undo = |upto_cases: usize| -> Result<(), String> {
        for g in &gathered {
            std::fs::remove_file(&g.path).ok();
        }
        for (i, _) in texts.iter().take(upto_cases) {
            let c = &cases[*i];
            std::fs::write(&c.path, &c.text).map_err(|e| format!("{}: {e}", c.path.display()))?;
        }
        Ok(())
    };
    for g in &gathered {
        if let Err(e) = std::fs::write(&g.path, &g.text) {
            undo(0)?;
            return Err(format!("{}: {e}", g.path.display()));
        }
    }
    for (n, (i, text)) in texts.iter().enumerate() {
        let c = &cases[*i];
        if let Err(e) = std::fs::write(&c.path, text) {
            undo(n)?;
            return Err(format!("{}: {e}", c.path.display()));
        }
    }
    // Read back from disk, as the tests will: should any case evaluate differently, every
    // file this run wrote is put back as it was.
    let mut moved = Vec::new();
    for c in &cases {
        let text =
            std::fs::read_to_string(&c.path).map_err(|e| format!("{}: {e}", c.path.display()))?;
        match outcome_of(&rules, &text, dir_of(&c.path)) {
            Ok(o) if o == c.outcome => {}
            _ => moved.push(c.path.display().to_string()),
        }
    }
    if !moved.is_empty() {
        undo(texts.len())?;
        return Err(format!(
            "read back, {} would evaluate differently; every file is put back as it was",
            moved.join(", ")
        ));
    }
    println!("{changed} file(s) changed");
    Ok(ExitCode::SUCCESS)
}
