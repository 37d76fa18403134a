//! The exact dependency closure of a generation's packages: what the
//! declared packages need, at the versions the generation installs
//! (not apt's candidates), so that a generation records every package it
//! stands on and a rollback to it installs exactly those.
//!
//! The base system stops the walk: packages that are `Essential`, of
//! priority `required` or `important`, and everything they need (libc6,
//! for one). Those are the root's, as the kernel is; recording them would
//! make a rollback downgrade the C library.

use std::collections::{BTreeMap, BTreeSet};

/// What the closure needs of one package at one version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Relations {
    /// `Pre-Depends` and `Depends`: each clause's alternatives, by name.
    pub depends: Vec<Vec<String>>,
    /// Virtual packages it provides.
    pub provides: Vec<String>,
    /// Part of the base system (Essential, or priority required/important).
    pub base: bool,
}

/// Parses a `Depends:` value: `a (>= 1) | b:any, c` -> [[a, b], [c]].
pub fn parse_depends(field: &str) -> Vec<Vec<String>> {
    field
        .split(',')
        .map(|clause| {
            clause
                .split('|')
                .filter_map(|alt| alt.split_whitespace().next())
                .map(|n| n.split(':').next().unwrap_or(n).to_owned())
                .filter(|n| !n.is_empty())
                .collect::<Vec<String>>()
        })
        .filter(|c| !c.is_empty())
        .collect()
}

/// Every package `roots` need, through `world` (each package present once
/// the transaction ran, at that version), less the base system and less
/// `roots` themselves. For each clause, the first alternative present (or
/// provided by a present package) is the one that counts, as for apt.
pub fn closure(world: &BTreeMap<String, Relations>, roots: &[String]) -> BTreeSet<String> {
    let mut providers: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, r) in world {
        for v in &r.provides {
            providers.entry(v.as_str()).or_insert(name.as_str());
        }
    }
    let pick = |alts: &[String]| -> Option<&str> {
        alts.iter().find_map(|a| {
            world
                .get_key_value(a)
                .map(|(k, _)| k.as_str())
                .or_else(|| providers.get(a.as_str()).copied())
        })
    };
    let walk = |starts: Vec<&str>, stop: &BTreeSet<&str>| -> BTreeSet<String> {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut stack = starts;
        while let Some(n) = stack.pop() {
            if stop.contains(n) || !seen.insert(n.to_owned()) {
                continue;
            }
            if let Some(r) = world.get(n) {
                stack.extend(r.depends.iter().filter_map(|c| pick(c)));
            }
        }
        seen
    };
    let base_roots: Vec<&str> = world
        .iter()
        .filter(|(_, r)| r.base)
        .map(|(n, _)| n.as_str())
        .collect();
    let base = walk(base_roots, &BTreeSet::new());
    let base: BTreeSet<&str> = base.iter().map(String::as_str).collect();
    let mut out = walk(roots.iter().map(String::as_str).collect(), &base);
    for r in roots {
        out.remove(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(deps: &str, provides: &[&str], base: bool) -> Relations {
        Relations {
            depends: parse_depends(deps),
            provides: provides.iter().map(|s| s.to_string()).collect(),
            base,
        }
    }

    #[test]
    fn parses_alternatives_versions_and_arch_qualifiers() {
        assert_eq!(
            parse_depends("a (>= 1.0), b:any | c (<< 2), "),
            [vec!["a".to_string()], vec!["b".into(), "c".into()]]
        );
    }

    #[test]
    fn walks_the_chosen_versions_and_stops_at_the_base_system() {
        let world: BTreeMap<String, Relations> = [
            (
                "app",
                rel("lib-a, mail-transport | postfix, libc6", &[], false),
            ),
            ("lib-a", rel("lib-b", &[], false)),
            ("lib-b", rel("libc6", &[], false)),
            ("exim", rel("libc6", &["mail-transport"], false)),
            ("postfix", rel("", &[], false)),
            ("libc6", rel("libgcc", &[], false)),
            ("libgcc", rel("", &[], false)),
            ("dpkg", rel("libc6", &[], true)),
        ]
        .into_iter()
        .map(|(n, r)| (n.to_string(), r))
        .collect();
        let got = closure(&world, &["app".to_string()]);
        let want: BTreeSet<String> = ["lib-a", "lib-b", "exim"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(got, want);
    }
}
