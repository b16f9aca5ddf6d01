//! String templates, rendered with minijinja: `"Order {{ order.number }}"`.
//!
//! Templates are compiled when the rule set loads. They see the same names as the
//! expression they stand in for (lets, results, event fields, `settings`) and every
//! built-in function that needs no context, both as a function (`{{ upper(x) }}`) and as a
//! filter (`{{ x | upper }}`). Values are handed to minijinja lazily, without copying
//! documents. Null renders as the empty string; a missing key reads as undefined and also
//! renders empty. Do arithmetic in expressions: inside templates decimals are floats.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Rest};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};
use rust_decimal::prelude::ToPrimitive;

use crate::compile::Program;
use crate::value::{Map, Str, Value};

type MjValue = minijinja::Value;

/// Fuel of one template rendering (minijinja's bounded evaluation): every instruction costs
/// one, and every 64 bytes of text or lists the template builds or writes cost one more, so
/// one rendering does at most 200 000 steps and builds at most about 12 MiB.
const TEMPLATE_FUEL: u64 = 200_000;

/// The message of a template that ran out of fuel.
pub(crate) const OUT_OF_FUEL: &str = "the template ran out of its fuel (200000 steps, or about \
     12 MiB of text built: a fixed limit of every template; do the heavy work in an \
     expression instead)";

/// Why a rendering failed.
pub(crate) enum RenderError {
    /// An error in the template (a bad filter argument, …).
    Failed(String),
    /// It ran out of minijinja's fuel.
    OutOfFuel,
    /// A built-in called from it would build more than is left of the memory budget.
    OutOfBytes,
}

thread_local! {
    /// What is left of the evaluation's memory budget while a template renders on this
    /// thread (`None` outside a rendering), and whether a built-in was refused.
    static TEMPLATE_BYTES: std::cell::Cell<(Option<u64>, bool)> =
        const { std::cell::Cell::new((None, false)) };
}

/// Takes `bytes` from the budget of the rendering under way; false when they do not fit.
fn spend_template_bytes(bytes: u64) -> bool {
    TEMPLATE_BYTES.with(|cell| match cell.get() {
        (Some(left), _) if bytes <= left => {
            cell.set((Some(left - bytes), false));
            true
        }
        (None, _) => true,
        (Some(_), _) => {
            cell.set((Some(0), true));
            false
        }
    })
}

/// The environment templates compile into.
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_formatter(|out, state, value| {
        if value.is_none() || value.is_undefined() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env
}

/// Makes every context-free built-in available as a function and as a filter.
pub(crate) fn register_functions(env: &mut Environment<'static>) {
    for b in crate::funcs::all() {
        let Some(f) = b.pure_fn() else { continue };
        let name = b.name;
        let size = b.size_before();
        let call = move |args: Rest<MjValue>| -> Result<MjValue, Error> {
            let values: Vec<Value> = args.iter().map(from_mj).collect();
            if let Some(size) = size {
                let left = TEMPLATE_BYTES.with(|c| c.get().0).unwrap_or(u64::MAX);
                if !spend_template_bytes(size(&values, left)) {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("{name}(): over the memory budget"),
                    ));
                }
            }
            f(&values)
                .map(|v| to_mj(&v))
                .map_err(|m| Error::new(ErrorKind::InvalidOperation, format!("{name}(): {m}")))
        };
        env.add_function(name, call);
        env.add_filter(name, call);
    }
}

/// Renders a compiled template with the values of the names it uses. `bytes_left` is what
/// is left of the evaluation's memory budget: built-ins that can build much more than they
/// are given are refused past it. Gives the text and the bytes those built-ins took (the
/// caller takes them, and the text's length, from its budget); minijinja's own work is
/// bounded by its fuel.
pub(crate) fn render(
    prog: &Program,
    id: u32,
    settings: &Value,
    vars: Vec<(Str, Value)>,
    bytes_left: u64,
) -> Result<(String, u64), RenderError> {
    let name = format!("t{id}");
    let tmpl = prog
        .templates
        .get_template(&name)
        .map_err(|e| RenderError::Failed(format!("template: {e}")))?;
    let ctx = MjValue::from_object(Context {
        vars,
        settings: settings.clone(),
    });
    let outer = TEMPLATE_BYTES.with(|c| c.replace((Some(bytes_left), false)));
    let result = tmpl.render(ctx);
    let (left, refused) = TEMPLATE_BYTES.with(|c| c.replace(outer));
    let built = bytes_left.saturating_sub(left.unwrap_or(bytes_left));
    match result {
        Ok(text) => Ok((text, built)),
        Err(_) if refused => Err(RenderError::OutOfBytes),
        Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(RenderError::OutOfFuel),
        Err(e) => Err(RenderError::Failed(format!(
            "template: {}",
            e.detail().unwrap_or("rendering failed")
        ))),
    }
}

/// The names a template sees.
#[derive(Debug)]
struct Context {
    vars: Vec<(Str, Value)>,
    settings: Value,
}

impl Object for Context {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        let key = key.as_str()?;
        if let Some((_, v)) = self.vars.iter().find(|(n, _)| &**n == key) {
            return Some(to_mj(v));
        }
        (key == "settings").then(|| to_mj(&self.settings))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.vars
                .iter()
                .map(|(n, _)| MjValue::from(n.as_str()))
                .collect(),
        )
    }
}

/// A document handed to minijinja without copying it.
#[derive(Debug)]
struct Doc(Value);

impl Object for Doc {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match &self.0 {
            Value::Array(_) => ObjectRepr::Seq,
            Value::Object(_) => ObjectRepr::Map,
            _ => ObjectRepr::Plain,
        }
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        match &self.0 {
            Value::Array(items) => key.as_usize().and_then(|i| items.get(i)).map(to_mj),
            Value::Object(map) => key.as_str().and_then(|k| map.get(k)).map(to_mj),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match &self.0 {
            Value::Array(items) => Enumerator::Seq(items.len()),
            Value::Object(map) => {
                Enumerator::Values(map.keys().map(|k| MjValue::from(k.as_str())).collect())
            }
            _ => Enumerator::NonEnumerable,
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result
    where
        Self: Sized + 'static,
    {
        match &self.0 {
            Value::Ref(r) => write!(f, "${{{}}}", r.display_path()),
            other => f.write_str(&other.to_json()),
        }
    }
}

fn to_mj(v: &Value) -> MjValue {
    match v {
        Value::Null => MjValue::from(()),
        Value::Bool(b) => MjValue::from(b.get()),
        Value::Int(i) => MjValue::from(*i),
        Value::Dec(d) => d
            .to_f64()
            .map_or_else(|| MjValue::from(d.to_string()), MjValue::from),
        Value::Str(s) => MjValue::from(s.as_str()),
        other => MjValue::from_object(Doc(other.clone())),
    }
}

fn from_mj(v: &MjValue) -> Value {
    use minijinja::value::ValueKind;
    if let Some(doc) = v.downcast_object_ref::<Doc>() {
        return doc.0.clone();
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => Value::Null,
        ValueKind::Bool => Value::bool(v.is_true()),
        ValueKind::Number => match v.as_i64() {
            Some(i) => Value::Int(i),
            None => f64::try_from(v.clone()).map_or(Value::Null, crate::value::number_from_f64),
        },
        ValueKind::String => Value::str(v.as_str().unwrap_or("")),
        ValueKind::Seq | ValueKind::Iterable => Value::array(
            v.try_iter()
                .map(|it| it.map(|x| from_mj(&x)).collect())
                .unwrap_or_default(),
        ),
        ValueKind::Map => {
            let mut map = Map::default();
            if let Ok(keys) = v.try_iter() {
                for k in keys {
                    let item = v.get_item(&k).unwrap_or_default();
                    map.insert(from_mj(&k).to_text().into(), from_mj(&item));
                }
            }
            Value::object(map)
        }
        _ => Value::from(v.to_string()),
    }
}

/// Whether a YAML string is a template rather than an expression.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}
