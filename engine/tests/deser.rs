//! Reading JSON text straight into engine values (`Value`'s own `Deserialize`, what the
//! daemon does with the API answers it evaluates) gives exactly the value of parsing it into a
//! `serde_json::Value` and converting that (`Value::from_json`): the same variants (an integer
//! stays an integer, a decimal keeps its digits and scale), the same keys in the same order,
//! the same pending references; and a text one way refuses, the other refuses too.

use proptest::prelude::*;
use skladsync_engine::Value;

/// Equality with nothing loose about it: `Value`'s own `==` takes `1` for `1.0` and ignores
/// key order; this does neither.
fn strict_eq(a: &Value, b: &Value) -> Result<(), String> {
    let differ = || Err(format!("{a:?} differs from {b:?}"));
    match (a, b) {
        (Value::Null, Value::Null) => Ok(()),
        (Value::Bool(x), Value::Bool(y)) if x == y => Ok(()),
        (Value::Int(x), Value::Int(y)) if x == y => Ok(()),
        (Value::Dec(x), Value::Dec(y))
            if x.mantissa() == y.mantissa() && x.scale() == y.scale() =>
        {
            Ok(())
        }
        (Value::Str(x), Value::Str(y)) if x == y => Ok(()),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y.iter())
            .try_for_each(|(x, y)| strict_eq(x, y)),
        (Value::Object(x), Value::Object(y)) if x.len() == y.len() => {
            for ((kx, vx), (ky, vy)) in x.iter().zip(y.iter()) {
                if kx != ky {
                    return differ();
                }
                strict_eq(vx, vy)?;
            }
            Ok(())
        }
        (Value::Ref(x), Value::Ref(y)) if **x == **y => Ok(()),
        _ => differ(),
    }
}

/// Both reads of `text`: equal values, or both refused.
fn same_both_ways(text: &str) -> Result<(), String> {
    let deser = serde_json::from_str::<Value>(text);
    let conv = serde_json::from_str::<serde_json::Value>(text).map(|j| Value::from_json(&j));
    match (deser, conv) {
        (Ok(a), Ok(b)) => strict_eq(&a, &b).map_err(|e| format!("{text}: {e}")),
        (Err(_), Err(_)) => Ok(()),
        (Ok(a), Err(e)) => Err(format!("{text}: deser gave {a:?}, the parse refused: {e}")),
        (Err(e), Ok(b)) => Err(format!("{text}: deser refused ({e}), conv gave {b:?}")),
    }
}

/// JSON as text, so that what a `serde_json::Value` would hide (duplicate keys, number
/// spellings, escapes) is written out.
#[derive(Clone, Debug)]
enum Json {
    Null,
    Bool(bool),
    Number(String),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// A string as JSON text, each character written plainly or escaped (`\n`, `\uXXXX`, a
/// surrogate pair).
fn write_str(s: &str, escapes: &[bool], out: &mut String) {
    out.push('"');
    for (i, c) in s.chars().enumerate() {
        let escape = escapes
            .get(i % escapes.len().max(1))
            .copied()
            .unwrap_or(false);
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' if escape => out.push_str("\\n"),
            c if (c as u32) < 0x20 || escape => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Json {
    fn write(&self, escapes: &[bool], out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::Str(s) => write_str(s, escapes, out),
            Json::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write(escapes, out);
                }
                out.push(']');
            }
            Json::Object(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(k, escapes, out);
                    out.push(':');
                    v.write(escapes, out);
                }
                out.push('}');
            }
        }
    }
}

/// Numbers as APIs write them, and as they could: integers of every size (past `i64` and
/// `u64`), `-0`, decimals of many digits, exponents (some out of a float's range).
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|u| u.to_string()),
        (0u32..10_000, 0u32..100).prop_map(|(a, b)| format!("{a}.{b:02}")),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        "-?[1-9][0-9]{0,40}",
        "-?[0-9]\\.[0-9]{1,30}",
        "-?[1-9][0-9]{0,5}(\\.[0-9]{1,8})?[eE][+-]?[0-9]{1,3}",
        Just("-0".to_string()),
        Just("-0.0".to_string()),
        Just("0e0".to_string()),
        Just("1e400".to_string()),
        Just("9223372036854775807".to_string()),
        Just("9223372036854775808".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("18446744073709551616".to_string()),
        Just("79228162514264337593543950336".to_string()),
    ]
}

/// Keys: a few that repeat (so lists of one shape, duplicates, `$ref`), and any text.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["id", "name", "offer", "price", "$ref", "a", "", "301"])
            .prop_map(str::to_string),
        1 => any::<String>(),
        1 => "[a-zA-Z\"\\\\/\\n\\t\u{0}-\u{1f}ёЖ😀]{0,6}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z]{0,5}",
        // Pending references (`{"$ref": "name.key.0"}`) and texts that are not.
        1 => "[a-z_]{0,4}(\\.[a-z0-9]{0,3}){0,3}",
        1 => any::<String>(),
    ]
}

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number().prop_map(Json::Number),
        text().prop_map(Json::Str),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Json::Array),
            prop::collection::vec((key(), inner.clone()), 0..6).prop_map(Json::Object),
            // Wide objects (past the keys an object scans: a hash index), keys repeating now
            // and then.
            prop::collection::vec(
                ((0u8..48).prop_map(|i| format!("k{i}")), inner.clone()),
                30..44
            )
            .prop_map(Json::Object),
            // A list of objects of one shape, their values (and nested objects) differing:
            // the objects after the first read with the one before as their model; some
            // with a key more, fewer, or another in the middle.
            (
                prop::collection::vec(key(), 1..5),
                prop::collection::vec((prop::collection::vec(inner, 1..5), 0u8..6, key()), 1..6),
            )
                .prop_map(|(keys, rows)| {
                    Json::Array(
                        rows.into_iter()
                            .map(|(values, twist, extra)| {
                                let mut entries: Vec<(String, Json)> = keys
                                    .iter()
                                    .cloned()
                                    .zip(values.into_iter().cycle())
                                    .collect();
                                match twist {
                                    0 => entries.push((extra, Json::Null)),
                                    1 => {
                                        entries.pop();
                                    }
                                    2 if entries.len() > 1 => entries[1].0 = extra,
                                    _ => {}
                                }
                                Json::Object(entries)
                            })
                            .collect(),
                    )
                }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn deser_gives_what_parse_and_convert_give(
        doc in json(),
        escapes in prop::collection::vec(any::<bool>(), 1..5),
    ) {
        let mut text = String::new();
        doc.write(&escapes, &mut text);
        if let Err(e) = same_both_ways(&text) {
            return Err(TestCaseError::fail(e));
        }
    }
}

/// An object of `n` keys `k0`…, with `k{again}` once more after them.
fn wide(n: usize, again: Option<usize>) -> String {
    let mut entries: Vec<String> = (0..n).map(|i| format!(r#""k{i}": {i}"#)).collect();
    if let Some(k) = again {
        entries.push(format!(r#""k{k}": "again""#));
    }
    format!("{{{}}}", entries.join(", "))
}

#[test]
fn edge_cases_read_the_same_both_ways() {
    let cases = [
        // Numbers.
        "0",
        "-0",
        "-0.0",
        "0.0",
        "1.0",
        "1.50",
        "19.99",
        "0.1",
        "0.30000000000000004",
        "3.141592653589793238462643383279",
        "123456789.123456789",
        "1e3",
        "1E3",
        "1e-7",
        "-2.5e+300",
        "5e-324",
        "1e400",
        "-1e400",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "123456789012345678901234567890",
        "[1, 1.0, 1e0, 10e-1, 100e-2]",
        // Strings with escapes.
        r#""""#,
        r#""a\"b\\c\/d\b\f\n\r\t""#,
        r#""\u0000\u001f\u00e9\u0416\ud83d\ude00""#,
        r#""ёлка 😀""#,
        r#""\ud800""#,
        // Objects: duplicate keys (the last value, in the first place), escaped keys,
        // empty ones, key order kept.
        r#"{"a": 1, "b": 2, "a": 3}"#,
        r#"{"a": 1, "a": {"x": 1}, "a": [2]}"#,
        r#"{"a\"b": 1, "\u0061": 2, "a": 3}"#,
        r#"{"z": 1, "y": 2, "x": 3}"#,
        r#"{}"#,
        r#"[]"#,
        r#"[{}, {}, [], [[]], {"": {}}]"#,
        r#"{"": null, "301": {"id": 301}}"#,
        // Pending references, and objects that are not.
        r#"{"$ref": "ms_order.meta"}"#,
        r#"{"$ref": ""}"#,
        r#"{"$ref": "a.b", "x": 1}"#,
        r#"{"$ref": "a", "$ref": "b.c"}"#,
        r#"{"$ref": 5}"#,
        // Lists of one shape: the same keys, fewer, more, another in the middle, duplicates,
        // the model a pending reference or not an object.
        r#"[{"a": 1, "b": {"c": 2}}, {"a": 3, "b": {"c": 4}}, {"a": 5}, {"a": 6, "b": 7, "d": 8}]"#,
        r#"[{"a": 1, "b": 2, "c": 3}, {"a": 4, "x": 5, "c": 6}, {"a": 1, "b": 2, "a": 9}]"#,
        r#"[{"a": 1, "b": 2}, {"a": 1, "b": 2, "b": 3}, {"b": 1, "a": 2}]"#,
        r#"[{"$ref": "x.y"}, {"$ref": "x.z"}, {"$ref": ""}, {"$ref": "q.r"}]"#,
        r#"[{"$ref": 1}, {"$ref": "x.y"}]"#,
        r#"[1, {"a": 1}, "s", {"a": 2}, null, {"a": [{"k": 1}, {"k": 2}]}]"#,
        r#"[[{"a": 1}], [{"a": 2}, {"a": 3}]]"#,
        // Deep nesting: within serde_json's limit both read it, past it both refuse.
        &format!("{}1{}", "[".repeat(120), "]".repeat(120)),
        &format!("{}1{}", "[".repeat(200), "]".repeat(200)),
        &format!("{}{}", r#"{"a":"#.repeat(200), "}".repeat(200)),
        // Wide objects: distinct keys, a key again at the end, in the middle.
        &wide(40, None),
        &wide(40, Some(39)),
        &wide(40, Some(3)),
        &wide(20, Some(0)),
        // Not JSON.
        "",
        "{",
        r#"{"a": 1,}"#,
        "[1, 2",
        "nul",
        "01",
        "1.",
        r#"{"a": 1} x"#,
        "NaN",
    ];
    for text in cases {
        if let Err(e) = same_both_ways(text) {
            panic!("{e}");
        }
    }
}

#[test]
fn read_numbers_keep_their_kind_and_digits() {
    let v: Value = serde_json::from_str(
        "[-0, 1.0, 19.99, 1e3, 9223372036854775808, 18446744073709551616, 1.50]",
    )
    .unwrap();
    let items = v.as_array().unwrap();
    assert!(matches!(items[0], Value::Int(0)));
    assert!(matches!(items[1], Value::Int(1)));
    assert!(matches!(&items[2], Value::Dec(d) if d.to_string() == "19.99"));
    assert!(matches!(items[3], Value::Int(1000)));
    assert!(matches!(&items[4], Value::Dec(d) if d.to_string() == "9223372036854775808"));
    // Past u64, serde_json reads a float either way.
    assert_eq!(items[5].to_json(), "18446744073709552000");
    assert!(matches!(&items[6], Value::Dec(d) if d.to_string() == "1.5"));
}

#[test]
fn objects_of_a_list_read_from_text_share_their_keys() {
    let text = r#"[
        {"id": 1, "offer": {"xmlId": "a", "price": 19.99}},
        {"id": 2, "offer": {"xmlId": "b", "price": 5}},
        {"id": 3, "offer": {"price": 1, "xmlId": "c"}},
        {"id": 4, "offer": {"price": 2, "xmlId": "d"}, "extra": true}
    ]"#;
    let v: Value = serde_json::from_str(text).unwrap();
    let items = v.as_array().unwrap();
    let obj = |v: &Value| v.as_object().unwrap().clone();
    assert!(obj(&items[0]).same_keys(&obj(&items[1])));
    assert!(obj(&items[0].get("offer")).same_keys(&obj(&items[1].get("offer"))));
    // Keys in another order: a table of their own; the next object shares that one.
    assert!(!obj(&items[1].get("offer")).same_keys(&obj(&items[2].get("offer"))));
    assert!(obj(&items[2].get("offer")).same_keys(&obj(&items[3].get("offer"))));
    // A key more: its own table, its keys found all the same.
    assert!(!obj(&items[2]).same_keys(&obj(&items[3])));
    assert_eq!(items[3].get("extra"), Value::bool(true));
    assert_eq!(items[3].get("offer").get("xmlId"), Value::str("d"));
    assert_eq!(items[1].get("offer").get("xmlId"), Value::str("b"));
}

/// [`strict_eq`], and every key of every object of `a` found in `b` (by its index, when
/// the object is wide) with the same value.
fn same_found(a: &Value, b: &Value) -> Result<(), String> {
    strict_eq(a, b)?;
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y.iter())
            .try_for_each(|(x, y)| same_found(x, y)),
        (Value::Object(x), Value::Object(y)) => x.iter().try_for_each(|(k, v)| {
            let text = String::from(&**k);
            match y.get(text.as_str()) {
                Some(w) => same_found(v, w),
                None => Err(format!("{k} is not found in {b:?}")),
            }
        }),
        _ => Ok(()),
    }
}

/// Reads `text` both ways: the same value, its keys found.
fn read_as_converted(text: &str) -> Value {
    let deser: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    let conv = Value::from_json(&json);
    if let Err(e) = same_found(&deser, &conv).and_then(|()| same_found(&conv, &deser)) {
        panic!("{text}: {e}");
    }
    deser
}

/// An object of the keys `names` (`k{i}` for a number), each's value its position.
fn object_of(names: impl IntoIterator<Item = String>) -> String {
    let entries: Vec<String> = names
        .into_iter()
        .enumerate()
        .map(|(i, k)| format!("\"{k}\": {i}"))
        .collect();
    format!("{{{}}}", entries.join(", "))
}

#[test]
fn objects_read_again_follow_the_shapes_read_before_and_read_the_same() {
    // Each test runs on a thread of its own: the shapes this thread knows start empty.
    let texts: Vec<String> = vec![
        r#"{"a": 1, "b": {"x": 1, "y": [1, 2]}, "c": 3}"#.into(),
        r#"{"a": 1, "b": 2}"#.into(),
        r#"{"a": 1, "b": {"x": 1, "y": [1, 2]}, "c": 3, "d": 4}"#.into(),
        // A key read again after keys the shapes know: its first place, its last value.
        r#"{"a": 1, "b": 2, "a": 3}"#.into(),
        r#"{"a": 1, "b": 2, "c": 3, "b": 4, "e": 5}"#.into(),
        // Ids as keys after known keys; keys of another order; escaped keys.
        r#"{"a": 1, "301": {"id": 301}, "b": 2}"#.into(),
        r#"{"b": 1, "a": 2}"#.into(),
        r#"{"\u0061": 1, "b\"": 2}"#.into(),
        r#"{}"#.into(),
        r#"{"$ref": "ms_order.meta"}"#.into(),
        r#"{"$ref": ""}"#.into(),
        r#"[{"a": 1, "b": 2}, {"a": 3, "b": 4}, {"b": 5}]"#.into(),
        // Wide objects (their index shared), one with a duplicate, one past the depth the
        // shapes follow.
        object_of((0..40).map(|i| format!("k{i}"))),
        object_of((0..40).map(|i| format!("k{i}")).chain(["k7".to_string()])),
        object_of((0..200).map(|i| format!("k{i}"))),
        // More first keys than the shapes know after one key.
        format!(
            "[{}]",
            (0..40)
                .map(|i| format!(r#"{{"first{i}": {i}, "z": 0}}"#))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        // More keys than the shapes hold.
        format!(
            "[{}]",
            (0..60)
                .map(|j| object_of((0..100).map(|i| format!("n{j}_{i}"))))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ];
    // Read once (the shapes learnt), then again (the shapes followed), then once more
    // after all of them (the shapes full).
    for _ in 0..3 {
        for text in &texts {
            read_as_converted(text);
        }
    }
    // Objects of the same keys read apart share their key table, wide ones too.
    let first = read_as_converted(&texts[0]);
    let again = read_as_converted(&texts[0]);
    let obj = |v: &Value| v.as_object().unwrap().clone();
    assert!(obj(&first).same_keys(&obj(&again)));
    assert!(obj(&first.get("b")).same_keys(&obj(&again.get("b"))));
    let wide = read_as_converted(&texts[12]);
    assert!(obj(&wide).same_keys(&obj(&read_as_converted(&texts[12]))));
    // A prefix of known keys is an object of its own keys.
    let prefix = read_as_converted(&texts[1]);
    assert_eq!(obj(&prefix).len(), 2);
    assert!(!obj(&prefix).same_keys(&obj(&first)));
}
