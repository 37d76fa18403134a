//! The pipeline over the model: what each kind's inspection reads from
//! the root, read from the in-memory host instead, handed to the kinds'
//! real pure planners, with their real phases, ordered by `Plan::order`.
//! Mirrors `pipeline::plan` for `switch` and `recover --rollback`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use sysgen_schema::EntryPath;
use sysgen_store::{Hash, Store};

use super::host::{Fallible, HNode, Host, Seen};
use crate::datasets::{self, Context, DatasetOptions, Datasets, How, Names};
use crate::db::{Db, Origin};
use crate::files::{self, Facts};
use crate::kind::Mode;
use crate::kinds::Registered;
use crate::manifest::{Change, Entry, GenerationId, Node, NodeId, diff};
use crate::packages::PackageSet;
use crate::plan::{Action, Plan, Step};
use crate::rootfs::RootDir;
use crate::services::{self, ServiceStep, Services};

/// One generation of the model.
#[derive(Clone, Debug)]
pub struct Gen {
    pub number: u64,
    pub tree: BTreeMap<EntryPath, Entry>,
    pub root: NodeId,
    pub datasets: Datasets,
    pub packages: PackageSet,
    pub services: Services,
}

impl Gen {
    pub fn id(&self) -> GenerationId {
        GenerationId(Hash::of(format!("generation {}", self.number).as_bytes()))
    }
}

/// What the package planner reads besides the package manager: a real
/// database (only `package_owned` matters), store and root, all empty.
pub struct World {
    _dir: tempfile::TempDir,
    root: RootDir,
    db: Db,
    store: Store,
    synced: RefCell<Option<BTreeSet<String>>>,
    pub nodes: BTreeMap<NodeId, Node>,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = RootDir::open(&dir.path().join(".")).unwrap_or_else(|e| panic!("{e}"));
        let db = Db::open(&dir.path().join("db")).unwrap_or_else(|e| panic!("{e}"));
        // Thousands of plans per run: no fsync per ownership record.
        db.conn()
            .execute_batch("PRAGMA synchronous=OFF")
            .unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&dir.path().join("store")).unwrap_or_else(|e| panic!("{e}"));
        World {
            _dir: dir,
            root,
            db,
            store,
            synced: RefCell::new(None),
            nodes: BTreeMap::new(),
        }
    }

    /// The Merkle tree of `tree`, its nodes kept for diffs.
    pub fn build(&mut self, tree: &BTreeMap<EntryPath, Entry>) -> NodeId {
        let nodes = &mut self.nodes;
        crate::manifest::build_tree(tree.iter(), &|e: &Entry| e.clone(), &mut |id, bytes| {
            let node = Node::decode(&bytes)
                .map_err(|e| crate::Error::Internal(format!("a node decodes: {e}")))?;
            nodes.insert(id, node);
            Ok::<(), crate::Error>(())
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn sync_owned(&self, owned: &BTreeSet<String>) -> Fallible<()> {
        if self.synced.borrow().as_ref() == Some(owned) {
            return Ok(());
        }
        let c = self.db.conn();
        let sql = |e: rusqlite::Error| e.to_string();
        c.execute("DELETE FROM package_owned", []).map_err(sql)?;
        for n in owned {
            c.execute(
                "INSERT INTO package_owned (manager, name) VALUES ('apt', ?1)",
                [n],
            )
            .map_err(sql)?;
        }
        *self.synced.borrow_mut() = Some(owned.clone());
        Ok(())
    }
}

/// Why a switch is refused (the pipeline's conflicts and drift).
pub type Refused = Vec<String>;

fn empty_gen_parts() -> (Datasets, PackageSet, Services) {
    Default::default()
}

/// One transition: `from` → `to` (either may be the state before sysgen).
struct T<'a> {
    from: Option<&'a Gen>,
    to: Option<&'a Gen>,
    to_number: u64,
    changes: Vec<Change>,
    ledger: BTreeMap<EntryPath, Origin>,
    mode: Mode,
    runtime: bool,
}

/// The plan of a switch of `host` from `from` to `to`, or why the
/// pipeline refuses it.
pub fn switch(
    world: &World,
    host: &Host,
    from: Option<&Gen>,
    to: &Gen,
    runtime: bool,
) -> Fallible<Result<Plan, Refused>> {
    let changes =
        diff(&world.nodes, from.map(|g| g.root), Some(to.root)).map_err(|e| e.to_string())?;
    let t = T {
        from,
        to: Some(to),
        to_number: to.number,
        changes,
        ledger: host.db.ledger.clone(),
        mode: Mode::Switch {
            force: false,
            dry_run: false,
        },
        runtime,
    };
    let last = Action::Activate {
        number: to.number,
        id: to.id(),
    };
    plan(world, host, &t, &[], last)
}

/// The plan `recover --rollback` makes on `host` (wherever the switch
/// `from` → `to`, planned as `switch`, stopped).
pub fn undo(
    world: &World,
    host: &Host,
    from: Option<&Gen>,
    to: &Gen,
    switch: &Plan,
    runtime: bool,
) -> Fallible<Plan> {
    let changes =
        diff(&world.nodes, Some(to.root), from.map(|g| g.root)).map_err(|e| e.to_string())?;
    let mut ledger = host.db.ledger.clone();
    ledger.extend(switch.ledger_add.iter().cloned());
    ledger.extend(switch.ledger_remove.iter().cloned());
    let t = T {
        from: Some(to),
        to: from,
        to_number: from.map_or(0, |g| g.number),
        changes,
        ledger,
        mode: Mode::Undo,
        runtime,
    };
    let last = match from {
        Some(g) => Action::Activate {
            number: g.number,
            id: g.id(),
        },
        None => Action::Deactivate,
    };
    let mut back = plan(world, host, &t, &switch.steps, last)?
        .map_err(|r| format!("an undo refused: {r:?}"))?;
    let committed = host.db.active == Some(to.number);
    (back.ledger_add, back.ledger_remove) = if committed {
        (switch.ledger_remove.clone(), switch.ledger_add.clone())
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(back)
}

fn own_steps<S: Registered + Clone>(undone: &[Step]) -> Vec<S> {
    undone
        .iter()
        .filter_map(Step::kind_step)
        .filter_map(|k| S::own(k).cloned())
        .collect()
}

/// `pipeline::plan` over the model: every kind in the registry's order,
/// with its real planner and phases.
fn plan(
    world: &World,
    host: &Host,
    t: &T<'_>,
    undone: &[Step],
    last: Action,
) -> Fallible<Result<Plan, Refused>> {
    let (ed, ep, es) = empty_gen_parts();
    let old_ds = t.from.map_or(&ed, |g| &g.datasets);
    let new_ds = t.to.map_or(&ed, |g| &g.datasets);
    let is_undo = t.mode == Mode::Undo;
    let mut refused = Vec::new();

    // Datasets first: their claims filter the tree's removals.
    let ds_undone: Vec<datasets::DatasetStep> = own_steps(undone);
    let opts = DatasetOptions::default();
    let cx = Context {
        changes: &t.changes,
        ledger: &t.ledger,
        known: &host.db.known,
        opts: &opts,
    };
    let restores = BTreeMap::new();
    let names = Names {
        from: t.from.map(|g| g.number),
        to: t.to_number,
        taken: &host.db.taken,
        restores: &restores,
        now: 1,
    };
    let ds_plan = |facts: &datasets::Facts| {
        if is_undo {
            datasets::undo(&ds_undone, old_ds, new_ds, facts, &cx, &names)
        } else {
            datasets::plan(old_ds, new_ds, facts, &cx, &names)
        }
    };
    let mut ds_steps = Vec::new();
    let mut claims = BTreeSet::new();
    if !(old_ds.is_empty() && new_ds.is_empty()) {
        claims = ds_plan(&datasets::Facts::default()).not_removed;
        let (facts, conflicts) = dataset_precheck(host, old_ds, new_ds, &cx);
        refused.extend(conflicts);
        ds_steps = datasets::kind::steps(ds_plan(&facts));
    }

    // The tree.
    let changes: Vec<&Change> = t
        .changes
        .iter()
        .filter(|c| !matches!(c, Change::Removed(q, _) if claims.contains(q)))
        .collect();
    let (facts, mut ledger_add) = if is_undo {
        (Facts::default(), Vec::new())
    } else {
        let (facts, conflicts) = file_precheck(host, &changes, &t.ledger);
        refused.extend(conflicts);
        let add = facts
            .origins
            .iter()
            .map(|(q, o)| (q.clone(), o.clone()))
            .collect();
        (facts, add)
    };
    let files = files::plan::plan(changes.into_iter().cloned(), &t.ledger, &facts);

    // Packages.
    let old_p = t.from.map_or(&ep, |g| &g.packages);
    let new_p = t.to.map_or(&ep, |g| &g.packages);
    let mut pk_steps = Vec::new();
    if !(old_p.is_empty() && new_p.is_empty()) {
        world.sync_owned(&host.db.owned)?;
        let pm = host.pm();
        let pk_undone: Vec<crate::packages::PackageStep> = own_steps(undone);
        let pk_refs: Vec<&crate::packages::PackageStep> = pk_undone.iter().collect();
        match crate::packages::plan::plan_full(
            &pm,
            &world.root,
            &world.db,
            &world.store,
            old_p,
            new_p,
            true,
            &host.db.owned,
            &pk_refs,
        ) {
            Ok(pk) => pk_steps = crate::packages::kind::steps(pk),
            Err(e) if !is_undo => refused.push(e.to_string()),
            Err(e) => return Err(format!("planning the packages of an undo: {e}")),
        }
    }

    // Units.
    let old_u = t.from.map_or(&es, |g| &g.services);
    let new_u = t.to.map_or(&es, |g| &g.services);
    let origins = if is_undo {
        let undone: Vec<ServiceStep> = own_steps(undone);
        let refs: Vec<&ServiceStep> = undone.iter().collect();
        services::undo_origins(host.db.unit_origins.clone(), &refs)
    } else {
        let mut o = host.db.unit_origins.clone();
        for u in new_u.0.keys().filter(|u| !old_u.0.contains_key(*u)) {
            // `systemctl is-enabled`: a unit without a file is not enabled.
            o.insert(u.clone(), host.enabled.contains(u));
        }
        o
    };
    let units = services::plan(old_u, new_u, &t.changes, &origins, t.runtime);
    let unit_steps = services::kind::steps(units);

    if !is_undo && !refused.is_empty() {
        return Ok(Err(refused));
    }
    // The registry's order: files, packages, datasets, services.
    let mut steps: Vec<Step> = Vec::new();
    steps.extend(files.steps.into_iter().map(|(ph, s)| Step::new(ph, s)));
    steps.extend(pk_steps.into_iter().map(|(ph, s)| Step::new(ph, s)));
    steps.extend(ds_steps.into_iter().map(|(ph, s)| Step::new(ph, s)));
    steps.extend(unit_steps.into_iter().map(|(ph, s)| Step::new(ph, s)));
    if is_undo {
        ledger_add.clear();
    }
    Ok(Ok(Plan {
        steps: Plan::order(steps, last),
        ledger_add,
        ledger_remove: files.ledger_remove,
        saved: Vec::new(),
    }))
}

// ---- the inspections, over the model ----

fn origin_of(n: &HNode) -> Origin {
    match n.clone() {
        HNode::File {
            content,
            mode,
            uid,
            gid,
        } => Origin::File {
            hash: content,
            mode,
            uid,
            gid,
            xattrs: Default::default(),
        },
        HNode::Dir { mode, uid, gid } => Origin::Dir { mode, uid, gid },
        HNode::Symlink { target, uid, gid } => Origin::Symlink { target, uid, gid },
    }
}

/// `files::precheck::drift_of` over the model.
pub fn drift_of(want: &Entry, live: &Seen) -> Option<String> {
    let Seen::Node(n) = live else {
        return Some("missing".into());
    };
    let owner = |u: &Option<u32>, g: &Option<u32>, uid: u32, gid: u32| {
        u.is_some_and(|u| u != uid) || g.is_some_and(|g| g != gid)
    };
    match (want, n) {
        (
            Entry::File {
                hash,
                mode,
                uid,
                gid,
                ..
            },
            HNode::File {
                content,
                mode: m,
                uid: u,
                gid: g,
            },
        ) => (m != mode || owner(uid, gid, *u, *g) || content != hash)
            .then(|| format!("file {n:?}, expected {want:?}")),
        (Entry::Symlink { target, .. }, HNode::Symlink { target: t, .. }) => {
            (t != target).then(|| format!("symlink to {t}, expected {target}"))
        }
        (
            Entry::Dir { mode, uid, gid, .. },
            HNode::Dir {
                mode: m,
                uid: u,
                gid: g,
            },
        ) => (mode.is_some_and(|x| x != *m) || owner(uid, gid, *u, *g))
            .then(|| format!("directory {n:?}, expected {want:?}")),
        _ => Some(format!("{n:?}, expected {want:?}")),
    }
}

/// `files::precheck::precheck` over the model (no `--force`): the facts,
/// and every conflict and drift (each refuses the switch).
fn file_precheck(
    host: &Host,
    changes: &[&Change],
    ledger: &BTreeMap<EntryPath, Origin>,
) -> (Facts, Vec<String>) {
    let mut facts = Facts::default();
    let mut refused = Vec::new();
    let replaced: BTreeSet<&EntryPath> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Added(q, e) if e.is_dir() => Some(q),
            Change::Changed(q, _, e) if e.is_dir() => Some(q),
            _ => None,
        })
        .collect();
    let removed: BTreeSet<&EntryPath> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Removed(q, _) => Some(q),
            _ => None,
        })
        .collect();
    for c in changes {
        let q = c.path();
        let live = host.inspect(q);
        if let Seen::Blocked(at) = &live {
            if !replaced.contains(at) {
                refused.push(format!("{q}: blocked at {at}"));
            }
            continue;
        }
        match (c, c.before()) {
            (Change::Removed(..) | Change::Changed(..), Some(old)) => {
                if old.is_dir() && matches!(live, Seen::Node(HNode::Dir { .. })) {
                    let retype = match c {
                        Change::Changed(_, _, new) => !new.is_dir(),
                        _ => matches!(
                            ledger.get(q),
                            Some(Origin::File { .. } | Origin::Symlink { .. })
                        ),
                    };
                    if retype
                        && let Some(k) = host.children(q).iter().find(|k| !removed.contains(k))
                    {
                        refused.push(format!("{q}: holds {k}, and a file must go there"));
                    }
                    continue;
                }
                if let Some(what) = drift_of(old, &live) {
                    match live {
                        Seen::Absent => {}
                        _ => refused.push(format!("{q}: drift: {what}")),
                    }
                }
            }
            (Change::Added(_, new), _) => match &live {
                Seen::Absent | Seen::Blocked(_) => {}
                Seen::Node(n @ (HNode::File { .. } | HNode::Symlink { .. })) => {
                    facts.origins.insert(q.clone(), origin_of(n));
                    if new.is_dir() {
                        facts.in_the_way.insert(q.clone());
                    }
                }
                Seen::Node(n @ HNode::Dir { .. }) if new.is_dir() => {
                    facts.origins.insert(q.clone(), origin_of(n));
                }
                Seen::Node(_) => refused.push(format!("{q}: a directory where a file goes")),
            },
            // A removal or a change always has an entry before.
            (_, None) => {}
        }
    }
    (facts, refused)
}

/// `datasets::precheck` for directory datasets, over the model.
fn dataset_precheck(
    host: &Host,
    old: &Datasets,
    new: &Datasets,
    cx: &Context<'_>,
) -> (datasets::Facts, Vec<String>) {
    let mut facts = datasets::Facts::default();
    let mut conflicts = Vec::new();
    for (q, d) in &new.0 {
        if old.0.get(q).is_some_and(|o| o.kind == d.kind) {
            continue;
        }
        let detached = datasets::keep_path(q, &["detached"]).unwrap_or_else(|e| panic!("{e}"));
        let has_detached = matches!(host.inspect(&detached), Seen::Node(HNode::Dir { .. }));
        if has_detached && cx.known.get(q).is_some_and(|k| *k != d.kind) {
            conflicts.push(format!("{q}: a detached dataset of another kind"));
            continue;
        }
        let how = match host.inspect(q) {
            Seen::Blocked(_) => How::Create,
            Seen::Node(HNode::File { .. } | HNode::Symlink { .. }) => {
                conflicts.push(format!("{q}: a file where a dataset goes"));
                continue;
            }
            Seen::Node(HNode::Dir { .. }) if has_detached => {
                conflicts.push(format!("{q}: a directory and a detached dataset"));
                continue;
            }
            Seen::Node(HNode::Dir { .. }) => How::Adopt,
            Seen::Absent if has_detached => How::Reattach,
            Seen::Absent => How::Create,
        };
        facts.how.insert(q.clone(), how);
    }
    for (q, d) in &old.0 {
        let snap = d.snapshot || new.0.get(q).is_some_and(|n| n.snapshot && n.kind == d.kind);
        if snap && !matches!(host.inspect(q), Seen::Node(HNode::Dir { .. })) {
            facts.missing.insert(q.clone());
        }
    }
    (facts, conflicts)
}
