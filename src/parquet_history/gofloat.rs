//! Floats spelled exactly as wandb-core spells them.
//!
//! wandb-core (Go) writes every history float with `strconv.AppendFloat(v, 'g', -1, 64)`
//! (through `simplejsonext`), spelling infinities `Infinity`/`-Infinity` and NaN `NaN`. That is
//! both what the SDK uploads (so what W&B's `history` rows contain for SDK-logged runs) and what
//! the SDK's own parquet reader hands to Python for exported cells. Rendering exported floats
//! the same way makes a row read from parquet identical, value for value and spelling for
//! spelling, to the row the SDK logged: `0.5`, `1` (a whole float has no `.0`), `1e-05`,
//! `1.234567e+06`, `1.7e+09`.
//!
//! Go's `'g'` with the shortest precision uses exponent form when the decimal exponent is
//! below -4 or at least 6 (`eprec = 6` for shortest), with at least two exponent digits. The
//! shortest round-trip digits come from `ryu`, which picks the same digits as Go's shortest
//! formatting (both produce the shortest string that parses back to the same `f64`, closest to
//! the exact value).

/// Appends `x` as wandb-core writes it.
pub fn write_go_float(x: f64, out: &mut Vec<u8>) {
    if x.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if x.is_infinite() {
        out.extend_from_slice(if x > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    let a = x.abs();
    if (1e-4..1e6).contains(&a) {
        // Fast path: where Go writes fixed notation, ryu does too with the same shortest
        // digits; only ryu's `.0` on whole numbers differs.
        let mut buf = ryu::Buffer::new();
        let text = buf.format_finite(x);
        out.extend_from_slice(text.strip_suffix(".0").unwrap_or(text).as_bytes());
        return;
    }
    if x.is_sign_negative() {
        out.push(b'-');
    }
    if x == 0.0 {
        out.push(b'0');
        return;
    }
    let mut buf = ryu::Buffer::new();
    let (digits, nd, dp) = shortest_digits(buf.format_finite(x.abs()));
    let digits = &digits[..nd];
    let exp = dp - 1;
    if !(-4..6).contains(&exp) {
        // %e: d[.ddd]e±XX
        out.push(digits[0]);
        if nd > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(itoa::Buffer::new().format(e).as_bytes());
    } else if dp <= 0 {
        // 0.000ddd
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', dp.unsigned_abs() as usize));
        out.extend_from_slice(digits);
    } else {
        let dp = dp as usize;
        if dp >= nd {
            out.extend_from_slice(digits);
            out.extend(std::iter::repeat_n(b'0', dp - nd));
        } else {
            out.extend_from_slice(&digits[..dp]);
            out.push(b'.');
            out.extend_from_slice(&digits[dp..]);
        }
    }
}

/// Splits ryu's output (`123.45`, `1e-7`, `1.5e22`, `0.001`) into significant digits (no
/// leading or trailing zeros), their count, and the decimal point position `dp` such that the
/// value is `0.d1d2…dn × 10^dp`.
fn shortest_digits(text: &str) -> ([u8; 32], usize, i32) {
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = [0u8; 32];
    let mut nd = 0usize;
    let mut dp = int_part.len() as i32 + exp;
    let mut leading = true;
    for &b in int_part.as_bytes().iter().chain(frac_part.as_bytes()) {
        if leading && b == b'0' {
            dp -= 1;
            continue;
        }
        leading = false;
        if nd < digits.len() {
            digits[nd] = b;
            nd += 1;
        }
    }
    while nd > 1 && digits[nd - 1] == b'0' {
        nd -= 1;
    }
    (digits, nd, dp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(x: f64) -> String {
        let mut out = Vec::new();
        write_go_float(x, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn matches_wandb_core_spellings() {
        // Spellings observed in rows the 0.31.0 SDK uploaded.
        for (x, s) in [
            (0.5, "0.5"),
            (1.0, "1"),
            (1e-05, "1e-05"),
            (1234567.0, "1.234567e+06"),
            (1e16, "1e+16"),
            (1e21, "1e+21"),
            (123456789012.5, "1.234567890125e+11"),
            (1.5e-07, "1.5e-07"),
            (0.0001, "0.0001"),
            (1795597851.0868363, "1.7955978510868363e+09"),
            (0.322712763, "0.322712763"),
            (0.25, "0.25"),
        ] {
            assert_eq!(go(x), s, "{x:e}");
        }
    }

    #[test]
    fn boundaries_signs_and_specials() {
        assert_eq!(go(123456.0), "123456");
        assert_eq!(go(999999.5), "999999.5");
        assert_eq!(go(1000000.0), "1e+06");
        assert_eq!(go(0.00012), "0.00012");
        assert_eq!(go(0.000012), "1.2e-05");
        assert_eq!(go(-2.5), "-2.5");
        assert_eq!(go(0.0), "0");
        assert_eq!(go(-0.0), "-0");
        assert_eq!(go(1e300), "1e+300");
        assert_eq!(go(5e-324), "5e-324");
        assert_eq!(go(f64::MAX), "1.7976931348623157e+308");
        assert_eq!(go(f64::NAN), "NaN");
        assert_eq!(go(f64::INFINITY), "Infinity");
        assert_eq!(go(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(go(100.0), "100");
        assert_eq!(go(0.1 + 0.2), "0.30000000000000004");
    }

    /// The general path, bypassing the fast one.
    fn general(x: f64) -> String {
        let mut out = Vec::new();
        if x.is_sign_negative() {
            out.push(b'-');
        }
        let mut buf = ryu::Buffer::new();
        let (digits, nd, dp) = shortest_digits(buf.format_finite(x.abs()));
        let digits = &digits[..nd];
        if dp <= 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', dp.unsigned_abs() as usize));
            out.extend_from_slice(digits);
        } else if dp as usize >= nd {
            out.extend_from_slice(digits);
            out.extend(std::iter::repeat_n(b'0', dp as usize - nd));
        } else {
            out.extend_from_slice(&digits[..dp as usize]);
            out.push(b'.');
            out.extend_from_slice(&digits[dp as usize..]);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn fast_path_equals_the_general_formatting() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..50_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Log-uniform over [1e-4, 1e6), both signs, plus whole numbers.
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            let mut x = 10f64.powf(-4.0 + 10.0 * unit);
            if i % 7 == 0 {
                x = x.round().max(1.0);
            }
            if i % 2 == 0 {
                x = -x;
            }
            if !(1e-4..1e6).contains(&x.abs()) {
                continue;
            }
            assert_eq!(go(x), general(x), "{x:e}");
        }
        for x in [
            1e-4,
            0.00010000000000000002,
            999999.9999999999,
            5.0,
            0.1,
            123456.0,
        ] {
            assert_eq!(go(x), general(x), "{x:e}");
        }
    }

    #[test]
    fn round_trips() {
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let x = f64::from_bits(state);
            if !x.is_finite() {
                continue;
            }
            let text = go(x);
            assert_eq!(
                text.parse::<f64>().unwrap().to_bits(),
                x.to_bits(),
                "{text}"
            );
        }
    }
}
