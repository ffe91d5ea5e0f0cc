//! Values written on the command line: sizes in bytes, durations, image sizes.
use std::time::Duration;

/// `16MiB`, `512KiB`, `2MB`, `1000`: a size in bytes.
pub fn bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("expected a size such as 16MiB, got `{s}`"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("unknown unit `{other}` in `{s}` (B, KB, KiB, MB, MiB, GB, GiB)")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("`{s}` is too large"))
}

/// Whole milliseconds (`--timeout-ms 30000`).
pub fn millis(s: &str) -> Result<Duration, String> {
    s.trim().parse::<u64>().map(Duration::from_millis).map_err(|_| format!("expected whole milliseconds, got `{s}`"))
}

/// Whole seconds, at least one (`--header-timeout-s 30`; 0 counts as 1).
pub fn seconds_at_least_one(s: &str) -> Result<Duration, String> {
    s.trim().parse::<u64>().map(|n| Duration::from_secs(n.max(1))).map_err(|_| format!("expected whole seconds, got `{s}`"))
}

/// `WIDTHxHEIGHT`, e.g. `64x80`.
pub fn image_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.to_ascii_lowercase().split_once('x').map(|(w, h)| (w.to_string(), h.to_string())).ok_or("expected WIDTHxHEIGHT, e.g. 64x80")?;
    Ok((w.parse().map_err(|_| format!("bad width `{w}`"))?, h.parse().map_err(|_| format!("bad height `{h}`"))?))
}

/// A number in 0..=1 (`--min-score 0.5`); NaN and infinities are refused.
pub fn unit_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("expected a number from 0 to 1, got `{s}`"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("expected a number from 0 to 1, got `{s}`"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_image_sizes() {
        assert_eq!(bytes("16MiB"), Ok(16 << 20));
        assert_eq!(bytes("2MB"), Ok(2_000_000));
        assert!(bytes("3 parsecs").is_err() && bytes("99999999999999999999GiB").is_err());
        assert_eq!(millis("5"), Ok(Duration::from_millis(5)));
        assert_eq!(seconds_at_least_one("0"), Ok(Duration::from_secs(1)));
        assert_eq!(image_size("64X80"), Ok((64, 80)));
        assert!(image_size("64").is_err());
        assert_eq!(unit_interval("0.25"), Ok(0.25));
        for bad in ["nan", "NaN", "inf", "-0.1", "1.5", "x"] {
            assert!(unit_interval(bad).is_err(), "{bad}");
        }
    }
}
