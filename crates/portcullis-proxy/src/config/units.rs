//! Durations ("500ms", "10s", "2m", "1h", "1d") and sizes ("512", "16k", "10MB", "1g"),
//! written the way nginx users write them.

use std::time::Duration;

/// Parses "500ms", "10s", "2m", "1h", "1d" (a bare number means seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("\"{s}\" is not a duration; write a number with a unit, like \"500ms\", \"10s\", \"2m\", \"1h\""))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit \"{other}\" in \"{s}\"; use ms, s, m, h or d"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=10.0 * 365.0 * 86400.0).contains(&secs) {
        return Err(format!("duration \"{s}\" is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses "512", "16k", "16KB", "10m", "10MB", "1g" (binary multiples, as nginx).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!(
            "\"{s}\" is not a size; write a number with an optional unit, like \"16k\" or \"10MB\""
        )
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit \"{other}\" in \"{s}\"; use k, m or g"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size \"{s}\" is too large"))
}

/// Parses a request rate as nginx writes it: "10r/s" or "600r/m" → (requests, per seconds).
pub fn parse_rate(s: &str) -> Option<(u64, u64)> {
    let t = s.trim().to_ascii_lowercase();
    let (n, per) = t
        .strip_suffix("r/s")
        .map(|n| (n, 1))
        .or_else(|| t.strip_suffix("r/m").map(|n| (n, 60)))?;
    n.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| (1..=1_000_000).contains(n))
        .map(|n| (n, per))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999d").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10r/s"), Some((10, 1)));
        assert_eq!(parse_rate(" 600R/M "), Some((600, 60)));
        assert_eq!(parse_rate("0r/s"), None);
        assert_eq!(parse_rate("10/s"), None);
        assert_eq!(parse_rate("2000000r/s"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("16k").unwrap(), 16384);
        assert_eq!(parse_size("10MB").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert!(parse_size("1t").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999g").is_err());
    }
}
