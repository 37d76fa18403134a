//! Users and groups as a kind of resource: accounts made before the files
//! they own and removed after them; verify compares the root's account
//! files; gc deletes the kept homes of users no kept generation has.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sysgen_store::Area;

use super::etc::{Etc, LiveGroup, LiveUser};
use super::plan::{Sides, kept_home, password_ok, plan, user_changes};
use super::records::{self, GROUP, USER};
use super::step::UserStep;
use crate::accounts::{Accounts, Password};
use crate::host::Options;
use crate::kind::{
    BuildCx, Claims, Collect, Inspection, Kind, Marks, Mode, Planned, Report, Transition, Verified,
    to_json,
};
use crate::manifest::Manifest;
use crate::sections::keyed_changes;
use crate::{Drift, Error, Progress, State};

/// The kind of `users` and `groups`.
pub struct UserKind;

fn accounts<'a>(g: Option<crate::kind::Gen<'a>>) -> &'a Accounts {
    g.map_or(Accounts::none(), |g| &g.manifest.accounts)
}

impl Kind for UserKind {
    type Step = UserStep;

    fn name(&self) -> &'static str {
        "users"
    }

    /// The section was made by ingest before the files (their owners may
    /// name declared accounts); nothing is left to do here.
    fn build(&self, _cx: &mut BuildCx<'_>) -> Result<(), Error> {
        Ok(())
    }

    fn claims(&self, t: &Transition<'_>, _undone: &[&UserStep]) -> Result<Claims, Error> {
        // The home of a leaving user moves away whole, and the home of a
        // user that stays stays: the tree must not try to remove either
        // (a file declared in a home leaving the configuration leaves its
        // directory to the user).
        let (old, new) = (accounts(t.from), accounts(t.to));
        let mut claims = Claims::new();
        for (name, u) in old.users.iter().chain(&new.users) {
            if let Some(h) = kept_home(name, u)? {
                claims.insert(h);
            }
        }
        Ok(claims)
    }

    fn inspect<'a>(
        &self,
        t: &'a Transition<'a>,
        _claims: &'a Claims,
        undone: &[&UserStep],
    ) -> Result<Inspection<'a, UserStep>, Error> {
        let (old, new) = (accounts(t.from), accounts(t.to));
        if old.is_empty() && new.is_empty() {
            return Ok(Inspection::planning(Planned::default));
        }
        let state = t.state;
        let etc = Etc::read(&state.root)?;
        let mut origins_u: BTreeMap<String, LiveUser> = records::origins(&state.db, USER)?;
        let mut origins_g: BTreeMap<String, LiveGroup> = records::origins(&state.db, GROUP)?;
        // Undoing a switch: the accounts it started to manage may not have
        // reached the database; their steps carry what they were. Those it
        // put back are recorded again as the undo manages them again.
        let mut readopt_u = BTreeMap::new();
        let mut readopt_g = BTreeMap::new();
        if t.mode == Mode::Undo {
            for s in undone {
                match s {
                    UserStep::RestoreUser { name, origin } => {
                        readopt_u.insert(name.clone(), (**origin).clone());
                    }
                    UserStep::RestoreGroup { name, origin } => {
                        readopt_g.insert(name.clone(), origin.clone());
                    }
                    UserStep::User {
                        name,
                        origin: Some(o),
                        ..
                    } => {
                        origins_u
                            .entry(name.clone())
                            .or_insert_with(|| (**o).clone());
                    }
                    UserStep::Group {
                        name,
                        origin: Some(o),
                        ..
                    } => {
                        origins_g.entry(name.clone()).or_insert_with(|| o.clone());
                    }
                    _ => {}
                }
            }
        }
        let read = |h: &sysgen_store::Hash| Ok(state.store.read(h, Area::Secret)?);
        let pw = |l: &LiveUser, u: &crate::accounts::User| password_ok(l, u, &read);
        let (steps, mut conflicts) = plan(&Sides {
            old,
            new,
            etc: &etc,
            origins_u: &origins_u,
            origins_g: &origins_g,
            switch: matches!(t.mode, Mode::Switch { .. }),
            readopt_u: &readopt_u,
            readopt_g: &readopt_g,
            password_ok: &pw,
        })?;
        let tool = super::tools::USERADD;
        let tool_path = sysgen_schema::EntryPath::parse(tool)
            .map_err(|e| Error::Internal(format!("{tool}: {e}")))?;
        if !steps.is_empty()
            && !matches!(
                state.root.inspect(&tool_path)?,
                crate::rootfs::Live::File(_)
            )
        {
            conflicts.push(format!(
                "the root has no {tool}: sysgen manages users with the root's own shadow tools; install the passwd package in the root"
            ));
        }
        let mut look = Inspection::planning(move || Planned::steps(steps));
        if matches!(t.mode, Mode::Switch { .. }) {
            look.conflicts = conflicts;
        }
        Ok(look)
    }

    fn verify(
        &self,
        state: &State,
        generation: &Manifest,
        _opts: &Options,
        _progress: &dyn Progress,
    ) -> Result<Verified, Error> {
        let a = &generation.accounts;
        if a.is_empty() {
            return Ok(Verified::default());
        }
        let etc = Etc::read(&state.root)?;
        let mut drift = Vec::new();
        for (name, g) in &a.groups {
            let what = match etc.group(name) {
                None => Some("missing".to_owned()),
                Some(l) if l.gid != g.gid => Some(format!("gid {}, expected {}", l.gid, g.gid)),
                Some(_) => None,
            };
            drift.extend(what.map(|what| Drift {
                path: format!("group {name}"),
                what,
            }));
        }
        let read = |h: &sysgen_store::Hash| Ok(state.store.read(h, Area::Secret)?);
        for (name, u) in &a.users {
            let mut what = match etc.user(name) {
                None => vec!["missing".to_owned()],
                Some(l) => {
                    let mut w = user_changes(&etc, &l, u).expected();
                    if !password_ok(&l, u, &read)? {
                        w.push("password changed".to_owned());
                    }
                    w
                }
            };
            if !what.is_empty() {
                what.sort();
                drift.push(Drift {
                    path: format!("user {name}"),
                    what: what.join("; "),
                });
            }
        }
        Ok(Verified {
            entries: (a.users.len() + a.groups.len()) as u64,
            drift,
        })
    }

    fn mark(&self, _state: &State, kept: &[Manifest], marks: &mut Marks) -> Result<(), Error> {
        for m in kept {
            for u in m.accounts.users.values() {
                if let Some(Password::Hash(h)) = &u.password {
                    marks.object(*h, Area::Secret);
                }
            }
        }
        Ok(())
    }

    fn collect(&self, cx: &Collect<'_>) -> Result<Option<Report>, Error> {
        let homes = records::kept_homes(&cx.state.db)?;
        if homes.is_empty() {
            return Ok(None);
        }
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        for id in cx.kept {
            if let Some((m, _)) = cx.state.db.manifest(id)? {
                wanted.extend(m.accounts.users.keys().cloned());
            }
        }
        let gone: Vec<records::KeptHome> = homes
            .into_iter()
            .filter(|h| !wanted.contains(&h.user))
            .collect();
        if gone.is_empty() {
            return Ok(None);
        }
        if !cx.dry_run {
            for h in &gone {
                let p = sysgen_schema::EntryPath::parse(&h.kept).map_err(|e| {
                    Error::Corrupt(format!("the kept home of user {}: {e}", h.user))
                })?;
                cx.state.root.remove_tree(&p)?;
                records::drop_kept_home(&cx.state.db, &h.user)?;
                // The area goes with its last home (kept while it holds any).
                if let Some(area) = p.parent() {
                    cx.state.root.remove(&area)?;
                }
            }
        }
        let verb = if cx.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        Ok(Some(Report {
            kind: "users",
            lines: gone
                .iter()
                .map(|h| {
                    format!(
                        "{verb} the kept home of user {} ({}), at {}",
                        h.user, h.home, h.kept
                    )
                })
                .collect(),
            json: to_json("users", &gone)?,
        }))
    }

    fn report(&self, state: &State, _opts: &Options) -> Result<Option<Report>, Error> {
        let homes = records::kept_homes(&state.db)?;
        if homes.is_empty() {
            return Ok(None);
        }
        Ok(Some(Report {
            kind: "users",
            lines: homes
                .iter()
                .map(|h| {
                    format!(
                        "home of removed user {} ({}) kept at {} until gc",
                        h.user, h.home, h.kept
                    )
                })
                .collect(),
            json: to_json("users", &homes)?,
        }))
    }

    fn diff(
        &self,
        _state: &State,
        old: Option<&Manifest>,
        new: &Manifest,
    ) -> Result<Report, Error> {
        let old = old.map_or(Accounts::none(), |m| &m.accounts);
        let new = &new.accounts;
        let mut lines = Vec::new();
        let mut json = Vec::new();
        for (name, change, o, n) in keyed_changes(&old.groups, &new.groups) {
            lines.push(format!(
                "{} group {name}  gid {}",
                sign(change),
                n.or(o).map_or(0, |g| g.gid)
            ));
            json.push(Change {
                kind: "group",
                name,
                change,
            });
        }
        for (name, change, o, n) in keyed_changes(&old.users, &new.users) {
            let what = match (o, n) {
                (Some(o), Some(n)) => changed_fields(o, n).join(", "),
                _ => format!("uid {}", n.or(o).map_or(0, |u| u.uid)),
            };
            lines.push(format!("{} user {name}  {what}", sign(change)));
            json.push(Change {
                kind: "user",
                name,
                change,
            });
        }
        Ok(Report {
            kind: "users",
            lines,
            json: to_json("users", &json)?,
        })
    }
}

/// One account that differs between two generations, for `diff --json`.
#[derive(Serialize)]
struct Change<'a> {
    kind: &'static str,
    name: &'a str,
    change: &'static str,
}

/// What differs between two generations' records of one user, each as
/// `field old -> new` (a password as "password", never its hash).
fn changed_fields(o: &crate::accounts::User, n: &crate::accounts::User) -> Vec<String> {
    fn show<T: std::fmt::Debug>(v: &Option<T>) -> String {
        v.as_ref()
            .map_or_else(|| "unmanaged".to_owned(), |v| format!("{v:?}"))
    }
    let mut out = Vec::new();
    if o.uid != n.uid {
        out.push(format!("uid {} -> {}", o.uid, n.uid));
    }
    for (field, a, b) in [
        ("group", show(&o.group), show(&n.group)),
        ("groups", show(&o.groups), show(&n.groups)),
        ("home", show(&o.home), show(&n.home)),
        ("shell", show(&o.shell), show(&n.shell)),
        ("comment", show(&o.comment), show(&n.comment)),
    ] {
        if a != b {
            out.push(format!("{field} {a} -> {b}"));
        }
    }
    if o.password != n.password {
        out.push("password".to_owned());
    }
    if o.system != n.system || o.create_home != n.create_home {
        out.push("system or create_home (applies when the user is made)".to_owned());
    }
    out
}

fn sign(change: &str) -> char {
    match change {
        "added" => '+',
        "removed" => '-',
        _ => '~',
    }
}
