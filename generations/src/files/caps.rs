//! File capabilities as people write them (`cap_net_raw=ep`, libcap's
//! text form, as `setcap` and `getcap` use it) and as the kernel keeps
//! them: the `security.capability` attribute, a `vfs_cap_data`. The names
//! come from the `caps` crate; the text and the binary layout are here.

use std::collections::BTreeMap;

use caps::Capability;

use crate::rootfs::Xattrs;
use crate::rootfs::xattr::{ACL_ACCESS, ACL_DEFAULT, CAPABILITY};

/// `magic_etc` of a revision 2 `vfs_cap_data` (64-bit sets, no root id).
const REVISION_2: u32 = 0x0200_0000;
/// … of revision 3 (a user namespace's root id follows the sets).
const REVISION_3: u32 = 0x0300_0000;
const REVISION_MASK: u32 = 0xff00_0000;
/// The one effective bit: every permitted capability is raised at exec.
const EFFECTIVE: u32 = 0x0000_0001;

/// Every capability the `caps` crate knows, by its number.
fn by_index() -> BTreeMap<u8, Capability> {
    caps::all().into_iter().map(|c| (c.index(), c)).collect()
}

fn parse_name(name: &str) -> Result<Vec<u8>, String> {
    let upper = name.to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(by_index().keys().copied().collect());
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    full.parse::<Capability>()
        .map(|c| vec![c.index()])
        .map_err(|_| format!("unknown capability {name:?}"))
}

/// Parses libcap's text form: clauses `names OP flags [OP flags…]`
/// separated by spaces, `names` comma-separated (or `all`), OP one of
/// `=` (exactly these flags), `+` (add), `-` (drop), flags from `e`, `i`,
/// `p`. Returns the `security.capability` value (revision 2).
pub fn parse(text: &str) -> Result<Vec<u8>, String> {
    let (mut permitted, mut inheritable, mut effective) = (0u64, 0u64, 0u64);
    for clause in text.split_whitespace() {
        let at = clause.find(['=', '+', '-']).ok_or_else(|| {
            format!("{clause:?} has no `=`, `+` or `-` (write e.g. cap_net_raw=ep)")
        })?;
        let mut bits = 0u64;
        for name in clause[..at].split(',') {
            for i in parse_name(name)? {
                bits |= 1 << i;
            }
        }
        let mut rest = &clause[at..];
        while let Some(op) = rest.chars().next() {
            let end = rest[1..]
                .find(['=', '+', '-'])
                .map_or(rest.len(), |i| i + 1);
            let flags = &rest[1..end];
            if let Some(bad) = flags.chars().find(|c| !"eipEIP".contains(*c)) {
                return Err(format!(
                    "{clause:?}: unknown flag {bad:?} (flags are e, i and p)"
                ));
            }
            let has = |c: char| flags.contains(c) || flags.contains(c.to_ascii_uppercase());
            for (set, flag) in [
                (&mut permitted, 'p'),
                (&mut inheritable, 'i'),
                (&mut effective, 'e'),
            ] {
                match op {
                    '=' if has(flag) => *set |= bits,
                    '=' => *set &= !bits,
                    '+' if has(flag) => *set |= bits,
                    '-' if has(flag) => *set &= !bits,
                    _ => {}
                }
            }
            rest = &rest[end..];
        }
    }
    if effective != 0 && effective != permitted | inheritable {
        return Err(format!(
            "{text:?}: a file has one effective bit for all its capabilities; give `e` to all of them or to none"
        ));
    }
    if permitted | inheritable == 0 {
        return Err(format!(
            "{text:?} grants no capability; leave `caps` out instead"
        ));
    }
    let mut out = Vec::with_capacity(20);
    let magic = REVISION_2 | if effective != 0 { EFFECTIVE } else { 0 };
    out.extend(magic.to_le_bytes());
    for half in [0, 32] {
        out.extend(((permitted >> half) as u32).to_le_bytes());
        out.extend(((inheritable >> half) as u32).to_le_bytes());
    }
    Ok(out)
}

/// The text form of a `security.capability` value, as `getcap` prints it;
/// `None` when it is not a value the kernel would take.
pub fn text(v: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            v.get(i * 4..i * 4 + 4)?.try_into().ok()?,
        ))
    };
    let magic = word(0)?;
    let rootid = match magic & REVISION_MASK {
        REVISION_2 if v.len() == 20 => None,
        REVISION_3 if v.len() == 24 => word(5),
        _ => return None,
    };
    let permitted = u64::from(word(1)?) | u64::from(word(3)?) << 32;
    let inheritable = u64::from(word(2)?) | u64::from(word(4)?) << 32;
    let e = magic & EFFECTIVE != 0;
    // Capabilities with the same flags go in one clause.
    let mut clauses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let names = by_index();
    for i in 0..64u8 {
        let (p, inh) = (permitted >> i & 1 == 1, inheritable >> i & 1 == 1);
        if !p && !inh {
            continue;
        }
        let flags = format!(
            "{}{}{}",
            if e { "e" } else { "" },
            if inh { "i" } else { "" },
            if p { "p" } else { "" }
        );
        let name = names
            .get(&i)
            .map_or_else(|| i.to_string(), |c| c.to_string().to_ascii_lowercase());
        clauses.entry(flags).or_default().push(name);
    }
    let mut out: Vec<String> = clauses
        .into_iter()
        .map(|(flags, names)| format!("{}={flags}", names.join(",")))
        .collect();
    if let Some(r) = rootid {
        out.push(format!("[rootid={r}]"));
    }
    Some(out.join(" "))
}

/// How a plan line shows extended attributes: the capability in text,
/// ACLs by kind, the rest counted.
pub fn describe(x: &Xattrs) -> Vec<String> {
    let mut out = Vec::new();
    let mut others = 0;
    for (name, v) in &x.0 {
        match name.as_str() {
            CAPABILITY => out.push(format!(
                "caps {}",
                text(v).unwrap_or_else(|| "(unreadable)".into())
            )),
            ACL_ACCESS => out.push("ACL".into()),
            ACL_DEFAULT => out.push("default ACL".into()),
            _ => others += 1,
        }
    }
    if others > 0 {
        out.push(format!(
            "{others} other xattr{}",
            if others == 1 { "" } else { "s" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_round_trips() {
        // What `setcap cap_net_raw=ep` writes.
        let v = parse("cap_net_raw=ep").unwrap();
        assert_eq!(
            v,
            [
                0x01, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ]
        );
        assert_eq!(text(&v).unwrap(), "cap_net_raw=ep");
        assert_eq!(parse("CAP_NET_RAW+ep").unwrap(), v);
    }

    #[test]
    fn several_and_bad() {
        let v = parse("cap_net_bind_service,cap_net_admin=p").unwrap();
        assert_eq!(text(&v).unwrap(), "cap_net_bind_service,cap_net_admin=p");
        assert!(
            parse("cap_nope=ep")
                .unwrap_err()
                .contains("unknown capability")
        );
        assert!(parse("cap_net_raw=x").unwrap_err().contains("unknown flag"));
        assert!(parse("cap_net_raw").is_err());
        assert!(parse("cap_net_raw=ep cap_chown=p").is_err());
        assert!(text(&[1, 2, 3]).is_none());
    }
}
