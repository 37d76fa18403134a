//! How the CLI words what the library reports: the tree's changes with
//! `+ - ~` markers, human sizes and owner names, an added or removed
//! subtree folded into one line (`-v` lists it whole), and plan lines with
//! their sizes made human, their owners named, and their hashes shown only
//! under `-v`. The library's own lines stay plain and exact; this is only
//! the people's view of them (`--json` keeps every record).

use std::collections::HashMap;
use std::io::Read;

use sysgen_generations::kind::FileChange;
use sysgen_generations::manifest::Entry;
use sysgen_generations::rootfs::Live;
use sysgen_generations::{Error, State};
use sysgen_schema::EntryPath;

use crate::output::{human_bytes, marked, plural};

/// User and group names by id, from the root's `/etc/passwd` and
/// `/etc/group` (read through the root's handles). An id without a name
/// stays a number.
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    pub fn read(state: &State) -> Result<Names, Error> {
        Ok(Names {
            users: id_names(state, "/etc/passwd")?,
            groups: id_names(state, "/etc/group")?,
        })
    }

    pub fn user(&self, uid: u64) -> String {
        name_of(&self.users, uid)
    }

    pub fn group(&self, gid: u64) -> String {
        name_of(&self.groups, gid)
    }
}

fn name_of(names: &HashMap<u32, String>, id: u64) -> String {
    u32::try_from(id)
        .ok()
        .and_then(|id| names.get(&id))
        .cloned()
        .unwrap_or_else(|| id.to_string())
}

/// `name:x:id:…` lines to id → name (the first name of an id wins, as
/// `getpwuid` has it). A missing file names nobody.
fn id_names(state: &State, path: &str) -> Result<HashMap<u32, String>, Error> {
    let p = EntryPath::parse(path).map_err(|e| Error::Internal(format!("{path}: {e}")))?;
    let Live::File(_) = state.root.inspect(&p)? else {
        return Ok(HashMap::new());
    };
    let mut text = String::new();
    state
        .root
        .open_file(&p)?
        .read_to_string(&mut text)
        .map_err(|source| Error::Io {
            path: state.root.display(&p).into(),
            source,
        })?;
    let mut out = HashMap::new();
    for l in text.lines() {
        let mut f = l.split(':');
        if let (Some(name), Some(id)) = (f.next(), f.nth(1).and_then(|i| i.parse().ok())) {
            out.entry(id).or_insert_with(|| name.to_owned());
        }
    }
    Ok(out)
}

/// A configuration's path as recorded (absolute), relative to the current
/// directory when it is below it, as people typed it.
pub fn config_path(recorded: &str) -> String {
    let p = std::path::Path::new(recorded);
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(|r| r.display().to_string()))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| recorded.to_owned())
}

/// An added or removed directory with more entries than this under it is
/// folded into its one line: a few are clearer listed.
const FOLD_OVER: u64 = 10;

/// The tree's changes (the `changes` records of `diff`) as lines: an
/// added or removed directory with more than [`FOLD_OVER`] entries added
/// or removed with it is one line with a count (the outermost such
/// directory), unless `all`.
pub fn change_lines(records: &[FileChange], names: &Names, all: bool) -> Vec<String> {
    // Added or removed directories: path → (their change, entries under them).
    let mut dirs: HashMap<&str, (&str, u64)> = records
        .iter()
        .filter(|r| r.change != "changed")
        .filter(|r| is_dir(&r.new) || is_dir(&r.old))
        .map(|r| (r.path.as_str(), (r.change, 0)))
        .collect();
    for r in records {
        for a in ancestors(r.path.as_str()) {
            if let Some(d) = dirs.get_mut(a)
                && d.0 == r.change
            {
                d.1 += 1;
            }
        }
    }
    let folded = |p: &str, c: &str| {
        ancestors(p).any(|a| dirs.get(a).is_some_and(|d| d.0 == c && d.1 > FOLD_OVER))
    };
    let mut lines = Vec::new();
    for r in records {
        let (p, c) = (r.path.as_str(), r.change);
        if !all && folded(p, c) {
            continue;
        }
        let (sign, entry) = match c {
            "added" => ('+', &r.new),
            "removed" => ('-', &r.old),
            _ => ('~', &None),
        };
        let mut text = match entry {
            Some(e) if sign != '~' => entry_text(e, names, all),
            _ => what_text(r, names),
        };
        // A rendered file: which template, and which of its inputs changed
        // (names only, never a secret's value).
        if let Some(t) = &r.template {
            text.push_str(&format!(" ({t})"));
        }
        if let Some((_, n)) = dirs.get(p)
            && !all
            && *n > FOLD_OVER
        {
            text.push_str(&format!(", and {} under it", plural(*n, "entry")));
        }
        lines.push(marked(&format!("{sign} {p}  {text}")));
    }
    lines
}

/// Whether a change's side is a directory (an added or removed one is
/// one line for what lies under it).
pub fn is_dir(e: &Option<Entry>) -> bool {
    matches!(e, Some(Entry::Dir { .. }))
}

/// `/a/b/c`'s ancestors below the root: `/a/b`, `/a`.
pub fn ancestors(p: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(p), |q| q.rfind('/').map(|i| &q[..i]))
        .skip(1)
        .filter(|q| !q.is_empty())
}

/// `file (0644, 1.2 KiB, root:www-data)`, `directory (0750)`, `symlink -> x`.
/// A secret file's size and hash are never shown.
fn entry_text(e: &Entry, names: &Names, verbose: bool) -> String {
    let mut meta = Vec::new();
    let (uid, gid) = match e {
        Entry::File {
            mode,
            secret,
            size,
            hash,
            uid,
            gid,
            ..
        } => {
            meta.push(format!("{mode:04o}"));
            meta.push(if *secret {
                "secret".into()
            } else {
                human_bytes(*size)
            });
            if let Some(o) = owner_text(*uid, *gid, names) {
                meta.push(o);
            }
            if verbose && !*secret {
                meta.push(hash.to_hex());
            }
            return with_meta("file", &meta);
        }
        Entry::Symlink { target, .. } => return format!("symlink -> {target}"),
        Entry::Dir { mode, uid, gid, .. } => {
            if let Some(m) = mode {
                meta.push(format!("{m:04o}"));
            }
            (*uid, *gid)
        }
    };
    if let Some(o) = owner_text(uid, gid, names) {
        meta.push(o);
    }
    with_meta("directory", &meta)
}

fn with_meta(kind: &str, meta: &[String]) -> String {
    if meta.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({})", meta.join(", "))
    }
}

/// An entry's owner and group, whichever is set.
fn ids(e: &Option<Entry>) -> (Option<u32>, Option<u32>) {
    match e {
        Some(
            Entry::File { uid, gid, .. }
            | Entry::Dir { uid, gid, .. }
            | Entry::Symlink { uid, gid, .. },
        ) => (*uid, *gid),
        None => (None, None),
    }
}

/// `owner root, group www-data`, or whichever of the two is set.
fn owner_text(uid: Option<u32>, gid: Option<u32>, names: &Names) -> Option<String> {
    let u = uid.map(|u| format!("owner {}", names.user(u.into())));
    let g = gid.map(|g| format!("group {}", names.group(g.into())));
    let both: Vec<String> = u.into_iter().chain(g).collect();
    (!both.is_empty()).then(|| both.join(", "))
}

/// A change, in words: the library's "what", with owners named.
fn what_text(r: &FileChange, names: &Names) -> String {
    let what = r.what.as_deref().unwrap_or_default();
    if !what.contains("owner") {
        return what.to_owned();
    }
    let side = |e: &Option<Entry>| {
        let (u, g) = ids(e);
        owner_text(u, g, names).unwrap_or_else(|| "owner unset".into())
    };
    let owner = format!("{} -> {}", side(&r.old), side(&r.new));
    what.replace("owner", &owner)
}

/// The lines of a plan for people: a run of more than [`FOLD_OVER`] steps
/// that create (or remove) what lies under a directory the same plan
/// creates (or removes) is one line, with the steps' numbers, as `diff`
/// folds a subtree; `all` (`-v`) keeps every step. Each item is a step's
/// path, if it has one, and its line; the result pairs each line with its
/// step numbers.
pub fn fold_plan(steps: &[(Option<&str>, String)], all: bool) -> Vec<(String, String)> {
    fn verb(line: &str) -> &str {
        line.split(' ').next().unwrap_or_default()
    }
    // Directories the plan creates or removes whole.
    let dirs: std::collections::HashSet<(&str, &str)> = steps
        .iter()
        .filter(|(_, l)| l.contains(" directory "))
        .filter_map(|(p, l)| p.map(|p| (p, verb(l))))
        .collect();
    // The outermost such directory above a step, with the step's verb.
    let under = |k: usize| -> Option<(&str, &str)> {
        let (p, l) = &steps[k];
        let v = verb(l);
        let top = ancestors((*p)?)
            .filter(|a| dirs.contains(&(*a, v)))
            .last()?;
        Some((top, v))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < steps.len() {
        let key = under(i);
        let mut j = i + 1;
        while key.is_some() && j < steps.len() && under(j) == key {
            j += 1;
        }
        match key {
            Some((dir, v)) if !all && (j - i) as u64 > FOLD_OVER => {
                out.push((
                    format!("{}-{}", i + 1, j),
                    format!("{v} {} under {dir}", plural((j - i) as u64, "entry")),
                ));
            }
            _ => {
                for (k, (_, l)) in steps.iter().enumerate().take(j).skip(i) {
                    out.push(((k + 1).to_string(), l.clone()));
                }
            }
        }
        i = j;
    }
    out
}

/// A plan line for people: "(16 bytes, 0123456789ab, mode 0644, owner 0,
/// group 33)" becomes "(16 B, mode 0644, owner root, group www-data)", with
/// the hash kept under `-v`.
pub fn plan_line(line: &str, names: &Names, verbose: bool) -> String {
    let Some(open) = line.find(" (") else {
        return line.to_owned();
    };
    let Some(close) = line[open..].find(')').map(|c| open + c) else {
        return line.to_owned();
    };
    let inner = &line[open + 2..close];
    let mut parts: Vec<String> = Vec::new();
    let mut after_size = false;
    for part in inner.split(", ") {
        let words: Vec<&str> = part.split(' ').collect();
        let text = match words.as_slice() {
            [n, "bytes"] => n.parse().map_or(part.to_owned(), human_bytes),
            ["owner", id] => id
                .parse()
                .map_or(part.to_owned(), |id| format!("owner {}", names.user(id))),
            ["group", id] => id
                .parse()
                .map_or(part.to_owned(), |id| format!("group {}", names.group(id))),
            // A content hash follows the size.
            [h] if after_size && !verbose && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                after_size = false;
                continue;
            }
            _ => part.to_owned(),
        };
        after_size = matches!(words.as_slice(), [_, "bytes"]);
        parts.push(text);
    }
    format!(
        "{} ({}){}",
        &line[..open],
        parts.join(", "),
        &line[close + 1..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            users: HashMap::from([(0, "root".into())]),
            groups: HashMap::from([(33, "www-data".into())]),
        }
    }

    #[test]
    fn plan_lines_read_at_a_glance() {
        let l = "create file /etc/a (2048 bytes, 0123456789ab, mode 0640, owner 0, group 33)";
        assert_eq!(
            plan_line(l, &names(), false),
            "create file /etc/a (2.0 KiB, mode 0640, owner root, group www-data)"
        );
        assert!(plan_line(l, &names(), true).contains("0123456789ab"));
        assert_eq!(
            plan_line("remove file /x", &names(), false),
            "remove file /x"
        );
        let a = "activate generation 2 (0123456789ab)";
        assert_eq!(plan_line(a, &names(), false), a);
    }

    #[test]
    fn an_added_tree_is_one_line() {
        let added = |p: &str, e: Entry| FileChange {
            path: EntryPath::parse(p).expect("path"),
            change: "added",
            old: None,
            new: Some(e),
            what: None,
            template: None,
        };
        let dir = |p: &str| {
            added(
                p,
                Entry::Dir {
                    mode: Some(0o755),
                    uid: None,
                    gid: None,
                    xattrs: Default::default(),
                },
            )
        };
        let file = |p: &str| {
            added(
                p,
                Entry::File {
                    hash: sysgen_store::Hash::of(b"abc"),
                    size: 3,
                    mode: 0o644,
                    uid: Some(0),
                    gid: Some(33),
                    secret: false,
                    xattrs: Default::default(),
                    link: None,
                },
            )
        };
        let mut recs = vec![dir("/srv/www"), file("/srv/www-old"), dir("/srv/www/a")];
        recs.extend((0..11).map(|i| file(&format!("/srv/www/a/{i}"))));
        let lines: Vec<String> = change_lines(&recs, &names(), false)
            .iter()
            .map(|l| anstream::adapter::strip_str(l).to_string())
            .collect();
        assert_eq!(
            lines,
            [
                "+ /srv/www  directory (0755), and 12 entries under it",
                "+ /srv/www-old  file (0644, 3 B, owner root, group www-data)",
            ]
        );
        assert_eq!(change_lines(&recs, &names(), true).len(), 14);
        // A few entries are clearer listed.
        assert_eq!(change_lines(&recs[..5], &names(), false).len(), 5);
    }

    #[test]
    fn a_change_names_owners_and_a_secret_shows_no_size() {
        let file = |secret: bool, uid: Option<u32>| Entry::File {
            hash: sysgen_store::Hash::of(b"abc"),
            size: 3,
            mode: 0o600,
            uid,
            gid: None,
            secret,
            xattrs: Default::default(),
            link: None,
        };
        let recs = [
            FileChange {
                path: EntryPath::parse("/etc/a").expect("path"),
                change: "changed",
                old: Some(file(false, None)),
                new: Some(file(false, Some(0))),
                what: Some("content, owner".into()),
                template: Some("inline template".into()),
            },
            FileChange {
                path: EntryPath::parse("/etc/token").expect("path"),
                change: "removed",
                old: Some(file(true, Some(0))),
                new: None,
                what: None,
                template: None,
            },
        ];
        let lines: Vec<String> = change_lines(&recs, &names(), true)
            .iter()
            .map(|l| anstream::adapter::strip_str(l).to_string())
            .collect();
        assert_eq!(
            lines,
            [
                "~ /etc/a  content, owner unset -> owner root (inline template)",
                "- /etc/token  file (0600, secret, owner root)",
            ]
        );
    }
}
