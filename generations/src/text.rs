//! Small pieces of text that reports and plan lines share: sizes, counts,
//! lists of generations, dates (UTC; the caller gives the time).

/// `n` bytes, in the largest binary unit that keeps it at least 1.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// "1 snapshot", "2 snapshots".
pub fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// "generation 3", "generations 1, 2, 5".
pub fn generation_list(numbers: &[u64]) -> String {
    format!(
        "generation{} {}",
        if numbers.len() == 1 { "" } else { "s" },
        numbers
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS`, in UTC.
pub fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_704_067_200), "2024-01-01 00:00:00");
        assert_eq!(super::utc(1_709_164_800 + 3661), "2024-02-29 01:01:01");
    }

    #[test]
    fn sizes_and_counts() {
        assert_eq!(super::human_bytes(12), "12 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::plural(1, "snapshot"), "1 snapshot");
        assert_eq!(super::plural(0, "snapshot"), "0 snapshots");
        assert_eq!(super::generation_list(&[1, 2]), "generations 1, 2");
    }
}
