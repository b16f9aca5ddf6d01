//! Lists and objects.

use std::collections::HashSet;
use std::sync::Arc;

use super::{
    arg, list_or_null, short, want_array, want_int, Builtin, Family, Imp, LambdaArg, Size,
};
use crate::eval::{Call, Fail, ENTRY_BYTES, SLOT_BYTES};
use crate::value::{Hasher, Map, Value};

pub(super) fn builtins() -> Vec<Builtin> {
    let mut all = plain();
    for b in &mut all {
        b.size = match b.name {
            "first" | "last" | "len" | "empty" | "contains" => Size::Free,
            "flatten" => Size::Before(flatten_size),
            "entries" => Size::Before(entries_size),
            "chunks" => Size::Before(chunks_size),
            "compact" => Size::Before(compact_size),
            _ => continue,
        };
    }
    for b in &mut all {
        b.owned = match b.name {
            "merge" => Some(merge_owned),
            "compact" => Some(compact_owned),
            _ => continue,
        };
    }
    all
}

fn plain() -> Vec<Builtin> {
    use LambdaArg::{None as NoLambda, Optional, Required};
    vec![
        builtin!(Family::Collection, "map", "map(list, item => value)",
            "Applies the lambda to every item. Null counts as the empty list.",
            ["map([1, 2, 3], x => x * 10)" => "[10, 20, 30]",
             "[{q: 2}, {q: 5}] | map(i => i.q)" => "[2, 5]",
             "map(null, x => x)" => "[]"],
            1, 1, Required(1), Imp::Ctx(map)),
        builtin!(Family::Collection, "filter", "filter(list, item => condition)",
            "The items for which the lambda is true.",
            ["filter([1, 2, 3, 4], x => x % 2 == 0)" => "[2, 4]"],
            1, 1, Required(1), Imp::Ctx(filter)),
        builtin!(Family::Collection, "find", "find(list, item => condition)",
            "The first item for which the lambda is true, or null.",
            ["find([{id: 1}, {id: 2}], i => i.id == 2)" => "{id: 2}",
             "find([1, 2], x => x > 5)" => "null"],
            1, 1, Required(1), Imp::Ctx(find)),
        builtin!(Family::Collection, "any", "any(list, item => condition?)",
            "Whether the lambda is true for at least one item (without a lambda: whether any item is true).",
            ["any([1, 5], x => x > 3)" => "true", "any([], x => true)" => "false", "any([false, true])" => "true"],
            1, 1, Optional(1), Imp::Ctx(any)),
        builtin!(Family::Collection, "all", "all(list, item => condition?)",
            "Whether the lambda is true for every item; true for the empty list.",
            ["all([1, 5], x => x > 0)" => "true", "all([], x => false)" => "true"],
            1, 1, Optional(1), Imp::Ctx(all)),
        builtin!(Family::Collection, "sum", "sum(list, item => number?)",
            "The exact sum of the items (or of the lambda's values); 0 for the empty list.",
            ["sum([1, 2.5])" => "3.5",
             "[{price: 19.99, quantity: 3}] | sum(i => i.price * i.quantity)" => "59.97",
             "sum([])" => "0"],
            1, 1, Optional(1), Imp::Ctx(sum)),
        builtin!(Family::Collection, "count", "count(list, item => condition?)",
            "How many items the lambda is true for (without a lambda: how many items).",
            ["count([1, 2, 3], x => x > 1)" => "2", "count([1, 2])" => "2"],
            1, 1, Optional(1), Imp::Ctx(count)),
        builtin!(Family::Collection, "sort_by", "sort_by(list, item => key)",
            "The items sorted by the lambda's value (stable; nulls first).",
            ["sort_by([{n: 'b'}, {n: 'a'}], i => i.n)" => "[{n: 'a'}, {n: 'b'}]"],
            1, 1, Required(1), Imp::Ctx(sort_by)),
        builtin!(Family::Collection, "group_by", "group_by(list, item => key)",
            "An object from each key (as text) to the items with that key, in order of first appearance.",
            ["group_by([{s: 'a', q: 1}, {s: 'b', q: 2}, {s: 'a', q: 3}], i => i.s)" => "{a: [{s: 'a', q: 1}, {s: 'a', q: 3}], b: [{s: 'b', q: 2}]}"],
            1, 1, Required(1), Imp::Ctx(group_by)),
        builtin!(Family::Collection, "index_by", "index_by(list, item => key)",
            "An object from each key (as text) to the last item with that key.",
            ["index_by([{id: 1, n: 'x'}, {id: 2, n: 'y'}], i => i.id)" => "{'1': {id: 1, n: 'x'}, '2': {id: 2, n: 'y'}}"],
            1, 1, Required(1), Imp::Ctx(index_by)),
        builtin!(Family::Collection, "unique", "unique(list, item => key?)",
            "The items without repeats (by the lambda's value when given), keeping the first.",
            ["unique([1, 2, 1, 3])" => "[1, 2, 3]",
             "unique([{a: 1, b: 1}, {a: 1, b: 2}], i => i.a)" => "[{a: 1, b: 1}]"],
            1, 1, Optional(1), Imp::Ctx(unique)),
        builtin!(Family::Collection, "flatten", "flatten(list)",
            "Concatenates a list of lists (one level); items that are not lists are kept.",
            ["flatten([[1, 2], [3], 4])" => "[1, 2, 3, 4]"],
            1, 1, NoLambda, Imp::Pure(flatten)),
        builtin!(Family::Collection, "first", "first(list)", "The first item, or null.",
            ["first([7, 8])" => "7", "first([])" => "null"], 1, 1, NoLambda, Imp::Pure(first)),
        builtin!(Family::Collection, "last", "last(list)", "The last item, or null.",
            ["last([7, 8])" => "8"], 1, 1, NoLambda, Imp::Pure(last)),
        builtin!(Family::Collection, "len", "len(value)",
            "The number of items of a list, keys of an object or characters of a string; 0 for null.",
            ["len([1, 2])" => "2", "len('Привет')" => "6", "len({a: 1})" => "1", "len(null)" => "0"],
            1, 1, NoLambda, Imp::Pure(len)),
        builtin!(Family::Collection, "empty", "empty(value)",
            "Whether the value is null, an empty string, an empty list or an empty object.",
            ["empty([])" => "true", "empty('')" => "true", "empty(null)" => "true", "empty(0)" => "false"],
            1, 1, NoLambda, Imp::Pure(empty)),
        builtin!(Family::Collection, "keys", "keys(object)", "The keys of an object, in order.",
            ["keys({b: 1, a: 2})" => "['b', 'a']"], 1, 1, NoLambda, Imp::Pure(keys)),
        builtin!(Family::Collection, "values", "values(object)", "The values of an object, in order.",
            ["values({b: 1, a: 2})" => "[1, 2]"], 1, 1, NoLambda, Imp::Pure(values)),
        builtin!(Family::Collection, "entries", "entries(object)", "The entries of an object as `{key, value}` objects.",
            ["entries({a: 1})" => "[{key: 'a', value: 1}]"], 1, 1, NoLambda, Imp::Pure(entries)),
        builtin!(Family::Collection, "merge", "merge(object, object, …)",
            "A shallow merge: later objects win. Null arguments are ignored.",
            ["merge({a: 1, b: 2}, {b: 3}, null)" => "{a: 1, b: 3}"],
            1, usize::MAX, NoLambda, Imp::Pure(merge)),
        builtin!(Family::Collection, "compact", "compact(object_or_list)",
            "The object without its null values, or the list without its null items. Null stays null.",
            ["compact({a: 1, b: null, c: false})" => "{a: 1, c: false}", "compact([1, null, 2])" => "[1, 2]", "compact(null)" => "null"],
            1, 1, NoLambda, Imp::Pure(compact)),
        builtin!(Family::Collection, "from_entries", "from_entries(list)",
            "An object from `{key, value}` objects or `[key, value]` pairs; later keys win.",
            ["from_entries([{key: 'a', value: 1}, ['b', 2]])" => "{a: 1, b: 2}", "from_entries(entries({x: 1}))" => "{x: 1}"],
            1, 1, NoLambda, Imp::Pure(from_entries)),
        builtin!(Family::Collection, "pick", "pick(object, keys)", "Only the given keys of an object.",
            ["pick({a: 1, b: 2, c: 3}, ['a', 'c'])" => "{a: 1, c: 3}"], 2, 2, NoLambda, Imp::Pure(pick)),
        builtin!(Family::Collection, "omit", "omit(object, keys)", "An object without the given keys.",
            ["omit({a: 1, b: 2}, ['a'])" => "{b: 2}"], 2, 2, NoLambda, Imp::Pure(omit)),
        builtin!(Family::Collection, "chunks", "chunks(list, size)", "The list cut into lists of at most `size` items.",
            ["chunks([1, 2, 3, 4, 5], 2)" => "[[1, 2], [3, 4], [5]]"], 2, 2, NoLambda, Imp::Pure(chunks)),
        builtin!(Family::Collection, "reverse", "reverse(list)", "The items in reverse order.",
            ["reverse([1, 2, 3])" => "[3, 2, 1]"], 1, 1, NoLambda, Imp::Pure(reverse)),
        builtin!(Family::Collection, "sort", "sort(list)", "The items sorted (numbers by value, strings by text).",
            ["sort([3, 1, 2])" => "[1, 2, 3]"], 1, 1, NoLambda, Imp::Pure(sort)),
        builtin!(Family::Collection, "slice", "slice(list_or_string, start, end?)",
            "Items (or characters) from `start` up to, not including, `end`; negative positions count from the end.",
            ["slice([1, 2, 3, 4], 1, 3)" => "[2, 3]", "slice('abcdef', -2)" => "'ef'"],
            2, 3, NoLambda, Imp::Pure(slice)),
        builtin!(Family::Collection, "contains", "contains(list_or_string, value)",
            "Whether a list has the item, or a string has the substring (same as `value in list`).",
            ["contains([1, 2], 2)" => "true", "contains('hello', 'ell')" => "true"],
            2, 2, NoLambda, Imp::Pure(contains)),
        builtin!(Family::Collection, "range", "range(end) / range(start, end)", "Whole numbers from `start` (default 0) up to, not including, `end`.",
            ["range(3)" => "[0, 1, 2]", "range(2, 4)" => "[2, 3]"], 1, 2, NoLambda, Imp::Pure(range)),
    ]
}

fn list<'v>(call: &Call<'_, '_>, args: &'v [Value], name: &str) -> Result<&'v [Value], Fail> {
    list_or_null(args, 0, format_args!("the first argument of {name}()")).map_err(|m| call.fail(m))
}

fn map(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let items = list(call, args, "map")?;
    call.tick(items.len() as u64)?;
    call.charge(items.len() as u64 * SLOT_BYTES)?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(call.apply(std::slice::from_ref(item))?);
    }
    Ok(Value::array(out))
}

fn filter(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let items = list(call, args, "filter")?;
    call.tick(items.len() as u64)?;
    let mut out = Vec::new();
    for item in items {
        if call.holds(std::slice::from_ref(item))? {
            call.charge(SLOT_BYTES)?;
            out.push(item.clone());
        }
    }
    Ok(Value::array(out))
}

fn find(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let items = list(call, args, "find")?;
    for item in items {
        call.tick(1)?;
        if call.holds(std::slice::from_ref(item))? {
            return Ok(item.clone());
        }
    }
    Ok(Value::Null)
}

fn test(call: &mut Call<'_, '_>, item: &Value) -> Result<bool, Fail> {
    if call.has_lambda() {
        Ok(call.holds(std::slice::from_ref(item))?)
    } else {
        Ok(item.truthy())
    }
}

fn any(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let items = list(call, args, "any")?;
    for item in items {
        call.tick(1)?;
        if test(call, item)? {
            return Ok(Value::bool(true));
        }
    }
    Ok(Value::bool(false))
}

fn all(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let items = list(call, args, "all")?;
    for item in items {
        call.tick(1)?;
        if !test(call, item)? {
            return Ok(Value::bool(false));
        }
    }
    Ok(Value::bool(true))
}

fn count(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let items = list(call, args, "count")?;
    let mut n = 0i64;
    for item in items {
        call.tick(1)?;
        if !call.has_lambda() || test(call, item)? {
            n += 1;
        }
    }
    Ok(Value::Int(n))
}

fn sum(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let items = list(call, args, "sum")?;
    let mut total = Value::Int(0);
    for item in items {
        call.tick(1)?;
        let v = if call.has_lambda() {
            call.apply(std::slice::from_ref(item))?
        } else {
            item.clone()
        };
        if v.as_decimal().is_none() {
            return Err(call.fail(format!(
                "sum(): every value must be a number, got {} {}{}",
                v.type_name(),
                short(&v),
                if v.is_null() {
                    " (give a default with `?? 0`)"
                } else {
                    ""
                }
            )));
        }
        total = crate::eval::ops::binary(crate::syntax::ast::BinOp::Add, &total, &v)
            .map_err(|m| call.fail(m))?;
    }
    Ok(total)
}

fn keyed(call: &mut Call<'_, '_>, items: &[Value]) -> Result<Vec<Value>, Fail> {
    call.tick(items.len() as u64)?;
    call.charge(items.len() as u64 * SLOT_BYTES)?;
    let mut keys = Vec::with_capacity(items.len());
    for item in items {
        keys.push(call.apply(std::slice::from_ref(item))?);
    }
    Ok(keys)
}

fn sort_by(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let items = list(call, args, "sort_by")?;
    let keys = keyed(call, items)?;
    call.charge(items.len() as u64 * (SLOT_BYTES + 8))?;
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
    Ok(Value::array(
        order.into_iter().map(|i| items[i].clone()).collect(),
    ))
}

/// A key as text, its size taken from the memory budget first.
fn key_text(call: &mut Call<'_, '_>, v: &Value) -> Result<String, Fail> {
    call.text(v)
}

fn group_by(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let items = list(call, args, "group_by")?;
    let keys = keyed(call, items)?;
    call.charge(items.len() as u64 * (SLOT_BYTES + ENTRY_BYTES))?;
    let mut groups: indexmap::IndexMap<String, Vec<Value>> = indexmap::IndexMap::new();
    for (item, key) in items.iter().zip(keys.iter()) {
        groups
            .entry(key_text(call, key)?)
            .or_default()
            .push(item.clone());
    }
    let mut map = Map::with_capacity_and_hasher(groups.len(), Hasher::default());
    for (k, v) in groups {
        map.insert(k.into(), Value::array(v));
    }
    Ok(Value::object(map))
}

fn index_by(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let items = list(call, args, "index_by")?;
    let keys = keyed(call, items)?;
    call.charge(items.len() as u64 * ENTRY_BYTES)?;
    let mut map = Map::with_capacity_and_hasher(items.len(), Hasher::default());
    for (item, key) in items.iter().zip(keys.iter()) {
        map.insert(key_text(call, key)?.into(), item.clone());
    }
    Ok(Value::object(map))
}

fn unique(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let items = list(call, args, "unique")?;
    let keys = if call.has_lambda() {
        keyed(call, items)?
    } else {
        items.to_vec()
    };
    call.charge(items.len() as u64 * SLOT_BYTES)?;
    if let Some(out) = unique_plain(call, items, &keys)? {
        return Ok(Value::array(out));
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for (item, key) in items.iter().zip(keys.iter()) {
        let k = format!("{}:{}", key.type_name(), call.json(key)?);
        if seen.insert(k) {
            out.push(item.clone());
        }
    }
    Ok(Value::array(out))
}

/// [`unique`] of a short list whose keys are all texts or all whole numbers: the keys
/// compared as they are instead of by their JSON text (the same comparison for these), the
/// memory budget charged what each text would have taken, as the general path charges it.
/// `None` (nothing charged) for any other list.
fn unique_plain(
    call: &mut Call<'_, '_>,
    items: &[Value],
    keys: &[Value],
) -> Result<Option<Vec<Value>>, Fail> {
    const MAX: usize = 32;
    if keys.len() > MAX {
        return Ok(None);
    }
    let texts = keys.iter().all(|k| matches!(k, Value::Str(_)));
    if !texts && !keys.iter().all(|k| matches!(k, Value::Int(_))) {
        return Ok(None);
    }
    let mut out = Vec::new();
    let mut kept: Vec<&Value> = Vec::with_capacity(keys.len());
    for (item, key) in items.iter().zip(keys) {
        let len = match key {
            Value::Str(s) => json_text_len(s),
            Value::Int(i) => int_text_len(*i),
            _ => return Ok(None),
        };
        if len <= call.cx.bytes_left {
            call.charge(len)?;
        } else {
            // Out of memory budget: the general path's error.
            call.json(key)?;
        }
        let fresh = !kept.iter().any(|k| match (k, key) {
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            _ => false,
        });
        if fresh {
            kept.push(key);
            out.push(item.clone());
        }
    }
    Ok(Some(out))
}

/// The length of a text written as JSON (`serde_json`'s escapes).
fn json_text_len(s: &str) -> u64 {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x0c | b'\n' | b'\r' | b'\t' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<u64>()
}

/// The length of a whole number written as JSON.
fn int_text_len(i: i64) -> u64 {
    let digits = i.unsigned_abs().checked_ilog10().map_or(1, |d| d + 1);
    u64::from(digits) + u64::from(i < 0)
}

fn flatten(args: &[Value]) -> Result<Value, String> {
    let items = list_or_null(args, 0, "flatten()'s argument")?;
    let mut out = Vec::new();
    for item in items {
        match item {
            Value::Array(inner) => out.extend(inner.iter().cloned()),
            Value::Null => {}
            other => out.push(other.clone()),
        }
    }
    Ok(Value::array(out))
}

fn first(args: &[Value]) -> Result<Value, String> {
    Ok(list_or_null(args, 0, "first()'s argument")?
        .first()
        .cloned()
        .unwrap_or_default())
}

fn last(args: &[Value]) -> Result<Value, String> {
    Ok(list_or_null(args, 0, "last()'s argument")?
        .last()
        .cloned()
        .unwrap_or_default())
}

fn len(args: &[Value]) -> Result<Value, String> {
    let n = match arg(args, 0) {
        Value::Null => 0,
        Value::Str(s) => s.chars().count(),
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        other => return Err(format!("len() of a {} has no meaning", other.type_name())),
    };
    Ok(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)))
}

fn empty(args: &[Value]) -> Result<Value, String> {
    Ok(Value::bool(match arg(args, 0) {
        Value::Null => true,
        Value::Str(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }))
}

fn object_arg<'a>(args: &'a [Value], i: usize, name: &str) -> Result<Option<&'a Map>, String> {
    match arg(args, i) {
        Value::Null => Ok(None),
        Value::Object(o) => Ok(Some(o)),
        other => Err(format!(
            "{name}() needs an object, got {} {}",
            other.type_name(),
            short(other)
        )),
    }
}

fn keys(args: &[Value]) -> Result<Value, String> {
    Ok(Value::array(
        object_arg(args, 0, "keys")?
            .map(|o| o.keys().map(|k| Value::Str(k.clone())).collect())
            .unwrap_or_default(),
    ))
}

fn values(args: &[Value]) -> Result<Value, String> {
    Ok(Value::array(
        object_arg(args, 0, "values")?
            .map(|o| o.values().cloned().collect())
            .unwrap_or_default(),
    ))
}

fn entries(args: &[Value]) -> Result<Value, String> {
    Ok(Value::array(
        object_arg(args, 0, "entries")?
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        Value::from_pairs([("key", Value::Str(k.clone())), ("value", v.clone())])
                    })
                    .collect()
            })
            .unwrap_or_default(),
    ))
}

fn merge(args: &[Value]) -> Result<Value, String> {
    let mut map: Option<Map> = None;
    for i in 0..args.len() {
        let Some(o) = object_arg(args, i, "merge")? else {
            continue;
        };
        match &mut map {
            // The first object is copied whole (its keys keep their hashes): only the
            // later ones are inserted key by key.
            None => {
                let room: usize = args[i + 1..]
                    .iter()
                    .map(|a| a.as_object().map_or(0, Map::len))
                    .sum();
                let mut first = o.clone();
                first.reserve(room);
                map = Some(first);
            }
            Some(map) => {
                for (k, v) in o.iter() {
                    map.insert(k.clone(), v.clone());
                }
            }
        }
    }
    Ok(Value::object(map.unwrap_or_default()))
}

/// [`merge`] taking its arguments: the first object, when nothing else holds it (an object
/// literal, the result of a call), is added to in place.
fn merge_owned(args: &mut [Value]) -> Result<Value, String> {
    for i in 0..args.len() {
        object_arg(args, i, "merge")?;
    }
    let Some(first) = args.iter().position(|a| matches!(a, Value::Object(_))) else {
        return Ok(Value::object(Map::default()));
    };
    let room: usize = args[first + 1..]
        .iter()
        .map(|a| a.as_object().map_or(0, Map::len))
        .sum();
    let Value::Object(o) = std::mem::take(&mut args[first]) else {
        return merge(args);
    };
    let mut map = Arc::try_unwrap(o).unwrap_or_else(|shared| (*shared).clone());
    map.reserve(room);
    for a in &args[first + 1..] {
        if let Value::Object(o) = a {
            for (k, v) in o.iter() {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Value::object(map))
}

/// An object's entries whose value is not null (its keys are distinct).
fn without_nulls(o: &Map) -> Map {
    let mut names = Vec::with_capacity(o.len());
    let mut values = Vec::with_capacity(o.len());
    for (k, v) in o.iter().filter(|(_, v)| !v.is_null()) {
        names.push(k.clone());
        values.push(v.clone());
    }
    Map::from_distinct(names, values)
}

/// [`compact`] taking its argument: an object or list that nothing else holds loses its
/// nulls in place.
fn compact_owned(args: &mut [Value]) -> Result<Value, String> {
    match args.first_mut() {
        Some(Value::Object(o)) if o.values().any(Value::is_null) => {
            if let Some(map) = Arc::get_mut(o) {
                map.retain_non_null();
                return Ok(std::mem::take(&mut args[0]));
            }
            compact(args)
        }
        Some(Value::Array(items)) if items.iter().any(Value::is_null) => {
            if let Some(items) = Arc::get_mut(items) {
                items.retain(|v| !v.is_null());
                return Ok(std::mem::take(&mut args[0]));
            }
            compact(args)
        }
        Some(Value::Object(_) | Value::Array(_)) => Ok(std::mem::take(&mut args[0])),
        _ => compact(args),
    }
}

fn key_list(args: &[Value], i: usize, name: &str) -> Result<Vec<String>, String> {
    let keys = want_array(args, i, format_args!("the keys of {name}()"))?;
    Ok(keys.iter().map(Value::to_text).collect())
}

fn compact(args: &[Value]) -> Result<Value, String> {
    match arg(args, 0) {
        Value::Null => Ok(Value::Null),
        Value::Object(o) => {
            if !o.values().any(Value::is_null) {
                return Ok(arg(args, 0).clone());
            }
            Ok(Value::object(without_nulls(o)))
        }
        Value::Array(items) => Ok(Value::array(
            items.iter().filter(|v| !v.is_null()).cloned().collect(),
        )),
        other => Err(format!(
            "compact() needs an object or a list, got {}",
            other.type_name()
        )),
    }
}

fn from_entries(args: &[Value]) -> Result<Value, String> {
    let items = list_or_null(args, 0, "from_entries()'s argument")?;
    let mut map = Map::with_capacity_and_hasher(items.len(), Hasher::default());
    for item in items {
        let (k, v) = match item {
            Value::Object(o) => (
                o.get("key").cloned().unwrap_or_default(),
                o.get("value").cloned().unwrap_or_default(),
            ),
            Value::Array(pair) if pair.len() == 2 => (pair[0].clone(), pair[1].clone()),
            other => {
                return Err(format!(
                    "from_entries() needs {{key, value}} objects or [key, value] pairs, got {}",
                    short(other)
                ))
            }
        };
        let key = match &k {
            Value::Str(s) => s.clone(),
            Value::Int(_) | Value::Dec(_) | Value::Bool(_) => k.to_text().into(),
            other => {
                return Err(format!(
                    "from_entries(): a key must be text, got {}",
                    other.type_name()
                ))
            }
        };
        map.insert(key, v);
    }
    Ok(Value::object(map))
}

fn pick(args: &[Value]) -> Result<Value, String> {
    let keys = key_list(args, 1, "pick")?;
    let mut map = Map::default();
    if let Some(o) = object_arg(args, 0, "pick")? {
        for k in &keys {
            if let Some(v) = o.get(k.as_str()) {
                map.insert(k.as_str().into(), v.clone());
            }
        }
    }
    Ok(Value::object(map))
}

fn omit(args: &[Value]) -> Result<Value, String> {
    let keys = key_list(args, 1, "omit")?;
    let mut map = Map::default();
    if let Some(o) = object_arg(args, 0, "omit")? {
        for (k, v) in o.iter() {
            if !keys.iter().any(|x| x.as_str() == &**k) {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Value::object(map))
}

fn chunks(args: &[Value]) -> Result<Value, String> {
    let items = list_or_null(args, 0, "chunks()'s list")?;
    let size = want_int(args, 1, "the chunk size")?;
    let size = usize::try_from(size)
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("the chunk size must be at least 1, got {size}"))?;
    Ok(Value::array(
        items
            .chunks(size)
            .map(|c| Value::array(c.to_vec()))
            .collect(),
    ))
}

fn reverse(args: &[Value]) -> Result<Value, String> {
    let mut items = list_or_null(args, 0, "reverse()'s argument")?.to_vec();
    items.reverse();
    Ok(Value::array(items))
}

fn sort(args: &[Value]) -> Result<Value, String> {
    let mut items = list_or_null(args, 0, "sort()'s argument")?.to_vec();
    items.sort_by(Value::total_cmp);
    Ok(Value::array(items))
}

fn bounds(len: usize, start: i64, end: Option<i64>) -> (usize, usize) {
    let clamp = |i: i64| -> usize {
        let len_i = i64::try_from(len).unwrap_or(i64::MAX);
        let i = if i < 0 {
            (len_i + i).max(0)
        } else {
            i.min(len_i)
        };
        usize::try_from(i).unwrap_or(0)
    };
    let s = clamp(start);
    let e = end.map_or(len, clamp);
    (s, e.max(s))
}

fn slice(args: &[Value]) -> Result<Value, String> {
    let start = want_int(args, 1, "the start of slice()")?;
    let end = match arg(args, 2) {
        Value::Null => None,
        _ => Some(want_int(args, 2, "the end of slice()")?),
    };
    match arg(args, 0) {
        Value::Null => Ok(Value::Null),
        Value::Array(items) => {
            let (s, e) = bounds(items.len(), start, end);
            Ok(Value::array(items[s..e].to_vec()))
        }
        Value::Str(text) => {
            let chars: Vec<char> = text.chars().collect();
            let (s, e) = bounds(chars.len(), start, end);
            Ok(Value::from(chars[s..e].iter().collect::<String>()))
        }
        other => Err(format!(
            "slice() needs a list or a string, got {}",
            other.type_name()
        )),
    }
}

fn contains(args: &[Value]) -> Result<Value, String> {
    crate::eval::ops::contains(arg(args, 0), arg(args, 1)).map(Value::bool)
}

fn range(args: &[Value]) -> Result<Value, String> {
    let (start, end) = if args.len() >= 2 {
        (
            want_int(args, 0, "the start of range()")?,
            want_int(args, 1, "the end of range()")?,
        )
    } else {
        (0, want_int(args, 0, "the end of range()")?)
    };
    if end.saturating_sub(start) > 100_000 {
        return Err("range() is limited to 100000 numbers".to_owned());
    }
    Ok(Value::array((start..end).map(Value::Int).collect()))
}

// ---- what the calls that can build much more than they are given may build ----

fn flatten_size(args: &[Value], _cap: u64) -> u64 {
    let Some(items) = arg(args, 0).as_array() else {
        return 0;
    };
    let n: usize = items
        .iter()
        .map(|item| item.as_array().map_or(1, <[Value]>::len))
        .sum();
    n as u64 * SLOT_BYTES
}

fn entries_size(args: &[Value], _cap: u64) -> u64 {
    arg(args, 0)
        .as_object()
        .map_or(0, |o| o.len() as u64 * (SLOT_BYTES + 2 * ENTRY_BYTES))
}

fn chunks_size(args: &[Value], _cap: u64) -> u64 {
    let n = arg(args, 0).as_array().map_or(0, <[Value]>::len) as u64;
    let size = arg(args, 1).as_i64().unwrap_or(1).max(1) as u64;
    (n + n / size + 1) * SLOT_BYTES
}

/// Nothing when nothing is left out (the argument itself is the result).
fn compact_size(args: &[Value], _cap: u64) -> u64 {
    match arg(args, 0) {
        Value::Object(o) if o.values().any(Value::is_null) => o.len() as u64 * ENTRY_BYTES,
        Value::Array(a) => a.len() as u64 * SLOT_BYTES,
        _ => 0,
    }
}

#[cfg(test)]
mod plain_tests {
    use super::{int_text_len, json_text_len};
    use proptest::prelude::*;

    #[test]
    fn json_lengths_of_tricky_texts() {
        for s in [
            "",
            "a",
            "\"",
            "\\",
            "\u{8}\u{c}\n\r\t",
            "\u{0}\u{1f}\u{7f}",
            "Привет",
            "😀 \u{2028}",
        ] {
            let want = serde_json::to_string(s).unwrap_or_default().len() as u64;
            assert_eq!(json_text_len(s), want, "{s:?}");
        }
        for i in [0, 1, 9, 10, -1, -10, 99, 100, i64::MAX, i64::MIN] {
            assert_eq!(int_text_len(i), i.to_string().len() as u64, "{i}");
        }
    }

    proptest! {
        #[test]
        fn json_lengths_are_serde_json_s(s in any::<String>(), i in any::<i64>()) {
            prop_assert_eq!(json_text_len(&s), serde_json::to_string(&s).unwrap_or_default().len() as u64);
            prop_assert_eq!(int_text_len(i), i.to_string().len() as u64);
        }
    }
}

#[cfg(test)]
mod owned_tests {
    use super::{compact, compact_owned, merge, merge_owned};
    use crate::value::{Str, Value};
    use proptest::prelude::*;

    /// Objects of a few keys drawn from a small set (so that they overlap), some values
    /// null, sometimes null or not an object at all.
    fn arg() -> impl Strategy<Value = Value> {
        let object = proptest::collection::vec(
            (
                "[a-e]",
                prop_oneof![Just(Value::Null), (0i64..5).prop_map(Value::Int)],
            ),
            0..6,
        )
        .prop_map(|kv| Value::object(kv.into_iter().map(|(k, v)| (Str::from(k), v)).collect()));
        prop_oneof![
            6 => object,
            1 => Just(Value::Null),
            1 => Just(Value::Int(1)),
        ]
    }

    /// A copy that shares nothing with `v`, so the owned functions may change it in place.
    fn fresh(v: &Value) -> Value {
        Value::from_json(&v.to_serde_json())
    }

    /// The result as JSON (keys in order) or the error.
    fn shown(r: Result<Value, String>) -> Result<String, String> {
        r.map(|v| v.to_json())
    }

    proptest! {
        /// `merge` of objects it may change in place, or shared ones, gives the entries
        /// `merge` gives, in the same order.
        #[test]
        fn merging_owned_objects_is_merging(args in proptest::collection::vec(arg(), 0..5)) {
            let want = shown(merge(&args));
            let mut owned: Vec<Value> = args.iter().map(fresh).collect();
            prop_assert_eq!(&shown(merge_owned(&mut owned)), &want);
            let mut shared = args.clone();
            prop_assert_eq!(&shown(merge_owned(&mut shared)), &want);
        }

        /// `compact` of an object it may change in place gives what `compact` gives.
        #[test]
        fn compacting_owned_objects_is_compacting(v in arg()) {
            let want = shown(compact(std::slice::from_ref(&v)));
            let mut owned = [fresh(&v)];
            prop_assert_eq!(&shown(compact_owned(&mut owned)), &want);
            let mut shared = [v.clone()];
            prop_assert_eq!(&shown(compact_owned(&mut shared)), &want);
        }
    }

    #[test]
    fn a_key_merged_again_keeps_its_place_and_takes_the_last_value() {
        let o = |json: &str| -> Value { serde_json::from_str(json).unwrap_or_default() };
        let mut args = [
            o(r#"{"a":1,"b":2}"#),
            o(r#"{"c":3,"a":4}"#),
            o(r#"{"b":null}"#),
        ];
        let got = merge_owned(&mut args).map(|v| v.to_json());
        assert_eq!(got.as_deref(), Ok(r#"{"a":4,"b":null,"c":3}"#));
    }
}
