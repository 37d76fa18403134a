//! The users kind's steps. Each converges: it reads the root's account
//! files first and runs only the tools whose change is still missing, so a
//! re-run after a crash does no harm.

use std::fmt;

use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;
use sysgen_store::{Area, Hash};

use super::etc::{Etc, LiveGroup, LiveUser};
use super::plan::{HOMES_AREA, default_home, user_changes};
use super::records::{self, GROUP, USER};
use super::tools::{USERADD, run};
use crate::Error;
use crate::accounts::{Group, Password, User};
use crate::kind::{ApplyCx, KindStepOps};

/// One step on the root's accounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum UserStep {
    /// The group exists with this gid. `origin`: it was there before
    /// sysgen, as recorded here (written to the database first).
    Group {
        name: String,
        group: Group,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<LiveGroup>,
        /// What differed when planned, for the plan line (empty: absent).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        what: Vec<String>,
    },
    /// The user exists with these attributes (created, its kept home put
    /// back first, or changed). `origin` as for groups.
    User {
        name: String,
        user: Box<User>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<Box<LiveUser>>,
        /// What differed when planned, for the plan line (empty: absent).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        what: Vec<String>,
    },
    /// A user sysgen created leaves: `userdel`, then its home (when sysgen
    /// made one) moves to the kept area.
    RemoveUser {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        home: Option<EntryPath>,
    },
    /// A group sysgen created leaves.
    RemoveGroup { name: String },
    /// A user that was there before sysgen is put back as it was.
    RestoreUser { name: String, origin: Box<LiveUser> },
    /// A group that was there before sysgen is put back as it was.
    RestoreGroup { name: String, origin: LiveGroup },
}

impl fmt::Display for UserStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserStep::Group {
                name,
                group,
                origin,
                what,
            } => line(f, "group", name, "gid", group.gid, origin.is_some(), what),
            UserStep::User {
                name,
                user,
                origin,
                what,
            } => line(f, "user", name, "uid", user.uid, origin.is_some(), what),
            UserStep::RemoveUser { name, home } => match home {
                Some(h) => write!(f, "remove user {name}, keep its home {h} until gc"),
                None => write!(f, "remove user {name}"),
            },
            UserStep::RemoveGroup { name } => write!(f, "remove group {name}"),
            UserStep::RestoreUser { name, .. } => {
                write!(f, "put back user {name} as it was before sysgen")
            }
            UserStep::RestoreGroup { name, .. } => {
                write!(f, "put back group {name} as it was before sysgen")
            }
        }
    }
}

/// "create user alice (uid 1001)", "change user alice: shell …",
/// "manage user bob (uid 1000), there before[: …]".
fn line(
    f: &mut fmt::Formatter<'_>,
    kind: &str,
    name: &str,
    id_name: &str,
    id: u32,
    adopted: bool,
    what: &[String],
) -> fmt::Result {
    match (adopted, what.is_empty()) {
        (true, true) => write!(f, "manage {kind} {name} ({id_name} {id}), there before"),
        (true, false) => write!(
            f,
            "manage {kind} {name} ({id_name} {id}), there before: {}",
            what.join(", ")
        ),
        (false, true) => write!(f, "create {kind} {name} ({id_name} {id})"),
        (false, false) => write!(f, "change {kind} {name}: {}", what.join(", ")),
    }
}

impl KindStepOps for UserStep {
    fn path(&self) -> Option<&EntryPath> {
        None
    }

    fn reads(&self) -> Vec<(Hash, Area)> {
        match self {
            UserStep::User { user, .. } => match &user.password {
                Some(Password::Hash(h)) => vec![(*h, Area::Secret)],
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    fn apply(&self, cx: &mut ApplyCx<'_>) -> Result<(), Error> {
        let root = cx.root.path();
        let etc = Etc::read(cx.root)?;
        match self {
            UserStep::Group {
                name,
                group,
                origin,
                ..
            } => {
                if let Some(o) = origin {
                    records::set_origin(cx.db, GROUP, name, o)?;
                }
                let gid = group.gid.to_string();
                match etc.group(name) {
                    None if group.system => {
                        run(root, "/usr/sbin/groupadd", &["-r", "-g", &gid, name], None)
                    }
                    None => run(root, "/usr/sbin/groupadd", &["-g", &gid, name], None),
                    Some(live) if live.gid != group.gid => {
                        run(root, "/usr/sbin/groupmod", &["-g", &gid, name], None)
                    }
                    Some(_) => Ok(()),
                }
            }
            UserStep::RemoveGroup { name } => match etc.group(name) {
                Some(_) => run(root, "/usr/sbin/groupdel", &[name], None),
                None => Ok(()),
            },
            UserStep::RestoreGroup { name, origin } => {
                if etc.group(name).is_some_and(|g| g.gid != origin.gid) {
                    run(
                        root,
                        "/usr/sbin/groupmod",
                        &["-g", &origin.gid.to_string(), name],
                        None,
                    )?;
                }
                records::drop_origin(cx.db, GROUP, name)
            }
            UserStep::User {
                name, user, origin, ..
            } => {
                if let Some(o) = origin {
                    records::set_origin(cx.db, USER, name, o)?;
                }
                match etc.user(name) {
                    None => create(cx, name, user)?,
                    Some(live) => {
                        let args = user_changes(&etc, &live, user).usermod_args();
                        if !args.is_empty() {
                            let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
                            a.push(name);
                            run(root, "/usr/sbin/usermod", &a, None)?;
                        }
                    }
                }
                password(cx, name, user)
            }
            UserStep::RemoveUser { name, home } => {
                if etc.user(name).is_some() {
                    run(root, "/usr/sbin/userdel", &[name], None)?;
                }
                match home {
                    Some(h) => keep_home(cx, name, h),
                    None => Ok(()),
                }
            }
            UserStep::RestoreUser { name, origin } => {
                if let Some(live) = etc.user(name) {
                    restore(cx, name, &live, origin)?;
                }
                records::drop_origin(cx.db, USER, name)
            }
        }
    }
}

/// `useradd`, after putting back the user's kept home if it has one and
/// nothing is at the home now.
fn create(cx: &mut ApplyCx<'_>, name: &str, user: &User) -> Result<(), Error> {
    let root = cx.root.path();
    let home = match &user.home {
        Some(h) => h.clone(),
        None => default_home(name),
    };
    let home_path = EntryPath::parse(&home)
        .map_err(|e| Error::Corrupt(format!("the home of user {name}, {home}: {e}")))?;
    let mut home_there = !matches!(cx.root.inspect(&home_path)?, crate::rootfs::Live::Absent);
    if user.create_home && !home_there {
        let kept = records::kept_homes(cx.db)?
            .into_iter()
            .find(|k| k.user == name && k.home == home);
        if let Some(k) = kept {
            let from = EntryPath::parse(&k.kept)
                .map_err(|e| Error::Corrupt(format!("the kept home of user {name}: {e}")))?;
            if !matches!(cx.root.inspect(&from)?, crate::rootfs::Live::Absent) {
                cx.root.rename(&from, &home_path)?;
                home_there = true;
            }
            // The kept homes' area goes once it is empty (a directory
            // that still holds something is never removed).
            if let Some(area) = from.parent() {
                cx.root.remove(&area)?;
            }
            records::drop_kept_home(cx.db, name)?;
        }
    }
    let uid = user.uid.to_string();
    let mut args: Vec<String> = vec!["-u".into(), uid];
    if let Some(g) = &user.group {
        args.extend(["-g".into(), g.clone()]);
    }
    if let Some(gs) = user.groups.as_ref().filter(|g| !g.is_empty()) {
        args.extend(["-G".into(), gs.join(",")]);
    }
    args.extend(["-d".into(), home]);
    if let Some(s) = &user.shell {
        args.extend(["-s".into(), s.clone()]);
    }
    if let Some(c) = &user.comment {
        args.extend(["-c".into(), c.clone()]);
    }
    if user.system {
        args.push("-r".into());
    }
    // A home already there (kept, or made by the admin) is not filled from
    // /etc/skel again.
    args.push(
        if user.create_home && !home_there {
            "-m"
        } else {
            "-M"
        }
        .into(),
    );
    // The primary group is always named (`-g`): no group of the user's
    // name is made behind sysgen's back.
    args.push("-N".into());
    args.push(name.to_owned());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    run(root, USERADD, &a, None)
}

/// The password as the generation has it, if it manages it.
fn password(cx: &mut ApplyCx<'_>, name: &str, user: &User) -> Result<(), Error> {
    let root = cx.root.path();
    let live = Etc::read(cx.root)?.user(name).and_then(|u| u.password);
    match &user.password {
        None => Ok(()),
        Some(Password::Locked) => {
            if live
                .as_deref()
                .is_some_and(|p| p.starts_with('!') || p == "*")
            {
                Ok(())
            } else {
                run(root, "/usr/sbin/usermod", &["-L", name], None)
            }
        }
        Some(Password::Hash(h)) => {
            let hash = cx.store.read(h, Area::Secret)?;
            if live.as_deref().map(str::as_bytes) == Some(&hash[..]) {
                return Ok(());
            }
            let mut line = format!("{name}:").into_bytes();
            line.extend_from_slice(&hash);
            line.push(b'\n');
            run(root, "/usr/sbin/chpasswd", &["-e"], Some(&line))
        }
    }
}

/// Puts a pre-existing user back: the attributes, the password and its
/// last-change day (a new password sets it to today).
fn restore(
    cx: &mut ApplyCx<'_>,
    name: &str,
    live: &LiveUser,
    origin: &LiveUser,
) -> Result<(), Error> {
    let root = cx.root.path();
    let mut args: Vec<String> = Vec::new();
    if live.uid != origin.uid {
        args.extend(["-u".into(), origin.uid.to_string()]);
    }
    if live.gid != origin.gid {
        args.extend(["-g".into(), origin.gid.to_string()]);
    }
    if live.groups != origin.groups {
        args.extend(["-G".into(), origin.groups.join(",")]);
    }
    if live.home != origin.home {
        args.extend(["-d".into(), origin.home.clone()]);
    }
    if live.shell != origin.shell {
        args.extend(["-s".into(), origin.shell.clone()]);
    }
    if live.comment != origin.comment {
        args.extend(["-c".into(), origin.comment.clone()]);
    }
    if !args.is_empty() {
        args.push(name.to_owned());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run(root, "/usr/sbin/usermod", &a, None)?;
    }
    if let Some(p) = origin
        .password
        .as_ref()
        .filter(|p| live.password.as_ref() != Some(p))
    {
        run(
            root,
            "/usr/sbin/chpasswd",
            &["-e"],
            Some(format!("{name}:{p}\n").as_bytes()),
        )?;
    }
    let now = Etc::read(cx.root)?.user(name);
    if let Some(day) = origin
        .lastchg
        .as_ref()
        .filter(|d| now.as_ref().and_then(|u| u.lastchg.as_ref()) != Some(d))
    {
        let d = if day.is_empty() { "-1" } else { day.as_str() };
        run(root, "/usr/bin/chage", &["-d", d, name], None)?;
    }
    Ok(())
}

/// Moves a removed user's home into `<parent>/.sysgen-homes/<name>`,
/// recorded first; a home already moved (a re-run) is left where it is.
fn keep_home(cx: &mut ApplyCx<'_>, name: &str, home: &EntryPath) -> Result<(), Error> {
    if !matches!(cx.root.inspect(home)?, crate::rootfs::Live::Dir(_)) {
        return Ok(());
    }
    let area = match home.parent() {
        Some(parent) => parent.join(HOMES_AREA),
        None => EntryPath::top(HOMES_AREA),
    }
    .map_err(|e| Error::Internal(format!("the kept homes' area next to {home}: {e}")))?;
    cx.root.make_dirs(&area)?;
    // A name already taken there (an older home of a user of this name,
    // kept by another path) gets a number: nothing kept is overwritten.
    let recorded = records::kept_homes(cx.db)?
        .into_iter()
        .find(|k| k.user == name && k.home == home.as_str())
        .and_then(|k| EntryPath::parse(&k.kept).ok());
    let kept = match recorded {
        Some(k) if matches!(cx.root.inspect(&k)?, crate::rootfs::Live::Absent) => k,
        _ => {
            let mut n = 0;
            loop {
                let leaf = if n == 0 {
                    name.to_owned()
                } else {
                    format!("{name}.{n}")
                };
                let k = area
                    .join(&leaf)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                if matches!(cx.root.inspect(&k)?, crate::rootfs::Live::Absent) {
                    break k;
                }
                n += 1;
            }
        }
    };
    records::set_kept_home(cx.db, name, home.as_str(), kept.as_str())?;
    cx.root.rename(home, &kept)?;
    Ok(())
}
