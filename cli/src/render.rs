//! How the CLI words what the library reports: the tree's changes with
//! `+ - ~` markers, human sizes and owner names, an added or removed
//! subtree folded into one line (`-v` lists it whole), and plan lines with
//! their sizes made human, their owners named, and their hashes shown only
//! under `-v`. The library's own lines stay plain and exact; this is only
//! the people's view of them (`--json` keeps every record).

use std::collections::HashMap;
use std::io::Read;

use serde_json::Value;
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
pub fn change_lines(records: &[Value], names: &Names, all: bool) -> Vec<String> {
    // Added or removed directories: path → (their change, entries under them).
    let mut dirs: HashMap<&str, (&str, u64)> = records
        .iter()
        .filter(|r| change(r) != "changed")
        .filter(|r| r["new"]["type"] == "dir" || r["old"]["type"] == "dir")
        .map(|r| (path(r), (change(r), 0)))
        .collect();
    for r in records {
        for a in ancestors(path(r)) {
            if let Some(d) = dirs.get_mut(a)
                && d.0 == change(r)
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
        let (p, c) = (path(r), change(r));
        if !all && folded(p, c) {
            continue;
        }
        let (sign, entry) = match c {
            "added" => ('+', &r["new"]),
            "removed" => ('-', &r["old"]),
            _ => ('~', &Value::Null),
        };
        let mut text = if sign == '~' {
            what_text(r, names)
        } else {
            entry_text(entry, names, all)
        };
        // A rendered file: which template, and which of its inputs changed
        // (names only, never a secret's value).
        if let Some(t) = r["template"].as_str() {
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

fn change(r: &Value) -> &str {
    r["change"].as_str().unwrap_or_default()
}

fn path(r: &Value) -> &str {
    r["path"].as_str().unwrap_or_default()
}

/// `/a/b/c`'s ancestors below the root: `/a/b`, `/a`.
fn ancestors(p: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(p), |q| q.rfind('/').map(|i| &q[..i]))
        .skip(1)
        .filter(|q| !q.is_empty())
}

/// `file (0644, 1.2 KiB, root:www-data)`, `directory (0750)`, `symlink -> x`.
fn entry_text(e: &Value, names: &Names, verbose: bool) -> String {
    let mut meta = Vec::new();
    if let Some(m) = e["mode"].as_u64() {
        meta.push(format!("{m:04o}"));
    }
    match e["type"].as_str() {
        Some("file") => {
            if e["secret"] == true {
                meta.push("secret".into());
            } else if let Some(s) = e["size"].as_u64() {
                meta.push(human_bytes(s));
            }
        }
        Some("symlink") => {
            return format!("symlink -> {}", e["target"].as_str().unwrap_or_default());
        }
        _ => {}
    }
    if let Some(o) = owner_text(e, names) {
        meta.push(o);
    }
    if verbose && let Some(h) = e["hash"].as_str() {
        meta.push(h.to_owned());
    }
    let kind = if e["type"] == "dir" {
        "directory"
    } else {
        "file"
    };
    if meta.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({})", meta.join(", "))
    }
}

/// `owner root, group www-data`, or whichever of the two is set.
fn owner_text(e: &Value, names: &Names) -> Option<String> {
    let u = e["uid"]
        .as_u64()
        .map(|u| format!("owner {}", names.user(u)));
    let g = e["gid"]
        .as_u64()
        .map(|g| format!("group {}", names.group(g)));
    let both: Vec<String> = u.into_iter().chain(g).collect();
    (!both.is_empty()).then(|| both.join(", "))
}

/// A change, in words: the library's "what", with owners named.
fn what_text(r: &Value, names: &Names) -> String {
    let what = r["what"].as_str().unwrap_or_default();
    if !what.contains("owner") {
        return what.to_owned();
    }
    let (o, n) = (&r["old"], &r["new"]);
    let owner = format!(
        "{} -> {}",
        owner_text(o, names).unwrap_or_else(|| "owner unset".into()),
        owner_text(n, names).unwrap_or_else(|| "owner unset".into())
    );
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
    use serde_json::json;

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
        let dir =
            |p: &str| json!({"path": p, "change": "added", "new": {"type": "dir", "mode": 0o755}});
        let file = |p: &str| json!({"path": p, "change": "added", "new": {"type": "file", "mode": 0o644, "size": 3, "uid": 0, "gid": 33, "hash": "ab"}});
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
}
