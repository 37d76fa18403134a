//! Trees and files carry what `cp -a` carries (issue 16, item 7): numeric
//! owner and group, set-id bits, file capabilities, POSIX ACLs, `user.*`
//! attributes (when the tree asks) and hard links. The main test deploys a
//! debootstrapped Debian root's `/usr` and `/etc` as trees onto an empty
//! root and compares the whole result with the source, entry by entry,
//! metadata and link structure included; then it changes each kind of
//! metadata on the root by hand and checks that `verify` names it.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use serde_json::json;
use sysgen_tests::packages::debian_root;
use sysgen_tests::{TestEnv, s};

const CAP: &str = "security.capability";
const ACL: &str = "system.posix_acl_access";
const ACL_DEFAULT: &str = "system.posix_acl_default";

/// `security.capability` for `cap_net_raw=ep`, as `setcap` writes it.
const NET_RAW_EP: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// A POSIX ACL (the xattr's binary form): owner rw, user 1000 r, group r,
/// mask r, other none.
fn acl() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, 4, 1000),
        (0x04, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setxattr {name} on {}: {e}", p.display()));
}

fn remove_xattr(p: &Path, name: &str) {
    rustix::fs::lremovexattr(p, name)
        .unwrap_or_else(|e| panic!("removexattr {name} on {}: {e}", p.display()));
}

/// The attributes sysgen keeps: capability, ACLs, `user.*`; hex values.
fn xattrs(p: &Path) -> String {
    let mut buf = vec![0u8; 64 * 1024];
    let n = rustix::fs::llistxattr(p, &mut buf[..]).unwrap_or(0);
    let mut names: Vec<String> = buf[..n]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|n| [CAP, ACL, ACL_DEFAULT].contains(&n.as_str()) || n.starts_with("user."))
        .collect();
    names.sort();
    names
        .iter()
        .map(|name| {
            let mut v = vec![0u8; 64 * 1024];
            let k = rustix::fs::lgetxattr(p, name.as_str(), &mut v[..]).unwrap();
            let hex: String = v[..k].iter().map(|b| format!("{b:02x}")).collect();
            format!(" {name}={hex}")
        })
        .collect()
}

/// Every file, directory and symlink under `dir` (sockets, fifos and device
/// nodes are not sysgen's): type, mode, owner, group, content, extended
/// attributes, and for a file with several names in the tree, the first
/// of them: the link structure.
fn dump(dir: &Path) -> String {
    let mut lines = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for ent in fs::read_dir(&d).unwrap() {
            let path = ent.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            let md = fs::symlink_metadata(&path).unwrap();
            let meta = format!(
                "{:04o} {}:{}",
                md.permissions().mode() & 0o7777,
                md.uid(),
                md.gid()
            );
            let line = if md.file_type().is_symlink() {
                format!(
                    "symlink {}:{} -> {}",
                    md.uid(),
                    md.gid(),
                    fs::read_link(&path).unwrap().display()
                )
            } else if md.is_dir() {
                stack.push(path.clone());
                format!("dir {meta}{}", xattrs(&path))
            } else if md.is_file() {
                inodes
                    .entry((md.dev(), md.ino()))
                    .or_default()
                    .push(rel.clone());
                let hash = blake3::hash(&fs::read(&path).unwrap());
                format!("file {meta} {}{}", &hash.to_hex()[..16], xattrs(&path))
            } else {
                continue;
            };
            lines.insert(rel, line);
        }
    }
    for mut names in inodes.into_values().filter(|n| n.len() > 1) {
        names.sort();
        for n in &names {
            if let Some(l) = lines.get_mut(n) {
                l.push_str(&format!(" linked-with={}", names[0]));
            }
        }
    }
    lines
        .into_iter()
        .map(|(p, l)| format!("{p} {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A copy of the debootstrapped root's `/usr` and `/etc`, with what a
/// minimal root lacks: a capability (as on `ping`), an ACL and a default
/// ACL, a `user.*` attribute, a fifo (skipped). Its hard links (perl) and
/// set-gid `shadow` binaries are the root's own.
fn source(env: &TestEnv) -> std::path::PathBuf {
    let deb = debian_root();
    let src = env.dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for d in ["usr", "etc"] {
        let o = Command::new("cp")
            .arg("-a")
            .arg(deb.join(d))
            .arg(&src)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "cp: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    fs::copy(src.join("usr/bin/true"), src.join("usr/bin/ping")).unwrap();
    set_xattr(&src.join("usr/bin/ping"), CAP, &NET_RAW_EP);
    set_xattr(&src.join("etc/hostname"), ACL, &acl());
    set_xattr(&src.join("etc/default"), ACL_DEFAULT, &acl());
    set_xattr(&src.join("etc/issue"), "user.origin", b"debian");
    let fifo = src.join("etc/a-fifo");
    let o = Command::new("mkfifo").arg(&fifo).output().unwrap();
    assert!(o.status.success());
    src
}

#[test]
fn a_debian_usr_and_etc_deployed_as_trees_equal_their_source() {
    let env = TestEnv::new();
    let src = source(&env);
    // An empty root: no /etc of its own.
    fs::remove_dir_all(env.at("/etc")).unwrap();
    let cfg = env.config(
        "trees.json",
        json!({
            "trees": {
                "/usr": { "source": s(&src.join("usr")), "xattrs": true },
                "/etc": { "source": s(&src.join("etc")), "xattrs": true }
            }
        }),
    );
    env.switch(&cfg);
    for d in ["usr", "etc"] {
        let want = dump(&src.join(d));
        let got = dump(&env.at(&format!("/{d}")));
        assert!(want.contains("ping file 0755 0:0") && want.contains(CAP) || d == "etc");
        assert!(
            got == want,
            "/{d} differs from its source:\n{}",
            first_diff(&want, &got)
        );
    }
    // What the issue saw lost, checked by name.
    let chage = fs::metadata(env.at("/usr/bin/chage")).unwrap();
    assert_eq!((chage.gid(), chage.mode() & 0o7777), (42, 0o2755));
    assert_eq!(
        fs::metadata(env.at("/usr/bin/perl")).unwrap().ino(),
        fs::metadata(env.at("/usr/bin/perl5.36.0")).unwrap().ino()
    );
    assert!(!env.at("/etc/a-fifo").exists());
    env.run(&["verify"]).ok();

    // Drift in each of them, named by verify.
    remove_xattr(&env.at("/usr/bin/ping"), CAP);
    remove_xattr(&env.at("/etc/hostname"), ACL);
    std::os::unix::fs::chown(env.at("/usr/bin/chage"), None, Some(0)).unwrap();
    let perl = env.at("/usr/bin/perlthanks");
    let copy = env.at("/usr/bin/perlthanks.copy");
    fs::copy(&perl, &copy).unwrap();
    fs::rename(&copy, &perl).unwrap();
    let r = env.run(&["verify"]).expect(1);
    for want in [
        "/usr/bin/ping: extended attributes differ: security.capability missing",
        "/etc/hostname: extended attributes differ: system.posix_acl_access missing",
        // The chown cleared the set-gid bit too, which verify names first.
        "/usr/bin/chage: mode 0755, expected 2755",
        "/usr/bin/perlthanks: is no longer a hard link of /usr/bin/perlbug",
    ] {
        assert!(r.stdout.contains(want), "no {want:?} in:\n{}", r.stdout);
    }
}

/// The first line where two dumps differ, for a readable failure.
fn first_diff(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    for i in 0..w.len().max(g.len()) {
        let (a, b) = (w.get(i), g.get(i));
        if a != b {
            return format!("source: {a:?}\nroot:   {b:?}");
        }
    }
    String::new()
}

/// `files` declare a capability and attributes; a change of the
/// capability, or of the owner (which clears it on the root), is applied;
/// an invalid one is refused with exit 2 before anything is built.
#[test]
fn files_declare_caps_and_xattrs() {
    let env = TestEnv::new();
    env.write_cfg("tool", "#!/bin/sh\n");
    let cfg = |caps: &str, owner: u32| {
        env.config(
            "c.json",
            json!({ "files": { "/usr/local/bin/tool": {
                "source": "tool", "mode": "0755", "owner": owner, "caps": caps,
                "xattrs": { "user.note": "hi" }
            } } }),
        )
    };
    let c = cfg("cap_net_raw=ep", 0);
    let plan = env
        .run(&["--json", "switch", s(&c), "--dry-run"])
        .ok()
        .steps();
    assert!(
        plan.iter()
            .any(|l| l.contains("caps cap_net_raw=ep, 1 other xattr")),
        "{plan:#?}"
    );
    env.switch(&c);
    let tool = env.at("/usr/local/bin/tool");
    assert_eq!(
        xattrs(&tool),
        format!(
            " {CAP}={} user.note=6869",
            NET_RAW_EP
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    );
    env.run(&["verify"]).ok();
    // Another capability; then another owner, whose chown clears it.
    env.switch(&cfg("cap_net_bind_service+ep", 0));
    assert!(xattrs(&tool).contains(&format!("{CAP}=01000002000400")));
    let d = env.run(&["diff", "1", "2"]).ok();
    assert!(
        d.stdout
            .contains("~ /usr/local/bin/tool  caps cap_net_raw=ep -> cap_net_bind_service=ep"),
        "{}",
        d.stdout
    );
    env.switch(&cfg("cap_net_bind_service+ep", 33));
    assert!(xattrs(&tool).contains(&format!("{CAP}=01000002000400")));
    assert_eq!(fs::metadata(&tool).unwrap().uid(), 33);
    env.run(&["verify"]).ok();
    // A capability added by hand is drift.
    env.switch(&env.config(
        "plain.json",
        json!({ "files": { "/usr/local/bin/tool": { "source": "tool", "mode": "0755" } } }),
    ));
    assert_eq!(xattrs(&tool), "");
    set_xattr(&tool, CAP, &NET_RAW_EP);
    let r = env.run(&["verify"]).expect(1);
    assert!(
        r.stdout.contains("security.capability not declared"),
        "{}",
        r.stdout
    );
    // Bad input: exit 2, file and path named, nothing built.
    let bad = env.config(
        "bad.json",
        json!({ "files": { "/x": { "content": "x", "caps": "cap_nope=ep" } } }),
    );
    let r = env.run(&["build", s(&bad)]).expect(2);
    assert!(
        r.stderr
            .contains("files./x: caps: unknown capability \"cap_nope\""),
        "{}",
        r.stderr
    );
    let bad = env.config(
        "bad2.json",
        json!({ "files": { "/x": { "content": "x", "xattrs": { "security.capability": "x" } } } }),
    );
    let r = env.run(&["build", s(&bad)]).expect(2);
    assert!(r.stderr.contains("declare it as caps"), "{}", r.stderr);
}

/// A small tree with every kind of metadata: a set-gid file of group 42, a
/// capability, an ACL, a `user.*` attribute, a hard link (`b` and `c`) and
/// a symlink owned by another user.
/// `second` changes each of them.
fn small_tree(dir: &Path, second: bool) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::write(dir.join("bin/a"), "a\n").unwrap();
    fs::write(dir.join("bin/b"), "b\n").unwrap();
    fs::hard_link(dir.join("bin/b"), dir.join("bin/c")).unwrap();
    fs::write(dir.join("bin/d"), "d\n").unwrap();
    std::os::unix::fs::chown(dir.join("bin/a"), Some(0), Some(42)).unwrap();
    fs::set_permissions(dir.join("bin/a"), fs::Permissions::from_mode(0o2755)).unwrap();
    std::os::unix::fs::symlink("a", dir.join("bin/s")).unwrap();
    let owner = if second { 7 } else { 33 };
    std::os::unix::fs::lchown(dir.join("bin/s"), Some(owner), Some(owner)).unwrap();
    if second {
        // c leaves the link and changes; d gets linked to b; a loses its
        // capability and changes group; the ACL goes, the attribute changes.
        fs::remove_file(dir.join("bin/c")).unwrap();
        fs::write(dir.join("bin/c"), "c\n").unwrap();
        fs::remove_file(dir.join("bin/d")).unwrap();
        fs::hard_link(dir.join("bin/b"), dir.join("bin/d")).unwrap();
        std::os::unix::fs::chown(dir.join("bin/a"), Some(0), Some(7)).unwrap();
        fs::set_permissions(dir.join("bin/a"), fs::Permissions::from_mode(0o2755)).unwrap();
        set_xattr(&dir.join("bin/d"), "user.v", b"2");
    } else {
        set_xattr(&dir.join("bin/a"), CAP, &NET_RAW_EP);
        set_xattr(&dir.join("bin/b"), ACL, &acl());
        set_xattr(&dir.join("bin/d"), "user.v", b"1");
    }
}

/// A switch between two such trees crashes after every step; `recover`
/// lands exactly on the second tree, `recover --rollback` exactly on the
/// first, metadata and links included.
#[test]
fn crash_at_every_step_of_a_metadata_switch_recovers_both_ways() {
    // `crash`: after which step, and whether to recover forward.
    let run = |crash: Option<(u64, bool)>| -> (String, u64) {
        let env = TestEnv::new();
        let src = env.dir.path().join("src");
        let cfg = env.config(
            "c.json",
            json!({ "trees": { "/opt/app": { "source": s(&src), "xattrs": true } } }),
        );
        small_tree(&src, false);
        env.switch(&cfg);
        assert_eq!(dump(&env.at("/opt/app")), dump(&src));
        small_tree(&src, true);
        let steps = env
            .run(&["--json", "switch", s(&cfg), "--dry-run"])
            .ok()
            .steps();
        match crash {
            None => env.switch(&cfg),
            Some((k, forward)) => {
                let r = env.run_with_fault(k, &["switch", s(&cfg)]);
                assert!(r.killed, "no crash after step {k}: {}", r.stderr);
                if forward {
                    env.run(&["recover"]).ok()
                } else {
                    env.run(&["recover", "--rollback"]).ok()
                }
            }
        };
        env.run(&["verify"]).ok();
        (dump(&env.at("/opt/app")), steps.len() as u64)
    };
    let first = {
        let dir = tempfile::tempdir().unwrap();
        small_tree(dir.path(), false);
        dump(dir.path())
    };
    let (second, steps) = run(None);
    assert_ne!(first, second);
    for k in 1..steps {
        for forward in [true, false] {
            let (got, _) = run(Some((k, forward)));
            let want = if forward { &second } else { &first };
            assert!(
                got == *want,
                "crash after step {k}, recover{}:\n{}",
                if forward { "" } else { " --rollback" },
                first_diff(want, &got)
            );
        }
    }
}

/// A tree may give every entry one owner and group, by name or number;
/// without `"xattrs": true` it keeps capabilities and ACLs but not the
/// sources' `user.*` attributes.
#[test]
fn a_tree_overrides_owner_and_group_and_keeps_user_xattrs_only_when_asked() {
    let env = TestEnv::new();
    let src = env.dir.path().join("src");
    small_tree(&src, false);
    let cfg = env.config(
        "c.json",
        json!({ "trees": { "/opt/app": { "source": s(&src), "owner": 33, "group": "www-data" } } }),
    );
    env.switch(&cfg);
    for p in [
        "/opt/app",
        "/opt/app/bin",
        "/opt/app/bin/a",
        "/opt/app/bin/c",
    ] {
        let md = fs::symlink_metadata(env.at(p)).unwrap();
        assert_eq!((md.uid(), md.gid()), (33, 33), "{p}");
    }
    // The capability was set after the chown, so it is there.
    assert!(xattrs(&env.at("/opt/app/bin/a")).contains(CAP));
    assert!(xattrs(&env.at("/opt/app/bin/b")).contains(ACL));
    assert!(!xattrs(&env.at("/opt/app/bin/d")).contains("user.v"));
    env.run(&["verify"]).ok();
}

/// A file that was on the root before sysgen took its path over comes back
/// with its capability and attributes when the path leaves the
/// configuration.
#[test]
fn a_file_taken_over_comes_back_with_its_capability() {
    let env = TestEnv::new();
    env.write_root("/usr/bin/ping", "the admin's ping\n");
    let ping = env.at("/usr/bin/ping");
    set_xattr(&ping, CAP, &NET_RAW_EP);
    set_xattr(&ping, "user.origin", b"admin");
    let before = xattrs(&ping);
    let ours = env.config(
        "ours.json",
        json!({ "files": { "/usr/bin/ping": { "content": "ours\n", "mode": "0755" } } }),
    );
    env.switch(&ours);
    assert_eq!(xattrs(&ping), "");
    env.switch(&env.config("none.json", json!({ "files": {} })));
    assert_eq!(fs::read_to_string(&ping).unwrap(), "the admin's ping\n");
    assert_eq!(xattrs(&ping), before);
}

/// A file a switch creates gets what its directory gives (a set-gid
/// directory's group, an access ACL from a default ACL), and the switch
/// must still leave exactly what the generation records: the shortcut for
/// new files (no `fchown`, no ACL removal where nothing was given) must
/// not skip them where something was.
#[test]
fn new_files_in_a_set_gid_directory_and_under_a_default_acl_are_exactly_as_recorded() {
    let env = TestEnv::new();
    let src = env.dir.path().join("src");
    fs::create_dir_all(src.join("shared/acl")).unwrap();
    fs::write(src.join("shared/f"), "in a set-gid directory").unwrap();
    fs::write(src.join("shared/acl/g"), "under a default ACL").unwrap();
    fs::write(src.join("plain"), "neither").unwrap();
    std::os::unix::fs::chown(src.join("shared"), Some(0), Some(42)).unwrap();
    fs::set_permissions(src.join("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    set_xattr(&src.join("shared/acl"), ACL_DEFAULT, &acl());
    let cfg = env.config(
        "t.json",
        json!({ "trees": { "/srv/t": { "source": s(&src), "xattrs": true } } }),
    );
    env.switch(&cfg);
    let (want, got) = (dump(&src), dump(&env.at("/srv/t")));
    assert!(want.contains("f file 0644 0:0"), "the scene: {want}");
    assert!(got == want, "differs:\n{}", first_diff(&want, &got));
    env.run(&["verify"]).ok();
}

/// A new file is created with its final mode when the umask takes nothing
/// from it (no fchmod follows); under any other umask, or with a set-id or
/// sticky bit, it is created private and given its mode after. Whatever
/// the umask sysgen runs with, the files are exactly as recorded.
#[test]
fn new_files_have_their_recorded_modes_under_any_umask() {
    use std::os::unix::process::CommandExt;
    let modes = [
        0o644, 0o666, 0o755, 0o600, 0o444, 0o700, 0o640, 0o000, 0o4755, 0o2755, 0o1644,
    ];
    for umask in [0o000, 0o022, 0o077, 0o277] {
        let env = TestEnv::new();
        let src = env.dir.path().join("src");
        fs::create_dir_all(&src).unwrap();
        for m in modes {
            let f = src.join(format!("m{m:o}"));
            fs::write(&f, format!("mode {m:o}")).unwrap();
            fs::set_permissions(&f, fs::Permissions::from_mode(m)).unwrap();
        }
        let cfg = env.config(
            "t.json",
            json!({ "trees": { "/srv/t": { "source": s(&src) } } }),
        );
        let mut c = env.cmd(&["switch", s(&cfg)]);
        // SAFETY: umask(2) is async-signal-safe, as `pre_exec` requires.
        unsafe {
            c.pre_exec(move || {
                libc::umask(umask);
                Ok(())
            });
        }
        let out = c.output().expect("run sysgen");
        assert!(out.status.success(), "umask {umask:o}: {out:?}");
        let (want, got) = (dump(&src), dump(&env.at("/srv/t")));
        assert!(want.contains("m4755 file 4755"), "the scene: {want}");
        assert!(
            got == want,
            "umask {umask:o} differs:\n{}",
            first_diff(&want, &got)
        );
    }
}
