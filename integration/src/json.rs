//! JSON in the W&B dialect: bare `NaN`/`Infinity`/`-Infinity` tokens.
//!
//! The SDK uploads history lines, summaries and configs whose numbers may be the bare tokens
//! `NaN`, `Infinity` and `-Infinity` (PROTOCOL §5.4). Such text is kept verbatim and served
//! verbatim inside `JSONString` fields, where both Python's `json.loads` and wandb-core accept
//! the tokens. Fields typed `JSON` are decoded by Go's strict `encoding/json`, so there the
//! values become the string sentinels `"NaN"`, `"Infinity"` and `"-Infinity"`.
//!
//! [`parse_lenient`] gives the value view (sentinels as strings) used for filters, ordering and
//! `JSON`-typed output; [`write_json_string_literal`] escapes raw text into a JSON string literal
//! for the history fast path; [`write_f64`] formats floats like serde_json (never `{}`).

use async_graphql::{Name, Value};

/// The string used for a non-finite float in a `JSON`-typed field.
pub fn non_finite_sentinel(x: f64) -> &'static str {
    if x.is_nan() {
        "NaN"
    } else if x > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// Replaces bare `NaN`, `Infinity` and `-Infinity` tokens outside of strings by the quoted
/// sentinels, giving strict JSON. Returns `None` when nothing needed replacing (the input is
/// then used as is).
pub fn quote_non_finite_tokens(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    // Fast check: the tokens start with 'N' or 'I', which never appear outside strings in
    // strict JSON (true/false/null are lower case).
    let mut in_string = false;
    let mut escaped = false;
    let mut first_hit = None;
    for (i, &b) in bytes.iter().enumerate() {
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
            first_hit = Some(i);
            break;
        }
    }
    let start = first_hit?;
    let mut out = String::with_capacity(text.len() + 16);
    // Everything before `start` is copied unchanged; the scan resumes from there outside a
    // string. A `-` immediately before `Infinity` belongs to the token.
    let mut i = start;
    let mut prefix_end = start;
    if start > 0 && bytes[start - 1] == b'-' {
        prefix_end = start - 1;
    }
    out.push_str(&text[..prefix_end]);
    let mut copy_from = prefix_end;
    let mut in_string = false;
    let mut escaped = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                i += 1;
            }
            b'N' if text[i..].starts_with("NaN") => {
                out.push_str(&text[copy_from..i]);
                out.push_str("\"NaN\"");
                i += 3;
                copy_from = i;
            }
            b'I' if text[i..].starts_with("Infinity") => {
                let negative = i > copy_from && bytes[i - 1] == b'-';
                let token_start = if negative { i - 1 } else { i };
                out.push_str(&text[copy_from..token_start]);
                out.push_str(if negative {
                    "\"-Infinity\""
                } else {
                    "\"Infinity\""
                });
                i += 8;
                copy_from = i;
            }
            b'-' if text[i + 1..].starts_with("Infinity") => {
                out.push_str(&text[copy_from..i]);
                out.push_str("\"-Infinity\"");
                i += 9;
                copy_from = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[copy_from..]);
    Some(out)
}

/// Parses W&B-dialect JSON into a value, mapping non-finite tokens to their string sentinels.
pub fn parse_lenient(text: &str) -> Result<Value, serde_json::Error> {
    match quote_non_finite_tokens(text) {
        Some(strict) => serde_json::from_str(&strict),
        None => serde_json::from_str(text),
    }
}

/// Parses W&B-dialect JSON, or gives `Value::Null` for unparsable text (stored data is kept as
/// text either way; the value view only serves filters and `JSON` fields).
pub fn parse_lenient_or_null(text: &str) -> Value {
    parse_lenient(text).unwrap_or(Value::Null)
}

/// Appends `text` as the body of a JSON string literal (without the surrounding quotes).
pub fn escape_into(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `text` as a complete JSON string literal (with quotes).
pub fn write_json_string_literal(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    escape_into(out, text);
    out.push(b'"');
}

/// Appends a float the way serde_json would for finite values (shortest round-trip form with a
/// `.0` on whole numbers), and the bare W&B tokens for non-finite ones.
pub fn write_f64(out: &mut Vec<u8>, x: f64) {
    if x.is_finite() {
        let mut buf = ryu::Buffer::new();
        out.extend_from_slice(buf.format_finite(x).as_bytes());
    } else if x.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if x > 0.0 {
        out.extend_from_slice(b"Infinity");
    } else {
        out.extend_from_slice(b"-Infinity");
    }
}

/// The JSON type name W&B uses in `historyKeys.typeCounts` for a value.
pub fn wandb_type_name(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Number(_) => "number".into(),
        Value::String(s) if matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity") => {
            "number".into()
        }
        Value::String(_) | Value::Enum(_) => "string".into(),
        Value::Boolean(_) => "bool".into(),
        Value::List(_) | Value::Binary(_) => "list".into(),
        Value::Object(map) => match map.get("_type") {
            Some(Value::String(t)) => t.clone(),
            _ => "map".into(),
        },
    }
}

/// Looks up a dotted path (`a.b.c`) in an object value. An exact key containing dots wins over
/// descending, so keys such as `"train/acc.top1"` stay reachable.
pub fn lookup_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let Value::Object(map) = value else {
        return None;
    };
    if let Some(v) = map.get(path) {
        return Some(v);
    }
    let mut split_at = path.len();
    // Try the longest existing key prefix first, then descend.
    while let Some(dot) = path[..split_at].rfind('.') {
        let (head, rest) = (&path[..dot], &path[dot + 1..]);
        if let Some(found) = map.get(head).and_then(|inner| lookup_path(inner, rest)) {
            return Some(found);
        }
        split_at = dot;
    }
    None
}

/// Builds an object value from key/value pairs (keeps the given order).
pub fn object<I, K>(pairs: I) -> Value
where
    I: IntoIterator<Item = (K, Value)>,
    K: Into<String>,
{
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (Name::new(k.into()), v))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_bare_tokens_but_not_strings() {
        let text = r#"{"a":NaN,"b":Infinity,"c":-Infinity,"d":"NaN Infinity","e":[1,-Infinity]}"#;
        let strict = quote_non_finite_tokens(text).expect("tokens present");
        assert_eq!(
            strict,
            r#"{"a":"NaN","b":"Infinity","c":"-Infinity","d":"NaN Infinity","e":[1,"-Infinity"]}"#
        );
        assert!(quote_non_finite_tokens(r#"{"x":"NaN","y":1}"#).is_none());
    }

    #[test]
    fn escaped_quotes_inside_strings_do_not_confuse_the_scanner() {
        let text = r#"{"k\"NaN":"v\\","z":NaN}"#;
        let v = parse_lenient(text).expect("parses");
        assert_eq!(
            lookup_path(&v, "z"),
            Some(&Value::String("NaN".into())),
            "{v:?}"
        );
        assert_eq!(
            lookup_path(&v, "k\"NaN"),
            Some(&Value::String("v\\".into()))
        );
    }

    #[test]
    fn first_token_after_minus_at_start_of_scan() {
        let v = parse_lenient("[-Infinity]").expect("parses");
        assert_eq!(v, Value::List(vec![Value::String("-Infinity".into())]));
        let v = parse_lenient(r#"{"x": -Infinity}"#).expect("parses");
        assert_eq!(
            lookup_path(&v, "x"),
            Some(&Value::String("-Infinity".into()))
        );
    }

    #[test]
    fn floats_format_like_serde_json() {
        let mut out = Vec::new();
        for x in [
            0.0,
            1.0,
            0.1,
            1.7e9,
            1e-300,
            -2.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            write_f64(&mut out, x);
            out.push(b' ');
        }
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "0.0 1.0 0.1 1700000000.0 1e-300 -2.5 NaN Infinity -Infinity "
        );
        // Finite output parses back to the same number.
        let mut out = Vec::new();
        write_f64(&mut out, 0.1 + 0.2);
        let back: f64 = serde_json::from_slice(&out).expect("number");
        assert_eq!(back, 0.1 + 0.2);
    }

    #[test]
    fn escape_matches_serde_json() {
        let text = "a\"b\\c\nd\u{1}é\t{\"x\":NaN}";
        let mut out = Vec::new();
        write_json_string_literal(&mut out, text);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            serde_json::to_string(text).expect("serialises")
        );
    }

    #[test]
    fn dotted_lookup_prefers_exact_keys() {
        let v = parse_lenient(r#"{"a.b":1,"a":{"b":2,"c":{"d":3}}}"#).expect("parses");
        assert_eq!(
            lookup_path(&v, "a.b").and_then(|v| v.clone().into_json().ok()),
            Some(1.into())
        );
        assert_eq!(
            lookup_path(&v, "a.c.d").and_then(|v| v.clone().into_json().ok()),
            Some(3.into())
        );
        assert!(lookup_path(&v, "a.x").is_none());
    }

    #[test]
    fn type_names() {
        let v = parse_lenient(r#"{"n":1,"s":"x","f":NaN,"m":{"_type":"image-file"},"o":{"a":1}}"#)
            .expect("parses");
        let names: Vec<String> = ["n", "s", "f", "m", "o"]
            .iter()
            .map(|k| wandb_type_name(lookup_path(&v, k).expect("present")))
            .collect();
        assert_eq!(names, ["number", "string", "number", "image-file", "map"]);
    }
}
