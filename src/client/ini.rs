//! The subset of Python's `configparser` that W&B settings files use.
//!
//! `wandb/sdk/lib/settings_file.py` reads `~/.config/wandb/settings` and `./wandb/settings` with
//! a default `configparser.ConfigParser()` and keeps only section `[default]`. Its rules, which we
//! follow so that a file means the same to wandbfs as to the SDK:
//! - `key = value` or `key: value` (first `=` or `:`), keys lower-cased, both sides trimmed;
//! - full-line comments start with `#` or `;` (no inline comments);
//! - indented lines continue the previous value (joined with `\n`);
//! - `[DEFAULT]` values are visible in every section;
//! - `%%` is a literal `%`, `%(name)s` interpolates another key;
//! - any parse error (text before the first section, a key without a delimiter, a duplicate
//!   section or key, a bad `%`) makes the SDK ignore the **whole file**, and so do we.

use std::collections::BTreeMap;

/// A parse failure; the caller ignores the file (after a warning), like the SDK.
#[derive(Debug, PartialEq, Eq)]
pub struct IniError(pub String);

/// Parses `text` and returns the interpolated items of `section` (with `[DEFAULT]` merged in),
/// or an empty map when the section does not exist.
pub fn section_items(text: &str, section: &str) -> Result<BTreeMap<String, String>, IniError> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut last_key: Option<String> = None;

    for (index, raw_line) in text.lines().enumerate() {
        let lineno = index + 1;
        let line = raw_line.trim_end_matches('\r');
        let stripped = line.trim();
        if stripped.is_empty() {
            last_key = None;
            continue;
        }
        if stripped.starts_with('#') || stripped.starts_with(';') {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        if indented
            && let (Some(sec), Some(key)) = (&current, &last_key)
            && let Some(value) = sections.get_mut(sec).and_then(|s| s.get_mut(key))
        {
            value.push('\n');
            value.push_str(stripped);
            continue;
        }
        if let Some(name) = stripped
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .filter(|name| !name.is_empty())
        {
            if sections.contains_key(name) {
                return Err(IniError(format!(
                    "line {lineno}: duplicate section [{name}]"
                )));
            }
            sections.insert(name.to_owned(), BTreeMap::new());
            current = Some(name.to_owned());
            last_key = None;
            continue;
        }
        let Some(sec) = &current else {
            return Err(IniError(format!(
                "line {lineno}: file contains no section header before it"
            )));
        };
        let Some(split) = stripped.find(['=', ':']) else {
            return Err(IniError(format!("line {lineno}: expected `key = value`")));
        };
        let key = stripped[..split].trim().to_lowercase();
        let value = stripped[split + 1..].trim().to_owned();
        if key.is_empty() {
            return Err(IniError(format!("line {lineno}: empty key")));
        }
        let entries = sections.entry(sec.clone()).or_default();
        if entries.contains_key(&key) {
            return Err(IniError(format!("line {lineno}: duplicate key {key:?}")));
        }
        entries.insert(key.clone(), value);
        last_key = Some(key);
    }

    let Some(own) = sections.get(section) else {
        return Ok(BTreeMap::new());
    };
    let mut merged = sections.get("DEFAULT").cloned().unwrap_or_default();
    merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut out = BTreeMap::new();
    for (key, value) in &merged {
        out.insert(key.clone(), interpolate(value, &merged, 0)?);
    }
    Ok(out)
}

/// `BasicInterpolation`: `%%` → `%`, `%(name)s` → the (interpolated) value of `name`.
fn interpolate(
    value: &str,
    vars: &BTreeMap<String, String>,
    depth: usize,
) -> Result<String, IniError> {
    // configparser's MAX_INTERPOLATION_DEPTH.
    if depth > 10 {
        return Err(IniError("interpolation too deep".into()));
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        if let Some(after) = rest.strip_prefix("%%") {
            out.push('%');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("%(") {
            let Some(close) = after.find(")s") else {
                return Err(IniError(format!("bad interpolation in {value:?}")));
            };
            let name = after[..close].to_lowercase();
            let Some(target) = vars.get(&name) else {
                return Err(IniError(format!("bad interpolation reference %({name})s")));
            };
            out.push_str(&interpolate(target, vars, depth + 1)?);
            rest = &after[close + 2..];
        } else {
            return Err(IniError(format!(
                "'%' must be followed by '%' or '(' in {value:?}"
            )));
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_default_section_like_configparser() {
        let text = "# comment\n[DEFAULT]\nshared = s\n\n[default]\nBase_URL = http://h:1/ \n\
                    entity: team-a\n; other comment\nmulti = a\n  b\nprojectx = 50%%\n\
                    ref = %(entity)s/x\n[other]\nentity = no\n";
        let items = section_items(text, "default").unwrap();
        assert_eq!(items["base_url"], "http://h:1/");
        assert_eq!(items["entity"], "team-a");
        assert_eq!(items["multi"], "a\nb");
        assert_eq!(items["projectx"], "50%");
        assert_eq!(items["ref"], "team-a/x");
        assert_eq!(items["shared"], "s");
        assert_eq!(section_items("[other]\na=1\n", "default").unwrap().len(), 0);
    }

    #[test]
    fn whole_file_is_rejected_on_errors() {
        assert!(section_items("key = v\n[default]\n", "default").is_err());
        assert!(section_items("[default]\nno delimiter\n", "default").is_err());
        assert!(section_items("[default]\na=1\na=2\n", "default").is_err());
        assert!(section_items("[default]\n[default]\n", "default").is_err());
        assert!(section_items("[default]\na=50%\n", "default").is_err());
    }
}
