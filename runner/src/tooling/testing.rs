//! Rule test cases as data, with their expected plans.
//!
//! A case file (YAML or JSON) holds an event, a world, settings overrides and, optionally,
//! `expect:` — the expected plan as `skladsync plan` prints it (a map with `event` and
//! `effects`, or just the list of effects; `{error: text}` when evaluation must fail). A
//! case without `expect:` keeps its expectation in an insta snapshot,
//! `<snapshots>/<name>.snap`, where the name is the case's path under the cases directory
//! with `/` written `__` (how the repository's own tests name them).

use std::path::{Path, PathBuf};

use similar::TextDiff;
use skladsync_engine::{Case, Diagnostic, Plan, RuleSet, Trace, Value};

use super::paint::Paint;
use super::plandiff;
use super::ToolError;

/// Where a case's expectation lives.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// In the case file, under `expect:`.
    Inline,
    /// In a snapshot file.
    Snapshot(PathBuf),
    /// In a line of a recording (`*.jsonl`, written by the daemon's `record:`): the plan the
    /// daemon made live. Replayed, never rewritten.
    Recorded,
}

/// A case read from disk.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// The case file.
    pub path: PathBuf,
    /// Its name (snapshot name).
    pub name: String,
    /// The case.
    pub case: Case,
    /// Where its expectation is.
    pub expectation: Expectation,
}

/// What evaluating a case gave.
#[derive(Debug, Clone)]
pub enum Actual {
    /// A plan.
    Plan(Plan),
    /// An evaluation error.
    Error(String),
}

impl Actual {
    /// Rendered as the repository's snapshots render it.
    pub fn snapshot_text(&self) -> String {
        match self {
            Actual::Plan(p) => p.to_yaml(),
            Actual::Error(e) => format!("!!! evaluation error: {e}\n"),
        }
    }
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The plan is the expected one.
    Pass,
    /// It is not; the text explains how.
    Fail(String),
    /// There is no expectation yet.
    Missing,
}

/// A case file that cannot be read: reported as a failure, the others still run.
#[derive(Debug, Clone)]
pub struct BrokenCase {
    /// The case file.
    pub path: PathBuf,
    /// Its name.
    pub name: String,
    /// What is wrong, with its code frame.
    pub problem: Diagnostic,
}

/// Reads every case under `dir`: the cases that read, and those that do not.
pub fn discover(
    dir: &Path,
    snapshots: &Path,
) -> Result<(Vec<TestCase>, Vec<BrokenCase>), ToolError> {
    let mut out = Vec::new();
    let mut broken = Vec::new();
    let paths = if dir.is_file() {
        vec![dir.to_path_buf()]
    } else {
        super::files_with(dir, &["yaml", "yml", "json", "jsonl"])?
    };
    let base = if dir.is_file() {
        dir.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        dir.to_path_buf()
    };
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| ToolError::io(&path, e))?;
        let name = super::case_name(&base, &path);
        if path.extension().is_some_and(|e| e == "jsonl") {
            recorded(&path, &name, &text, &mut out, &mut broken);
            continue;
        }
        let case = match Case::from_named_in(&path.display().to_string(), &text, path.parent()) {
            Ok(c) => c,
            Err(problem) => {
                broken.push(BrokenCase {
                    path,
                    name,
                    problem,
                });
                continue;
            }
        };
        let inline = case.expect.is_some()
            || serde_yaml::from_str::<serde_yaml::Value>(&text).is_ok_and(|raw| {
                raw.as_mapping()
                    .is_some_and(|m| m.contains_key(serde_yaml::Value::from("expect")))
            });
        let expectation = if inline {
            Expectation::Inline
        } else {
            Expectation::Snapshot(snapshots.join(format!("{name}.snap")))
        };
        out.push(TestCase {
            path,
            name,
            case,
            expectation,
        });
    }
    Ok((out, broken))
}

/// The cases of a recording: one a line, named `file:line`.
fn recorded(
    path: &Path,
    name: &str,
    text: &str,
    out: &mut Vec<TestCase>,
    broken: &mut Vec<BrokenCase>,
) {
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_name = format!("{name}:{}", i + 1);
        let shown = format!("{}:{}", path.display(), i + 1);
        match Case::from_named_in(&shown, line, path.parent()) {
            Ok(case) => out.push(TestCase {
                path: path.to_path_buf(),
                name: line_name,
                case,
                expectation: Expectation::Recorded,
            }),
            Err(problem) => broken.push(BrokenCase {
                path: path.to_path_buf(),
                name: line_name,
                problem,
            }),
        }
    }
}

/// Evaluates a case, with a trace when asked.
pub fn evaluate(case: &Case, rules: &RuleSet, trace: Option<&mut Trace>) -> Actual {
    match case.run_traced(rules, trace) {
        Ok(plan) => Actual::Plan(plan),
        Err(e) => Actual::Error(e.to_string()),
    }
}

/// The body and header of an insta snapshot file.
pub fn read_snapshot(path: &Path) -> Result<Option<(String, String)>, ToolError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t.replace("\r\n", "\n"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ToolError::io(path, e)),
    };
    let Some(rest) = text.strip_prefix("---\n") else {
        return Ok(Some((String::new(), text)));
    };
    match rest.find("\n---\n") {
        Some(i) => {
            let header = format!("---\n{}\n---\n", &rest[..i]);
            Ok(Some((header, rest[i + 5..].to_owned())))
        }
        None => Ok(Some((String::new(), text))),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Whether an inline expectation is a list of effects (rather than a whole plan).
fn is_list(expect: &Value) -> bool {
    matches!(expect, Value::Array(_))
}

fn actual_json(actual: &Actual, list: bool) -> serde_json::Value {
    match actual {
        Actual::Plan(p) if list => to_json(&p.effects),
        Actual::Plan(p) => to_json(p),
        Actual::Error(e) => serde_json::json!({ "error": e }),
    }
}

/// Compares a case's plan with its expectation.
pub fn judge(tc: &TestCase, actual: &Actual, paint: Paint) -> Result<Verdict, ToolError> {
    match &tc.expectation {
        Expectation::Inline | Expectation::Recorded => {
            let Some(expect) = tc.case.expect.as_ref().filter(|v| !v.is_null()) else {
                return Ok(Verdict::Missing);
            };
            let want = to_json(expect);
            let got = actual_json(actual, is_list(expect));
            if want == got {
                return Ok(Verdict::Pass);
            }
            let want_effects = match (&want, is_list(expect)) {
                (w, true) => serde_json::from_value(w.clone()).ok(),
                (w, false) => serde_json::from_value::<Plan>(w.clone())
                    .ok()
                    .map(|p| p.effects),
            };
            Ok(Verdict::Fail(explain_mismatch(
                want_effects,
                &yaml_of(&want),
                actual,
                paint,
            )))
        }
        Expectation::Snapshot(path) => {
            let Some((_, body)) = read_snapshot(path)? else {
                return Ok(Verdict::Missing);
            };
            let got = actual.snapshot_text();
            if body.trim_end() == got.trim_end() {
                return Ok(Verdict::Pass);
            }
            let want_effects = serde_yaml::from_str::<Plan>(&body).ok().map(|p| p.effects);
            Ok(Verdict::Fail(explain_mismatch(
                want_effects,
                &body,
                actual,
                paint,
            )))
        }
    }
}

fn yaml_of(v: &serde_json::Value) -> String {
    serde_yaml::to_string(v).unwrap_or_default()
}

/// A readable account of how the actual plan differs from the expected one: effect by
/// effect when both are plans, else a line diff.
fn explain_mismatch(
    want: Option<Vec<skladsync_engine::Effect>>,
    want_text: &str,
    actual: &Actual,
    paint: Paint,
) -> String {
    if let (Some(want), Actual::Plan(plan)) = (want, actual) {
        let changes = plandiff::diff_effects(&want, &plan.effects);
        if !changes.is_empty() {
            return format!(
                "  {} {}\n{}",
                paint.red("- expected"),
                paint.green("+ actual"),
                plandiff::render(&changes, 2, paint)
            );
        }
    }
    let got = match actual {
        Actual::Plan(p) => p.to_yaml(),
        Actual::Error(e) => format!("!!! evaluation error: {e}\n"),
    };
    let diff = TextDiff::from_lines(want_text, &got);
    let mut s = String::new();
    for change in diff.iter_all_changes() {
        let line = change.to_string_lossy();
        let line = line.trim_end_matches('\n');
        match change.tag() {
            similar::ChangeTag::Delete => {
                s.push_str(&format!("  {}\n", paint.red(&format!("-{line}"))))
            }
            similar::ChangeTag::Insert => {
                s.push_str(&format!("  {}\n", paint.green(&format!("+{line}"))))
            }
            similar::ChangeTag::Equal => s.push_str(&format!("   {line}\n")),
        }
    }
    s
}

/// Writes the actual plan as the case's expectation.
pub fn update(tc: &TestCase, actual: &Actual) -> Result<(), ToolError> {
    match &tc.expectation {
        Expectation::Recorded => Err(ToolError::invalid(
            &tc.path,
            format!(
                "{} is a recording of what the daemon did: it is replayed, not rewritten \
                 (`skladsync case new --from {}` makes a case of it)",
                tc.name, tc.name
            ),
        )),
        Expectation::Snapshot(path) => {
            let header = match read_snapshot(path)? {
                Some((h, _)) if !h.is_empty() => h,
                _ => {
                    let mut h = String::from("---\nsource: tests/rules.rs\n");
                    if let Some(doc) = tc.case.doc.as_deref().filter(|d| !d.is_empty()) {
                        h.push_str(&format!(
                            "description: {}\n",
                            serde_json::to_string(doc).unwrap_or_default()
                        ));
                    }
                    h.push_str("---\n");
                    h
                }
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| ToolError::io(dir, e))?;
            }
            let text = format!("{header}{}\n", actual.snapshot_text().trim_end());
            std::fs::write(path, text).map_err(|e| ToolError::io(path, e))
        }
        Expectation::Inline => {
            let list = tc.case.expect.as_ref().is_some_and(is_list);
            let value = actual_json(actual, list);
            let text = std::fs::read_to_string(&tc.path).map_err(|e| ToolError::io(&tc.path, e))?;
            let new_text = replace_expect(&text, &value).ok_or_else(|| {
                ToolError::invalid(
                    &tc.path,
                    "cannot find a top-level `expect:` line to rewrite",
                )
            })?;
            let check = Case::from_yaml(&new_text).map_err(|e| ToolError::invalid(&tc.path, e))?;
            if check.expect.as_ref().map(to_json) != Some(value) {
                return Err(ToolError::invalid(
                    &tc.path,
                    "rewriting `expect:` would not give the plan back; update it by hand",
                ));
            }
            std::fs::write(&tc.path, new_text).map_err(|e| ToolError::io(&tc.path, e))
        }
    }
}

/// Replaces the value of the top-level `expect:` key, keeping every other line (and the
/// comments after it) as it is.
pub fn replace_expect(text: &str, value: &serde_json::Value) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("expect:") || l.starts_with("\"expect\":"))?;
    let mut end = start + 1;
    while end < lines.len() {
        let l = lines[end];
        let top = !l.is_empty() && !l.starts_with([' ', '\t', '-', '#']);
        if top {
            break;
        }
        end += 1;
    }
    while end > start + 1 && {
        let t = lines[end - 1].trim_start();
        t.is_empty() || t.starts_with('#') && !lines[end - 1].starts_with(' ')
    } {
        end -= 1;
    }
    let yaml = serde_yaml::to_string(value).ok()?;
    let mut block = String::from("expect:\n");
    for l in yaml.lines() {
        block.push_str("  ");
        block.push_str(l);
        block.push('\n');
    }
    let mut out = String::new();
    for l in &lines[..start] {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&block);
    for l in &lines[end..] {
        out.push_str(l);
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_keeps_what_follows() {
        let text = "event: {event: x}\nexpect:\n  event: x\n  effects: []\n# after\nworld: {}\n";
        let out = replace_expect(text, &serde_json::json!({"event": "x", "effects": [1]})).unwrap();
        assert_eq!(
            out,
            "event: {event: x}\nexpect:\n  event: x\n  effects:\n  - 1\n# after\nworld: {}\n"
        );
    }
}
