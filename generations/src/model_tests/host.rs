//! An in-memory host: a tree of paths, dpkg's installed set, systemd's
//! enabled and running units, and the database records the kinds keep.
//! Each step type is interpreted here the way its real apply runs it
//! (files/apply.rs over rootfs.rs, packages/apply.rs over apt,
//! services/systemd.rs, datasets/backend.rs): converging from whatever
//! it finds, and failing where the real tool or syscall would fail.

use std::collections::{BTreeMap, BTreeSet};

use sysgen_schema::EntryPath;
use sysgen_store::Hash;

use crate::datasets::{self, DatasetStep, Kind as DsKind};
use crate::db::Origin;
use crate::files::FileStep;
use crate::kinds::KindStep;
use crate::packages::{self, PackageStep};
use crate::plan::{Action, Plan, Step};

use crate::services::{Action as UnitAction, ServiceStep};

pub use super::pm::HostPm;

pub type Fallible<T> = Result<T, String>;

/// What is at a path of the in-memory root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HNode {
    File {
        content: Hash,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: String,
        uid: u32,
        gid: u32,
    },
}

/// What `RootDir::inspect` would report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    Absent,
    Node(HNode),
    /// An ancestor is a file or symlink.
    Blocked(EntryPath),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkg {
    pub version: String,
    /// Marked as installed automatically.
    pub auto: bool,
}

/// The database records the kinds read and write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    pub active: Option<u64>,
    pub ledger: BTreeMap<EntryPath, Origin>,
    pub owned: BTreeSet<String>,
    pub unit_origins: BTreeMap<String, bool>,
    pub known: BTreeMap<EntryPath, DsKind>,
    pub taken: BTreeMap<EntryPath, BTreeSet<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host {
    pub tree: BTreeMap<EntryPath, HNode>,
    /// Units whose unit file is outside the tree (shipped in /lib).
    pub vendor_units: BTreeSet<String>,
    pub installed: BTreeMap<String, Pkg>,
    pub enabled: BTreeSet<String>,
    pub running: BTreeSet<String>,
    pub db: Records,
}

/// The hard dependencies of the packages of the model's universe.
pub fn deps(name: &str) -> &'static [&'static str] {
    match name {
        "p0" => &["p3"],
        "p1" => &["p3", "p4"],
        _ => &[],
    }
}

pub const UNIT_DIR: &str = "/etc/systemd/system";

pub fn p(s: &str) -> EntryPath {
    EntryPath::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn dir(mode: u32) -> HNode {
    HNode::Dir {
        mode,
        uid: 0,
        gid: 0,
    }
}

impl Host {
    pub fn inspect(&self, q: &EntryPath) -> Seen {
        for a in q.ancestors() {
            match self.tree.get(&a) {
                None => return Seen::Absent,
                Some(HNode::Dir { .. }) => {}
                Some(_) => return Seen::Blocked(a),
            }
        }
        self.tree
            .get(q)
            .map_or(Seen::Absent, |n| Seen::Node(n.clone()))
    }

    fn is_dir(&self, q: &EntryPath) -> bool {
        matches!(self.inspect(q), Seen::Node(HNode::Dir { .. }))
    }

    fn parent_is_dir(&self, q: &EntryPath) -> bool {
        q.parent().is_none_or(|d| self.is_dir(&d))
    }

    pub fn children(&self, q: &EntryPath) -> Vec<EntryPath> {
        self.tree
            .keys()
            .filter(|k| k.parent().as_ref() == Some(q))
            .cloned()
            .collect()
    }

    /// `RootDir::remove`: a file, a symlink or an empty directory; a
    /// directory with entries stays; nothing reachable is fine.
    fn remove(&mut self, q: &EntryPath) {
        if !self.parent_is_dir(q) {
            return;
        }
        if matches!(self.tree.get(q), Some(HNode::Dir { .. })) && !self.children(q).is_empty() {
            return;
        }
        self.tree.remove(q);
    }

    /// `RootDir::put_file` / `put_symlink`: temp, then rename over what
    /// is there; an empty directory is replaced, a full one is an error.
    fn put(&mut self, q: &EntryPath, n: HNode) -> Fallible<()> {
        if !self.parent_is_dir(q) {
            return Err(format!("{q}: open parent: no such directory"));
        }
        if let Some(HNode::Dir { .. }) = self.tree.get(q)
            && !self.children(q).is_empty()
        {
            return Err(format!("{q}: rename into place: directory not empty"));
        }
        self.tree.insert(q.clone(), n);
        Ok(())
    }

    /// `RootDir::set_meta`: mode (not on a symlink) and the ids given.
    fn set_meta(&mut self, q: &EntryPath, m: Option<u32>, u: Option<u32>, g: Option<u32>) {
        match self.tree.get_mut(q) {
            Some(HNode::File { mode, uid, gid, .. } | HNode::Dir { mode, uid, gid }) => {
                *mode = m.unwrap_or(*mode);
                *uid = u.unwrap_or(*uid);
                *gid = g.unwrap_or(*gid);
            }
            Some(HNode::Symlink { uid, gid, .. }) => {
                *uid = u.unwrap_or(*uid);
                *gid = g.unwrap_or(*gid);
            }
            None => {}
        }
    }

    /// `RootDir::make_dir`: mkdir 0755 when absent (EEXIST is fine, even
    /// for a file), then the attributes given.
    fn make_dir(
        &mut self,
        q: &EntryPath,
        m: Option<u32>,
        u: Option<u32>,
        g: Option<u32>,
    ) -> Fallible<()> {
        if !self.parent_is_dir(q) {
            return Err(format!("{q}: open parent: no such directory"));
        }
        let created = !self.tree.contains_key(q);
        if created {
            self.tree.insert(q.clone(), dir(0o755));
        }
        self.set_meta(q, m, u, g);
        Ok(())
    }

    /// `RootDir::make_dirs`.
    fn make_dirs(&mut self, q: &EntryPath) -> Fallible<()> {
        let mut all = q.ancestors();
        all.push(q.clone());
        for a in all {
            if !self.is_dir(&a) {
                self.make_dir(&a, None, None, None)?;
            }
        }
        Ok(())
    }

    fn subtree(&self, q: &EntryPath) -> Vec<(EntryPath, HNode)> {
        self.tree
            .range(q.clone()..)
            .take_while(|(k, _)| *k == q || k.as_str().starts_with(q.as_str()))
            .filter(|(k, _)| *k == q || k.is_under(q))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn moved(q: &EntryPath, from: &EntryPath, to: &EntryPath) -> EntryPath {
        p(&format!("{}{}", to, &q.as_str()[from.as_str().len()..]))
    }

    /// `RootDir::rename` (renameat): a directory may replace an empty
    /// directory; anything else at the target fails.
    fn rename(&mut self, from: &EntryPath, to: &EntryPath) -> Fallible<()> {
        if !self.parent_is_dir(from) || !self.parent_is_dir(to) {
            return Err(format!("{from} -> {to}: open parent: no such directory"));
        }
        let Some(src) = self.tree.get(from).cloned() else {
            return Err(format!("{from}: rename: no such file"));
        };
        match (&src, self.tree.get(to)) {
            (_, None) => {}
            (HNode::Dir { .. }, Some(HNode::Dir { .. })) if self.children(to).is_empty() => {
                self.tree.remove(to);
            }
            (_, Some(_)) => return Err(format!("{from} -> {to}: rename: target in the way")),
        }
        for (k, v) in self.subtree(from) {
            self.tree.remove(&k);
            self.tree.insert(Self::moved(&k, from, to), v);
        }
        Ok(())
    }

    /// `RootDir::copy_tree`: `dst` must not exist.
    fn copy_tree(&mut self, src: &EntryPath, dst: &EntryPath) -> Fallible<()> {
        if !self.is_dir(src) || !self.parent_is_dir(dst) || self.tree.contains_key(dst) {
            return Err(format!("{src} -> {dst}: copy_tree cannot run"));
        }
        for (k, v) in self.subtree(src) {
            self.tree.insert(Self::moved(&k, src, dst), v);
        }
        Ok(())
    }

    fn remove_tree(&mut self, q: &EntryPath) {
        for (k, _) in self.subtree(q) {
            self.tree.remove(&k);
        }
    }

    fn has_unit_file(&self, unit: &str) -> bool {
        self.vendor_units.contains(unit)
            || matches!(
                self.inspect(&p(&format!("{UNIT_DIR}/{unit}"))),
                Seen::Node(HNode::File { .. })
            )
    }

    // ---- the interpreter ----

    /// Runs the first `n` steps of `plan` (all with `None`).
    pub fn apply(&mut self, plan: &Plan, n: Option<usize>) -> Fallible<()> {
        let n = n.unwrap_or(plan.steps.len());
        for (i, s) in plan.steps.iter().take(n).enumerate() {
            self.step(plan, s)
                .map_err(|e| format!("step {} ({s}): {e}", i + 1))?;
        }
        Ok(())
    }

    fn step(&mut self, plan: &Plan, s: &Step) -> Fallible<()> {
        let target = match &s.action {
            Action::Kind(KindStep::Files(f)) => return self.file(f),
            Action::Kind(KindStep::Packages(k)) => return self.package(k),
            Action::Kind(KindStep::Datasets(d)) => return self.dataset(d),
            Action::Kind(KindStep::Services(u)) => return self.service(u),
            // The model generates no blocks (tests/tests/blocks.rs covers them).
            Action::Kind(KindStep::Blocks(b)) => return Err(format!("unexpected {b}")),
            Action::Kind(KindStep::Checks(c)) => return Err(format!("unexpected {c}")),
            // The model's configurations declare no accounts.
            Action::Kind(KindStep::Users(u)) => return Err(format!("unexpected step {u}")),
            Action::Activate { number, .. } => Some(*number),
            Action::Deactivate => None,
        };
        // apply.rs `activate`: nothing to record if the target is active.
        if self.db.active != target {
            for (q, _) in &plan.ledger_remove {
                self.db.ledger.remove(q);
            }
            for (q, o) in &plan.ledger_add {
                self.db.ledger.insert(q.clone(), o.clone());
            }
            self.db.active = target;
        }
        Ok(())
    }

    fn file(&mut self, f: &FileStep) -> Fallible<()> {
        match f {
            FileStep::Remove { path, .. } => self.remove(path),
            FileStep::PutFile {
                path,
                hash,
                mode,
                uid,
                gid,
                ..
            } => self.put(
                path,
                HNode::File {
                    content: *hash,
                    mode: *mode,
                    uid: uid.unwrap_or(0),
                    gid: gid.unwrap_or(0),
                },
            )?,
            FileStep::PutSymlink {
                path,
                target,
                uid,
                gid,
                ..
            } => self.put(
                path,
                HNode::Symlink {
                    target: target.clone(),
                    uid: uid.unwrap_or(0),
                    gid: gid.unwrap_or(0),
                },
            )?,
            FileStep::MakeDir {
                path,
                mode,
                uid,
                gid,
                ..
            } => {
                if let Seen::Node(HNode::File { .. } | HNode::Symlink { .. }) = self.inspect(path) {
                    self.remove(path);
                }
                self.make_dir(path, *mode, *uid, *gid)?;
            }
            FileStep::SetMeta {
                path,
                mode,
                uid,
                gid,
                ..
            } => {
                if let Seen::Node(_) = self.inspect(path) {
                    self.set_meta(path, *mode, *uid, *gid);
                }
            }
            FileStep::Link { path, .. } => {
                return Err(format!("{path}: the model generates no hard links"));
            }
        }
        Ok(())
    }

    fn dataset(&mut self, d: &DatasetStep) -> Fallible<()> {
        let keep =
            |q: &EntryPath, rel: &[&str]| datasets::keep_path(q, rel).map_err(|e| e.to_string());
        match d {
            DatasetStep::Snapshot { path, snap, .. } => {
                let to = keep(path, &["snapshots", snap])?;
                if !self.is_dir(&to) && self.is_dir(path) {
                    self.make_dirs(&keep(path, &["snapshots"])?)?;
                    self.copy_tree(path, &to)?;
                }
                self.db
                    .taken
                    .entry(path.clone())
                    .or_default()
                    .insert(snap.clone());
            }
            DatasetStep::Attach { path, kind, .. } => {
                let detached = keep(path, &["detached"])?;
                // There already: adopted, or attached by an earlier run.
                if !self.is_dir(path) {
                    if self.is_dir(&detached) {
                        self.rename(&detached, path)?;
                    } else {
                        if let Some(parent) = path.parent() {
                            self.make_dirs(&parent)?;
                        }
                        self.make_dir(path, None, None, None)?;
                    }
                }
                self.db.known.insert(path.clone(), kind.clone());
            }
            DatasetStep::Detach {
                path,
                discard_if_empty,
                ..
            } => {
                if self.is_dir(path) {
                    if *discard_if_empty && self.children(path).is_empty() {
                        self.remove_tree(path);
                        self.db.known.remove(path);
                        let kd = datasets::keep_dir(path).map_err(|e| e.to_string())?;
                        for q in [keep(path, &["snapshots"])?, kd.clone()] {
                            self.remove(&q);
                        }
                        if let Some(area) = kd.parent() {
                            self.remove(&area);
                        }
                    } else {
                        self.make_dirs(&datasets::keep_dir(path).map_err(|e| e.to_string())?)?;
                        self.rename(path, &keep(path, &["detached"])?)?;
                    }
                }
            }
            DatasetStep::Release { .. } | DatasetStep::NoSnapshot { .. } => {}
            DatasetStep::Restore { .. } | DatasetStep::Unrestore { .. } => {
                return Err("restores are outside the model (no --with-data)".into());
            }
        }
        Ok(())
    }

    fn service(&mut self, s: &ServiceStep) -> Fallible<()> {
        let needs_file = |h: &Host, unit: &str| {
            if h.has_unit_file(unit) {
                Ok(())
            } else {
                Err(format!("{unit} failed: no unit file"))
            }
        };
        match s {
            ServiceStep::Enable { unit, adopt, .. } => {
                if let Some(was) = adopt {
                    self.db.unit_origins.insert(unit.clone(), *was);
                }
                needs_file(self, unit)?;
                self.enabled.insert(unit.clone());
            }
            ServiceStep::Disable { unit, adopt, .. } => {
                if let Some(was) = adopt {
                    self.db.unit_origins.insert(unit.clone(), *was);
                }
                self.enabled.remove(unit);
            }
            ServiceStep::Runtime { skipped: true, .. } => {}
            ServiceStep::Runtime { action, .. } => match action {
                UnitAction::DaemonReload | UnitAction::Check { .. } => {}
                UnitAction::Stop { unit } => {
                    self.running.remove(unit);
                }
                UnitAction::Start { unit } => {
                    needs_file(self, unit)?;
                    self.running.insert(unit.clone());
                }
                UnitAction::Restart { unit, if_running }
                | UnitAction::Reload { unit, if_running } => {
                    if !*if_running || self.running.contains(unit) {
                        needs_file(self, unit)?;
                        self.running.insert(unit.clone());
                    }
                }
            },
        }
        Ok(())
    }

    fn package(&mut self, s: &PackageStep) -> Fallible<()> {
        match s {
            PackageStep::Keep { .. } | PackageStep::Abandon { .. } => {}
            PackageStep::Install {
                changes, remark, ..
            } => {
                for c in changes.iter().filter(|c| c.owned) {
                    self.db.owned.insert(c.name.clone());
                }
                let was_auto: BTreeSet<String> = self
                    .installed
                    .iter()
                    .filter(|(_, k)| k.auto)
                    .map(|(n, _)| n.clone())
                    .collect();
                for c in changes {
                    if self
                        .installed
                        .get(&c.name)
                        .is_some_and(|i| i.version == c.to)
                    {
                        continue;
                    }
                    // apt marks every package given as a file as manual.
                    self.installed.insert(
                        c.name.clone(),
                        Pkg {
                            version: c.to.clone(),
                            auto: false,
                        },
                    );
                }
                for n in self.installed.keys() {
                    for d in deps(n) {
                        if !self.installed.contains_key(*d) {
                            return Err(format!("{n} needs {d}, which is not installed"));
                        }
                    }
                }
                let mut marks: Vec<(&str, bool)> = changes
                    .iter()
                    .filter(|c| {
                        if c.owned {
                            true
                        } else {
                            was_auto.contains(&c.name)
                        }
                    })
                    .map(|c| (c.name.as_str(), !c.owned || c.dependency))
                    .collect();
                marks.extend(remark.iter().map(|r| (r.name.as_str(), r.dependency)));
                for (n, auto) in marks {
                    if let Some(k) = self.installed.get_mut(n) {
                        k.auto = auto;
                    }
                }
            }
            PackageStep::Remove { packages, .. } => {
                let before = self.installed.clone();
                let present: Vec<_> = packages
                    .iter()
                    .filter(|g| before.contains_key(&g.name))
                    .cloned()
                    .collect();
                let names =
                    packages::plan::purge_set(&self.pm(), &present).map_err(|e| e.to_string())?;
                for n in self.pm().removed_with(&names) {
                    self.installed.remove(&n);
                }
                // A removed package stays sysgen's (its configuration is
                // purged by gc); a purged one is gone for good.
                for g in packages {
                    if g.purge && (!before.contains_key(&g.name) || names.contains(&g.name)) {
                        self.db.owned.remove(&g.name);
                    }
                }
            }
        }
        Ok(())
    }

    pub fn pm(&self) -> HostPm<'_> {
        HostPm {
            installed: &self.installed,
        }
    }
}
