//! The pure part: what differs between the root's accounts and a
//! generation's, and the steps from one generation's accounts to another's.

use std::collections::BTreeMap;

use sysgen_schema::EntryPath;

use super::etc::{Etc, LiveGroup, LiveUser};
use super::step::UserStep;
use crate::Error;
use crate::accounts::{Accounts, Password, User};
use crate::kind::Phase;

/// Where the homes of removed users are kept, next to them.
pub(crate) const HOMES_AREA: &str = ".sysgen-homes";

/// useradd's home for a user without one declared (Debian's `HOME=/home`).
pub(crate) fn default_home(name: &str) -> String {
    format!("/home/{name}")
}

/// The attributes of a user that differ from what a generation wants.
#[derive(Default)]
pub(crate) struct UserChanges {
    /// `usermod` options that make them right.
    args: Vec<String>,
    /// Each, for people: the field, what the root has, what is wanted.
    diffs: Vec<(&'static str, String, String)>,
}

impl UserChanges {
    fn add(&mut self, flag: &str, value: String, diff: (&'static str, String, String)) {
        self.args.push(flag.to_owned());
        self.args.push(value);
        self.diffs.push(diff);
    }

    /// As drift: "shell \"/bin/sh\", expected \"/bin/bash\"".
    pub(crate) fn expected(&self) -> Vec<String> {
        let f =
            |(field, now, want): &(&str, String, String)| format!("{field} {now}, expected {want}");
        self.diffs.iter().map(f).collect()
    }

    /// As a plan's change: "shell \"/bin/sh\" -> \"/bin/bash\"".
    pub(crate) fn moves(&self) -> Vec<String> {
        let f = |(field, now, want): &(&str, String, String)| format!("{field} {now} -> {want}");
        self.diffs.iter().map(f).collect()
    }

    pub(crate) fn usermod_args(self) -> Vec<String> {
        self.args
    }
}

/// What of `live` differs from `want` (the password aside: see
/// [`password_ok`]).
pub(crate) fn user_changes(etc: &Etc, live: &LiveUser, want: &User) -> UserChanges {
    let mut c = UserChanges::default();
    if live.uid != want.uid {
        c.add(
            "-u",
            want.uid.to_string(),
            ("uid", live.uid.to_string(), want.uid.to_string()),
        );
    }
    if let Some(g) = &want.group
        && etc.group(g).map(|g| g.gid) != Some(live.gid)
    {
        let now = etc
            .group_name(live.gid)
            .map_or_else(|| live.gid.to_string(), str::to_owned);
        c.add("-g", g.clone(), ("group", now, g.clone()));
    }
    if let Some(gs) = want.groups.as_ref().filter(|gs| **gs != live.groups) {
        c.add(
            "-G",
            gs.join(","),
            (
                "groups",
                format!("[{}]", live.groups.join(",")),
                format!("[{}]", gs.join(",")),
            ),
        );
    }
    for (flag, field, now, want) in [
        ("-d", "home", &live.home, &want.home),
        ("-s", "shell", &live.shell, &want.shell),
        ("-c", "comment", &live.comment, &want.comment),
    ] {
        if let Some(w) = want.as_ref().filter(|w| *w != now) {
            c.add(
                flag,
                w.clone(),
                (field, format!("{now:?}"), format!("{w:?}")),
            );
        }
    }
    c
}

/// Whether the live password field is as `want` has it; `read` gives the
/// hash kept in the store.
pub(crate) fn password_ok(
    live: &LiveUser,
    want: &User,
    read: &dyn Fn(&sysgen_store::Hash) -> Result<Vec<u8>, Error>,
) -> Result<bool, Error> {
    let field = live.password.as_deref();
    Ok(match &want.password {
        None => true,
        Some(Password::Locked) => field.is_some_and(|p| p.starts_with('!') || p == "*"),
        Some(Password::Hash(h)) => field.map(str::as_bytes) == Some(&read(h)?[..]),
    })
}

/// The home a leaving user's step keeps, when sysgen made one.
pub(crate) fn kept_home(name: &str, u: &User) -> Result<Option<EntryPath>, Error> {
    if !u.create_home {
        return Ok(None);
    }
    let h = u.home.clone().unwrap_or_else(|| default_home(name));
    EntryPath::parse(&h)
        .map(Some)
        .map_err(|e| Error::Corrupt(format!("the home {h} of user {name}: {e}")))
}

/// What a plan starts from: the two sides, the root, and what the accounts
/// that were there before sysgen were.
pub(crate) struct Sides<'a> {
    pub old: &'a Accounts,
    pub new: &'a Accounts,
    pub etc: &'a Etc,
    pub origins_u: &'a BTreeMap<String, LiveUser>,
    pub origins_g: &'a BTreeMap<String, LiveGroup>,
    /// A switch: an account of `new` that `old` lacks and the root has was
    /// there before sysgen, and is recorded as it is. An undo adopts
    /// nothing (every account of the generation it returns to was managed
    /// already) but records again what the undone switch put back.
    pub switch: bool,
    pub readopt_u: &'a BTreeMap<String, LiveUser>,
    pub readopt_g: &'a BTreeMap<String, LiveGroup>,
    /// Whether each wanted user's password is right on the root.
    pub password_ok: &'a dyn Fn(&LiveUser, &User) -> Result<bool, Error>,
}

/// The steps from `old` to `new` (the root as `etc` shows it), and the
/// ids taken on the root by other accounts (conflicts).
/// Steps in their phases.
pub(crate) type Steps = Vec<(Phase, UserStep)>;

pub(crate) fn plan(s: &Sides<'_>) -> Result<(Steps, Vec<String>), Error> {
    let (old, new, etc) = (s.old, s.new, s.etc);
    let mut steps = Vec::new();
    let mut conflicts = Vec::new();
    let leaving_u = |n: &str| old.users.contains_key(n) && !new.users.contains_key(n);
    let leaving_g = |n: &str| old.groups.contains_key(n) && !new.groups.contains_key(n);

    for (name, g) in &new.groups {
        if let Some(other) = etc
            .group_name(g.gid)
            .filter(|o| *o != name && !leaving_g(o))
        {
            conflicts.push(format!(
                "group {name}: gid {} is taken by group {other} on the root; give {name} another gid, or remove {other}",
                g.gid
            ));
        }
        let live = etc.group(name);
        // A group there before sysgen manages it from now on: its origin
        // goes with the step, even when nothing about it changes.
        let origin = if s.switch {
            live.clone()
                .filter(|_| !old.groups.contains_key(name) && !s.origins_g.contains_key(name))
        } else {
            s.readopt_g.get(name).cloned()
        };
        let what: Vec<String> = live
            .iter()
            .filter(|l| l.gid != g.gid)
            .map(|l| format!("gid {} -> {}", l.gid, g.gid))
            .collect();
        if origin.is_some() || live.is_none() || !what.is_empty() {
            steps.push((
                Phase::AddUsers,
                UserStep::Group {
                    name: name.clone(),
                    group: g.clone(),
                    origin,
                    what,
                },
            ));
        }
    }
    for (name, u) in &new.users {
        if let Some(other) = etc.user_name(u.uid).filter(|o| *o != name && !leaving_u(o)) {
            conflicts.push(format!(
                "user {name}: uid {} is taken by user {other} on the root; give {name} another uid, or remove {other}",
                u.uid
            ));
        }
        let live = etc.user(name);
        let origin = if s.switch {
            live.clone()
                .filter(|_| !old.users.contains_key(name) && !s.origins_u.contains_key(name))
        } else {
            s.readopt_u.get(name).cloned()
        };
        let what = match &live {
            None => Vec::new(),
            Some(l) => {
                let mut w = user_changes(etc, l, u).moves();
                if !(s.password_ok)(l, u)? {
                    w.push("password".to_owned());
                }
                w
            }
        };
        if origin.is_some() || live.is_none() || !what.is_empty() {
            steps.push((
                Phase::AddUsers,
                UserStep::User {
                    name: name.clone(),
                    user: Box::new(u.clone()),
                    origin: origin.map(Box::new),
                    what,
                },
            ));
        }
    }

    for (name, u) in old.users.iter().filter(|(n, _)| leaving_u(n)) {
        match s.origins_u.get(name) {
            Some(o) => steps.push((
                Phase::RemoveUsers,
                UserStep::RestoreUser {
                    name: name.clone(),
                    origin: Box::new(o.clone()),
                },
            )),
            None => {
                steps.push((
                    Phase::RemoveUsers,
                    UserStep::RemoveUser {
                        name: name.clone(),
                        home: kept_home(name, u)?,
                    },
                ));
                // userdel removes a group of the user's name with it
                // (USERGROUPS_ENAB); one that stays is made again.
                if let Some(g) = new.groups.get(name) {
                    steps.push((
                        Phase::RemoveUsers,
                        UserStep::Group {
                            name: name.clone(),
                            group: g.clone(),
                            origin: None,
                            what: Vec::new(),
                        },
                    ));
                }
            }
        }
    }
    for name in old.groups.keys().filter(|n| leaving_g(n)) {
        steps.push((
            Phase::RemoveUsers,
            match s.origins_g.get(name) {
                Some(o) => UserStep::RestoreGroup {
                    name: name.clone(),
                    origin: o.clone(),
                },
                None => UserStep::RemoveGroup { name: name.clone() },
            },
        ));
    }
    Ok((steps, conflicts))
}
