//! Text forms of sizes and durations used in configuration strings, and
//! byte counts phrased for people.

use std::time::Duration;

const KIB: f64 = 1024.0;

/// Formats a byte count as GiB with two decimals, e.g. `"9.20 GiB"`.
pub fn format_bytes(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (KIB * KIB * KIB))
}

/// Parses a size such as `16GiB`, `512MiB`, `8GB`, `1.5G` or `4096`.
///
/// Units are case-insensitive: `B`; binary `KiB`, `MiB`, `GiB`, `TiB` (and
/// the short forms `K`, `M`, `G`, `T`); decimal `KB`, `MB`, `GB`, `TB`. A
/// bare number is bytes. The error says what was wrong.
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => KIB,
        "m" | "mib" => KIB * KIB,
        "g" | "gib" => KIB * KIB * KIB,
        "t" | "tib" => KIB * KIB * KIB * KIB,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => {
            return Err(format!(
                "unknown size unit {unit:?} in {text:?} (expected B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
            ))
        }
    };
    let bytes = number * scale;
    if bytes > u64::MAX as f64 {
        return Err(format!("size {text:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

/// Parses a duration such as `30s`, `500ms`, `2m`, `1h` or `1.5s`. A bare
/// number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text)?;
    let seconds = match unit.to_ascii_lowercase().as_str() {
        "" | "s" => number,
        "ms" => number / 1e3,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => {
            return Err(format!(
                "unknown duration unit {unit:?} in {text:?} (expected ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("duration {text:?} is out of range"))
}

/// Parses a plain number with an optional fixed unit suffix (e.g. `C` for
/// temperatures or `W` for power), case-insensitive.
pub(crate) fn parse_with_unit(text: &str, unit: &str) -> Result<f64, String> {
    let (number, found) = split_number(text)?;
    if found.is_empty() || found.eq_ignore_ascii_case(unit) {
        Ok(number)
    } else {
        Err(format!(
            "unexpected unit {found:?} in {text:?} (expected a number, optionally followed by {unit})"
        ))
    }
}

/// Splits `"16GiB"` into `(16.0, "GiB")`; the number must be finite and not
/// negative.
fn split_number(text: &str) -> Result<(f64, &str), String> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(end);
    if digits.is_empty() {
        return Err(format!("expected a number, found {text:?}"));
    }
    let number: f64 = digits
        .parse()
        .map_err(|_| format!("{digits:?} is not a number"))?;
    if !number.is_finite() {
        return Err(format!("{digits:?} is not a finite number"));
    }
    Ok((number, unit.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_bytes("16GiB"), Ok(16 * GIB));
        assert_eq!(parse_bytes("16g"), Ok(16 * GIB));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 * GIB / 2));
        assert_eq!(parse_bytes("8GB"), Ok(8_000_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes(" 2 KiB "), Ok(2048));
    }

    #[test]
    fn bad_sizes_say_what_is_wrong() {
        let err = parse_bytes("16XB").unwrap_err();
        assert!(err.contains("unknown size unit \"XB\""), "{err}");
        let err = parse_bytes("GiB").unwrap_err();
        assert!(err.contains("expected a number"), "{err}");
        let err = parse_bytes("-1GiB").unwrap_err();
        assert!(err.contains("expected a number"), "{err}");
        let err = parse_bytes("1.2.3G").unwrap_err();
        assert!(err.contains("not a number"), "{err}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("3 days").unwrap_err().contains("\"days\""));
    }

    #[test]
    fn numbers_with_units() {
        assert_eq!(parse_with_unit("45", "C"), Ok(45.0));
        assert_eq!(parse_with_unit("45c", "C"), Ok(45.0));
        assert_eq!(parse_with_unit("250W", "W"), Ok(250.0));
        assert!(parse_with_unit("250kW", "W").is_err());
    }

    #[test]
    fn bytes_format_as_gib() {
        assert_eq!(format_bytes(GIB * 9 + GIB / 5), "9.20 GiB");
        assert_eq!(format_bytes(0), "0.00 GiB");
    }
}
