//! Lookups through the world. The plan being built is laid over the world: an entity
//! created or a link made by an earlier effect of the same evaluation is found too.

use super::{arg, short, want_str, Builtin, Family, Imp, LambdaArg};
use crate::eval::{Call, Fail};
use crate::value::{Map, Value};

pub(super) fn builtins() -> Vec<Builtin> {
    use LambdaArg::None as NoLambda;
    let mut all = vec![
        builtin!(Family::World, "lookup", "lookup(system, entity, filter)",
            "The entities of a system whose fields equal every field of the filter (exact match), including ones created earlier in this plan.",
            ["lookup('shop', 'product', {sku: 'B-2'})" => "[{id: 2, sku: 'B-2', name: 'Ink'}]",
             "lookup('shop', 'product', {sku: 'none'})" => "[]"],
            3, 3, NoLambda, Imp::Ctx(lookup)),
        builtin!(Family::World, "lookup_one", "lookup_one(system, entity, filter)",
            "The first entity `lookup` finds, or null.",
            ["lookup_one('shop', 'product', {sku: 'A-1'}).name" => "'Pen'"],
            3, 3, NoLambda, Imp::Ctx(lookup_one)),
        builtin!(Family::World, "fetch", "fetch(system, entity, id)",
            "The entity with this id, or null. Null ids give null.",
            ["fetch('shop', 'product', 2).sku" => "'B-2'", "fetch('shop', 'product', null)" => "null"],
            3, 3, NoLambda, Imp::Ctx(fetch)),
        builtin!(Family::World, "linked", "linked(kind, system, id)",
            "The link of this kind that has `id` on the side of `system`: an object with `kind` and one id per system (null when not linked). Links made earlier in this plan count.",
            ["linked('product', 'shop', 1).warehouse" => "'p-1'", "linked('product', 'shop', 2)" => "null"],
            3, 3, NoLambda, Imp::Ctx(linked)),
        builtin!(Family::World, "reference", "reference(name, key?)",
            "Reference data by name (statuses, stores, dictionaries, …), as the world provides it; null when unknown. With a key, the entry of that key (`reference(name)[key]`; null for a null key), asked of the world alone: a world may answer it without building the whole book (the runner does for `crm.offers`).",
            ["reference('units')" => "['pcs', 'kg']",
             "reference('colours', 'red')" => "'#f00'",
             "reference('colours', 'blue')" => "null"],
            1, 2, NoLambda, Imp::Ctx(reference)),
    ];
    for b in &mut all {
        b.reads_world = true;
        if b.name == "reference" {
            // Reference data is the world's, shared with every evaluation: the rule builds
            // none of it.
            b.size = super::Size::Free;
        }
    }
    all
}

/// The first `N` arguments, which must be texts.
fn texts<'a, const N: usize>(
    call: &Call<'_, '_>,
    args: &'a [Value],
    name: &str,
) -> Result<[&'a str; N], Fail> {
    let mut out = [""; N];
    for (i, slot) in out.iter_mut().enumerate() {
        if let Some(Value::Str(s)) = args.get(i) {
            *slot = s;
            continue;
        }
        *slot = want_str(args, i, format_args!("{name}()'s argument {}", i + 1))
            .map_err(|m| call.fail(m))?;
    }
    Ok(out)
}

fn filter_arg<'a>(call: &Call<'_, '_>, args: &'a [Value]) -> Result<&'a Map, Fail> {
    match arg(args, 2) {
        Value::Object(o) => Ok(o),
        other => Err(call.fail(format!(
            "the filter must be an object like {{inn: customer.inn}}, got {} {}",
            other.type_name(),
            short(other)
        ))),
    }
}

fn lookup(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let t = texts::<2>(call, args, "lookup")?;
    let filter = filter_arg(call, args)?;
    call.tick(10)?;
    let mut found = call
        .world()
        .find(t[0], t[1], filter)
        .map_err(|e| call.world_error(format!("lookup of {}.{}: {e}", t[0], t[1])))?;
    found.extend(call.plan().created_matching(t[0], t[1], filter));
    Ok(Value::array(found))
}

fn lookup_one(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let t = texts::<2>(call, args, "lookup_one")?;
    let filter = filter_arg(call, args)?;
    call.tick(10)?;
    let found = call
        .world()
        .find(t[0], t[1], filter)
        .map_err(|e| call.world_error(format!("lookup of {}.{}: {e}", t[0], t[1])))?;
    if let Some(first) = found.into_iter().next() {
        return Ok(first);
    }
    Ok(call
        .plan()
        .created_matching(t[0], t[1], filter)
        .into_iter()
        .next()
        .unwrap_or_default())
}

fn fetch(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let t = texts::<2>(call, args, "fetch")?;
    let id = arg(args, 2);
    match id {
        Value::Null => return Ok(Value::Null),
        Value::Ref(_) => return Ok(id.clone()),
        _ => {}
    }
    call.tick(10)?;
    call.world()
        .get(t[0], t[1], id)
        .map_err(|e| call.world_error(format!("fetch of {}.{} {}: {e}", t[0], t[1], short(id))))
}

fn linked(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let t = texts::<2>(call, args, "linked")?;
    let id = arg(args, 2);
    if id.is_null() {
        return Ok(Value::Null);
    }
    call.tick(10)?;
    if let Some(link) = call.plan().linked(t[0], t[1], id) {
        return Ok(link);
    }
    call.world()
        .linked(t[0], t[1], id)
        .map_err(|e| call.world_error(format!("link {} of {} {}: {e}", t[0], t[1], short(id))))
}

fn reference(call: &mut Call<'_, '_>, args: &[Value]) -> Result<Value, Fail> {
    let t = texts::<1>(call, args, "reference")?;
    if args.len() < 2 {
        call.tick(10)?;
        return call
            .world()
            .reference(t[0])
            .map_err(|e| call.world_error(format!("reference {}: {e}", t[0])));
    }
    // One entry: as cheap as indexing the book (it is called once per item of big lists).
    call.tick(1)?;
    let key = match arg(args, 1) {
        Value::Null => return Ok(Value::Null),
        Value::Str(s) => s.clone(),
        // As `book[key]` reads them.
        k @ (Value::Int(_) | Value::Bool(_)) => k.to_text().into(),
        other => {
            return Err(call.fail(format!(
                "reference()'s key must be a string, got {} {}",
                other.type_name(),
                short(other)
            )))
        }
    };
    call.world()
        .reference_entry(t[0], &key)
        .map_err(|e| call.world_error(format!("reference {} entry {key}: {e}", t[0])))
}
