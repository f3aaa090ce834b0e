//! Durations in the config and on the command line: `"250ms"`, `"10s"`, `"2m"`, `"1h"`.

use std::time::Duration;

/// The longest any timeout may be. Every deadline is the clock plus a timeout, and the
/// clock cannot hold an arbitrary sum (`Instant + Duration` panics on overflow); a day
/// is far past any useful timeout and leaves the arithmetic centuries of room.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// Serde for a duration: `"250ms"`, `"10s"`, `"2m"`, `"1h"`, or a number of seconds;
/// written back in seconds, or milliseconds when it has a fraction of a second.
pub(crate) mod serde_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Seconds(u64),
        Text(String),
    }

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::duration_text(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Text::deserialize(d)? {
            Text::Seconds(s) => Ok(Duration::from_secs(s)),
            Text::Text(t) => super::parse_duration(&t).map_err(serde::de::Error::custom),
        }
    }

    /// The same for an optional duration (left out: `None`).
    pub(crate) mod option {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        pub(crate) fn serialize<S: Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

/// Parses `250ms`, `10s`, `2m`, `1h` (one number, one unit).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let hint =
        || format!("invalid duration \"{text}\" (write e.g. \"250ms\", \"10s\", \"2m\", \"1h\")");
    let n: u64 = number.parse().map_err(|_| hint())?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(hint()),
    }
}

/// A duration as a config value: whole seconds, or milliseconds.
pub(crate) fn duration_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}
