//! Dates and times. A date is a whole number of milliseconds since 1970-01-01 00:00 in the
//! systems' own (naive) local time, so dates compare and subtract like numbers.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use super::{arg, want_int, want_str, Builtin, Family, Imp, LambdaArg};
use crate::eval::{Call, Fail};
use crate::value::Value;

/// `%Y-%m-%d %H:%M:%S%.3f`, e.g. `2024-05-01 10:00:00.000`.
pub const MILLIS_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

pub(super) fn builtins() -> Vec<Builtin> {
    use LambdaArg::None as NoLambda;
    vec![
        builtin!(Family::Date, "date", "date(text, format?)",
            "Reads a date: `YYYY-MM-DD HH:MM:SS.mmm`, `YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DD`, or ISO 8601 with `T` and an offset (converted to UTC); with a format, as that strftime format says. Gives milliseconds; null stays null.",
            ["date('2024-05-01 10:00:00')" => "1714557600000",
             "date('2024-05-01 10:00:00.250') - date('2024-05-01 10:00:00')" => "250",
             "date('01.05.2024', '%d.%m.%Y')" => "1714521600000"],
            1, 2, NoLambda, Imp::Pure(date)),
        builtin!(Family::Date, "format_date", "format_date(date, format)",
            "Writes a date (milliseconds, or a date text) with a strftime format: `%Y-%m-%d %H:%M:%S%.3f` gives `2024-05-01 10:00:00.000`, `%Y-%m-%d %H:%M:%S` gives `2024-05-01 10:00:00`.",
            ["format_date(date('2024-05-01 10:00:00'), '%Y-%m-%d %H:%M:%S%.3f')" => "'2024-05-01 10:00:00.000'",
             "format_date('2024-05-01 10:00:00.123', '%Y-%m-%d %H:%M:%S')" => "'2024-05-01 10:00:00'",
             "format_date(null, '%Y')" => "null"],
            2, 2, NoLambda, Imp::Pure(format_date)),
        builtin!(Family::Date, "add_days", "add_days(date, days)", "The date moved by a number of days (negative to go back).",
            ["format_date(add_days(date('2024-02-28'), 2), '%Y-%m-%d')" => "'2024-03-01'"],
            2, 2, NoLambda, Imp::Pure(add_days)),
        builtin!(Family::Date, "convert_tz", "convert_tz(date, from_zone, to_zone)",
            "The same moment as wall time in another IANA time zone: `date` (milliseconds, or a date text) is read as wall time in `from_zone` and written as wall time in `to_zone`. A wall time that does not exist in `from_zone` (a clock moved forward) is read as the first valid one after it; one that exists twice as the first. Null stays null.",
            ["format_date(convert_tz('2024-05-01 10:00:00', 'Asia/Yekaterinburg', 'Europe/Moscow'), '%Y-%m-%d %H:%M:%S')" => "'2024-05-01 08:00:00'",
             "format_date(convert_tz('2024-05-01 23:30:00', 'Europe/Moscow', 'Asia/Vladivostok'), '%Y-%m-%d %H:%M')" => "'2024-05-02 06:30'",
             "convert_tz(date('2024-05-01'), 'UTC', 'UTC') == date('2024-05-01')" => "true",
             "convert_tz(null, 'UTC', 'Europe/Moscow')" => "null"],
            3, 3, NoLambda, Imp::Pure(convert_tz)),
        builtin!(Family::Date, "now", "now()",
            "The time of the event being evaluated, as UTC wall time (the same for every rule of one evaluation), or null when the event has none. Convert it with `convert_tz` for a system's own zone.",
            ["now()" => "1714557600000"],
            0, 0, NoLambda, Imp::Ctx(now)),
    ]
}

/// Parses the date formats both systems write, and ISO 8601.
pub fn parse_datetime(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Some(ms) = parse_plain(t) {
        return Some(ms);
    }
    parse_with_chrono(t)
}

/// The digits `a..b` of `t` as a number, if they are all ASCII digits.
fn digits(t: &[u8], a: usize, b: usize) -> Option<u32> {
    let mut n = 0u32;
    for &c in t.get(a..b)? {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

/// The layouts both systems write, read without chrono's format parser:
/// `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS` and `YYYY-MM-DD HH:MM:SS.mmm`, every field in its
/// plain range (no leap second). `None` for anything else, which [`parse_with_chrono`]
/// reads; where both read a text they give the same milliseconds (see the tests).
fn parse_plain(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if !matches!(b.len(), 10 | 19 | 23) || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(digits(b, 0, 4)?).ok()?,
        digits(b, 5, 7)?,
        digits(b, 8, 10)?,
    )?;
    if b.len() == 10 {
        return Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    if b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, m, s) = (digits(b, 11, 13)?, digits(b, 14, 16)?, digits(b, 17, 19)?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let milli = if b.len() == 23 {
        if b[19] != b'.' {
            return None;
        }
        digits(b, 20, 23)?
    } else {
        0
    };
    Some(
        date.and_hms_milli_opt(h, m, s, milli)?
            .and_utc()
            .timestamp_millis(),
    )
}

/// [`parse_datetime`] by chrono's format parser, every layout it accepts.
fn parse_with_chrono(t: &str) -> Option<i64> {
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, f) {
            return Some(dt.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|dt| dt.and_utc().timestamp_millis());
    }
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|dt| dt.timestamp_millis())
}

fn to_millis(v: &Value, what: impl std::fmt::Display) -> Result<Option<i64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Str(s) => parse_datetime(s)
            .map(Some)
            .ok_or_else(|| format!("{what}: {s:?} is not a date")),
        other => other
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("{what} must be a date, got {}", other.type_name())),
    }
}

fn date(args: &[Value]) -> Result<Value, String> {
    if arg(args, 1).is_null() {
        return Ok(to_millis(arg(args, 0), "date()")?.map_or(Value::Null, Value::Int));
    }
    let Value::Str(text) = arg(args, 0) else {
        return to_millis(arg(args, 0), "date()").map(|m| m.map_or(Value::Null, Value::Int));
    };
    let format = want_str(args, 1, "date()'s format")?;
    if let Ok(dt) = NaiveDateTime::parse_from_str(text.trim(), format) {
        return Ok(Value::Int(dt.and_utc().timestamp_millis()));
    }
    NaiveDate::parse_from_str(text.trim(), format)
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| Value::Int(dt.and_utc().timestamp_millis()))
        .ok_or_else(|| format!("date(): {text:?} does not match the format {format:?}"))
}

fn format_date(args: &[Value]) -> Result<Value, String> {
    let Some(ms) = to_millis(arg(args, 0), "format_date()")? else {
        return Ok(Value::Null);
    };
    let format = want_str(args, 1, "format_date()'s format")?;
    let dt = DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| format!("format_date(): {ms} is out of range"))?
        .naive_utc();
    if let Some(text) = format_plain(&dt, format) {
        return Ok(Value::from(text));
    }
    let mut out = String::new();
    use std::fmt::Write;
    write!(out, "{}", dt.format(format))
        .map_err(|_| format!("format_date(): bad format {format:?}"))?;
    Ok(Value::from(out))
}

/// The formats the rules write dates in (`%Y-%m-%d %H:%M:%S%.3f`, `%Y-%m-%d %H:%M:%S`,
/// `%Y-%m-%d`), written without chrono's format parser for years 0 to 9999; `None` for any
/// other format or year. The text is the one chrono writes (see the tests).
fn format_plain(dt: &NaiveDateTime, format: &str) -> Option<String> {
    use chrono::{Datelike, Timelike};
    let (time, millis) = match format {
        MILLIS_FORMAT => (true, true),
        "%Y-%m-%d %H:%M:%S" => (true, false),
        "%Y-%m-%d" => (false, false),
        _ => return None,
    };
    let year = u32::try_from(dt.year()).ok().filter(|y| *y <= 9999)?;
    let mut out = String::with_capacity(23);
    let mut put = |n: u32, width: u32, sep: Option<char>| {
        if let Some(c) = sep {
            out.push(c);
        }
        let mut div = 10u32.pow(width - 1);
        while div > 0 {
            out.push(char::from(b'0' + ((n / div) % 10) as u8));
            div /= 10;
        }
    };
    put(year, 4, None);
    put(dt.month(), 2, Some('-'));
    put(dt.day(), 2, Some('-'));
    if time {
        put(dt.hour(), 2, Some(' '));
        put(dt.minute(), 2, Some(':'));
        // A leap second (never made from milliseconds) is left to chrono.
        let nanos = dt.nanosecond();
        if nanos >= 1_000_000_000 {
            return None;
        }
        put(dt.second(), 2, Some(':'));
        if millis {
            put(nanos / 1_000_000, 3, Some('.'));
        }
    }
    Some(out)
}

fn add_days(args: &[Value]) -> Result<Value, String> {
    let Some(ms) = to_millis(arg(args, 0), "add_days()")? else {
        return Ok(Value::Null);
    };
    let days = want_int(args, 1, "add_days()'s days")?;
    days.checked_mul(86_400_000)
        .and_then(|d| ms.checked_add(d))
        .map(Value::Int)
        .ok_or_else(|| "add_days(): out of range".to_owned())
}

/// How many zones [`zone`] remembers per thread (the rules use one or two).
const ZONES_KEPT: usize = 4;

thread_local! {
    /// Zones read lately, by their text: reading a zone's name looks it up in chrono-tz's
    /// table of some 600 names, which `ms_time()` would otherwise do at every call.
    static ZONES: std::cell::RefCell<Vec<(crate::value::Str, chrono_tz::Tz)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn zone(args: &[Value], i: usize, what: &str) -> Result<chrono_tz::Tz, String> {
    let name = want_str(args, i, what)?;
    let known = ZONES
        .try_with(|z| {
            z.borrow()
                .iter()
                .find(|(n, _)| crate::value::intern::same(n, name))
                .map(|(_, tz)| *tz)
        })
        .ok()
        .flatten();
    if let Some(tz) = known {
        return Ok(tz);
    }
    let tz: chrono_tz::Tz = name
        .parse()
        .map_err(|_| format!("{what}: {name:?} is not an IANA time zone (e.g. Europe/Moscow)"))?;
    if let Value::Str(s) = arg(args, i) {
        let _ = ZONES.try_with(|z| {
            let mut z = z.borrow_mut();
            if z.len() >= ZONES_KEPT {
                z.remove(0);
            }
            z.push((s.clone(), tz));
        });
    }
    Ok(tz)
}

fn convert_tz(args: &[Value]) -> Result<Value, String> {
    use chrono::TimeZone;
    let Some(ms) = to_millis(arg(args, 0), "convert_tz()")? else {
        return Ok(Value::Null);
    };
    let from = zone(args, 1, "convert_tz()'s from_zone")?;
    let to = zone(args, 2, "convert_tz()'s to_zone")?;
    let wall = DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| format!("convert_tz(): {ms} is out of range"))?
        .naive_utc();
    // A wall time skipped by a clock moved forward: the first valid minute after it.
    let mut probe = wall;
    let local = loop {
        match from.from_local_datetime(&probe) {
            chrono::LocalResult::Single(t) => break t,
            chrono::LocalResult::Ambiguous(first, _) => break first,
            chrono::LocalResult::None => {
                if probe - wall > chrono::Duration::hours(3) {
                    return Err(format!("convert_tz(): {wall} does not exist in {from}"));
                }
                probe += chrono::Duration::minutes(1);
            }
        }
    };
    Ok(Value::Int(
        local
            .with_timezone(&to)
            .naive_local()
            .and_utc()
            .timestamp_millis(),
    ))
}

fn now(call: &mut Call<'_, '_>, _: &[Value]) -> Result<Value, Fail> {
    Ok(call.now().map_or(Value::Null, Value::Int))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What chrono writes.
    fn chrono_text(ms: i64, format: &str) -> Option<String> {
        let dt = DateTime::from_timestamp_millis(ms)?.naive_utc();
        Some(dt.format(format).to_string())
    }

    #[test]
    fn plain_reading_and_writing_take_the_common_layouts() {
        assert_eq!(parse_plain("2024-05-01 10:00:00"), Some(1_714_557_600_000));
        assert_eq!(
            parse_plain("2024-05-01 10:00:00.250"),
            Some(1_714_557_600_250)
        );
        assert_eq!(parse_plain("2024-05-01"), Some(1_714_521_600_000));
        // Not the plain layouts: chrono reads them.
        assert_eq!(parse_plain("2024-05-01T10:00:00Z"), None);
        assert_eq!(parse_plain("2024-02-30"), None);
        assert_eq!(parse_plain("2024-05-01 24:00:00"), None);
        assert_eq!(parse_plain("2024-05-01 10:00:60"), None);
        assert_eq!(
            parse_datetime("2024-05-01T10:00:00Z"),
            Some(1_714_557_600_000)
        );
        let dt = DateTime::from_timestamp_millis(1_714_557_600_250)
            .map(|d| d.naive_utc())
            .unwrap_or_default();
        assert_eq!(
            format_plain(&dt, MILLIS_FORMAT).as_deref(),
            Some("2024-05-01 10:00:00.250")
        );
        assert_eq!(format_plain(&dt, "%d.%m.%Y"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Texts of the plain layouts (and near misses) read the same as chrono reads them.
        #[test]
        fn plain_reading_is_chronos(
            t in "[0-9]{4}-[0-1][0-9]-[0-3][0-9]( [0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{1,4})?)?"
        ) {
            prop_assert_eq!(parse_datetime(&t), parse_with_chrono(&t), "{}", t);
            if let Some(ms) = parse_plain(&t) {
                prop_assert_eq!(Some(ms), parse_with_chrono(&t), "{}", t);
            }
        }

        /// Dates written in the plain formats are the text chrono writes, from year -300
        /// to 12000.
        #[test]
        fn plain_writing_is_chronos(ms in -71_000_000_000_000i64..316_000_000_000_000i64) {
            let Some(dt) = DateTime::from_timestamp_millis(ms).map(|d| d.naive_utc()) else {
                return Ok(());
            };
            for format in [MILLIS_FORMAT, "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"] {
                if let Some(text) = format_plain(&dt, format) {
                    prop_assert_eq!(Some(text), chrono_text(ms, format));
                }
            }
        }
    }
}
