//! Durations as configuration files and flags write them (`500ms`, `30s`,
//! `5m`, `1h30m`; a bare number is seconds), read and printed with
//! `humantime`, and a serde adapter for optional ones.

use std::time::Duration;

/// The longest duration [`parse`] accepts: 3 650 days. Deadlines are
/// computed as `now + duration`, which would overflow (and panic) for
/// durations near `u64::MAX` seconds; no timeout or TTL needs more.
pub const MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Parses `500ms`, `30s`, `5m`, `1h30m` (humantime's syntax), or a bare
/// number of seconds; at most [`MAX`].
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = match s.parse::<f64>() {
        Ok(secs) => {
            Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration `{s}`: {e}"))?
        }
        Err(_) => {
            humantime::parse_duration(s).map_err(|e| format!("invalid duration `{s}`: {e}"))?
        }
    };
    if d > MAX {
        return Err(format!(
            "invalid duration `{s}`: longer than {} days",
            MAX.as_secs() / 86_400
        ));
    }
    Ok(d)
}

/// Formats `d` so that [`parse`] reads it back (`30s`, `5m`, `1h 30m`).
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `Option<Duration>` as a string such as `"120s"` or `"5m"` (serde `with`).
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX, format, parse};
    use std::time::Duration;

    #[test]
    fn durations_round_trip() {
        for (text, d) in [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("2", Duration::from_secs(2)),
        ] {
            assert_eq!(parse(text), Ok(d), "{text}");
            assert_eq!(parse(&format(d)), Ok(d), "{text}");
        }
        assert_eq!(parse(&format(MAX)), Ok(MAX));
        for long in ["18446744073709551615s", "1e12", "11years"] {
            let e = parse(long).expect_err(long);
            assert!(e.contains("longer than"), "{long}: {e}");
        }
        assert!(parse("10 parsecs").is_err());
        assert!(parse("").is_err());
        assert!(parse("-1").is_err());
    }
}
