//! W&B JSON text → the SQL (`jsonb`) form, and `jsonb` parameters sent as raw text.
//!
//! The SQL form is strict JSON with non-finite floats spelled `"NaN"`, `"Infinity"`,
//! `"-Infinity"` ([`crate::values::to_sql_json_text`]). One more difference: `jsonb` cannot hold
//! the character U+0000, so a `\u0000` escape becomes `\ufffd` in the SQL form only (the
//! verbatim text keeps it).

use std::borrow::Cow;
use std::error::Error;

use bytes::{BufMut, BytesMut};
use postgres_types::{IsNull, ToSql, Type, accepts, to_sql_checked};

use super::error::{MirrorError, Result};
use crate::values;

/// Converts W&B-dialect JSON `text` to the SQL form; `what` names the value in errors.
pub(crate) fn to_sql_form<'a>(
    text: &'a str,
    what: impl FnOnce() -> String,
) -> Result<Cow<'a, str>> {
    let strict = values::to_sql_json_text(text).map_err(|source| MirrorError::InvalidJson {
        what: what(),
        source,
    })?;
    if !strict.contains("\\u0000") {
        return Ok(strict);
    }
    Ok(Cow::Owned(replace_nul_escapes(&strict)))
}

/// Replaces `\u0000` escapes (not `\\u0000`, an escaped backslash followed by text) with
/// `\ufffd`.
pub(crate) fn replace_nul_escapes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes[i + 1..].starts_with(b"u0000") {
                out.push_str(&text[copied..i]);
                out.push_str("\\ufffd");
                i += 6;
                copied = i;
            } else {
                // Skip the escaped character, which may itself be a backslash.
                i += 2;
            }
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied.min(text.len())..]);
    out
}

/// JSON text sent as a `jsonb` parameter or binary-COPY field without re-encoding: the binary
/// `jsonb` format is a version byte (1) followed by the text. The server validates it.
#[derive(Debug)]
pub(crate) struct JsonbText<'a>(pub &'a str);

impl ToSql for JsonbText<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_u8(1);
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    accepts!(JSONB);
    to_sql_checked!();
}

/// An optional text converted to the SQL form, as an owned value for a query parameter.
pub(crate) fn optional_sql_form(
    text: Option<&str>,
    what: impl FnOnce() -> String,
) -> Result<Option<String>> {
    text.map(|t| to_sql_form(t, what).map(Cow::into_owned))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_are_replaced_but_escaped_backslashes_are_not() {
        assert_eq!(
            to_sql_form(r#"{"a":"x\u0000y","b":NaN}"#, String::new).unwrap(),
            r#"{"a":"x\ufffdy","b":"NaN"}"#
        );
        assert_eq!(
            to_sql_form(r#"{"a":"x\\u0000y"}"#, String::new).unwrap(),
            r#"{"a":"x\\u0000y"}"#
        );
        assert_eq!(replace_nul_escapes(r#"["\\\u0000"]"#), r#"["\\\ufffd"]"#);
    }

    #[test]
    fn invalid_text_names_the_value() {
        let err = to_sql_form("{\"a\": NaNx}", || "history step 7".into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("history step 7"), "{err}");
    }
}
