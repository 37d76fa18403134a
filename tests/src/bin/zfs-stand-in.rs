//! A STAND-IN for zfs(8), for tests only: ZFS cannot run on the machines
//! that run sysgen's tests (no kernel module). It implements exactly the
//! subset of `zfs` that sysgen's zfs backend calls, with the argument syntax
//! of zfs(8) (OpenZFS 2.x), and refuses anything else with exit 2 and an
//! `INVALID` line in its log, so a test fails when sysgen calls zfs wrongly:
//!
//! ```text
//! zfs create [-p] [-o mountpoint=<abs path>|none] <pool/fs>
//! zfs snapshot <pool/fs>@<snap>
//! zfs set mountpoint=<abs path>|none <pool/fs>
//! zfs rename <pool/fs> <pool/fs>          (same pool; snapshots follow)
//! zfs destroy [-r] <pool/fs>|<pool/fs>@<snap>
//! zfs list -H -p -o name,mountpoint,used <pool/fs>|<pool/fs>@<snap>
//! zfs get -H -p -o value guid <pool/fs>
//! ```
//!
//! It models what sysgen relies on: a mounted dataset's files are at its
//! mountpoint; an unmounted one's are kept aside (here in the stand-in's
//! directory); changing `mountpoint` unmounts and mounts again; a mountpoint
//! directory stays (empty) after an unmount, as with zfs; snapshots are
//! copies, shown under `<mountpoint>/.zfs/snapshot/<snapname>` while the
//! file system is mounted (as zfs shows them, `snapdir`); `destroy` of a
//! dataset with snapshots needs `-r`; each file system has a `guid`, made
//! when it is created and kept through a rename.
//!
//! State and log live in `$ZFS_STAND_IN_DIR`: `state.json` and `calls.log`
//! (one line per call: the arguments, space-separated). The pool `tank`
//! exists from the start.

#![allow(
    clippy::unwrap_used,
    reason = "test stand-in: a panic is a failed test with its message"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

struct Zfs {
    dir: PathBuf,
    /// name -> mountpoint ("none" or an absolute path)
    datasets: BTreeMap<String, String>,
    snapshots: BTreeSet<String>,
    /// name -> guid
    guids: BTreeMap<String, u64>,
}

fn valid_fs(n: &str) -> bool {
    let parts: Vec<&str> = n.split('/').collect();
    parts.len() >= 2
        && parts.iter().all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
        })
}

fn valid_snap(n: &str) -> bool {
    match n.split_once('@') {
        Some((fs, s)) => {
            valid_fs(fs)
                && !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
        }
        None => false,
    }
}

fn valid_mountpoint(v: &str) -> bool {
    v == "none" || (v.starts_with('/') && !v.contains("//"))
}

/// Copies a dataset's files (never its `.zfs` control directory).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() == ".zfs" {
            continue;
        }
        let t = e.file_type().unwrap();
        let dst = to.join(e.file_name());
        if t.is_dir() {
            copy_dir(&e.path(), &dst);
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path()).unwrap(), &dst).unwrap();
        } else {
            fs::copy(e.path(), &dst).unwrap();
        }
    }
}

fn size(p: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(p) else { return 0 };
    rd.flatten()
        .filter(|e| e.file_name() != ".zfs")
        .map(|e| {
            let md = fs::symlink_metadata(e.path()).unwrap();
            if md.is_dir() {
                size(&e.path())
            } else {
                md.len()
            }
        })
        .sum()
}

impl Zfs {
    fn load(dir: &Path) -> Zfs {
        let state: Value = fs::read(dir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| json!({"datasets": {"tank": "none"}, "snapshots": []}));
        Zfs {
            dir: dir.to_owned(),
            datasets: serde_json::from_value(state["datasets"].clone()).unwrap(),
            snapshots: serde_json::from_value(state["snapshots"].clone()).unwrap(),
            guids: serde_json::from_value(state["guids"].clone()).unwrap_or_default(),
        }
    }

    /// A new guid: unique among the file systems, like zfs's random ones.
    fn new_guid(&mut self, name: &str) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let mut g = nanos ^ u64::from(std::process::id()) << 32;
        while self.guids.values().any(|x| *x == g) {
            g += 1;
        }
        self.guids.insert(name.to_owned(), g);
    }

    fn save(&self) {
        let v =
            json!({"datasets": self.datasets, "snapshots": self.snapshots, "guids": self.guids});
        fs::write(
            self.dir.join("state.json"),
            serde_json::to_vec_pretty(&v).unwrap(),
        )
        .unwrap();
    }

    /// Where an unmounted dataset's files are kept.
    fn aside(&self, name: &str) -> PathBuf {
        self.dir.join("data").join(name.replace('/', "%"))
    }

    fn files(&self, name: &str) -> PathBuf {
        match self.datasets.get(name).map(String::as_str) {
            Some("none") | None => self.aside(name),
            Some(mp) => PathBuf::from(mp),
        }
    }

    fn mount(&self, name: &str) -> Result<(), String> {
        let mp = PathBuf::from(&self.datasets[name]);
        if mp.exists() {
            if fs::read_dir(&mp)
                .map_err(|e| e.to_string())?
                .next()
                .is_some()
            {
                return Err(format!(
                    "cannot mount '{}': directory is not empty",
                    mp.display()
                ));
            }
            fs::remove_dir(&mp).map_err(|e| e.to_string())?;
        }
        fs::create_dir_all(mp.parent().unwrap()).map_err(|e| e.to_string())?;
        fs::create_dir_all(self.aside(name)).map_err(|e| e.to_string())?;
        fs::rename(self.aside(name), &mp).map_err(|e| e.to_string())
    }

    /// zfs shows a mounted file system's snapshots, read-only, under
    /// `<mountpoint>/.zfs/snapshot/<snapname>`; the stand-in keeps real
    /// copies there, refreshed after every call.
    fn sync_snapdirs(&self) {
        for (name, mp) in &self.datasets {
            if mp == "none" {
                continue;
            }
            let ctl = Path::new(mp).join(".zfs");
            let _ = fs::remove_dir_all(&ctl);
            let prefix = format!("{name}@");
            for s in self.snapshots.iter().filter(|s| s.starts_with(&prefix)) {
                copy_dir(
                    &self.dir.join("snaps").join(s.replace('/', "%")),
                    &ctl.join("snapshot").join(&s[prefix.len()..]),
                );
            }
        }
    }

    fn unmount(&self, name: &str) -> Result<(), String> {
        let mp = PathBuf::from(&self.datasets[name]);
        let _ = fs::remove_dir_all(mp.join(".zfs"));
        fs::create_dir_all(self.dir.join("data")).map_err(|e| e.to_string())?;
        fs::rename(&mp, self.aside(name))
            .map_err(|e| format!("cannot unmount '{}': {e}", mp.display()))?;
        // zfs leaves the (empty) mountpoint directory behind.
        fs::create_dir(&mp).map_err(|e| e.to_string())
    }

    fn missing(n: &str) -> String {
        format!("cannot open '{n}': dataset does not exist")
    }

    fn run(&mut self, args: &[String]) -> Result<String, Result<String, String>> {
        // Ok(stdout); Err(Ok(runtime error, exit 1)); Err(Err(usage error, exit 2)).
        let usage = |why: &str| Err(Err(format!("invalid arguments: {why}")));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        match a.as_slice() {
            ["create", rest @ ..] => {
                let mut parents = false;
                let mut mountpoint = None;
                let mut i = 0;
                while i + 1 < rest.len() {
                    match rest[i] {
                        "-p" => parents = true,
                        "-o" => {
                            i += 1;
                            match rest[i].split_once('=') {
                                Some(("mountpoint", v)) if valid_mountpoint(v) => {
                                    mountpoint = Some(v.to_owned())
                                }
                                _ => {
                                    return usage(
                                        "create -o takes mountpoint=<abs path>|none here",
                                    );
                                }
                            }
                        }
                        _ => return usage("create [-p] [-o property=value]... <filesystem>"),
                    }
                    i += 1;
                }
                let [name] = &rest[i..] else {
                    return usage("create needs exactly one filesystem");
                };
                if !valid_fs(name) {
                    return usage("not a filesystem name");
                }
                if self.datasets.contains_key(*name) {
                    return Err(Ok(format!(
                        "cannot create '{name}': dataset already exists"
                    )));
                }
                let parent = &name[..name.rfind('/').unwrap()];
                if !self.datasets.contains_key(parent) {
                    if !parents {
                        return Err(Ok(format!("cannot create '{name}': parent does not exist")));
                    }
                    self.datasets.insert(parent.to_owned(), "none".into());
                    self.new_guid(parent);
                }
                self.datasets.insert(
                    name.to_string(),
                    mountpoint.unwrap_or_else(|| "none".into()),
                );
                self.new_guid(name);
                fs::create_dir_all(self.aside(name)).unwrap();
                if self.datasets[*name] != "none" {
                    self.mount(name).map_err(Ok)?;
                }
                Ok(String::new())
            }
            ["snapshot", s] => {
                if !valid_snap(s) {
                    return usage("snapshot <filesystem>@<snapname>");
                }
                let (fs_name, _) = s.split_once('@').unwrap();
                if !self.datasets.contains_key(fs_name) {
                    return Err(Ok(Self::missing(fs_name)));
                }
                if self.snapshots.contains(*s) {
                    return Err(Ok(format!(
                        "cannot create snapshot '{s}': dataset already exists"
                    )));
                }
                copy_dir(
                    &self.files(fs_name),
                    &self.dir.join("snaps").join(s.replace('/', "%")),
                );
                self.snapshots.insert(s.to_string());
                Ok(String::new())
            }
            ["set", prop, name] => {
                let Some(("mountpoint", v)) = prop.split_once('=') else {
                    return usage("set mountpoint=<value> <filesystem> (only mountpoint here)");
                };
                if !valid_mountpoint(v) || !valid_fs(name) {
                    return usage("set mountpoint=<abs path>|none <filesystem>");
                }
                if !self.datasets.contains_key(*name) {
                    return Err(Ok(Self::missing(name)));
                }
                if self.datasets[*name] != "none" {
                    self.unmount(name).map_err(Ok)?;
                }
                self.datasets.insert(name.to_string(), v.to_owned());
                if v != "none" {
                    self.mount(name).map_err(Ok)?;
                }
                Ok(String::new())
            }
            ["rename", from, to] => {
                if !valid_fs(from) || !valid_fs(to) {
                    return usage("rename <filesystem> <filesystem>");
                }
                if from.split('/').next() != to.split('/').next() {
                    return usage("rename across pools");
                }
                let Some(mp) = self.datasets.remove(*from) else {
                    return Err(Ok(Self::missing(from)));
                };
                if self.datasets.contains_key(*to) {
                    self.datasets.insert(from.to_string(), mp);
                    return Err(Ok(format!(
                        "cannot rename to '{to}': dataset already exists"
                    )));
                }
                if mp == "none" {
                    fs::rename(self.aside(from), self.aside(to)).unwrap();
                }
                self.datasets.insert(to.to_string(), mp);
                if let Some(g) = self.guids.remove(*from) {
                    self.guids.insert(to.to_string(), g);
                }
                let moved: Vec<String> = self
                    .snapshots
                    .iter()
                    .filter(|s| s.starts_with(&format!("{from}@")))
                    .cloned()
                    .collect();
                for s in moved {
                    self.snapshots.remove(&s);
                    let new = format!("{to}{}", &s[from.len()..]);
                    let snaps = self.dir.join("snaps");
                    fs::rename(
                        snaps.join(s.replace('/', "%")),
                        snaps.join(new.replace('/', "%")),
                    )
                    .unwrap();
                    self.snapshots.insert(new);
                }
                Ok(String::new())
            }
            ["destroy", rest @ ..] => {
                let (recursive, name) = match rest {
                    ["-r", n] => (true, *n),
                    [n] => (false, *n),
                    _ => return usage("destroy [-r] <filesystem|snapshot>"),
                };
                if name.contains('@') {
                    if !valid_snap(name) {
                        return usage("not a snapshot name");
                    }
                    if !self.snapshots.remove(name) {
                        return Err(Ok(Self::missing(name)));
                    }
                    fs::remove_dir_all(self.dir.join("snaps").join(name.replace('/', "%")))
                        .unwrap();
                    return Ok(String::new());
                }
                if !valid_fs(name) {
                    return usage("not a filesystem name");
                }
                if !self.datasets.contains_key(name) {
                    return Err(Ok(Self::missing(name)));
                }
                let snaps: Vec<String> = self
                    .snapshots
                    .iter()
                    .filter(|s| s.starts_with(&format!("{name}@")))
                    .cloned()
                    .collect();
                if !snaps.is_empty() && !recursive {
                    return Err(Ok(format!(
                        "cannot destroy '{name}': filesystem has children\nuse '-r' to destroy the following datasets:\n{}",
                        snaps.join("\n")
                    )));
                }
                for s in snaps {
                    self.snapshots.remove(&s);
                    fs::remove_dir_all(self.dir.join("snaps").join(s.replace('/', "%"))).unwrap();
                }
                if self.datasets[name] != "none" {
                    self.unmount(name).map_err(Ok)?;
                }
                self.datasets.remove(name);
                self.guids.remove(name);
                let _ = fs::remove_dir_all(self.aside(name));
                Ok(String::new())
            }
            ["list", "-H", "-p", "-o", "name,mountpoint,used", name] => {
                if name.contains('@') {
                    if !valid_snap(name) {
                        return usage("not a snapshot name");
                    }
                    if !self.snapshots.contains(*name) {
                        return Err(Ok(Self::missing(name)));
                    }
                    let used = size(&self.dir.join("snaps").join(name.replace('/', "%")));
                    return Ok(format!("{name}\t-\t{used}\n"));
                }
                if !valid_fs(name) && !self.datasets.contains_key(*name) {
                    return usage("not a dataset name");
                }
                match self.datasets.get(*name) {
                    Some(mp) => Ok(format!("{name}\t{mp}\t{}\n", size(&self.files(name)))),
                    None => Err(Ok(Self::missing(name))),
                }
            }
            ["get", "-H", "-p", "-o", "value", "guid", name] => {
                if !valid_fs(name) && !self.datasets.contains_key(*name) {
                    return usage("not a dataset name");
                }
                if !self.datasets.contains_key(*name) {
                    return Err(Ok(Self::missing(name)));
                }
                Ok(format!("{}\n", self.guids.get(*name).copied().unwrap_or(0)))
            }
            _ => usage("not a subcommand and options of zfs(8) that this stand-in knows"),
        }
    }
}

fn main() {
    let dir = PathBuf::from(std::env::var_os("ZFS_STAND_IN_DIR").expect("ZFS_STAND_IN_DIR"));
    fs::create_dir_all(&dir).unwrap();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("calls.log"))
        .unwrap();
    let mut zfs = Zfs::load(&dir);
    let result = zfs.run(&args);
    match result {
        Ok(out) => {
            writeln!(log, "zfs {}", args.join(" ")).unwrap();
            zfs.sync_snapdirs();
            zfs.save();
            print!("{out}");
        }
        Err(Ok(err)) => {
            writeln!(log, "zfs {}", args.join(" ")).unwrap();
            eprintln!("{err}");
            std::process::exit(1);
        }
        Err(Err(usage)) => {
            writeln!(log, "INVALID zfs {}: {usage}", args.join(" ")).unwrap();
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
