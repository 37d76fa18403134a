//! Users and groups as a kind of resource (`users`, `groups` of the
//! configuration; `docs/users.md`).
//!
//! - **Build** ([`build`]) gives every declared account its id: the one
//!   declared, else the one it has on the root, else the one recorded for
//!   its name, else a new one from the root's range (login.defs), recorded
//!   at once, so the id never changes across rebuilds and rollbacks. The
//!   ids are in the manifest (`accounts`), and `owner`/`group` of files
//!   may name declared accounts (ingest resolves them from here).
//! - **Apply** runs the root's own shadow tools (`useradd`, `usermod`,
//!   `userdel`, `groupadd`, `groupmod`, `groupdel`, `chpasswd`, `chage`),
//!   through `chroot` when the root is not `/` (`tools.rs`).
//! - Accounts are created before the files they own (phase `AddUsers`) and
//!   removed after them (`RemoveUsers`). An account sysgen created goes
//!   when it leaves; a removed user's home moves to
//!   `<parent>/.sysgen-homes/<name>` and stays until gc. An account that
//!   was there before is recorded as it was (`account_origins`) by the step
//!   that first manages it, and put back, never deleted.

mod etc;
mod kind;
mod plan;
mod records;
mod step;
#[cfg(test)]
mod tests;
mod tools;

use std::collections::{BTreeMap, BTreeSet};

use sysgen_schema::{HostSpec, PasswordSpec};
use sysgen_store::Area;

pub use etc::{LiveGroup, LiveUser};
pub use kind::UserKind;
pub use records::KeptHome;
pub use step::UserStep;

use crate::accounts::{Accounts, Group, Password, User};
use crate::{Error, State};
use etc::{Etc, LoginDefs};
use records::{GROUP, USER};

/// A shadow tool that failed, with what it said.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {why}")]
pub struct UsersError {
    pub command: String,
    pub why: String,
}

/// The first free id of `range` not in `taken`: from the top for system
/// accounts (as `useradd -r` does), from the bottom for the others.
fn allocate(taken: &BTreeSet<u32>, (min, max): (u32, u32), system: bool) -> Option<u32> {
    if system {
        (min..=max).rev().find(|n| !taken.contains(n))
    } else {
        (min..=max).find(|n| !taken.contains(n))
    }
}

/// The accounts section of a generation, from the configuration, with every
/// id given once and recorded (the only write: `account_ids`).
pub fn build(state: &State, spec: &HostSpec) -> Result<Accounts, Error> {
    let mut out = Accounts::default();
    if spec.users.is_empty() && spec.groups.is_empty() {
        return Ok(out);
    }
    // Read only when a password names a secret, each once.
    let secrets = crate::secrets::Secrets::new(spec);
    let etc = Etc::read(&state.root)?;
    let defs = LoginDefs::read(&state.root)?;
    let given_u = records::ids(&state.db, USER)?;
    let given_g = records::ids(&state.db, GROUP)?;
    let mut taken_u: BTreeSet<u32> = etc.uids().chain(given_u.values().copied()).collect();
    let mut taken_g: BTreeSet<u32> = etc.gids().chain(given_g.values().copied()).collect();
    taken_u.extend(spec.users.values().filter_map(|u| u.uid));
    taken_g.extend(spec.groups.values().filter_map(|g| g.gid));
    let exhausted = |what: &str, name: &str, system: bool| {
        Error::Invalid(format!(
            "{what} {name}: no free id is left in the root's {} range (login.defs); give it one",
            if system { "system" } else { "normal" }
        ))
    };

    for (name, u) in &spec.users {
        let uid = match (u.uid, etc.user(name), given_u.get(name)) {
            (Some(n), _, _) => n,
            (None, Some(live), _) => live.uid,
            (None, None, Some(&n)) => n,
            (None, None, None) => {
                let n = allocate(&taken_u, defs.range("UID", u.system), u.system)
                    .ok_or_else(|| exhausted("user", name, u.system))?;
                taken_u.insert(n);
                n
            }
        };
        records::set_id(&state.db, USER, name, uid)?;
        let password = match &u.password {
            None => None,
            Some(PasswordSpec::Locked) => Some(Password::Locked),
            Some(PasswordSpec::HashFile(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(crate::io_err(path.to_path_buf()))?;
                let what = format!("users.{name}.password.hash_file: {}", path.display());
                Some(Password::Hash(keep_hash(state, &what, &text)?))
            }
            Some(PasswordSpec::Secret(s)) => {
                let what = format!("users.{name}.password.secret {s}");
                let text = secrets.get(s)?.ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: {what}: no secret {s:?} is declared under secrets; declare it",
                        u.declared_in.display()
                    ))
                })?;
                Some(Password::Hash(keep_hash(state, &what, &text)?))
            }
        };
        // A user without a primary group gets one of its own name, as
        // useradd's USERGROUPS_ENAB does; sysgen creates it with the user.
        let group = u.group.clone().unwrap_or_else(|| name.clone());
        if u.group.is_none() && !spec.groups.contains_key(name) {
            let gid = match (etc.group(name), given_g.get(name)) {
                (Some(live), _) => live.gid,
                (None, Some(&n)) => n,
                (None, None) if !taken_g.contains(&uid) => uid,
                (None, None) => allocate(&taken_g, defs.range("GID", u.system), u.system)
                    .ok_or_else(|| exhausted("group", name, u.system))?,
            };
            taken_g.insert(gid);
            records::set_id(&state.db, GROUP, name, gid)?;
            out.groups.insert(
                name.clone(),
                Group {
                    gid,
                    system: u.system,
                },
            );
        }
        out.users.insert(
            name.clone(),
            User {
                uid,
                group: Some(group),
                groups: u.groups.clone(),
                home: u.home.as_ref().map(|h| h.as_str().to_owned()),
                shell: u.shell.clone(),
                comment: u.comment.clone(),
                system: u.system,
                create_home: u.create_home.unwrap_or(!u.system),
                password,
            },
        );
    }
    for (name, g) in &spec.groups {
        let gid = match (g.gid, etc.group(name), given_g.get(name)) {
            (Some(n), _, _) => n,
            (None, Some(live), _) => live.gid,
            (None, None, Some(&n)) => n,
            (None, None, None) => {
                let n = allocate(&taken_g, defs.range("GID", g.system), g.system)
                    .ok_or_else(|| exhausted("group", name, g.system))?;
                taken_g.insert(n);
                n
            }
        };
        records::set_id(&state.db, GROUP, name, gid)?;
        out.groups.insert(
            name.clone(),
            Group {
                gid,
                system: g.system,
            },
        );
    }
    // Every group a user names is declared or on the root.
    for (name, u) in &out.users {
        let spec_u = &spec.users[name];
        let named = u.group.iter().chain(u.groups.iter().flatten());
        for g in named {
            if !out.groups.contains_key(g) && etc.group(g).is_none() {
                return Err(Error::Invalid(format!(
                    "{}: users.{name}: group {g:?} is neither declared under groups nor on the root's /etc/group; declare it",
                    spec_u.declared_in.display()
                )));
            }
        }
    }
    Ok(out)
}

/// A password hash (from a file or a secret, named by `what`), checked to
/// be one crypt(3) hash and kept in the store's secret area. The message
/// never shows the value.
fn keep_hash(state: &State, what: &str, text: &str) -> Result<sysgen_store::Hash, Error> {
    let hash = text.trim_end_matches('\n');
    let looks_like_crypt = hash.starts_with('$') || hash == "!" || hash == "*";
    if !looks_like_crypt || hash.contains([':', '\n']) {
        return Err(Error::Invalid(format!(
            "{what} is not one crypt(3) hash; give one line such as the output of `mkpasswd -m yescrypt`"
        )));
    }
    Ok(state.store.put_bytes(hash.as_bytes(), Area::Secret)?)
}

/// Names to ids of the declared accounts, for resolving `owner` and
/// `group` of files declared in the same configuration.
pub fn declared_ids(a: &Accounts) -> (BTreeMap<String, u32>, BTreeMap<String, u32>) {
    (
        a.users.iter().map(|(n, u)| (n.clone(), u.uid)).collect(),
        a.groups.iter().map(|(n, g)| (n.clone(), g.gid)).collect(),
    )
}
