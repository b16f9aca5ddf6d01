//! Text, and conversions between types.

use super::{
    arg, list_or_null, short, text_bytes, want_str, Builtin, Family, Imp, LambdaArg, Size,
};
use crate::eval::SLOT_BYTES;
use crate::value::Value;

pub(super) fn builtins() -> Vec<Builtin> {
    let mut all = plain();
    for b in &mut all {
        let size = match b.name {
            "starts_with" | "ends_with" | "type" => Size::Free,
            "replace" => Size::Before(replace_size),
            "split" => Size::Before(split_size),
            "join" => Size::Before(join_size),
            "format" => Size::Before(format_size),
            "string" | "to_json" => Size::Before(text_size),
            "from_json" => Size::Before(from_json_size),
            _ => continue,
        };
        b.size = size;
    }
    all
}

fn plain() -> Vec<Builtin> {
    use LambdaArg::None as NoLambda;
    vec![
        builtin!(Family::String, "lower", "lower(text)", "The text in lower case (any script).",
            ["lower('ИП Иванов')" => "'ип иванов'"], 1, 1, NoLambda, Imp::Pure(lower)),
        builtin!(Family::String, "upper", "upper(text)", "The text in upper case.",
            ["upper('abc')" => "'ABC'"], 1, 1, NoLambda, Imp::Pure(upper)),
        builtin!(Family::String, "trim", "trim(text)", "The text without leading and trailing whitespace.",
            ["trim('  a b ')" => "'a b'"], 1, 1, NoLambda, Imp::Pure(trim)),
        builtin!(Family::String, "replace", "replace(text, from, to)", "Every occurrence of `from` replaced by `to`.",
            ["replace('a-b-c', '-', '/')" => "'a/b/c'"], 3, 3, NoLambda, Imp::Pure(replace)),
        builtin!(Family::String, "split", "split(text, separator)", "The parts of the text between separators.",
            ["split('a,b,,c', ',')" => "['a', 'b', '', 'c']"], 2, 2, NoLambda, Imp::Pure(split)),
        builtin!(Family::String, "join", "join(list, separator)",
            "The items as text, joined by the separator; nulls are left out.",
            ["join(['a', 1, null, 2.5], ', ')" => "'a, 1, 2.5'"], 2, 2, NoLambda, Imp::Pure(join)),
        builtin!(Family::String, "starts_with", "starts_with(text, prefix)", "Whether the text starts with the prefix.",
            ["starts_with('+79031234567', '+7')" => "true"], 2, 2, NoLambda, Imp::Pure(starts_with)),
        builtin!(Family::String, "ends_with", "ends_with(text, suffix)", "Whether the text ends with the suffix.",
            ["ends_with('order-R', '-R')" => "true"], 2, 2, NoLambda, Imp::Pure(ends_with)),
        builtin!(Family::String, "digits", "digits(text)",
            "Only the digits of the text: for comparing phone numbers written differently.",
            ["digits('+7 (903) 123-45-67')" => "'79031234567'", "digits(null)" => "null"],
            1, 1, NoLambda, Imp::Pure(digits)),
        builtin!(Family::String, "format", "format(pattern, value, …)",
            "The pattern with each `{}` replaced by the next value as text (`{{` and `}}` for braces).",
            ["format('{}-R{}', 'A-17', 2)" => "'A-17-R2'"], 1, usize::MAX, NoLambda, Imp::Pure(format)),
        builtin!(Family::Conversion, "string", "string(value)",
            "The value as text: strings as they are, numbers in plain notation, null as '', lists and objects as JSON.",
            ["string(19.90)" => "'19.9'", "string(null)" => "''", "string([1])" => "'[1]'"],
            1, 1, NoLambda, Imp::Pure(string)),
        builtin!(Family::Conversion, "type", "type(value)",
            "The type of the value: null, boolean, number, string, array or object.",
            ["type(1.5)" => "'number'", "type({})" => "'object'"], 1, 1, NoLambda, Imp::Pure(type_of)),
        builtin!(Family::Conversion, "to_json", "to_json(value)", "The value as compact JSON text.",
            ["to_json({a: [1, null]})" => "'{\"a\":[1,null]}'"], 1, 1, NoLambda, Imp::Pure(to_json)),
        builtin!(Family::Conversion, "from_json", "from_json(text)", "The value a JSON text describes.",
            ["from_json('{\"a\": 19.99}')" => "{a: 19.99}"], 1, 1, NoLambda, Imp::Pure(from_json)),
    ]
}

fn map_str(
    args: &[Value],
    what: impl std::fmt::Display,
    f: impl Fn(&str) -> String,
) -> Result<Value, String> {
    match arg(args, 0) {
        Value::Null => Ok(Value::Null),
        _ => Ok(Value::from(f(want_str(args, 0, what)?))),
    }
}

fn lower(args: &[Value]) -> Result<Value, String> {
    map_str(args, "lower()'s argument", str::to_lowercase)
}

fn upper(args: &[Value]) -> Result<Value, String> {
    map_str(args, "upper()'s argument", str::to_uppercase)
}

fn trim(args: &[Value]) -> Result<Value, String> {
    map_str(args, "trim()'s argument", |s| s.trim().to_owned())
}

fn replace(args: &[Value]) -> Result<Value, String> {
    let from = want_str(args, 1, "replace()'s `from`")?;
    let to = want_str(args, 2, "replace()'s `to`")?;
    if from.is_empty() {
        return Err("replace()'s `from` must not be empty".to_owned());
    }
    map_str(args, "replace()'s text", |s| s.replace(from, to))
}

fn split(args: &[Value]) -> Result<Value, String> {
    if arg(args, 0).is_null() {
        return Ok(Value::array(Vec::new()));
    }
    let text = want_str(args, 0, "split()'s text")?;
    let sep = want_str(args, 1, "split()'s separator")?;
    if sep.is_empty() {
        return Ok(Value::array(
            text.chars().map(|c| Value::from(c.to_string())).collect(),
        ));
    }
    Ok(Value::array(match sep.as_bytes() {
        // One ASCII character (`"#"`, `"/"`): a char pattern, not a substring searcher.
        [b] if b.is_ascii() => text.split(char::from(*b)).map(Value::str).collect(),
        _ => text.split(sep).map(Value::str).collect(),
    }))
}

/// `first(split(text, sep))` and `last(split(text, sep))` as one call (the compiler fuses
/// them, [`split_end`]): the one part wanted is found without building the others. Errors
/// and the memory counted are those of `split`.
pub(crate) fn split_ends() -> &'static [Builtin; 2] {
    static ENDS: std::sync::OnceLock<[Builtin; 2]> = std::sync::OnceLock::new();
    ENDS.get_or_init(|| {
        use LambdaArg::None as NoLambda;
        let mut ends = [
            builtin!(
                Family::String,
                "split",
                "first(split(text, separator))",
                "The first part of `split(text, separator)`.",
                [],
                2,
                2,
                NoLambda,
                Imp::Pure(split_first)
            ),
            builtin!(
                Family::String,
                "split",
                "last(split(text, separator))",
                "The last part of `split(text, separator)`.",
                [],
                2,
                2,
                NoLambda,
                Imp::Pure(split_last)
            ),
        ];
        for b in &mut ends {
            b.size = Size::Before(split_size);
        }
        ends
    })
}

/// The fused form of `first(split(…))` (`last` false) or `last(split(…))` (`last` true).
pub(crate) fn split_end(last: bool) -> &'static Builtin {
    let [first_end, last_end] = split_ends();
    if last {
        last_end
    } else {
        first_end
    }
}

fn split_first(args: &[Value]) -> Result<Value, String> {
    split_part(args, false)
}

fn split_last(args: &[Value]) -> Result<Value, String> {
    split_part(args, true)
}

/// The first or last item `split(args)` would give, by the same rules.
fn split_part(args: &[Value], last: bool) -> Result<Value, String> {
    if arg(args, 0).is_null() {
        return Ok(Value::Null);
    }
    let text = want_str(args, 0, "split()'s text")?;
    let sep = want_str(args, 1, "split()'s separator")?;
    if sep.is_empty() {
        let c = if last {
            text.chars().next_back()
        } else {
            text.chars().next()
        };
        return Ok(c.map_or(Value::Null, |c| Value::from(c.to_string())));
    }
    let part = match (sep.as_bytes(), last) {
        ([b], false) if b.is_ascii() => text.split(char::from(*b)).next(),
        ([b], true) if b.is_ascii() => text.rsplit(char::from(*b)).next(),
        (_, false) => text.split(sep).next(),
        (_, true) => text.rsplit(sep).next(),
    };
    Ok(part.map_or(Value::Null, Value::str))
}

fn join(args: &[Value]) -> Result<Value, String> {
    let items = list_or_null(args, 0, "join()'s list")?;
    let sep = want_str(args, 1, "join()'s separator")?;
    let parts: Vec<String> = items
        .iter()
        .filter(|v| !v.is_null())
        .map(Value::to_text)
        .collect();
    Ok(Value::from(parts.join(sep)))
}

fn starts_with(args: &[Value]) -> Result<Value, String> {
    if arg(args, 0).is_null() {
        return Ok(Value::bool(false));
    }
    Ok(Value::bool(
        want_str(args, 0, "starts_with()'s text")?.starts_with(want_str(args, 1, "the prefix")?),
    ))
}

fn ends_with(args: &[Value]) -> Result<Value, String> {
    if arg(args, 0).is_null() {
        return Ok(Value::bool(false));
    }
    Ok(Value::bool(
        want_str(args, 0, "ends_with()'s text")?.ends_with(want_str(args, 1, "the suffix")?),
    ))
}

fn digits(args: &[Value]) -> Result<Value, String> {
    match arg(args, 0) {
        Value::Null => Ok(Value::Null),
        Value::Int(_) | Value::Dec(_) => Ok(Value::from(
            arg(args, 0)
                .to_text()
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>(),
        )),
        _ => map_str(args, "digits()'s argument", |s| {
            s.chars().filter(char::is_ascii_digit).collect()
        }),
    }
}

fn format(args: &[Value]) -> Result<Value, String> {
    let pattern = want_str(args, 0, "format()'s pattern")?;
    let mut values = args.iter().skip(1);
    let room: usize = args
        .iter()
        .skip(1)
        .map(|v| v.as_str().map_or(16, str::len))
        .sum();
    let mut out = String::with_capacity(pattern.len() + room);
    // Copies the text between braces whole; `{{` and `}}` are braces, `{}` the next value,
    // any other brace itself.
    let mut rest = pattern;
    // Braces are ASCII, so a byte search finds them (no UTF-8 sequence holds their byte).
    while let Some(at) = rest.bytes().position(|b| b == b'{' || b == b'}') {
        out.push_str(&rest[..at]);
        let bytes = rest.as_bytes();
        match (bytes[at], bytes.get(at + 1)) {
            (b'{', Some(b'{')) => {
                out.push('{');
                rest = &rest[at + 2..];
            }
            (b'}', Some(b'}')) => {
                out.push('}');
                rest = &rest[at + 2..];
            }
            (b'{', Some(b'}')) => {
                let v = values.next().ok_or_else(|| {
                    format!("the pattern {pattern:?} has more `{{}}` than values")
                })?;
                push_text(&mut out, v);
                rest = &rest[at + 2..];
            }
            (brace, _) => {
                out.push(char::from(brace));
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    Ok(Value::from(out))
}

/// Appends [`Value::to_text`] of a value, without building it apart for texts and numbers.
fn push_text(out: &mut String, v: &Value) {
    use std::fmt::Write;
    match v {
        Value::Null => {}
        Value::Str(s) => out.push_str(s),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        other => out.push_str(&other.to_text()),
    }
}

fn string(args: &[Value]) -> Result<Value, String> {
    // A text is its own text: shared, not copied.
    let v = arg(args, 0);
    if let Value::Str(_) = v {
        return Ok(v.clone());
    }
    Ok(Value::from(v.to_text()))
}

fn type_of(args: &[Value]) -> Result<Value, String> {
    Ok(Value::Str(type_text(arg(args, 0))))
}

/// The name of a value's type ([`Value::type_name`]) as a text shared by every call, so
/// `type(x) == "pending result"` allocates nothing.
fn type_text(v: &Value) -> crate::value::Str {
    use std::sync::OnceLock;
    static TEXTS: OnceLock<[crate::value::Str; 7]> = OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        [
            Value::Null,
            Value::bool(false),
            Value::Int(0),
            Value::str(""),
            Value::array(Vec::new()),
            Value::object(crate::value::Map::new()),
            Value::Ref(std::sync::Arc::new(crate::value::PendingRef {
                name: "".into(),
                path: Vec::new(),
                known: None,
            })),
        ]
        .map(|v| v.type_name().into())
    });
    let text = match v {
        Value::Null => &texts[0],
        Value::Bool(_) => &texts[1],
        Value::Int(_) | Value::Dec(_) => &texts[2],
        Value::Str(_) => &texts[3],
        Value::Array(_) => &texts[4],
        Value::Object(_) => &texts[5],
        Value::Ref(_) => &texts[6],
    };
    text.clone()
}

fn to_json(args: &[Value]) -> Result<Value, String> {
    Ok(Value::from(arg(args, 0).to_json()))
}

fn from_json(args: &[Value]) -> Result<Value, String> {
    let text = want_str(args, 0, "from_json()'s argument")?;
    serde_json::from_str::<Value>(text)
        .map_err(|e| format!("not JSON ({e}): {}", short(arg(args, 0))))
}

// ---- what the calls that can build much more than they are given may build ----

fn str_len(args: &[Value], i: usize) -> u64 {
    arg(args, i).as_str().map_or(0, |s| s.len() as u64)
}

fn replace_size(args: &[Value], _cap: u64) -> u64 {
    let (text, from, to) = (str_len(args, 0), str_len(args, 1), str_len(args, 2));
    match text.checked_div(from) {
        Some(times) if to > from => text + times.saturating_mul(to - from),
        _ => text,
    }
}

fn split_size(args: &[Value], _cap: u64) -> u64 {
    let (Some(text), Some(sep)) = (arg(args, 0).as_str(), arg(args, 1).as_str()) else {
        return 0;
    };
    let parts = if sep.is_empty() {
        text.chars().count()
    } else {
        match sep.as_bytes() {
            [b] if b.is_ascii() => text.bytes().filter(|c| c == b).count() + 1,
            _ => text.matches(sep).count() + 1,
        }
    };
    text.len() as u64 + parts as u64 * SLOT_BYTES
}

fn join_size(args: &[Value], cap: u64) -> u64 {
    let Some(items) = arg(args, 0).as_array() else {
        return 0;
    };
    let sep = str_len(args, 1);
    let mut total = sep.saturating_mul(items.len() as u64);
    for item in items {
        if total > cap {
            break;
        }
        total += text_bytes(item, cap);
    }
    total
}

fn format_size(args: &[Value], cap: u64) -> u64 {
    let mut total = str_len(args, 0);
    for v in args.iter().skip(1) {
        if total > cap {
            break;
        }
        total += text_bytes(v, cap);
    }
    total
}

fn text_size(args: &[Value], cap: u64) -> u64 {
    text_bytes(arg(args, 0), cap) + 2
}

/// A parsed document takes up to about 24 times its text (`[0,0,…]`: a 2-byte item is a
/// 24-byte value in a list that may have grown twice its length).
fn from_json_size(args: &[Value], _cap: u64) -> u64 {
    str_len(args, 0).saturating_mul(24)
}

#[cfg(test)]
mod type_tests {
    use super::*;
    use crate::value::{Map, PendingRef};
    use std::sync::Arc;

    /// `type()` gives every kind of value its `type_name`, as a text shared by every call
    /// (the general way built a new text each time).
    #[test]
    fn type_of_names_every_kind_with_a_shared_text() {
        let values = [
            Value::Null,
            Value::bool(true),
            Value::Int(-3),
            Value::from_json(&serde_json::json!(1.5)),
            Value::str("x"),
            Value::array(vec![Value::Int(1)]),
            Value::object(Map::new()),
            Value::Ref(Arc::new(PendingRef {
                name: "order".into(),
                path: Vec::new(),
                known: None,
            })),
        ];
        for v in &values {
            let (Ok(Value::Str(a)), Ok(Value::Str(b))) = (
                type_of(std::slice::from_ref(v)),
                type_of(std::slice::from_ref(v)),
            ) else {
                panic!("type() of {} is not a text", v.type_name());
            };
            assert_eq!(&*a, v.type_name());
            assert!(
                crate::value::Str::ptr_eq(&a, &b),
                "type() of {} built a new text",
                v.type_name()
            );
        }
    }
}
