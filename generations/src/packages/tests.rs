use std::collections::{BTreeMap, BTreeSet};

use sysgen_schema::EntryPath;
use sysgen_store::{Area, Hash, Store};

use super::plan::{PackagePlan, plan_with, purge_set};
use super::records::own;
use super::*;
use crate::Error;
use crate::db::Db;
use crate::kind::Phase;
use crate::plan::Step;
use crate::rootfs::RootDir;

/// A package manager in memory: what a second backend must provide is
/// all the planner uses.
#[derive(Default)]
struct FakePm {
    installed: BTreeMap<String, (String, bool)>,
    /// What purging the declared packages leaves unneeded.
    unneeded: BTreeSet<String>,
    /// What purging anything would also remove.
    extras: Vec<String>,
    conffiles: BTreeMap<String, Vec<EntryPath>>,
    lock: Option<u32>,
}

impl PackageManager for FakePm {
    fn name(&self) -> &'static str {
        "apt"
    }
    fn root_display(&self) -> &str {
        "/fake"
    }
    fn installed(&self) -> Result<BTreeMap<String, Installed>, Error> {
        Ok(self
            .installed
            .iter()
            .map(|(n, (v, healthy))| {
                (
                    n.clone(),
                    Installed {
                        version: v.clone(),
                        arch: "all".into(),
                        healthy: *healthy,
                    },
                )
            })
            .collect())
    }
    fn auto_marked(&self) -> Result<BTreeSet<String>, Error> {
        Ok(BTreeSet::new())
    }
    fn resolve(&self, _: &[Want]) -> Result<Resolved, Error> {
        Ok(Resolved::default())
    }
    fn relations(
        &self,
        _: &[(String, String)],
    ) -> Result<BTreeMap<String, closure::Relations>, Error> {
        Ok(BTreeMap::new())
    }
    fn download(&self, _: &[(String, String, String)]) -> Result<Vec<EntryPath>, Error> {
        Ok(Vec::new())
    }
    fn install(&self, _: &[EntryPath], _: &[String], _: &[String]) -> Result<(), Error> {
        Ok(())
    }
    fn removal_extras(&self, _: &[String]) -> Result<Vec<String>, Error> {
        Ok(self.extras.clone())
    }
    fn unneeded_after(&self, _: &[String]) -> Result<BTreeSet<String>, Error> {
        Ok(self.unneeded.clone())
    }
    fn changed_conffiles(&self, name: &str) -> Result<Vec<EntryPath>, Error> {
        Ok(self.conffiles.get(name).cloned().unwrap_or_default())
    }
    fn remove(&self, _: &[String], _: bool) -> Result<(), Error> {
        Ok(())
    }
    fn leftovers(&self) -> Result<BTreeMap<String, String>, Error> {
        Ok(BTreeMap::new())
    }
    fn conffiles(&self, name: &str) -> Result<Vec<EntryPath>, Error> {
        Ok(self.conffiles.get(name).cloned().unwrap_or_default())
    }
    fn purge_leftovers(&self, _: &[String]) -> Result<(), Error> {
        Ok(())
    }
    fn abandon(&self, _: &[String], _: bool) -> Result<(), Error> {
        Ok(())
    }
    fn lock_holder(&self, _: &RootDir) -> Result<Option<(String, u32)>, Error> {
        Ok(self.lock.map(|p| ("/var/lib/dpkg/lock-frontend".into(), p)))
    }
}

fn set(pins: &[(&str, &str, bool)]) -> PackageSet {
    PackageSet {
        apt: pins
            .iter()
            .map(|(n, v, dep)| {
                (
                    n.to_string(),
                    Pin {
                        version: v.to_string(),
                        arch: "all".into(),
                        dependency: *dep,
                    },
                )
            })
            .collect(),
        purge: Default::default(),
    }
}

struct World {
    _dir: tempfile::TempDir,
    root: RootDir,
    db: Db,
    store: Store,
}

fn world(owned_names: &[&str]) -> World {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = RootDir::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let db = Db::open(&dir.path().join("db")).unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(&dir.path().join("store")).unwrap_or_else(|e| panic!("{e}"));
    for n in owned_names {
        own(&db, "apt", n, true).unwrap_or_else(|e| panic!("{e}"));
    }
    World {
        _dir: dir,
        root,
        db,
        store,
    }
}

fn lines(p: &PackagePlan) -> Vec<String> {
    p.install
        .iter()
        .chain(p.remove.iter())
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn plans_installs_upgrades_downgrades_and_repairs_against_the_live_root() {
    // b was installed by hand: upgrading it does not make it sysgen's.
    let w = world(&["c", "d"]);
    let mut pm = FakePm::default();
    for (n, v, ok) in [("b", "1.0", true), ("c", "2.0", true), ("d", "1.0", false)] {
        pm.installed.insert(n.into(), (v.into(), ok));
    }
    pm.installed.insert("same".into(), ("1.0".into(), true));
    let new = set(&[
        ("a", "1.0", false),
        ("b", "1.1", false),
        ("c", "1.9", true),
        ("d", "1.0", false),
        ("same", "1.0", false),
    ]);
    let p = plan_with(
        &pm,
        &w.root,
        &w.db,
        &w.store,
        &PackageSet::default(),
        &new,
        false,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        lines(&p),
        [
            "apt transaction: install a 1.0, upgrade b 1.0 -> 1.1, downgrade c 2.0 -> 1.9 (dependency), repair d 1.0"
        ]
    );
    let Some(PackageStep::Install { changes, .. }) = &p.install else {
        panic!("no install step")
    };
    let owned: Vec<(&str, bool)> = changes.iter().map(|c| (c.name.as_str(), c.owned)).collect();
    assert_eq!(owned, [("a", true), ("b", false), ("c", true), ("d", true)]);
}

#[test]
fn removes_only_what_sysgen_owns_and_purges_only_when_asked_saving_changed_conffiles() {
    let w = world(&["mine", "dep"]);
    let mut pm = FakePm::default();
    for n in ["mine", "dep", "theirs"] {
        pm.installed.insert(n.into(), ("1.0".into(), true));
    }
    let conf = EntryPath::parse("/etc/mine.conf").unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(w.root.path().join("etc")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(w.root.path().join("etc/mine.conf"), "admin's\n")
        .unwrap_or_else(|e| panic!("{e}"));
    pm.conffiles.insert("mine".into(), vec![conf.clone()]);
    pm.unneeded = ["mine", "dep"].iter().map(|s| s.to_string()).collect();
    let old = set(&[
        ("mine", "1.0", false),
        ("dep", "1.0", true),
        ("theirs", "1.0", false),
        ("gone-already", "1.0", false),
    ]);
    // Leaving, a package is removed: its configuration stays, nothing
    // to save.
    let removed = plan_with(
        &pm,
        &w.root,
        &w.db,
        &w.store,
        &old,
        &PackageSet::default(),
        true,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        lines(&removed),
        [
            "apt: keep theirs 1.0: sysgen did not install it (it was there before, or installed by hand)",
            "apt remove: dep 1.0 (dependency, if nothing else needs it), mine 1.0; their configuration and data stay until gc collects the last generation that has them",
        ]
    );
    assert!(removed.saved.is_empty());
    // Asked to purge: the plan says what goes. A dry run shows the same
    // plan, and the same copy to keep.
    let new = PackageSet {
        purge: ["mine".to_string()].into(),
        ..PackageSet::default()
    };
    let dry = plan_with(&pm, &w.root, &w.db, &w.store, &old, &new, false)
        .unwrap_or_else(|e| panic!("{e}"));
    let p = plan_with(&pm, &w.root, &w.db, &w.store, &old, &new, true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lines(&p), lines(&dry));
    assert_eq!(p.saved, dry.saved);
    assert_eq!(
        lines(&p),
        [
            "apt: keep theirs 1.0: sysgen did not install it (it was there before, or installed by hand)",
            "apt remove: dep 1.0 (dependency, if nothing else needs it); their configuration and data stay until gc collects the last generation that has them; purge: mine 1.0 (destroys /etc/mine.conf) (changed conffiles saved in the store first: /etc/mine.conf)",
        ]
    );
    // Planning is pure: the copy is named with its hash, and the pipeline
    // keeps it in the store before the journal is written.
    assert_eq!(p.saved.len(), 1);
    assert_eq!(p.saved[0].path, conf);
    assert_eq!(p.saved[0].hash, Hash::of(b"admin's\n"));
    assert!(
        !w.store
            .contains(&p.saved[0].hash, Area::Secret)
            .unwrap_or_else(|e| panic!("{e}"))
    );
}

#[test]
fn a_dependency_something_else_needs_is_not_purged_and_extras_refuse() {
    let mut pm = FakePm::default();
    for n in ["mine", "dep"] {
        pm.installed.insert(n.into(), ("1.0".into(), true));
    }
    let gone = |n: &str, dep: bool| PkgGone {
        name: n.into(),
        version: "1.0".into(),
        dependency: dep,
        purge: false,
        destroys: Vec::new(),
    };
    pm.unneeded = ["mine".to_string()].into();
    let names =
        purge_set(&pm, &[gone("mine", false), gone("dep", true)]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names, ["mine"]);
    pm.extras = vec!["hand".into()];
    let err = purge_set(&pm, &[gone("mine", false)]).map(|_| ());
    assert!(
        matches!(&err, Err(Error::Package(e)) if e.what.contains("would also remove hand")),
        "{err:?}"
    );
}

#[test]
fn a_held_lock_refuses_a_real_switch_but_not_a_dry_run() {
    let w = world(&[]);
    let pm = FakePm {
        lock: Some(4242),
        ..FakePm::default()
    };
    let new = set(&[("a", "1.0", false)]);
    assert!(
        plan_with(
            &pm,
            &w.root,
            &w.db,
            &w.store,
            &PackageSet::default(),
            &new,
            false
        )
        .is_ok()
    );
    let err = plan_with(
        &pm,
        &w.root,
        &w.db,
        &w.store,
        &PackageSet::default(),
        &new,
        true,
    )
    .map(|_| ());
    assert!(
        matches!(&err, Err(Error::Package(e)) if e.what.contains("pid 4242")),
        "{err:?}"
    );
}

#[test]
fn diff_names_the_direction_of_each_version_change() {
    let a = set(&[("x", "1.0", false), ("y", "2.0", false), ("z", "1", true)]);
    let b = set(&[
        ("x", "1.1", false),
        ("y", "1:0.1", false),
        ("w", "3", false),
    ]);
    let shown: Vec<String> = diff(&a, &b).iter().map(|d| d.to_string()).collect();
    assert_eq!(
        shown,
        [
            "+ package w 3",
            "~ package x 1.0 -> 1.1 (upgrade)",
            "~ package y 2.0 -> 1:0.1 (upgrade)",
            "- package z 1 (dependency)",
        ]
    );
}

#[test]
fn steps_round_trip_through_the_journal_format() {
    let steps = vec![
        Step::new(
            Phase::Install,
            PackageStep::Install {
                manager: "apt".into(),
                changes: vec![PkgChange {
                    name: "sg-hello".into(),
                    arch: "all".into(),
                    from: Some("2.0".into()),
                    to: "1.0".into(),
                    dependency: false,
                    owned: true,
                    deb: Some(Hash::of(b"deb")),
                    kept_config: true,
                }],
                remark: vec![Remark {
                    name: "sg-libhello".into(),
                    dependency: true,
                }],
                unkept: vec!["sg-hello 2.0".into()],
            },
        ),
        Step::new(
            Phase::Purge,
            PackageStep::Remove {
                manager: "apt".into(),
                packages: vec![PkgGone {
                    name: "sg-libhello".into(),
                    version: "1.0".into(),
                    dependency: true,
                    purge: true,
                    destroys: vec![
                        EntryPath::parse("/var/lib/sg-libhello").unwrap_or_else(|e| panic!("{e}")),
                    ],
                }],
                conffiles: vec![EntryPath::parse("/etc/sg.conf").unwrap_or_else(|e| panic!("{e}"))],
            },
        ),
    ];
    let json = serde_json::to_string(&steps).unwrap_or_default();
    let back: Vec<Step> = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(back, steps);
    assert_eq!(
        steps[0].to_string(),
        "apt transaction: downgrade sg-hello 2.0 -> 1.0, mark sg-libhello as a dependency (the archive no longer serves sg-hello 2.0: going back to it needs the archive)"
    );
    assert_eq!(
        steps[1].to_string(),
        "apt purge: sg-libhello 1.0 (dependency, if nothing else needs it) (destroys /var/lib/sg-libhello) (changed conffiles saved in the store first: /etc/sg.conf)"
    );
}
