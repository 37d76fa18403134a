//! `RootDir`, the one writer, through its public API on real directories:
//! what each operation leaves (whole trees compared), that it never follows
//! a symlink out of the root, and that no temporary file is left behind.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use sysgen_generations::rootfs::{Live, Owner, Removed, RootDir};
use sysgen_schema::EntryPath;

/// A scratch `root/` to manage and an `outside/` next to it that no
/// operation may ever change.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir(&root).expect("mkdir root");
        fs::create_dir(&outside).expect("mkdir outside");
        fs::write(outside.join("secret"), "host\n").expect("write outside");
        World {
            _dir: dir,
            root,
            outside,
        }
    }

    fn open(&self) -> RootDir {
        RootDir::open(&self.root).expect("open root")
    }

    fn at(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }
}

fn p(s: &str) -> EntryPath {
    EntryPath::parse(s).expect("a valid test path")
}

/// Every entry below `dir`, one line each: `path type mode uid:gid content|target`.
fn tree(dir: &Path) -> String {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).expect("read_dir") {
            let path = e.expect("entry").path();
            let rel = format!("/{}", path.strip_prefix(base).expect("below").display());
            let md = fs::symlink_metadata(&path).expect("lstat");
            let head = format!(
                "{rel} {:04o} {}:{}",
                md.permissions().mode() & 0o7777,
                md.uid(),
                md.gid()
            );
            let line = if md.file_type().is_symlink() {
                let t = fs::read_link(&path).expect("readlink");
                format!("{rel} symlink {}:{} -> {}", md.uid(), md.gid(), t.display())
            } else if md.is_dir() {
                walk(base, &path, out);
                format!("{head} dir")
            } else if md.is_file() {
                let text = fs::read_to_string(&path).expect("read");
                format!("{head} file {text:?}")
            } else {
                format!("{head} special")
            };
            out.insert(rel, line);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out.into_values().collect::<Vec<_>>().join("\n")
}

fn lines(l: &[&str]) -> String {
    l.join("\n")
}

fn write(root: &RootDir, path: &str, mode: u32, owner: Owner, text: &str) -> Result<(), String> {
    root.put_file(&p(path), mode, owner, &mut |w| w.write_all(text.as_bytes()))
        .map_err(|e| e.to_string())
}

const ROOT: Owner = Owner {
    uid: None,
    gid: None,
};

#[test]
fn put_file_writes_content_mode_and_owner_and_replaces_what_is_there() {
    let w = World::new();
    let r = w.open();
    r.make_dir(&p("/etc"), Some(0o755), ROOT).unwrap();
    write(
        &r,
        "/etc/a",
        0o640,
        Owner {
            uid: Some(33),
            gid: Some(34),
        },
        "one\n",
    )
    .unwrap();
    // setuid bits survive the chown, because the mode is set after it.
    write(&r, "/etc/b", 0o4755, ROOT, "two\n").unwrap();
    // Over an existing file, and over a symlink (replaced, never followed).
    write(&r, "/etc/b", 0o600, ROOT, "three\n").unwrap();
    symlink(w.outside.join("secret"), w.at("/etc/link")).unwrap();
    write(&r, "/etc/link", 0o644, ROOT, "four\n").unwrap();
    // Over an empty directory (left by an interrupted plan).
    fs::create_dir(w.at("/etc/empty")).unwrap();
    write(&r, "/etc/empty", 0o644, ROOT, "five\n").unwrap();
    assert_eq!(
        tree(&w.root),
        lines(&[
            "/etc 0755 0:0 dir",
            "/etc/a 0640 33:34 file \"one\\n\"",
            "/etc/b 0600 0:0 file \"three\\n\"",
            "/etc/empty 0644 0:0 file \"five\\n\"",
            "/etc/link 0644 0:0 file \"four\\n\"",
        ])
    );
    assert_eq!(
        fs::read_to_string(w.outside.join("secret")).unwrap(),
        "host\n"
    );
}

#[test]
fn put_file_refuses_a_directory_with_entries_and_keeps_it() {
    let w = World::new();
    let r = w.open();
    fs::create_dir_all(w.at("/d/sub")).unwrap();
    let before = tree(&w.root);
    let e = write(&r, "/d", 0o644, ROOT, "x").unwrap_err();
    assert!(e.starts_with("/d: rename into place:"), "{e}");
    assert_eq!(tree(&w.root), before, "no temporary file is left");
}

#[test]
fn a_failed_fill_leaves_the_old_file_and_no_temporary_file() {
    let w = World::new();
    let r = w.open();
    write(&r, "/f", 0o644, ROOT, "old\n").unwrap();
    let before = tree(&w.root);
    let e = r
        .put_file(&p("/f"), 0o644, ROOT, &mut |out| {
            out.write_all(b"half")?;
            Err(std::io::Error::other("the source vanished"))
        })
        .unwrap_err();
    assert_eq!(e.to_string(), "/f: write: the source vanished");
    assert_eq!(tree(&w.root), before);
}

#[test]
fn put_symlink_creates_and_replaces() {
    let w = World::new();
    let r = w.open();
    r.put_symlink(&p("/l"), "/etc/target", ROOT).unwrap();
    write(&r, "/f", 0o644, ROOT, "file\n").unwrap();
    r.put_symlink(
        &p("/f"),
        "../elsewhere",
        Owner {
            uid: Some(5),
            gid: Some(6),
        },
    )
    .unwrap();
    assert_eq!(
        tree(&w.root),
        lines(&[
            "/f symlink 5:6 -> ../elsewhere",
            "/l symlink 0:0 -> /etc/target",
        ])
    );
    assert_eq!(
        r.inspect(&p("/f")).unwrap(),
        Live::Symlink {
            target: "../elsewhere".into(),
            uid: 5,
            gid: 6
        }
    );
}

#[test]
fn make_dir_creates_0755_by_default_and_sets_a_declared_mode_on_an_existing_one() {
    let w = World::new();
    let r = w.open();
    // The umask must not matter.
    assert!(r.make_dir(&p("/a"), None, ROOT).unwrap());
    assert!(
        r.make_dir(
            &p("/b"),
            Some(0o700),
            Owner {
                uid: Some(7),
                gid: None
            }
        )
        .unwrap()
    );
    assert!(
        !r.make_dir(&p("/b"), Some(0o750), ROOT).unwrap(),
        "already there"
    );
    // An existing directory without a declared mode keeps its own.
    fs::create_dir(w.at("/c")).unwrap();
    fs::set_permissions(w.at("/c"), fs::Permissions::from_mode(0o711)).unwrap();
    assert!(!r.make_dir(&p("/c"), None, ROOT).unwrap());
    r.make_dirs(&p("/x/y/z")).unwrap();
    assert_eq!(
        tree(&w.root),
        lines(&[
            "/a 0755 0:0 dir",
            "/b 0750 7:0 dir",
            "/c 0711 0:0 dir",
            "/x 0755 0:0 dir",
            "/x/y 0755 0:0 dir",
            "/x/y/z 0755 0:0 dir",
        ])
    );
}

#[test]
fn set_meta_changes_files_and_directories_but_never_a_symlinks_target() {
    let w = World::new();
    let r = w.open();
    write(&r, "/f", 0o644, ROOT, "f\n").unwrap();
    r.make_dir(&p("/d"), None, ROOT).unwrap();
    symlink(w.outside.join("secret"), w.at("/l")).unwrap();
    r.set_meta(
        &p("/f"),
        Some(0o600),
        Owner {
            uid: Some(1),
            gid: Some(2),
        },
    )
    .unwrap();
    r.set_meta(&p("/d"), Some(0o700), ROOT).unwrap();
    r.set_meta(
        &p("/l"),
        Some(0o777),
        Owner {
            uid: Some(3),
            gid: Some(4),
        },
    )
    .unwrap();
    let link = format!("/l symlink 3:4 -> {}", w.outside.join("secret").display());
    assert_eq!(
        tree(&w.root),
        lines(&["/d 0700 0:0 dir", "/f 0600 1:2 file \"f\\n\"", &link])
    );
    let target = fs::metadata(w.outside.join("secret")).unwrap();
    assert_eq!(
        (target.mode() & 0o7777, target.uid()),
        (0o644, 0),
        "the symlink's target outside the root is untouched"
    );
}

#[test]
fn remove_converges_whatever_it_finds() {
    let w = World::new();
    let r = w.open();
    write(&r, "/f", 0o644, ROOT, "f\n").unwrap();
    r.put_symlink(&p("/l"), "f", ROOT).unwrap();
    r.make_dirs(&p("/empty")).unwrap();
    r.make_dirs(&p("/full/x")).unwrap();
    assert_eq!(r.remove(&p("/f")).unwrap(), Removed::Gone);
    assert_eq!(r.remove(&p("/l")).unwrap(), Removed::Gone);
    assert_eq!(r.remove(&p("/empty")).unwrap(), Removed::Gone);
    assert_eq!(r.remove(&p("/full")).unwrap(), Removed::KeptNotEmpty);
    assert_eq!(r.remove(&p("/f")).unwrap(), Removed::WasAbsent);
    assert_eq!(r.remove(&p("/no/such/path")).unwrap(), Removed::WasAbsent);
    assert_eq!(
        tree(&w.root),
        lines(&["/full 0755 0:0 dir", "/full/x 0755 0:0 dir"])
    );
}

#[test]
fn inspect_reports_every_kind_without_following_symlinks() {
    let w = World::new();
    let r = w.open();
    write(
        &r,
        "/f",
        0o640,
        Owner {
            uid: Some(9),
            gid: Some(8),
        },
        "12345",
    )
    .unwrap();
    r.make_dir(&p("/d"), Some(0o701), ROOT).unwrap();
    symlink(&w.outside, w.at("/out")).unwrap();
    nix::unistd::mkfifo(
        &w.at("/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    match r.inspect(&p("/f")).unwrap() {
        Live::File(m) => assert_eq!((m.mode, m.uid, m.gid, m.size), (0o640, 9, 8, 5)),
        other => panic!("{other:?}"),
    }
    match r.inspect(&p("/d")).unwrap() {
        Live::Dir(m) => assert_eq!(m.mode, 0o701),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.inspect(&p("/nothing")).unwrap(), Live::Absent);
    assert_eq!(r.inspect(&p("/nothing/below")).unwrap(), Live::Absent);
    assert_eq!(r.inspect(&p("/fifo")).unwrap(), Live::Special("fifo"));
    assert_eq!(
        r.inspect(&p("/out/secret")).unwrap(),
        Live::Blocked {
            at: p("/out"),
            what: "symlink"
        }
    );
    assert_eq!(
        r.inspect(&p("/f/below")).unwrap(),
        Live::Blocked {
            at: p("/f"),
            what: "file"
        }
    );
    let (hash, size) = r.hash_file(&p("/f")).unwrap();
    assert_eq!((hash, size), (blake3::hash(b"12345"), 5));
    assert!(r.hash_file(&p("/fifo")).is_err(), "a fifo is never read");
    assert!(
        r.open_file(&p("/out")).is_err(),
        "a symlink is never opened"
    );
}

#[test]
fn a_symlinked_parent_is_refused_and_nothing_outside_changes() {
    let w = World::new();
    let r = w.open();
    symlink(&w.outside, w.at("/etc")).unwrap();
    let outside = tree(&w.outside);
    let root = tree(&w.root);
    let owner = Owner {
        uid: Some(1),
        gid: Some(1),
    };
    assert!(write(&r, "/etc/secret", 0o666, owner, "pwned\n").is_err());
    assert!(write(&r, "/etc/new", 0o666, owner, "pwned\n").is_err());
    assert!(r.put_symlink(&p("/etc/l"), "/", owner).is_err());
    assert!(r.make_dir(&p("/etc/d"), Some(0o777), owner).is_err());
    assert!(r.make_dirs(&p("/etc/d/e")).is_err());
    assert!(r.set_meta(&p("/etc/secret"), Some(0o777), owner).is_err());
    assert_eq!(r.remove(&p("/etc/secret")).unwrap(), Removed::WasAbsent);
    assert!(r.list_dir(&p("/etc")).is_err());
    // A deeper symlink, and `..` can never be spelled (EntryPath refuses it).
    r.make_dirs(&p("/a/b")).unwrap();
    symlink("../../../outside", w.at("/a/b/c")).unwrap();
    assert!(write(&r, "/a/b/c/secret", 0o666, owner, "pwned\n").is_err());
    assert!(EntryPath::parse("/a/../../outside/secret").is_err());
    assert_eq!(tree(&w.outside), outside);
    let root_after = lines(&[
        &root,
        "/a 0755 0:0 dir",
        "/a/b 0755 0:0 dir",
        "/a/b/c symlink 0:0 -> ../../../outside",
    ]);
    let mut want: Vec<&str> = root_after.lines().collect();
    want.sort_unstable();
    assert_eq!(tree(&w.root), want.join("\n"), "no temporary file is left");
}

#[test]
fn clean_temps_removes_only_sysgen_temporary_files() {
    let w = World::new();
    let r = w.open();
    r.make_dirs(&p("/etc")).unwrap();
    fs::write(w.at("/etc/.sysgen-tmp.1.0.motd"), "torn").unwrap();
    fs::write(w.at("/.sysgen-tmp.1.1.top"), "torn").unwrap();
    fs::write(w.at("/etc/keep"), "mine").unwrap();
    r.clean_temps(Some(&p("/etc"))).unwrap();
    r.clean_temps(None).unwrap();
    // An absent directory, or one behind a symlink, has nothing to clean.
    r.clean_temps(Some(&p("/absent"))).unwrap();
    symlink(&w.outside, w.at("/out")).unwrap();
    fs::write(w.outside.join(".sysgen-tmp.1.2.x"), "not ours").unwrap();
    r.clean_temps(Some(&p("/out"))).unwrap();
    assert!(w.outside.join(".sysgen-tmp.1.2.x").exists());
    let link = format!("/out symlink 0:0 -> {}", w.outside.display());
    assert_eq!(
        tree(&w.root),
        lines(&[
            "/etc 0755 0:0 dir",
            "/etc/keep 0644 0:0 file \"mine\"",
            &link
        ])
    );
}

#[test]
fn rename_copy_tree_and_remove_tree_stay_inside_the_root() {
    let w = World::new();
    let r = w.open();
    r.make_dirs(&p("/srv/data/sub")).unwrap();
    write(&r, "/srv/data/sub/f", 0o600, ROOT, "data\n").unwrap();
    r.put_symlink(&p("/srv/data/l"), "/etc/passwd", ROOT)
        .unwrap();
    r.copy_tree(&p("/srv/data"), &p("/srv/copy")).unwrap();
    assert_eq!(r.tree_size(&p("/srv/copy")).unwrap(), 5);
    r.rename(&p("/srv/data"), &p("/srv/moved")).unwrap();
    r.remove_tree(&p("/srv/moved")).unwrap();
    r.remove_tree(&p("/srv/absent")).unwrap();
    assert_eq!(
        tree(&w.root),
        lines(&[
            "/srv 0755 0:0 dir",
            "/srv/copy 0755 0:0 dir",
            "/srv/copy/l symlink 0:0 -> /etc/passwd",
            "/srv/copy/sub 0755 0:0 dir",
            "/srv/copy/sub/f 0600 0:0 file \"data\\n\"",
        ])
    );
    r.sync().unwrap();
}
