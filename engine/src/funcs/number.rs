//! Numbers. Arithmetic is exact; rounding is commercial (halves away from zero).

use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use super::{arg, short, want_int, Builtin, Family, Imp, LambdaArg};
use crate::value::Value;

pub(super) fn builtins() -> Vec<Builtin> {
    use LambdaArg::None as NoLambda;
    vec![
        builtin!(Family::Number, "round", "round(number, digits?)",
            "Rounds to `digits` decimal places (default 0), halves away from zero.",
            ["round(2.5)" => "3", "round(-2.5)" => "-3", "round(19.995, 2)" => "20", "round(1.2345, 2)" => "1.23"],
            1, 2, NoLambda, Imp::Pure(round)),
        builtin!(Family::Number, "floor", "floor(number)", "The largest whole number not above it.",
            ["floor(2.7)" => "2", "floor(-2.1)" => "-3"], 1, 1, NoLambda, Imp::Pure(floor)),
        builtin!(Family::Number, "ceil", "ceil(number)", "The smallest whole number not below it.",
            ["ceil(2.1)" => "3"], 1, 1, NoLambda, Imp::Pure(ceil)),
        builtin!(Family::Number, "abs", "abs(number)", "The absolute value.",
            ["abs(-3.5)" => "3.5"], 1, 1, NoLambda, Imp::Pure(abs)),
        builtin!(Family::Number, "min", "min(a, b, …) / min(list)",
            "The smallest of the numbers (or of a list's numbers); nulls are ignored; null when there are none.",
            ["min(3, 1.5, 2)" => "1.5", "min([4, null, 2])" => "2", "min([])" => "null"],
            1, usize::MAX, NoLambda, Imp::Pure(min)),
        builtin!(Family::Number, "max", "max(a, b, …) / max(list)",
            "The largest of the numbers (or of a list's numbers); nulls are ignored.",
            ["max(3, 1.5, 2)" => "3", "max([1500000, 999999])" => "1500000"],
            1, usize::MAX, NoLambda, Imp::Pure(max)),
        builtin!(Family::Number, "clamp", "clamp(number, low, high)", "The number limited to the range.",
            ["clamp(1500000, 0, 999999)" => "999999", "clamp(-4, 0, 999999)" => "0"],
            3, 3, NoLambda, Imp::Pure(clamp)),
        builtin!(Family::Conversion, "number", "number(value)",
            "A number from a number or a text like `\"19.99\"` or `\"19,99\"`; null for null or an empty text.",
            ["number('19.99') * 100" => "1999", "number('1 500,5')" => "1500.5", "number(null)" => "null"],
            1, 1, NoLambda, Imp::Pure(number)),
        builtin!(Family::Conversion, "int", "int(value)",
            "A whole number: numbers are truncated toward zero, texts parsed; null stays null.",
            ["int(19.99)" => "19", "int('42')" => "42"], 1, 1, NoLambda, Imp::Pure(int)),
    ]
}

fn dec(args: &[Value], i: usize, what: impl std::fmt::Display) -> Result<Option<Decimal>, String> {
    match arg(args, i) {
        Value::Null => Ok(None),
        v => v.as_decimal().map(Some).ok_or_else(|| {
            format!(
                "{what} must be a number, got {} {}",
                v.type_name(),
                short(v)
            )
        }),
    }
}

fn unary(args: &[Value], name: &str, f: impl Fn(Decimal) -> Decimal) -> Result<Value, String> {
    Ok(dec(args, 0, format_args!("{name}()'s argument"))?
        .map_or(Value::Null, |d| Value::number(f(d))))
}

fn round(args: &[Value]) -> Result<Value, String> {
    let digits = match arg(args, 1) {
        Value::Null => 0,
        _ => want_int(args, 1, "round()'s digits")?,
    };
    let digits = u32::try_from(digits)
        .ok()
        .filter(|d| *d <= 28)
        .ok_or_else(|| format!("round()'s digits must be between 0 and 28, got {digits}"))?;
    if let Value::Int(i) = arg(args, 0) {
        // A whole number rounds to itself (what the decimal path gives, without it).
        return Ok(Value::Int(*i));
    }
    unary(args, "round", |d| {
        d.round_dp_with_strategy(digits, RoundingStrategy::MidpointAwayFromZero)
    })
}

fn floor(args: &[Value]) -> Result<Value, String> {
    unary(args, "floor", |d| d.floor())
}

fn ceil(args: &[Value]) -> Result<Value, String> {
    unary(args, "ceil", |d| d.ceil())
}

fn abs(args: &[Value]) -> Result<Value, String> {
    unary(args, "abs", |d| d.abs())
}

fn numbers(args: &[Value], name: &str) -> Result<Vec<Decimal>, String> {
    let items: &[Value] = match args {
        [Value::Array(items)] => items,
        _ => args,
    };
    let mut out = Vec::with_capacity(items.len());
    for v in items {
        match v {
            Value::Null => {}
            v => out.push(v.as_decimal().ok_or_else(|| {
                format!("{name}() needs numbers, got {} {}", v.type_name(), short(v))
            })?),
        }
    }
    Ok(out)
}

fn min(args: &[Value]) -> Result<Value, String> {
    Ok(numbers(args, "min")?
        .into_iter()
        .min()
        .map_or(Value::Null, Value::number))
}

fn max(args: &[Value]) -> Result<Value, String> {
    Ok(numbers(args, "max")?
        .into_iter()
        .max()
        .map_or(Value::Null, Value::number))
}

fn clamp(args: &[Value]) -> Result<Value, String> {
    let lo = dec(args, 1, "clamp()'s low")?.ok_or("clamp()'s low must be a number")?;
    let hi = dec(args, 2, "clamp()'s high")?.ok_or("clamp()'s high must be a number")?;
    if lo > hi {
        return Err(format!("clamp()'s low {lo} is above its high {hi}"));
    }
    unary(args, "clamp", |d| d.max(lo).min(hi))
}

fn parse_number(text: &str) -> Option<Decimal> {
    let cleaned: String = text
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{a0}')
        .map(|c| if c == ',' { '.' } else { c })
        .collect();
    Decimal::from_str(&cleaned)
        .or_else(|_| Decimal::from_scientific(&cleaned))
        .ok()
}

/// A text of at most 18 ASCII digits, with or without a leading `-` (a VAT rate, a
/// quantity, an id): the whole number it is, read without building a decimal. `None` for
/// any other text, which [`parse_number`] reads; it gives the same number for these.
fn plain_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n = digits
        .bytes()
        .fold(0i64, |n, c| n * 10 + i64::from(c - b'0'));
    Some(if negative { -n } else { n })
}

fn number(args: &[Value]) -> Result<Value, String> {
    match arg(args, 0) {
        Value::Null => Ok(Value::Null),
        Value::Str(s) if s.trim().is_empty() => Ok(Value::Null),
        Value::Str(s) => match plain_int(s.trim()) {
            Some(n) => Ok(Value::Int(n)),
            None => parse_number(s)
                .map(Value::number)
                .ok_or_else(|| format!("number(): {s:?} is not a number")),
        },
        v @ (Value::Int(_) | Value::Dec(_)) => Ok(v.clone()),
        Value::Bool(b) => Ok(Value::Int(i64::from(b.get()))),
        other => Err(format!(
            "number() of a {} has no meaning",
            other.type_name()
        )),
    }
}

fn int(args: &[Value]) -> Result<Value, String> {
    let n = number(args)?;
    match n {
        Value::Null => Ok(Value::Null),
        Value::Int(_) => Ok(n),
        Value::Dec(d) => d
            .trunc()
            .to_i64()
            .map(Value::Int)
            .ok_or_else(|| format!("int(): {d} is too large")),
        _ => Ok(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_whole_numbers_are_read_directly() {
        assert_eq!(plain_int("20"), Some(20));
        assert_eq!(plain_int("-007"), Some(-7));
        assert_eq!(plain_int("-0"), Some(0));
        assert_eq!(
            plain_int("999999999999999999"),
            Some(999_999_999_999_999_999)
        );
        // Not plain: the decimal reading takes them.
        for text in [
            "",
            "-",
            "+5",
            "1.5",
            "1 000",
            "1e3",
            "1234567890123456789",
            "٣",
        ] {
            assert_eq!(plain_int(text), None, "{text:?}");
        }
        assert_eq!(number(&[Value::str(" 20 ")]), Ok(Value::Int(20)));
        assert_eq!(number(&[Value::str("1 000")]), Ok(Value::Int(1000)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Texts of digits read the same whole number directly as through a decimal.
        #[test]
        fn plain_reading_is_the_decimal_reading(t in "-?[0-9]{1,19}") {
            let slow = parse_number(&t).map(Value::number);
            if let Some(n) = plain_int(&t) {
                prop_assert_eq!(Some(Value::Int(n)), slow.clone(), "{}", t);
            }
            let fast = number(&[Value::str(&t)]).ok();
            prop_assert_eq!(fast, slow, "{}", t);
        }

        /// A whole number rounds to what the decimal path gives, at any number of digits,
        /// and bad digits are refused as before.
        #[test]
        fn whole_numbers_round_as_decimals(i in any::<i64>(), digits in -2i64..31) {
            let fast = round(&[Value::Int(i), Value::Int(digits)]);
            let slow = round(&[Value::Dec(std::sync::Arc::new(Decimal::from(i))), Value::Int(digits)]);
            prop_assert_eq!(&fast, &slow);
            if (0..=28).contains(&digits) {
                prop_assert_eq!(fast, Ok(Value::Int(i)));
            }
        }
    }
}
