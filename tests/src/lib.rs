//! Test support for sysgen: a scratch root and configuration directory per
//! test ([`TestEnv`]), a runner for the real binary, and [`dump_tree`], which
//! renders a whole tree (type, mode, owner, content hash or link target) so
//! tests compare entire roots rather than spot-check a few paths.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod accounts;
pub mod datasets;
pub mod fleet;
pub mod http;
pub mod packages;
/// Remotes (issue 15): push, pull, copy.
pub mod remote;
pub mod s3;
pub mod schema_check;
pub mod services;
pub mod sshd;
pub mod sudo;

/// A scratch world: `root/` is the managed root, `cfg/` holds configurations
/// and their sources. The state dir is the default, `root/var/lib/sysgen`.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// True when the process died of a signal (an injected fault aborts).
    pub killed: bool,
}

impl Run {
    pub fn from(o: Output) -> Run {
        use std::os::unix::process::ExitStatusExt;
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            killed: o.status.signal().is_some(),
        }
    }

    /// Panics with the whole output unless the exit status is `code`.
    #[track_caller]
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        self.expect(0)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// The `steps` of a `--json` switch, rollback or dry run, as printed.
    pub fn steps(&self) -> Vec<String> {
        self.json()["steps"]
            .as_array()
            .unwrap_or_else(|| panic!("no steps in:\n{}", self.stdout))
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// A fresh root with a minimal `/etc` (passwd, group) and an empty `cfg/`.
    pub fn new() -> TestEnv {
        TestEnv::with_dir(tempfile::tempdir().expect("temp dir"))
    }

    /// [`TestEnv::new`] in a fresh directory under `base`: to put the
    /// root, its state and its configurations on a given filesystem.
    pub fn new_in(base: &Path) -> TestEnv {
        TestEnv::with_dir(tempfile::tempdir_in(base).expect("temp dir"))
    }

    fn with_dir(dir: tempfile::TempDir) -> TestEnv {
        let env = TestEnv { dir };
        fs::create_dir_all(env.root().join("etc")).expect("mkdir etc");
        fs::create_dir_all(env.cfg()).expect("mkdir cfg");
        env.write_root(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n",
        );
        env.write_root("/etc/group", "root:x:0:\nwww-data:x:33:\n");
        env
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn cfg(&self) -> PathBuf {
        self.dir.path().join("cfg")
    }

    pub fn state(&self) -> PathBuf {
        self.root().join("var/lib/sysgen")
    }

    /// Path of a file under the root, from its absolute in-root path.
    pub fn at(&self, p: &str) -> PathBuf {
        self.root().join(p.trim_start_matches('/'))
    }

    /// Writes a file on the root directly (as an admin would), parents included.
    pub fn write_root(&self, p: &str, content: &str) {
        let path = self.at(p);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, content).expect("write root file");
    }

    /// Writes a file under `cfg/` (a configuration or a source), parents included.
    pub fn write_cfg(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.cfg().join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, content).expect("write cfg file");
        path
    }

    /// Writes `cfg/<name>` from a JSON value.
    pub fn config(&self, name: &str, v: serde_json::Value) -> PathBuf {
        self.write_cfg(name, &serde_json::to_string_pretty(&v).expect("json"))
    }

    /// The binary under test: the real CLI built with this package.
    /// Cargo builds a package's binaries before its integration tests and
    /// puts them one level above the test executables (`target/*/deps/..`).
    pub fn sysgen_bin() -> PathBuf {
        let exe = std::env::current_exe().expect("current exe");
        let dir = exe.parent().and_then(Path::parent).expect("target dir");
        let bin = dir.join("sysgen-under-test");
        assert!(
            bin.exists(),
            "{} is missing; run the tests with `cargo test -p sysgen-tests`",
            bin.display()
        );
        bin
    }

    /// A command for the binary with `--root` set to this root.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(Self::sysgen_bin());
        c.arg("--root").arg(self.root()).args(args);
        c.env_remove("SYSGEN_FAULT_AFTER_STEPS");
        c
    }

    /// Runs the binary with `--root` set, and returns what it did.
    pub fn run(&self, args: &[&str]) -> Run {
        let run = Run::from(self.cmd(args).output().expect("run sysgen"));
        schema_check::loaded_configs_are_valid(args, run.code);
        run
    }

    /// `switch CONFIG`, which must succeed.
    pub fn switch(&self, cfg: &Path) -> Run {
        self.run(&["switch", s(cfg)]).ok()
    }

    /// Runs with `SYSGEN_FAULT_AFTER_STEPS=k`.
    pub fn run_with_fault(&self, k: u64, args: &[&str]) -> Run {
        let run = Run::from(
            self.cmd(args)
                .env("SYSGEN_FAULT_AFTER_STEPS", k.to_string())
                .output()
                .expect("run sysgen"),
        );
        schema_check::loaded_configs_are_valid(args, run.code);
        run
    }

    /// The whole root, less sysgen's own state directory.
    pub fn tree(&self) -> String {
        dump_tree(&self.root(), &[self.state()])
    }
}

/// Runs `scripts/<name>` (a README tour script) against the binary under
/// test in a scratch `TMPDIR`; it must succeed. Returns its stdout.
pub fn run_demo_script(name: &str) -> String {
    let scratch = tempfile::tempdir().expect("temp dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name);
    let out = Command::new("bash")
        .arg(&script)
        .env("SYSGEN", TestEnv::sysgen_bin())
        .env("TMPDIR", scratch.path())
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "scripts/{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The one way a test says it cannot run on this machine (no loop devices,
/// no network, a missing tool): it FAILS, so a CI machine that lost a tool
/// never passes by running nothing, unless `SYSGEN_TEST_ALLOW_SKIP=1` is
/// set, which developers without the tool set on purpose. Then it prints
/// why on stderr and returns, and the caller returns without testing.
#[track_caller]
pub fn cannot_run(test: &str, why: &str) {
    cannot_run_when(skipping_allowed(), test, why);
}

/// [`cannot_run`] with the variable already read (so both ways are tested).
#[track_caller]
fn cannot_run_when(allowed: bool, test: &str, why: &str) {
    if allowed {
        eprintln!("SKIPPED {test}: {why} ({ALLOW_SKIP}=1)");
    } else {
        panic!(
            "{test} cannot run on this machine: {why}; \
             set {ALLOW_SKIP}=1 to skip it instead of failing"
        );
    }
}

/// Whether `SYSGEN_TEST_ALLOW_SKIP=1` is set (any other value is not).
pub fn skipping_allowed() -> bool {
    std::env::var_os(ALLOW_SKIP).is_some_and(|v| v == "1")
}

/// The variable that lets [`cannot_run`] skip instead of failing.
pub const ALLOW_SKIP: &str = "SYSGEN_TEST_ALLOW_SKIP";

/// A test path as the `&str` an argument list wants (test paths are UTF-8).
/// `len` bytes that zstd cannot shrink, different for each `seed`
/// (xorshift): a file of a known stored size, or one whose copy and clone
/// are told apart by their extents.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Renders every entry below `dir` (excluding `skip` and what is under it),
/// one line each, sorted: `path type mode uid:gid blake3|target`.
pub fn dump_tree(dir: &Path, skip: &[PathBuf]) -> String {
    let mut lines = BTreeMap::new();
    walk(dir, dir, skip, &mut lines);
    lines.into_values().collect::<Vec<_>>().join("\n")
}

fn walk(base: &Path, dir: &Path, skip: &[PathBuf], out: &mut BTreeMap<String, String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for ent in rd {
        let ent = ent.expect("read_dir entry");
        let path = ent.path();
        if skip.iter().any(|s| path.starts_with(s)) {
            continue;
        }
        let rel = format!(
            "/{}",
            path.strip_prefix(base).expect("under base").display()
        );
        let md = fs::symlink_metadata(&path).expect("lstat");
        let mode = md.permissions().mode() & 0o7777;
        let owner = format!("{}:{}", md.uid(), md.gid());
        let line = if md.file_type().is_symlink() {
            format!(
                "{rel} symlink {owner} -> {}",
                fs::read_link(&path).expect("readlink").display()
            )
        } else if md.is_dir() {
            walk(base, &path, skip, out);
            format!("{rel} dir {mode:04o} {owner}")
        } else {
            let bytes = fs::read(&path).expect("read");
            format!(
                "{rel} file {mode:04o} {owner} {}",
                blake3::hash(&bytes).to_hex()
            )
        };
        out.insert(rel, line);
    }
}

/// The tree `base` (from [`dump_tree`]) with the lines `extra` added, in
/// `dump_tree`'s order (by path): the expected tree after a switch, written
/// as what the switch adds to the tree before it.
pub fn tree_with(base: &str, extra: &[&str]) -> String {
    let mut lines: Vec<&str> = base.lines().chain(extra.iter().copied()).collect();
    lines.sort_unstable_by_key(|l| l.split(' ').next().unwrap_or_default());
    lines.join("\n")
}

/// A `dump_tree` line for a regular file holding `content`.
pub fn file_line(path: &str, mode: u32, owner: &str, content: &[u8]) -> String {
    format!(
        "{path} file {mode:04o} {owner} {}",
        blake3::hash(content).to_hex()
    )
}

/// `dir` and every entry below it, each with its lstat metadata, parents
/// before their children; empty if `dir` does not exist.
pub fn entries_under(dir: &Path) -> Vec<(PathBuf, fs::Metadata)> {
    let mut out = match fs::symlink_metadata(dir) {
        Ok(md) => vec![(dir.to_owned(), md)],
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    let mut i = 0;
    while i < out.len() {
        if out[i].1.is_dir() {
            let d = out[i].0.clone();
            for e in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
                let p = e.unwrap_or_else(|e| panic!("{}: {e}", d.display())).path();
                let md =
                    fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                out.push((p, md));
            }
        }
        i += 1;
    }
    out
}

/// The regular files under `dir` (recursively) whose content holds
/// `needle`: each path, its content, and where `needle` first starts in it.
fn files_holding(dir: &Path, needle: &[u8]) -> impl Iterator<Item = (PathBuf, Vec<u8>, usize)> {
    let needle = needle.to_vec();
    entries_under(dir)
        .into_iter()
        .filter(|(_, md)| md.is_file())
        .filter_map(move |(p, _)| {
            let bytes = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let at = bytes
                .windows(needle.len())
                .position(|w| w == needle.as_slice())?;
            Some((p, bytes, at))
        })
}

/// Whether a directory (recursively) holds a file with exactly `needle`.
pub fn any_file_contains(dir: &Path, needle: &[u8]) -> bool {
    files_holding(dir, needle).next().is_some()
}

/// The store area that holds public or secret objects.
fn area_of(secret: bool) -> sysgen_store::Area {
    if secret {
        sysgen_store::Area::Secret
    } else {
        sysgen_store::Area::Public
    }
}

/// Whether the store at `store` holds `content`, asked through the store's
/// own lookup (packs and files of their own alike).
pub fn store_holds(store: &Path, content: &[u8], secret: bool) -> bool {
    sysgen_store::Store::open(store)
        .and_then(|s| s.contains(&sysgen_store::Hash::of(content), area_of(secret)))
        .unwrap_or_else(|e| panic!("{}: {e}", store.display()))
}

/// The frame in which the store keeps `content` (asked of the store, which
/// picks the level, or raw blocks): what to look for in its files, packed
/// or not.
pub fn stored_frame(content: &[u8]) -> Vec<u8> {
    sysgen_store::frame_of(content).unwrap_or_else(|e| panic!("zstd: {e}"))
}

/// Damages the stored copy of `content` by flipping a byte in the middle
/// of its frame, wherever the store keeps it; panics if no file has it.
pub fn damage_stored(store: &Path, content: &[u8], secret: bool) {
    let dir = store.join(if secret { "secret" } else { "objects" });
    let frame = stored_frame(content);
    let Some((p, mut bytes, at)) = files_holding(&dir, &frame).next() else {
        panic!(
            "no file under {} holds the frame of {content:?}",
            dir.display()
        );
    };
    bytes[at + frame.len() / 2] ^= 0x55;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600))
        .and_then(|()| fs::write(&p, &bytes))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_test_that_cannot_run_fails_unless_skipping_is_allowed() {
        let failed = std::panic::catch_unwind(|| {
            super::cannot_run_when(false, "t", "no loop devices");
        });
        let msg = failed.expect_err("it fails");
        let msg = msg.downcast_ref::<String>().expect("a message");
        assert_eq!(
            msg,
            "t cannot run on this machine: no loop devices; \
             set SYSGEN_TEST_ALLOW_SKIP=1 to skip it instead of failing"
        );
        super::cannot_run_when(true, "t", "no loop devices");
    }
}
