//! Small pieces of text that reports, plan lines and the CLI share: sizes,
//! counts, lists of generations, dates. The caller gives the time and the
//! time zone; the calendar and the sizes are `jiff`'s and `bytesize`'s.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// `n` bytes, in the largest binary unit that keeps it at least 1
/// ("12 B", "1.5 KiB").
pub fn human_bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// The one plural of the tool: "1 snapshot", "2 snapshots", "2 entries",
/// "2 copies", "0 matches".
pub fn plural(n: impl Count, noun: &str) -> String {
    let n = n.count();
    if n == 1 {
        return format!("{n} {noun}");
    }
    format!("{n} {}", plural_of(noun))
}

/// A number of things, whatever integer type counted them.
pub trait Count {
    fn count(self) -> u64;
}

impl Count for u64 {
    fn count(self) -> u64 {
        self
    }
}

impl Count for usize {
    fn count(self) -> u64 {
        self as u64
    }
}

impl Count for u32 {
    fn count(self) -> u64 {
        u64::from(self)
    }
}

/// The regular English plural of a noun (the nouns sysgen counts are all
/// regular); a noun phrase ("runtime step") takes it on its last word.
fn plural_of(noun: &str) -> String {
    let vowel = |c: char| "aeiou".contains(c);
    if let Some(stem) = noun.strip_suffix('y')
        && !stem.ends_with(vowel)
    {
        return format!("{stem}ies");
    }
    if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|e| noun.ends_with(e))
    {
        return format!("{noun}es");
    }
    format!("{noun}s")
}

/// "generation 3", "generations 1, 2, 5".
pub fn generation_list(numbers: &[u64]) -> String {
    format!(
        "{} {}",
        if numbers.len() == 1 {
            "generation"
        } else {
            "generations"
        },
        numbers
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(secs: i64) -> String {
    in_zone(secs, &TimeZone::UTC)
}

/// Seconds since the epoch in the zone `tz` (the binary picks the local
/// one), with the zone's abbreviation: `2026-11-23 13:02:18 CET`.
pub fn in_zone(secs: i64, tz: &TimeZone) -> String {
    match Timestamp::from_second(secs) {
        Ok(t) => t
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        // Out of jiff's range (±9999 years): only a damaged record says so.
        Err(_) => format!("{secs} seconds after the epoch"),
    }
}

/// Seconds since the epoch as RFC 3339 in UTC (`2026-11-23T12:02:18Z`), for
/// JSON documents.
pub fn rfc3339(secs: i64) -> String {
    Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}

/// How long before `now` the moment `then` was, in its largest unit:
/// "just now", "5 minutes ago", "3 days ago", "in the future" (a clock
/// set back).
pub fn relative(then: i64, now: i64) -> String {
    let ago = now.saturating_sub(then);
    if ago < 0 {
        return "in the future".into();
    }
    const UNITS: [(i64, &str); 6] = [
        (365 * 86400, "year"),
        (30 * 86400, "month"),
        (7 * 86400, "week"),
        (86400, "day"),
        (3600, "hour"),
        (60, "minute"),
    ];
    UNITS.iter().find(|(len, _)| ago >= *len).map_or_else(
        || "just now".into(),
        |(len, unit)| format!("{} ago", plural((ago / len) as u64, unit)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_709_164_800 + 3661), "2024-02-29 01:01:01 UTC");
        assert_eq!(rfc3339(1_704_067_200), "2024-01-01T00:00:00Z");
        assert_eq!(relative(100, 100), "just now");
        assert_eq!(relative(0, 3 * 86400 + 5), "3 days ago");
        assert_eq!(relative(0, 3600), "1 hour ago");
        assert_eq!(relative(10, 0), "in the future");
    }

    #[test]
    fn sizes_and_counts() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(plural(1u64, "snapshot"), "1 snapshot");
        assert_eq!(plural(0u64, "snapshot"), "0 snapshots");
        assert_eq!(plural(2u64, "entry"), "2 entries");
        assert_eq!(plural(2u64, "key"), "2 keys");
        assert_eq!(plural(2u64, "match"), "2 matches");
        assert_eq!(plural(3u64, "runtime step"), "3 runtime steps");
        assert_eq!(generation_list(&[1, 2]), "generations 1, 2");
    }
}
