//! Go-compatible text formatting that etcdctl's output depends on: `%q` quoting
//! (`strconv.Quote`), `time.Duration.String()`, `time.ParseDuration`, `strconv`
//! number/bool parsing (pflag's flag types), go-humanize's `Bytes`, Go
//! `encoding/json` string escaping and zap's ISO-8601 timestamps.
//!
//! Owns only pure functions: no I/O. Each one mirrors a named Go function so that
//! steadctl prints byte-for-byte what etcdctl 3.4.23 prints.

use std::time::Duration;

/// Go's `strconv.Quote` (what `fmt.Printf("%q", string(b))` prints) over raw bytes:
/// invalid UTF-8 bytes become `\xNN`, non-printable runes are escaped.
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                quote_str_into(s, &mut out);
                rest = &[];
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // valid_up_to guarantees `good` is UTF-8.
                quote_str_into(std::str::from_utf8(good).unwrap_or_default(), &mut out);
                let n = e.error_len().unwrap_or(bad.len()).max(1);
                for b in &bad[..n.min(bad.len())] {
                    out.push_str(&format!("\\x{b:02x}"));
                }
                rest = &bad[n.min(bad.len())..];
            }
        }
    }
    out.push('"');
    out
}

fn quote_str_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_go_print(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
}

/// An approximation of Go's `unicode.IsPrint` (letters, marks, numbers,
/// punctuation, symbols and the ASCII space). Rust's std has no category tables,
/// so non-ASCII runes count as printable unless they are controls, spaces other
/// than U+0020, or well-known format / private-use / non-characters.
pub fn is_go_print(c: char) -> bool {
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xE000..=0xF8FF | 0xFFFE | 0xFFFF | 0xF0000..=0x10FFFF)
}

/// Go's `time.Duration.String()`: `1.524149ms`, `5.00122686s`, `1m30s`, `0s`.
pub fn duration_string(d: Duration) -> String {
    let nanos = d.as_nanos().min(i64::MAX as u128) as u64;
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, div, prec) = if nanos < 1_000 {
            ("ns", 1u64, 0usize)
        } else if nanos < 1_000_000 {
            ("µs", 1_000, 3)
        } else {
            ("ms", 1_000_000, 6)
        };
        return format!("{}{}", frac(nanos, div, prec), unit);
    }
    let mut out = String::new();
    let secs_total = nanos / 1_000_000_000;
    let h = secs_total / 3600;
    let m = (secs_total / 60) % 60;
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    let s_nanos = nanos % 60_000_000_000;
    out.push_str(&frac(s_nanos, 1_000_000_000, 9));
    out.push('s');
    out
}

/// `v / div` printed with up to `prec` fractional digits, trailing zeros dropped.
fn frac(v: u64, div: u64, prec: usize) -> String {
    let whole = v / div;
    let rem = v % div;
    if rem == 0 || prec == 0 {
        return whole.to_string();
    }
    let digits = format!("{rem:0prec$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Go's `time.ParseDuration`, with its error texts (pflag's duration flags).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let orig = s;
    let invalid = || format!("time: invalid duration {}", quote(orig.as_bytes()));
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "" => return Err(format!("time: missing unit in duration {}", quote(orig.as_bytes()))),
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(unit.as_bytes()),
                    quote(orig.as_bytes())
                ))
            }
        };
        total += value * scale;
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    if neg {
        // A negative timeout expires at once, as a Go context would.
        return Ok(Duration::ZERO);
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Go's `strconv.ParseBool` (pflag bool flags).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {}: invalid syntax", quote(s.as_bytes()))),
    }
}

/// Go's `strconv.ParseInt(s, base, 64)`; base 0 infers `0x`, `0o`, `0b`, `0` prefixes
/// (pflag's int64 flags use base 0; etcdctl's lease IDs base 16).
pub fn parse_int(s: &str, base: u32) -> Result<i64, String> {
    let syntax = || format!("strconv.ParseInt: parsing {}: invalid syntax", quote(s.as_bytes()));
    let range = || format!("strconv.ParseInt: parsing {}: value out of range", quote(s.as_bytes()));
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits, underscores_ok) = if base == 0 {
        let lower = body.to_ascii_lowercase();
        if lower.starts_with("0x") {
            (16, &body[2..], true)
        } else if lower.starts_with("0o") {
            (8, &body[2..], true)
        } else if lower.starts_with("0b") {
            (2, &body[2..], true)
        } else if body.starts_with('0') && body.len() > 1 {
            (8, &body[1..], true)
        } else {
            (10, body, false)
        }
    } else {
        (base, body, false)
    };
    let cleaned: String = if underscores_ok {
        digits.chars().filter(|c| *c != '_').collect()
    } else {
        digits.to_string()
    };
    if cleaned.is_empty() || cleaned.starts_with('+') || cleaned.starts_with('-') {
        return Err(syntax());
    }
    let magnitude = u64::from_str_radix(&cleaned, radix).map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow => range(),
        _ => syntax(),
    })?;
    if neg {
        if magnitude > (i64::MAX as u64) + 1 {
            return Err(range());
        }
        Ok((magnitude as i64).wrapping_neg())
    } else {
        i64::try_from(magnitude).map_err(|_| range())
    }
}

/// Go's `strconv.ParseUint(s, base, 64)` for an explicit base (2..=36): no sign,
/// no prefix, no underscores (etcdctl's hex member IDs use base 16).
pub fn parse_uint(s: &str, base: u32) -> Result<u64, String> {
    let err = |why: &str| format!("strconv.ParseUint: parsing {}: {why}", quote(s.as_bytes()));
    if s.is_empty() {
        return Err(err("invalid syntax"));
    }
    // Digit by digit, as Go does: an overflow is reported where it happens,
    // even if a bad character follows.
    let mut n: u64 = 0;
    for c in s.chars() {
        let d = c.to_digit(base).ok_or_else(|| err("invalid syntax"))?;
        n = n
            .checked_mul(u64::from(base))
            .and_then(|n| n.checked_add(u64::from(d)))
            .ok_or_else(|| err("value out of range"))?;
    }
    Ok(n)
}

/// go-humanize's `Bytes` (SI units): `20 kB`, `1.2 MB`, `9 B`.
pub fn humanize_bytes(s: u64) -> String {
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if s < 10 {
        return format!("{s} B");
    }
    let sf = s as f64;
    let e = (sf.ln() / 1000f64.ln()).floor();
    let suffix = SIZES[(e as usize).min(SIZES.len() - 1)];
    let val = (sf / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {suffix}")
    } else {
        format!("{val:.0} {suffix}")
    }
}

/// Go `encoding/json` string encoding (HTML-safe, as `json.Marshal` does).
pub fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// zap's production timestamp (ISO 8601, milliseconds, UTC): `2026-11-23T22:47:21.012Z`.
pub fn zap_timestamp(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let millis = since_epoch.subsec_millis();
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Go's `hex.EncodeToString` with etcdctl's `addHexPrefix`: `\x66\x6f\x6f`.
pub fn hex_escaped(b: &[u8]) -> String {
    b.iter().map(|x| format!("\\x{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_matches_go_strconv_quote() {
        let cases: &[(&[u8], &str)] = &[
            (b"foo", r#""foo""#),
            (b"a\"b\\c", r#""a\"b\\c""#),
            (b"\x00\x7f\n\t", r#""\x00\x7f\n\t""#),
            (b"\xff\xfeok", r#""\xff\xfeok""#),
            ("héllo☃".as_bytes(), "\"héllo☃\""),
            ("\u{a0}".as_bytes(), r#""\u00a0""#),
            (b"", r#""""#),
        ];
        for (input, want) in cases {
            assert_eq!(quote(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn duration_string_matches_go() {
        let cases = [
            (0u64, "0s"),
            (999, "999ns"),
            (1_500, "1.5µs"),
            (1_524_149, "1.524149ms"),
            (2_000_000, "2ms"),
            (5_001_226_860, "5.00122686s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(duration_string(Duration::from_nanos(nanos)), want);
        }
    }

    #[test]
    fn parse_duration_matches_go() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30.5s"), Ok(Duration::from_millis(90_500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("abc"), Err(r#"time: invalid duration "abc""#.into()));
        assert_eq!(parse_duration("5"), Err(r#"time: missing unit in duration "5""#.into()));
        assert_eq!(
            parse_duration("5x"),
            Err(r#"time: unknown unit "x" in duration "5x""#.into())
        );
    }

    #[test]
    fn parse_int_matches_go_strconv() {
        assert_eq!(parse_int("10", 0), Ok(10));
        assert_eq!(parse_int("0x10", 0), Ok(16));
        assert_eq!(parse_int("010", 0), Ok(8));
        assert_eq!(parse_int("-5", 0), Ok(-5));
        assert_eq!(parse_int("1234", 16), Ok(0x1234));
        assert_eq!(
            parse_int("zz", 16),
            Err(r#"strconv.ParseInt: parsing "zz": invalid syntax"#.into())
        );
        assert_eq!(
            parse_int("99999999999999999999", 10),
            Err(r#"strconv.ParseInt: parsing "99999999999999999999": value out of range"#.into())
        );
        assert_eq!(parse_int("", 10), Err(r#"strconv.ParseInt: parsing "": invalid syntax"#.into()));
    }

    #[test]
    fn parse_uint_matches_go_strconv() {
        // Texts captured from etcdctl 3.4.23 (`member remove X`, `move-leader X`).
        assert_eq!(parse_uint("ab32b7da0a86d24c", 16), Ok(0xab32b7da0a86d24c));
        assert_eq!(parse_uint("FFFFFFFFFFFFFFFF", 16), Ok(u64::MAX));
        for (input, why) in [
            ("zz", "invalid syntax"),
            ("0x12", "invalid syntax"),
            ("+12", "invalid syntax"),
            ("-1", "invalid syntax"),
            ("", "invalid syntax"),
            ("1ffffffffffffffff", "value out of range"),
            ("1ffffffffffffffffz", "value out of range"),
        ] {
            assert_eq!(
                parse_uint(input, 16),
                Err(format!("strconv.ParseUint: parsing {}: {why}", quote(input.as_bytes())))
            );
        }
    }

    #[test]
    fn humanize_bytes_matches_go_humanize() {
        let cases = [
            (0u64, "0 B"),
            (9, "9 B"),
            (20_480, "20 kB"),
            (1_234_567, "1.2 MB"),
            (16_384, "16 kB"),
            (999, "999 B"),
        ];
        for (n, want) in cases {
            assert_eq!(humanize_bytes(n), want);
        }
    }

    #[test]
    fn json_string_is_html_safe_like_go() {
        let mut s = String::new();
        json_string("a<b>&\"\u{1}", &mut s);
        assert_eq!(s, r#""a\u003cb\u003e\u0026\"\u0001""#);
    }

    #[test]
    fn zap_timestamp_is_utc_iso8601() {
        let t = Duration::from_millis(1_795_474_041_012);
        assert_eq!(zap_timestamp(t), "2026-11-23T22:47:21.012Z");
    }
}
