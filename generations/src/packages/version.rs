//! Debian version ordering (Debian Policy §5.6.12), so planning can say
//! "upgrade" or "downgrade" without running a tool.

use std::cmp::Ordering;

/// Compares two Debian versions: `[epoch:]upstream[-revision]`.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(ua, ub))
        .then_with(|| compare_part(ra, rb))
}

fn split(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) if e.bytes().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((u, r)) => (epoch, u, r),
        None => (epoch, rest, ""),
    }
}

/// `~` sorts before everything, even the end of the string; letters before
/// other characters.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // The non-digit prefix, character by character.
        loop {
            let ca = a.first().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.first().copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            match order(ca).cmp(&order(cb)) {
                Ordering::Equal => {
                    a = &a[1..];
                    b = &b[1..];
                }
                o => return o,
            }
        }
        // Then the digit run, as a number.
        let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let na = std::str::from_utf8(&a[..da])
            .ok()
            .map(|s| s.trim_start_matches('0'))
            .unwrap_or("");
        let nb = std::str::from_utf8(&b[..db])
            .ok()
            .map(|s| s.trim_start_matches('0'))
            .unwrap_or("");
        match na.len().cmp(&nb.len()).then_with(|| na.cmp(nb)) {
            Ordering::Equal => {}
            o => return o,
        }
        a = &a[da..];
        b = &b[db..];
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_like_dpkg() {
        let less = [
            ("1.0", "2.0"),
            ("1.0", "1.0-1"),
            ("1.0~rc1", "1.0"),
            ("1.0~rc1-1", "1.0-1"),
            ("1.2.9", "1.2.10"),
            ("2.0", "1:0.1"),
            ("1.0a", "1.0+"),
            ("1.0", "1.0a"),
            ("3.2.2-2", "3.2.2-10"),
            ("0.9", "0.10"),
        ];
        for (a, b) in less {
            assert_eq!(compare(a, b), Ordering::Less, "{a} < {b}");
            assert_eq!(compare(b, a), Ordering::Greater, "{b} > {a}");
        }
        assert_eq!(compare("1.01", "1.1"), Ordering::Equal);
        assert_eq!(compare("0:1.0-1", "1.0-1"), Ordering::Equal);
    }
}
