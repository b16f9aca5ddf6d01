//! How one scalar is written: expressions pretty-printed; other text as it was written
//! (plain stays plain, quotes stay quotes, a block stays a block, a plain text broken over
//! lines keeps its breaks) whenever that still reads back as the same value.

use skladsync_engine::syntax::{self, pretty};
use skladsync_engine::template::is_template;
use yaml_rust2::scanner::TScalarStyle;

use super::tree::Scalar;

/// A scalar as written.
#[derive(Clone, Debug, PartialEq)]
pub enum Repr {
    /// On the line of its key or dash.
    Inline(String),
    /// A plain text broken over lines: the first on the key's line, the rest indented.
    Lines(Vec<String>),
    /// A block scalar: the header (`|`, `>-`…) and its lines, unindented.
    Block(String, Vec<String>),
}

impl Repr {
    /// The text when it is one line.
    pub fn inline(&self) -> Option<&str> {
        match self {
            Repr::Inline(s) => Some(s),
            _ => None,
        }
    }
}

/// What YAML makes of a plain scalar's text: a string, or something else (a number, a
/// boolean, null).
pub fn plain_is_string(raw: &str) -> bool {
    matches!(
        serde_yaml::from_str::<serde_yaml::Value>(raw),
        Ok(serde_yaml::Value::String(ref s)) if s == raw
    )
}

/// Whether text can be written plain (in a flow collection when `flow`).
pub fn plain_ok(s: &str, flow: bool) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.trim() != s || s.contains(['\n', '\r', '\t']) || s.chars().any(char::is_control) {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    if flow && s.contains([',', '[', ']', '{', '}']) {
        return false;
    }
    plain_is_string(s)
}

/// `'text'`, when the text has no line breaks or control characters.
pub fn single(s: &str) -> Option<String> {
    if s.chars().any(char::is_control) {
        return None;
    }
    Some(format!("'{}'", s.replace('\'', "''")))
}

/// `"text"` with escapes.
pub fn double(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `repr`, written under a key, reads back as `value`.
pub fn reads_back(repr: &Repr, value: &str) -> bool {
    let doc = match repr {
        Repr::Inline(s) => format!("k: {s}\n"),
        Repr::Lines(lines) => {
            let mut d = format!("k: {}\n", lines.first().map_or("", String::as_str));
            for l in lines.iter().skip(1) {
                d.push_str(&format!("  {l}\n"));
            }
            d
        }
        Repr::Block(h, lines) => {
            let mut d = format!("k: {h}\n");
            for l in lines {
                if l.is_empty() {
                    d.push('\n');
                } else {
                    d.push_str(&format!("  {l}\n"));
                }
            }
            d
        }
    };
    match serde_yaml::from_str::<serde_yaml::Value>(&doc) {
        Ok(v) => v.get("k").and_then(serde_yaml::Value::as_str) == Some(value),
        Err(_) => false,
    }
}

/// A one-line quoted form: single quotes unless only double quotes can say it.
fn quoted(s: &str) -> String {
    single(s).unwrap_or_else(|| double(s))
}

/// A multi-line text as a literal block, if it can be one.
fn literal(value: &str) -> Option<Repr> {
    let body = value.strip_suffix('\n').unwrap_or(value);
    let chomp = if !value.ends_with('\n') {
        "-"
    } else if body.ends_with('\n') || body.is_empty() {
        "+"
    } else {
        ""
    };
    let body = if chomp == "+" {
        value.strip_suffix('\n').unwrap_or(value)
    } else {
        body
    };
    let lines: Vec<String> = body.split('\n').map(str::to_owned).collect();
    let indent = if lines.first().is_some_and(|l| l.starts_with(' ')) {
        "2"
    } else {
        ""
    };
    let repr = Repr::Block(format!("|{indent}{chomp}"), lines);
    reads_back(&repr, value).then_some(repr)
}

/// Text that is not an expression, written as it was written where that still works.
pub fn text(sc: &Scalar, flow: bool) -> Repr {
    let v = &sc.value;
    match sc.style {
        TScalarStyle::Plain => {
            if !v.contains('\n')
                && !sc.src.contains('\n')
                && (plain_ok(v, flow) || !plain_is_string(v))
            {
                return Repr::Inline(v.clone());
            }
            if !flow && !v.contains('\n') {
                let segs: Vec<String> = sc.src.lines().map(|l| l.trim().to_owned()).collect();
                if segs.len() > 1 && segs.iter().all(|s| !s.is_empty()) && segs.join(" ") == *v {
                    let repr = Repr::Lines(segs);
                    if reads_back(&repr, v) {
                        return repr;
                    }
                }
            }
        }
        TScalarStyle::SingleQuoted => {
            if let Some(s) = single(v).filter(|_| !v.contains('\n')) {
                return Repr::Inline(s);
            }
        }
        TScalarStyle::DoubleQuoted => return Repr::Inline(double(v)),
        TScalarStyle::Literal | TScalarStyle::Folded if !flow => {
            let mut lines = sc.src.lines();
            let header: String = lines
                .next()
                .unwrap_or("|")
                .chars()
                .take_while(|c| matches!(c, '|' | '>' | '-' | '+'))
                .collect();
            let body: Vec<&str> = lines.collect();
            let indent = body
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start_matches(' ').len())
                .min()
                .unwrap_or(0);
            let mut content: Vec<String> = body
                .iter()
                .map(|l| {
                    if l.trim().is_empty() {
                        String::new()
                    } else {
                        l[indent..].to_owned()
                    }
                })
                .collect();
            while content.last().is_some_and(String::is_empty) {
                content.pop();
            }
            let repr = Repr::Block(header, content);
            if reads_back(&repr, v) {
                return repr;
            }
        }
        _ => {}
    }
    if !v.contains('\n') {
        if plain_ok(v, flow) {
            return Repr::Inline(v.clone());
        }
        return Repr::Inline(quoted(v));
    }
    if !flow {
        if let Some(r) = literal(v) {
            return r;
        }
    }
    Repr::Inline(double(v))
}

/// An expression that does not parse.
#[derive(Debug, Clone)]
pub struct BadExpr {
    /// The text.
    pub text: String,
    /// What the parser said.
    pub message: String,
}

/// A scalar in an expression position: pretty-printed (templates and non-string scalars
/// left as they are). `col` is where it would start on the current line, `indent` the
/// indentation of a block's lines, `width` the line width.
pub fn expr(
    sc: &Scalar,
    flow: bool,
    col: usize,
    indent: usize,
    width: usize,
) -> Result<Repr, BadExpr> {
    let v = &sc.value;
    let plain_other = sc.style == TScalarStyle::Plain && !plain_is_string(v);
    if plain_other || is_template(v) {
        return Ok(text(sc, flow));
    }
    let parsed = syntax::parse(v).map_err(|e| BadExpr {
        text: v.clone(),
        message: e.message,
    })?;
    let one = pretty::flat(&parsed);
    let inline = if plain_ok(&one, flow) {
        one.clone()
    } else {
        quoted(&one)
    };
    if flow || col + inline.chars().count() <= width {
        return Ok(Repr::Inline(inline));
    }
    let laid = pretty::layout(&parsed, width.saturating_sub(indent).max(40));
    if !laid.contains('\n') && indent + laid.chars().count() > width {
        // Nowhere to break it and too long even in a block: one long line.
        return Ok(Repr::Inline(inline));
    }
    Ok(Repr::Block(
        "|".to_owned(),
        laid.lines().map(|l| l.trim_end().to_owned()).collect(),
    ))
}
