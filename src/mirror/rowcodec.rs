//! History rows and system events → the SQL columns `(key_set_id, vals float8[], extra jsonb)`.
//!
//! Postgres parses `jsonb` input at ~8 µs per 23-key row; a `float8[]` arrives in binary COPY
//! without any parsing. So each row is decomposed once, on the client:
//!
//! - every **numeric leaf** (ints and floats, NaN and ±Infinity included) becomes one value of
//!   `vals`; nested objects are descended into (the leaf's path, e.g. `["train", "acc"]`, is
//!   its key, dotted `train.acc` in SQL, like W&B's history keys); media objects (with a
//!   `_type`) and arrays are not descended into;
//! - the row's **shape** — the sorted list of its leaves' paths — names which value is which:
//!   `vals` is in shape order, and the shape is stored once in the dictionary
//!   ([`super::dictionary`]) as a *key set*, shared by every row of the same shape (usually all
//!   rows of a run). Sorting makes the shape independent of key order, which wandb-core
//!   randomises per row;
//! - everything else (strings, booleans, nulls, lists, media objects, empty objects) stays in
//!   `extra`, the row minus its numeric leaves, in SQL-JSON form
//!   ([`crate::values::write_sql_json`]); `NULL` when nothing is left, which is the common case:
//!   then Postgres parses no JSON at all.
//!
//! Integers beyond ±2^53 (which `float8` cannot hold exactly) are a leaf *and* stay exact in
//! `extra`; `wandb.assemble_row` lets `extra` win. Duplicate keys resolve like `jsonb` does:
//! the last one wins. A leaf whose path is longer than [`MAX_PATH_BYTES`] stays in `extra` (the
//! dictionary indexes paths, and a btree entry is limited to ~2.7 kB).
//!
//! Most rows take the fast path: a streaming pass over a flat object of numbers whose keys
//! match the previous row's (same order: a byte comparison per key; other order: a hash lookup
//! per key). Anything else is parsed into a tree and decomposed in full.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use jiter::{Jiter, JsonValue, NumberAny, NumberInt, Peek};

use crate::values::{self, InvalidJson};

/// Longest leaf path (sum of its keys' bytes) kept as a numeric leaf; longer ones stay in
/// `extra`.
pub(crate) const MAX_PATH_BYTES: usize = 1000;

/// [`EncodedBatch::kinds`]: the value was a JSON integer.
pub(crate) const KIND_INT: u8 = 1;
/// [`EncodedBatch::kinds`]: the value was a JSON float (NaN and ±Infinity included).
pub(crate) const KIND_FLOAT: u8 = 2;
/// [`EncodedBatch::kinds`]: the row must be rendered from its text to be typed exactly — it has
/// duplicate keys (one value kept here, all of them seen by a parser of the text) or a key
/// holding U+0000 (spelled U+FFFD in the dictionary).
pub(crate) const KIND_TEXT: u8 = 4;

/// Largest integer magnitude `float8` holds exactly.
const EXACT_INT: i64 = 1 << 53;

/// The keys from a row's top level down to one numeric leaf.
pub(crate) type Path = Box<[String]>;

/// The sorted, duplicate-free leaf paths of a row: what a key set stores.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Shape(pub(crate) Box<[Path]>);

impl Shape {
    /// True when some leaf is below the top level (the row has nested objects).
    pub(crate) fn is_nested(&self) -> bool {
        self.0.iter().any(|p| p.len() > 1)
    }

    /// Number of leaves.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// The dotted name of a path (`train.acc`), as the SQL views show it.
pub(crate) fn dotted(path: &[String]) -> String {
    path.join(".")
}

/// One decomposed row.
#[derive(Clone, Debug)]
pub(crate) struct EncodedRow {
    /// Step (history) or event number (system).
    pub(crate) key: i64,
    /// Index into [`EncodedBatch::shapes`].
    pub(crate) shape: u32,
    /// Its values, in shape order, in [`EncodedBatch::vals`].
    pub(crate) vals: Range<usize>,
    /// Its `extra` text (SQL form) in [`EncodedBatch::extra`], if any.
    pub(crate) extra: Option<Range<usize>>,
}

/// A batch of decomposed rows; values and `extra` texts live in two shared buffers.
#[derive(Debug, Default)]
pub(crate) struct EncodedBatch {
    /// The distinct shapes of the batch.
    pub(crate) shapes: Vec<Shape>,
    /// The rows, in input order.
    pub(crate) rows: Vec<EncodedRow>,
    /// All rows' values.
    pub(crate) vals: Vec<f64>,
    /// What each of `vals` was ([`KIND_INT`] or [`KIND_FLOAT`], maybe with [`KIND_TEXT`]).
    pub(crate) kinds: Vec<u8>,
    /// All rows' `extra` texts.
    pub(crate) extra: Vec<u8>,
    /// Rows that needed the full (tree) decomposition.
    pub(crate) slow_rows: usize,
}

/// Slot of a top-level key that is not a numeric leaf (its value goes to `extra`).
const EXTRA_SLOT: u32 = u32::MAX;

/// The fast path's memory of the previous flat row.
#[derive(Debug, Default)]
struct LastRow {
    /// Its shape (an index into the batch's shapes), if it was flat.
    shape: Option<u32>,
    /// Its top-level keys in text order, and each one's position in the shape
    /// ([`EXTRA_SLOT`] for a key whose value went to `extra`).
    keys: Vec<String>,
    slots: Vec<u32>,
    /// Numeric key → position in the shape, for rows that list their keys in another order
    /// (wandb-core writes keys in Go map order).
    by_key: HashMap<String, u32>,
}

/// Decomposes rows into an [`EncodedBatch`].
#[derive(Debug, Default)]
pub(crate) struct RowEncoder {
    batch: EncodedBatch,
    shape_index: HashMap<Shape, u32>,
    last: LastRow,
    /// Scratch of the fast path: the row's values, which positions are filled, its `extra`.
    scratch: Vec<f64>,
    scratch_kinds: Vec<u8>,
    filled: Vec<bool>,
    extra: Vec<u8>,
}

/// Why the fast path gave up on a row.
enum Bail {
    /// Not a flat row with the last row's keys: decompose fully (which also reports invalid
    /// JSON, with its position).
    Slow,
}

impl From<jiter::JiterError> for Bail {
    fn from(_: jiter::JiterError) -> Self {
        Bail::Slow
    }
}

impl RowEncoder {
    /// Decomposes one row (`text`: W&B JSON, a single value) and adds it to the batch.
    pub(crate) fn push(&mut self, key: i64, text: &str) -> Result<(), InvalidJson> {
        match self.fast(key, text.as_bytes()) {
            Ok(()) => Ok(()),
            Err(Bail::Slow) => self.slow(key, text.as_bytes()),
        }
    }

    /// The rows so far.
    pub(crate) fn finish(self) -> EncodedBatch {
        self.batch
    }

    /// A flat object — numbers, plus strings, booleans, nulls or lists for `extra` — whose keys
    /// are the previous flat row's.
    fn fast(&mut self, key: i64, text: &[u8]) -> Result<(), Bail> {
        let Some(shape) = self.last.shape else {
            return Err(Bail::Slow);
        };
        let width = self.batch.shapes[shape as usize].len();
        self.scratch.clear();
        self.scratch.resize(width, 0.0);
        self.scratch_kinds.clear();
        self.scratch_kinds.resize(width, 0);
        self.filled.clear();
        self.filled.resize(width, false);
        self.extra.clear();
        let mut jiter = Jiter::new(text).with_allow_inf_nan();
        if jiter.peek()? != Peek::Object {
            return Err(Bail::Slow);
        }
        let mut in_order = true;
        let mut n = 0usize;
        let mut numeric = 0usize;
        let mut member = jiter.known_object()?;
        while let Some(k) = member {
            // The key borrows the parser: it is classified (and, for `extra`, written) before
            // the value is read, so the common path copies nothing.
            let slot = if in_order && self.last.keys.get(n).is_some_and(|l| l == k) {
                self.last.slots[n]
            } else {
                in_order = false;
                self.last.by_key.get(k).copied().unwrap_or(EXTRA_SLOT)
            };
            if slot == EXTRA_SLOT {
                self.extra
                    .push(if self.extra.is_empty() { b'{' } else { b',' });
                write_key(k, &mut self.extra);
                self.extra.push(b':');
            }
            let peek = jiter.peek()?;
            if peek.is_num() {
                if slot == EXTRA_SLOT {
                    return Err(Bail::Slow); // a new numeric key: a new shape
                }
                let (value, kind) = match jiter.known_number(peek)? {
                    NumberAny::Float(f) => (f, KIND_FLOAT),
                    NumberAny::Int(NumberInt::Int(i)) if (-EXACT_INT..=EXACT_INT).contains(&i) => {
                        (i as f64, KIND_INT)
                    }
                    NumberAny::Int(_) => return Err(Bail::Slow),
                };
                let p = slot as usize;
                if self.filled[p] {
                    return Err(Bail::Slow); // a duplicate key: the full path resolves it
                }
                self.filled[p] = true;
                self.scratch[p] = value;
                self.scratch_kinds[p] = kind;
                numeric += 1;
            } else {
                // Objects may hold leaves or be media objects: those rows go the full path.
                if slot != EXTRA_SLOT || peek == Peek::Object {
                    return Err(Bail::Slow);
                }
                let start = jiter.current_index();
                jiter.known_skip(peek)?;
                let raw = jiter.slice_to_current(start);
                if peek == Peek::Array {
                    // Lists may hold bare NaN/Infinity tokens; the text is valid UTF-8.
                    let raw = std::str::from_utf8(raw).map_err(|_| Bail::Slow)?;
                    let sql = values::to_sql_json_text(raw).map_err(|_| Bail::Slow)?;
                    self.extra.extend_from_slice(sql.as_bytes());
                } else {
                    self.extra.extend_from_slice(raw);
                }
            }
            n += 1;
            member = jiter.next_key()?;
        }
        jiter.finish()?;
        if numeric != width {
            return Err(Bail::Slow);
        }
        // A key both numeric and in `extra` would be a duplicate the full path must resolve;
        // with every numeric slot filled exactly once and `extra` keys absent from the shape,
        // there is none.
        let start = self.batch.vals.len();
        self.batch.vals.extend_from_slice(&self.scratch);
        self.batch.kinds.extend_from_slice(&self.scratch_kinds);
        let extra = (!self.extra.is_empty()).then(|| {
            self.extra.push(b'}');
            let start = self.batch.extra.len();
            append_sql_text(&self.extra, &mut self.batch.extra);
            start..self.batch.extra.len()
        });
        self.batch.rows.push(EncodedRow {
            key,
            shape,
            vals: start..self.batch.vals.len(),
            extra,
        });
        Ok(())
    }

    /// Any row: parsed into a tree and decomposed in full.
    fn slow(&mut self, key: i64, text: &[u8]) -> Result<(), InvalidJson> {
        self.batch.slow_rows += 1;
        let value = values::parse(text)?;
        let mut leaves: Vec<(Path, f64, u8)> = Vec::new();
        let mut extra: Vec<u8> = Vec::new();
        let mut flat_keys: Option<Vec<(String, bool)>> = None;
        match &value {
            JsonValue::Object(members) => {
                let mut path = Vec::new();
                if residual_object(members, &mut path, &mut leaves, &mut extra) {
                    extra.clear(); // nothing but leaves: no `extra`
                }
                flat_keys = fast_path_keys(members);
            }
            other => values::write_sql_json(other, &mut extra),
        }
        leaves.sort_by(|a, b| a.0.cmp(&b.0));
        let shape = Shape(leaves.iter().map(|(p, _, _)| p.clone()).collect());
        let shape_id = self.shape_id(shape);
        let start = self.batch.vals.len();
        self.batch.vals.extend(leaves.iter().map(|(_, v, _)| *v));
        let text = if needs_text(&value) { KIND_TEXT } else { 0 };
        self.batch
            .kinds
            .extend(leaves.iter().map(|(_, _, kind)| kind | text));
        let extra = (!extra.is_empty()).then(|| {
            let start = self.batch.extra.len();
            append_sql_text(&extra, &mut self.batch.extra);
            start..self.batch.extra.len()
        });
        self.batch.rows.push(EncodedRow {
            key,
            shape: shape_id,
            vals: start..self.batch.vals.len(),
            extra,
        });
        match flat_keys {
            Some(keys) => self.remember_flat(shape_id, keys),
            None => self.last.shape = None,
        }
        Ok(())
    }

    fn shape_id(&mut self, shape: Shape) -> u32 {
        if let Some(&id) = self.shape_index.get(&shape) {
            return id;
        }
        let id = self.batch.shapes.len() as u32;
        self.batch.shapes.push(shape.clone());
        self.shape_index.insert(shape, id);
        id
    }

    /// Sets up the fast path for rows with the same top-level keys as `keys` (text order;
    /// `true` = a numeric leaf).
    fn remember_flat(&mut self, shape: u32, keys: Vec<(String, bool)>) {
        let sorted = &self.batch.shapes[shape as usize].0;
        if self.last.shape == Some(shape)
            && self.last.keys.len() == keys.len()
            && self.last.keys.iter().zip(&keys).all(|(a, (b, _))| a == b)
        {
            return;
        }
        let by_key: HashMap<String, u32> = sorted
            .iter()
            .enumerate()
            .map(|(i, p)| (p[0].clone(), i as u32))
            .collect();
        let slots: Option<Vec<u32>> = keys
            .iter()
            .map(|(k, numeric)| match numeric {
                true => by_key.get(k).copied(),
                false => (!by_key.contains_key(k)).then_some(EXTRA_SLOT),
            })
            .collect();
        match slots {
            Some(slots) => {
                self.last = LastRow {
                    shape: Some(shape),
                    keys: keys.into_iter().map(|(k, _)| k).collect(),
                    slots,
                    by_key,
                };
            }
            None => self.last.shape = None,
        }
    }
}

/// The top-level keys of a row the fast path can take over (text order; `true` = numeric
/// leaf): no duplicates, no NUL, short keys, and every value an exactly representable number
/// or a string, boolean, null or list. `None` otherwise.
fn fast_path_keys(members: &[(Cow<'_, str>, JsonValue<'_>)]) -> Option<Vec<(String, bool)>> {
    if duplicates(members).is_some() {
        return None;
    }
    members
        .iter()
        .map(|(k, v)| {
            if k.contains('\0') || k.len() > MAX_PATH_BYTES {
                return None;
            }
            let numeric = match v {
                JsonValue::Float(_) => true,
                JsonValue::Int(n) if (-EXACT_INT..=EXACT_INT).contains(n) => true,
                JsonValue::Int(_) | JsonValue::BigInt(_) | JsonValue::Object(_) => return None,
                _ => false,
            };
            Some((k.to_string(), numeric))
        })
        .collect()
}

/// For an object with duplicate keys, which members to keep (`jsonb` keeps the last of
/// each key); `None` when every key is distinct.
fn duplicates(members: &[(Cow<'_, str>, JsonValue<'_>)]) -> Option<Vec<bool>> {
    if members.len() < 2 {
        return None;
    }
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(members.len());
    for (i, (k, _)) in members.iter().enumerate() {
        last.insert(k.as_ref(), i);
    }
    if last.len() == members.len() {
        return None;
    }
    Some(
        members
            .iter()
            .enumerate()
            .map(|(i, (k, _))| last[k.as_ref()] == i)
            .collect(),
    )
}

/// Whether a row's numeric leaves can only be typed exactly from its text: an object on the way
/// to a leaf has duplicate keys or a key holding U+0000 (see [`KIND_TEXT`]).
fn needs_text(value: &JsonValue<'_>) -> bool {
    match value {
        JsonValue::Object(members)
            if !members.is_empty() && !members.iter().any(|(k, _)| k == "_type") =>
        {
            duplicates(members).is_some()
                || members
                    .iter()
                    .any(|(k, v)| k.contains('\0') || needs_text(v))
        }
        _ => false,
    }
}

/// Appends `text` (SQL JSON written by [`values::write_sql_json`]) with `\u0000` escapes
/// replaced by `\ufffd`: `jsonb` cannot hold U+0000.
fn append_sql_text(text: &[u8], out: &mut Vec<u8>) {
    if !text.windows(6).any(|w| w == b"\\u0000") {
        out.extend_from_slice(text);
        return;
    }
    // The writer emits valid UTF-8.
    let text = String::from_utf8_lossy(text);
    out.extend_from_slice(super::sqljson::replace_nul_escapes(&text).as_bytes());
}

/// Writes `key` as a JSON string (SQL form: U+0000 replaced).
fn write_key(key: &str, out: &mut Vec<u8>) {
    // serde_json's escaping, as `values` writes strings; writing into a Vec cannot fail.
    if key.contains('\0') {
        let _ = serde_json::to_writer(&mut *out, &sql_key(key));
    } else {
        let _ = serde_json::to_writer(&mut *out, key);
    }
}

/// Replaces U+0000 in a key (PostgreSQL `text` cannot hold it), like the SQL form does.
fn sql_key(key: &str) -> String {
    key.replace('\0', "\u{fffd}")
}

/// Writes the members of `members` that are not numeric leaves as a JSON object into `out`
/// (SQL form), collecting the numeric leaves below `path` into `leaves`. Returns true when
/// every member was a numeric leaf or an object of them (nothing needs to be kept), in which
/// case what was written to `out` must be discarded.
fn residual_object(
    members: &[(Cow<'_, str>, JsonValue<'_>)],
    path: &mut Vec<String>,
    leaves: &mut Vec<(Path, f64, u8)>,
    out: &mut Vec<u8>,
) -> bool {
    let start = out.len();
    out.push(b'{');
    let mut written = 0usize;
    let kept = duplicates(members);
    for (i, (key, value)) in members.iter().enumerate() {
        if kept.as_ref().is_some_and(|kept| !kept[i]) {
            continue;
        }
        let key = sql_key(key);
        let path_bytes: usize = path.iter().map(String::len).sum::<usize>() + key.len();
        let leaf = |path: &Vec<String>, v: f64, kind: u8, leaves: &mut Vec<(Path, f64, u8)>| {
            let mut p = path.clone();
            p.push(key.clone());
            leaves.push((p.into_boxed_slice(), v, kind));
        };
        let keep = |out: &mut Vec<u8>, written: &mut usize| {
            if *written > 0 {
                out.push(b',');
            }
            write_key(&key, out);
            out.push(b':');
            values::write_sql_json(value, out);
            *written += 1;
        };
        let short = path_bytes <= MAX_PATH_BYTES;
        match value {
            JsonValue::Float(f) if short => leaf(path, *f, KIND_FLOAT, leaves),
            JsonValue::Int(n) if short && (-EXACT_INT..=EXACT_INT).contains(n) => {
                leaf(path, *n as f64, KIND_INT, leaves)
            }
            JsonValue::Int(n) if short => {
                leaf(path, *n as f64, KIND_INT, leaves);
                keep(out, &mut written);
            }
            JsonValue::BigInt(b) if short => {
                let approx = b.to_string().parse::<f64>().unwrap_or(f64::NAN);
                leaf(path, approx, KIND_INT, leaves);
                keep(out, &mut written);
            }
            JsonValue::Object(inner)
                if !inner.is_empty() && !inner.iter().any(|(k, _)| k == "_type") =>
            {
                let mark = out.len();
                if written > 0 {
                    out.push(b',');
                }
                write_key(&key, out);
                out.push(b':');
                path.push(key.clone());
                let all_leaves = residual_object(inner, path, leaves, out);
                path.pop();
                if all_leaves {
                    out.truncate(mark);
                } else {
                    written += 1;
                }
            }
            _ => keep(out, &mut written),
        }
    }
    if written == 0 {
        out.truncate(start);
        return true;
    }
    out.push(b'}');
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(rows: &[&str]) -> EncodedBatch {
        let mut e = RowEncoder::default();
        for (i, r) in rows.iter().enumerate() {
            e.push(i as i64, r).unwrap();
        }
        e.finish()
    }

    /// (dotted keys, values, extra) of row `i`.
    fn row(b: &EncodedBatch, i: usize) -> (Vec<String>, Vec<f64>, Option<String>) {
        let r = &b.rows[i];
        let keys = b.shapes[r.shape as usize]
            .0
            .iter()
            .map(|p| dotted(p))
            .collect();
        let extra = r
            .extra
            .clone()
            .map(|x| String::from_utf8(b.extra[x].to_vec()).unwrap());
        (keys, b.vals[r.vals.clone()].to_vec(), extra)
    }

    #[test]
    fn kinds_tell_ints_from_floats_and_mark_rows_needing_text() {
        let b = encode(&[
            r#"{"a":1,"b":2.5}"#,
            r#"{"a":2,"b":NaN}"#,
            r#"{"a":{"x":3},"b":1e3}"#,
            r#"{"a":1,"a":2.5}"#,
            r#"{"k\u0000":1,"m":{"n":2,"n":3}}"#,
        ]);
        let kinds = |i: usize| b.kinds[b.rows[i].vals.clone()].to_vec();
        assert_eq!(b.kinds.len(), b.vals.len());
        assert_eq!(kinds(0), [KIND_INT, KIND_FLOAT]);
        assert_eq!(kinds(1), [KIND_INT, KIND_FLOAT]); // the fast path
        assert_eq!(kinds(2), [KIND_INT, KIND_FLOAT]); // a.x, b
        assert_eq!(kinds(3), [KIND_FLOAT | KIND_TEXT]); // the last duplicate is kept
        assert_eq!(kinds(4), [KIND_INT | KIND_TEXT, KIND_INT | KIND_TEXT]);
    }

    #[test]
    fn flat_numeric_rows_share_one_shape_and_have_no_extra() {
        let b = encode(&[
            r#"{"_step":0,"loss":0.5,"acc":1}"#,
            r#"{"_step":1,"loss":NaN,"acc":2}"#,
            r#"{"acc":3,"_step":2,"loss":-Infinity}"#,
            r#"{"_step":3,"loss":Infinity,"acc":4}"#,
        ]);
        assert_eq!(b.shapes.len(), 1, "key order does not make a new shape");
        assert_eq!(b.slow_rows, 1, "only the first row is decomposed in full");
        let (keys, vals, extra) = row(&b, 0);
        assert_eq!(keys, ["_step", "acc", "loss"]);
        assert_eq!(vals, [0.0, 1.0, 0.5]);
        assert_eq!(extra, None);
        let (_, vals, _) = row(&b, 1);
        assert!(vals[2].is_nan());
        assert_eq!(row(&b, 2).1, [2.0, 3.0, f64::NEG_INFINITY]);
        assert_eq!(row(&b, 3).1, [3.0, 4.0, f64::INFINITY]);
    }

    #[test]
    fn non_numeric_values_stay_in_extra_and_nested_leaves_are_dotted() {
        let b = encode(&[
            r#"{"_step":0,"s":"NaN","t":true,"n":null,"l":[1,NaN],"o":{"a":1,"b":{"c":2.5,"d":"x"}},"img":{"_type":"image-file","width":3},"e":{}}"#,
        ]);
        let (keys, vals, extra) = row(&b, 0);
        assert_eq!(keys, ["_step", "o.a", "o.b.c"]);
        assert_eq!(vals, [0.0, 1.0, 2.5]);
        assert_eq!(
            extra.as_deref(),
            Some(
                r#"{"s":"NaN","t":true,"n":null,"l":[1,"NaN"],"o":{"b":{"d":"x"}},"img":{"_type":"image-file","width":3},"e":{}}"#
            )
        );
        assert!(b.shapes[0].is_nested());
    }

    #[test]
    fn big_integers_are_leaves_and_stay_exact_in_extra() {
        let b =
            encode(&[r#"{"big":18446744073709551616,"i":9007199254740993,"ok":9007199254740992}"#]);
        let (keys, vals, extra) = row(&b, 0);
        assert_eq!(keys, ["big", "i", "ok"]);
        assert_eq!(
            vals,
            [
                1.8446744073709552e19,
                9007199254740992.0,
                9007199254740992.0
            ]
        );
        assert_eq!(
            extra.as_deref(),
            Some(r#"{"big":18446744073709551616,"i":9007199254740993}"#)
        );
    }

    #[test]
    fn duplicate_keys_resolve_like_jsonb() {
        let b = encode(&[
            r#"{"a":1,"b":2}"#,
            r#"{"a":1,"a":"x"}"#,
            r#"{"a":"x","a":5}"#,
            r#"{"a":1,"b":2,"a":3}"#,
        ]);
        assert_eq!(row(&b, 1), (vec![], vec![], Some(r#"{"a":"x"}"#.into())));
        assert_eq!(row(&b, 2), (vec!["a".into()], vec![5.0], None));
        assert_eq!(
            row(&b, 3),
            (vec!["a".into(), "b".into()], vec![3.0, 2.0], None)
        );
    }

    #[test]
    fn changing_keys_make_new_shapes_and_fall_back_correctly() {
        let b = encode(&[
            r#"{"a":1,"b":2}"#,
            r#"{"a":1}"#,
            r#"{"a":1,"b":2,"c":3}"#,
            r#"{"a":1,"b":"s"}"#,
            r#"{"a":1,"b":2}"#,
        ]);
        assert_eq!(b.shapes.len(), 3);
        assert_eq!(b.rows[0].shape, b.rows[4].shape);
        assert_eq!(
            row(&b, 3),
            (vec!["a".into()], vec![1.0], Some(r#"{"b":"s"}"#.into()))
        );
    }

    #[test]
    fn rows_with_strings_lists_and_nulls_take_the_fast_path() {
        let b = encode(&[
            r#"{"_step":0,"phase":"train","loss":1.5,"l":[1,2]}"#,
            r#"{"_step":1,"phase":"val \"q\"","loss":NaN,"l":[NaN,Infinity],"n":null}"#,
            r#"{"l":[],"loss":2,"phase":"x","_step":2}"#,
            r#"{"_step":3,"phase":7,"loss":2,"l":[]}"#,
        ]);
        assert_eq!(
            b.slow_rows, 2,
            "rows 1 and 2 are fast; a string turned number is not"
        );
        assert_eq!(
            row(&b, 0),
            (
                vec!["_step".into(), "loss".into()],
                vec![0.0, 1.5],
                Some(r#"{"phase":"train","l":[1,2]}"#.into())
            )
        );
        let (_, vals, extra) = row(&b, 1);
        assert!(vals[1].is_nan());
        assert_eq!(
            extra.as_deref(),
            Some(r#"{"phase":"val \"q\"","l":["NaN","Infinity"],"n":null}"#)
        );
        assert_eq!(row(&b, 2).2.as_deref(), Some(r#"{"l":[],"phase":"x"}"#));
        assert_eq!(row(&b, 3).0, ["_step", "loss", "phase"]);
        assert_eq!(row(&b, 3).2.as_deref(), Some(r#"{"l":[]}"#));
    }

    #[test]
    fn nul_characters_become_replacement_characters() {
        let b = encode(&[r#"{"k\u0000":1,"s":"a\u0000b"}"#]);
        let (keys, _, extra) = row(&b, 0);
        assert_eq!(keys, ["k\u{fffd}"]);
        assert_eq!(extra.as_deref(), Some(r#"{"s":"a\ufffdb"}"#));
    }

    #[test]
    fn non_object_rows_and_invalid_text() {
        let b = encode(&["[1,NaN]", "7"]);
        assert_eq!(row(&b, 0), (vec![], vec![], Some(r#"[1,"NaN"]"#.into())));
        assert_eq!(row(&b, 1), (vec![], vec![], Some("7".into())));
        let mut e = RowEncoder::default();
        e.push(0, r#"{"a":1}"#).unwrap();
        assert!(e.push(1, r#"{"a":1"#).is_err());
        assert!(e.push(2, r#"{"a":nope}"#).is_err());
    }

    #[test]
    fn long_paths_stay_in_extra() {
        let long = "k".repeat(MAX_PATH_BYTES + 1);
        let b = encode(&[&format!(r#"{{"{long}":1.5,"x":2}}"#)]);
        let (keys, vals, extra) = row(&b, 0);
        assert_eq!(keys, ["x"]);
        assert_eq!(vals, [2.0]);
        assert_eq!(extra, Some(format!(r#"{{"{long}":1.5}}"#)));
    }
}
