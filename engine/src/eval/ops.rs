//! Operators on values: exact arithmetic, comparison, membership.

use std::cmp::Ordering;
use std::sync::Arc;

use rust_decimal::Decimal;

use crate::funcs::short;
use crate::syntax::ast::BinOp;
use crate::value::Value;

/// `-x`.
pub(crate) fn neg(v: &Value) -> Result<Value, String> {
    match v {
        Value::Int(i) => Ok(i
            .checked_neg()
            .map_or_else(|| Value::number(-Decimal::from(*i)), Value::Int)),
        Value::Dec(d) => Ok(Value::number(-**d)),
        other => Err(format!(
            "cannot negate {} {}{}",
            other.type_name(),
            short(other),
            null_hint(other)
        )),
    }
}

/// Every infix operator except the short-circuiting ones.
pub(crate) fn binary(op: BinOp, a: &Value, b: &Value) -> Result<Value, String> {
    match op {
        BinOp::Eq => Ok(Value::bool(a.equals(b))),
        BinOp::Ne => Ok(Value::bool(!a.equals(b))),
        BinOp::Lt => compare(a, b).map(|o| Value::bool(o == Ordering::Less)),
        BinOp::Le => compare(a, b).map(|o| Value::bool(o != Ordering::Greater)),
        BinOp::Gt => compare(a, b).map(|o| Value::bool(o == Ordering::Greater)),
        BinOp::Ge => compare(a, b).map(|o| Value::bool(o != Ordering::Less)),
        BinOp::In => contains(b, a).map(Value::bool),
        BinOp::NotIn => contains(b, a).map(|x| Value::bool(!x)),
        BinOp::Add => add(a, b),
        BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => arith(op, a, b),
        BinOp::And | BinOp::Or | BinOp::Coalesce => Err("internal: short-circuit operator".into()),
    }
}

/// Ordering for `<`, `<=`, `>`, `>=`: numbers with numbers, strings with strings.
pub(crate) fn compare(a: &Value, b: &Value) -> Result<Ordering, String> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Int(_) | Value::Dec(_), Value::Int(_) | Value::Dec(_)) => {
            Ok(a.as_decimal().cmp(&b.as_decimal()))
        }
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        _ => Err(format!(
            "cannot compare {} {} with {} {}{}",
            a.type_name(),
            short(a),
            b.type_name(),
            short(b),
            null_hint(if a.is_null() { a } else { b })
        )),
    }
}

/// `needle in haystack`.
pub(crate) fn contains(haystack: &Value, needle: &Value) -> Result<bool, String> {
    match haystack {
        Value::Array(items) => Ok(items.iter().any(|x| x.equals(needle))),
        Value::Object(map) => match needle {
            Value::Str(k) => Ok(map.contains_key(&**k)),
            Value::Int(_) => Ok(map.contains_key(needle.to_text().as_str())),
            _ => Ok(false),
        },
        Value::Str(s) => match needle {
            Value::Str(n) => Ok(match n.as_bytes() {
                // One ASCII byte (`"#"`, `"/"`): a byte search, not a substring searcher.
                [b] if b.is_ascii() => s.as_bytes().contains(b),
                _ => s.contains(&**n),
            }),
            other => Err(format!(
                "`in` a string needs a string on the left, got {}",
                other.type_name()
            )),
        },
        Value::Null => Ok(false),
        other => Err(format!(
            "`in` needs an array, an object or a string on the right, got {} {}",
            other.type_name(),
            short(other)
        )),
    }
}

/// The bytes `a + b` builds: the joined text or list (numbers take nothing worth counting).
#[inline]
pub(crate) fn add_bytes(a: &Value, b: &Value) -> u64 {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x.len() as u64 + y.len() as u64,
        (Value::Str(x), Value::Int(_) | Value::Dec(_))
        | (Value::Int(_) | Value::Dec(_), Value::Str(x)) => x.len() as u64 + 32,
        (Value::Array(x), Value::Array(y)) => {
            (x.len() as u64 + y.len() as u64) * crate::eval::SLOT_BYTES
        }
        _ => 0,
    }
}

fn add(a: &Value, b: &Value) -> Result<Value, String> {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => {
            let mut s = String::with_capacity(x.len() + y.len());
            s.push_str(x);
            s.push_str(y);
            Ok(Value::from(s))
        }
        (Value::Str(x), Value::Int(_) | Value::Dec(_)) => {
            Ok(Value::from(format!("{x}{}", b.to_text())))
        }
        (Value::Int(_) | Value::Dec(_), Value::Str(y)) => {
            Ok(Value::from(format!("{}{y}", a.to_text())))
        }
        (Value::Array(x), Value::Array(y)) => {
            let mut v = Vec::with_capacity(x.len() + y.len());
            v.extend(x.iter().cloned());
            v.extend(y.iter().cloned());
            Ok(Value::Array(Arc::new(v)))
        }
        _ => arith(BinOp::Add, a, b),
    }
}

fn arith(op: BinOp, a: &Value, b: &Value) -> Result<Value, String> {
    if let (Value::Int(x), Value::Int(y)) = (a, b) {
        let exact = match op {
            BinOp::Add => x.checked_add(*y),
            BinOp::Sub => x.checked_sub(*y),
            BinOp::Mul => x.checked_mul(*y),
            BinOp::Rem if *y != 0 => x.checked_rem(*y),
            _ => None,
        };
        if let Some(r) = exact {
            return Ok(Value::Int(r));
        }
    }
    let (Some(x), Some(y)) = (a.as_decimal(), b.as_decimal()) else {
        let verb = match op {
            BinOp::Add => "add",
            BinOp::Sub => "subtract",
            BinOp::Mul => "multiply",
            BinOp::Div => "divide",
            _ => "take the remainder of",
        };
        let culprit = if a.as_decimal().is_none() { a } else { b };
        return Err(format!(
            "cannot {verb} {} {} and {} {}{}",
            a.type_name(),
            short(a),
            b.type_name(),
            short(b),
            null_hint(culprit)
        ));
    };
    let result = match op {
        BinOp::Add => x.checked_add(y),
        BinOp::Sub => x.checked_sub(y),
        BinOp::Mul => x.checked_mul(y),
        BinOp::Div => {
            if y.is_zero() {
                return Err(format!("division of {} by zero", short(a)));
            }
            x.checked_div(y)
        }
        _ => {
            if y.is_zero() {
                return Err(format!("remainder of {} by zero", short(a)));
            }
            x.checked_rem(y)
        }
    };
    result.map(Value::number).ok_or_else(|| {
        format!(
            "arithmetic overflow: {} {} {}",
            short(a),
            op.symbol(),
            short(b)
        )
    })
}

fn null_hint(v: &Value) -> &'static str {
    match v {
        Value::Null => " (a missing value? give a default with `?? 0`)",
        Value::Ref(_) => {
            " (the result of an effect of this plan is not known until the plan is applied)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Value {
        Value::number(Decimal::from_str(s).unwrap())
    }

    #[test]
    fn money_is_exact() {
        assert_eq!(
            binary(BinOp::Mul, &d("19.99"), &Value::Int(100))
                .unwrap()
                .to_json(),
            "1999"
        );
        assert_eq!(
            binary(BinOp::Add, &d("0.1"), &d("0.2")).unwrap().to_json(),
            "0.3"
        );
        assert_eq!(
            binary(BinOp::Div, &Value::Int(7), &Value::Int(2))
                .unwrap()
                .to_json(),
            "3.5"
        );
        assert_eq!(
            binary(BinOp::Div, &Value::Int(6), &Value::Int(2))
                .unwrap()
                .to_json(),
            "3"
        );
    }

    #[test]
    fn overflow_promotes_to_decimal() {
        let big = Value::Int(i64::MAX);
        let r = binary(BinOp::Add, &big, &Value::Int(1)).unwrap();
        assert_eq!(r.to_json(), "9223372036854775808");
    }

    #[test]
    fn null_arithmetic_explains_itself() {
        let e = binary(BinOp::Mul, &Value::Null, &Value::Int(100)).unwrap_err();
        assert!(e.contains("?? 0"), "{e}");
        let e = binary(BinOp::Div, &Value::Int(1), &Value::Int(0)).unwrap_err();
        assert!(e.contains("by zero"), "{e}");
    }
}
