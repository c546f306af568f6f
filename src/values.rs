//! W&B values: JSON that may contain bare `NaN`, `Infinity` and `-Infinity`.
//!
//! W&B stores history rows, summaries and configs as JSON *text* written by Python's `json`
//! module, which emits the non-standard tokens `NaN`, `Infinity` and `-Infinity` for non-finite
//! floats (PROTOCOL.md §5.4). Strict JSON tools (serde_json, Postgres `jsonb`) reject them, so
//! every layer that touches such text goes through this module:
//!
//! - [`parse`] reads the lenient dialect (the tokens become `f64` NaN/±inf; integers and floats
//!   stay distinct, `1` vs `1.0`; object key order and duplicate keys are kept).
//! - [`write_wandb_json`] renders compact text in the same dialect. This is what the synthetic
//!   files (`history.jsonl`, `summary.json`, …) contain: `json.loads` in Python (and therefore
//!   `wandb`'s own readers) gives back exactly the values W&B holds.
//! - [`write_sql_json`] renders strict JSON for Postgres, with non-finite floats as the strings
//!   `"NaN"`, `"Infinity"` and `"-Infinity"`. Those are the spellings Postgres' `float8` input
//!   accepts, so `(row->>'loss')::float8` yields the right number in SQL.
//! - [`to_sql_json_text`] does the same as `parse` + `write_sql_json` without building a tree
//!   when the text has no non-finite token (the common case), for the bulk ingest path.

use std::borrow::Cow;

use jiter::{JsonValue, PartialMode};

/// A parsed W&B value; borrows from the text it was parsed from where it can.
pub type Value<'a> = JsonValue<'a>;

/// Text that is not valid JSON even in W&B's lenient dialect.
#[derive(Debug, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {reason}")]
pub struct InvalidJson {
    /// Byte offset of the error in the input.
    pub offset: usize,
    /// What the parser expected.
    pub reason: String,
}

/// Parses W&B-dialect JSON (bare `NaN`, `Infinity`, `-Infinity` allowed).
pub fn parse(text: &[u8]) -> Result<Value<'_>, InvalidJson> {
    JsonValue::parse_with_config(text, true, PartialMode::Off).map_err(|e| InvalidJson {
        offset: e.index,
        reason: e.error_type.to_string(),
    })
}

/// How non-finite floats are spelled by the writers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NonFinite {
    /// Bare tokens, as Python's `json.dumps` writes them.
    BareTokens,
    /// JSON strings, which Postgres `float8` input understands.
    Strings,
}

/// Renders `value` compactly in W&B's dialect (bare `NaN`/`Infinity`/`-Infinity`).
pub fn write_wandb_json(value: &Value<'_>, out: &mut Vec<u8>) {
    write_value(value, out, NonFinite::BareTokens);
}

/// Renders `value` as strict JSON, non-finite floats as `"NaN"`, `"Infinity"`, `"-Infinity"`.
pub fn write_sql_json(value: &Value<'_>, out: &mut Vec<u8>) {
    write_value(value, out, NonFinite::Strings);
}

/// Converts W&B-dialect JSON text to strict JSON for Postgres, copying nothing when the text
/// contains no non-finite token outside strings.
///
/// The text is validated by the parser only when a rewrite is needed; callers that store the
/// result in `jsonb` get Postgres' own validation otherwise.
pub fn to_sql_json_text(text: &str) -> Result<Cow<'_, str>, InvalidJson> {
    if !has_non_finite_token(text.as_bytes()) {
        return Ok(Cow::Borrowed(text));
    }
    let value = parse(text.as_bytes())?;
    let mut out = Vec::with_capacity(text.len() + 8);
    write_sql_json(&value, &mut out);
    // The writer only emits valid UTF-8 (it copies `str`s and ASCII).
    Ok(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}

/// Returns `text` as one JSON Lines record: unchanged when it is already a single line, else
/// re-rendered compactly (W&B dialect), so a record never spans lines.
pub fn as_single_line(text: &str) -> Result<Cow<'_, str>, InvalidJson> {
    let trimmed = text.trim_matches(|c| c == '\n' || c == '\r' || c == ' ' || c == '\t');
    if memchr::memchr2(b'\n', b'\r', trimmed.as_bytes()).is_none() {
        return Ok(Cow::Borrowed(trimmed));
    }
    let value = parse(trimmed.as_bytes())?;
    let mut out = Vec::with_capacity(trimmed.len());
    write_wandb_json(&value, &mut out);
    Ok(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}

/// True when `text` has a bare `NaN` or `Infinity` token outside string literals.
///
/// Outside strings, valid JSON only contains the letters of `true`, `false`, `null` and
/// exponents, so an `N` or `I` there can only start one of the non-finite tokens.
fn has_non_finite_token(text: &[u8]) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'N' || b == b'I' {
            return true;
        }
    }
    false
}

fn write_value(value: &Value<'_>, out: &mut Vec<u8>, non_finite: NonFinite) {
    match value {
        JsonValue::Null => out.extend_from_slice(b"null"),
        JsonValue::Bool(true) => out.extend_from_slice(b"true"),
        JsonValue::Bool(false) => out.extend_from_slice(b"false"),
        JsonValue::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        JsonValue::BigInt(b) => out.extend_from_slice(b.to_string().as_bytes()),
        JsonValue::Float(f) => write_float(*f, out, non_finite),
        JsonValue::Str(s) => write_str(s, out),
        JsonValue::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out, non_finite);
            }
            out.push(b']');
        }
        JsonValue::Object(members) => {
            out.push(b'{');
            for (i, (key, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(key, out);
                out.push(b':');
                write_value(item, out, non_finite);
            }
            out.push(b'}');
        }
    }
}

fn write_float(f: f64, out: &mut Vec<u8>, non_finite: NonFinite) {
    let token: &[u8] = if f.is_nan() {
        b"NaN"
    } else if f == f64::INFINITY {
        b"Infinity"
    } else if f == f64::NEG_INFINITY {
        b"-Infinity"
    } else {
        // Shortest representation that round-trips, always with a `.` or exponent so that a
        // float stays a float for readers that distinguish (Python: `1.0` vs `1`).
        out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
        return;
    };
    match non_finite {
        NonFinite::BareTokens => out.extend_from_slice(token),
        NonFinite::Strings => {
            out.push(b'"');
            out.extend_from_slice(token);
            out.push(b'"');
        }
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // serde_json's escaping is the reference implementation; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(text: &str) -> String {
        let v = parse(text.as_bytes()).unwrap();
        let mut out = Vec::new();
        write_wandb_json(&v, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn sql(text: &str) -> String {
        to_sql_json_text(text).unwrap().into_owned()
    }

    #[test]
    fn non_finite_tokens_round_trip_in_wandb_dialect() {
        let text = r#"{"a":NaN,"b":Infinity,"c":-Infinity,"d":[NaN,1.5]}"#;
        assert_eq!(roundtrip(text), text);
    }

    #[test]
    fn ints_and_floats_stay_distinct() {
        assert_eq!(
            roundtrip(r#"{"i":1,"f":1.0,"big":1e300,"tiny":5e-324}"#),
            r#"{"i":1,"f":1.0,"big":1e300,"tiny":5e-324}"#
        );
        assert_eq!(roundtrip("18446744073709551616"), "18446744073709551616");
        assert_eq!(roundtrip("-9223372036854775808"), "-9223372036854775808");
    }

    #[test]
    fn key_order_unicode_and_escapes_are_kept() {
        let text =
            r#"{"z":1,"ä/ключ":"line\nbreak \"q\" \u0001","a":{"nested":[true,false,null]}}"#;
        assert_eq!(roundtrip(text), text);
    }

    #[test]
    fn sql_json_spells_non_finite_as_float8_strings() {
        assert_eq!(
            sql(r#"{"a":NaN,"b":[Infinity,-Infinity]}"#),
            r#"{"a":"NaN","b":["Infinity","-Infinity"]}"#
        );
        let out: serde_json::Value = serde_json::from_str(&sql(r#"{"x":NaN}"#)).unwrap();
        assert_eq!(out["x"], "NaN");
    }

    #[test]
    fn sql_json_borrows_when_nothing_to_rewrite() {
        let text = r#"{"Name":"NaN Infinity","v":[1,2.5e10,true,null]}"#;
        assert!(matches!(to_sql_json_text(text).unwrap(), Cow::Borrowed(_)));
        // Escaped quotes do not end a string early.
        let tricky = r#"{"k":"a\"NaN"}"#;
        assert!(matches!(
            to_sql_json_text(tricky).unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn invalid_text_is_an_error_with_offset() {
        let err = parse(b"{\"a\": nope}").unwrap_err();
        assert!(
            (6..10).contains(&err.offset),
            "offset {} not inside `nope`",
            err.offset
        );
        assert!(to_sql_json_text("{\"a\": NaNx}").is_err());
    }

    #[test]
    fn single_line_records() {
        assert!(matches!(
            as_single_line("{\"a\":1}\n").unwrap(),
            Cow::Borrowed("{\"a\":1}")
        ));
        assert_eq!(
            as_single_line("{\n  \"a\": NaN,\n  \"b\": 2\n}").unwrap(),
            r#"{"a":NaN,"b":2}"#
        );
    }
}
