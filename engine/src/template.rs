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

/// Fuel of one template rendering (minijinja's bounded evaluation).
const TEMPLATE_FUEL: u64 = 200_000;

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
        let call = move |args: Rest<MjValue>| -> Result<MjValue, Error> {
            let values: Vec<Value> = args.iter().map(from_mj).collect();
            f(&values)
                .map(|v| to_mj(&v))
                .map_err(|m| Error::new(ErrorKind::InvalidOperation, format!("{name}(): {m}")))
        };
        env.add_function(name, call);
        env.add_filter(name, call);
    }
}

/// Renders a compiled template with the values of the names it uses.
pub(crate) fn render(
    prog: &Program,
    id: u32,
    settings: &Value,
    vars: Vec<(Str, Value)>,
) -> Result<String, String> {
    let name = format!("t{id}");
    let tmpl = prog
        .templates
        .get_template(&name)
        .map_err(|e| format!("template: {e}"))?;
    let ctx = MjValue::from_object(Context {
        vars,
        settings: settings.clone(),
    });
    tmpl.render(ctx).map_err(|e| {
        let mut msg = format!("template: {}", e.detail().unwrap_or("rendering failed"));
        if e.kind() == ErrorKind::OutOfFuel {
            msg = "template: ran out of its step budget".to_owned();
        }
        msg
    })
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
                .map(|(n, _)| MjValue::from(n.clone()))
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
                Enumerator::Values(map.keys().map(|k| MjValue::from(k.clone())).collect())
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
        Value::Bool(b) => MjValue::from(*b),
        Value::Int(i) => MjValue::from(*i),
        Value::Dec(d) => d
            .to_f64()
            .map_or_else(|| MjValue::from(d.to_string()), MjValue::from),
        Value::Str(s) => MjValue::from(s.clone()),
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
        ValueKind::Bool => Value::Bool(v.is_true()),
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
