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
    let mut out = String::new();
    use std::fmt::Write;
    write!(out, "{}", dt.format(format))
        .map_err(|_| format!("format_date(): bad format {format:?}"))?;
    Ok(Value::from(out))
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

fn zone(args: &[Value], i: usize, what: &str) -> Result<chrono_tz::Tz, String> {
    let name = want_str(args, i, what)?;
    name.parse()
        .map_err(|_| format!("{what}: {name:?} is not an IANA time zone (e.g. Europe/Moscow)"))
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
