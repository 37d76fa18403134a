//! Test support for packages: a scratch Debian root with the real apt and
//! dpkg, test packages built on the fly with `dpkg-deb`, and a local
//! `file:` apt repository inside the root (`[trusted=yes]`).
//!
//! The Debian root is made once with `mmdebstrap --variant=apt` (or
//! `debootstrap --variant=minbase` when mmdebstrap is missing) and cached in
//! `/var/cache/sysgen-tests` (override with `SYSGEN_TEST_CACHE`), outside
//! the repository; each test copies it (about a second).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::{TestEnv, dump_tree};

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// Bump when the way the cached root is made changes.
const CACHE_NAME: &str = "debian-bookworm-apt-v1";

static MAKE_ROOT: Mutex<()> = Mutex::new(());

pub(crate) fn cache_dir() -> PathBuf {
    std::env::var_os("SYSGEN_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/sysgen-tests"))
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn sh(cmd: &mut Command) -> String {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The cached scratch Debian root, made on first use. Panics with what to
/// install when neither mmdebstrap nor debootstrap is there.
pub fn debian_root() -> PathBuf {
    let _guard = MAKE_ROOT.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache_dir();
    let root = cache.join(CACHE_NAME);
    if root.join("usr/bin/apt-get").exists() {
        return root;
    }
    fs::create_dir_all(&cache).expect("create the test cache directory");
    // Another test binary may be making it too: one at a time, across processes.
    let lock = fs::File::create(cache.join(format!("{CACHE_NAME}.lock"))).expect("lock file");
    let _flock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("lock the test cache: {e}"));
    if root.join("usr/bin/apt-get").exists() {
        return root;
    }
    let tmp = cache.join(format!("{CACHE_NAME}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    if have("mmdebstrap") {
        sh(Command::new("mmdebstrap")
            .args(["--variant=apt", "--mode=root", "-q", SUITE])
            .arg(&tmp)
            .arg(MIRROR));
    } else if have("debootstrap") {
        sh(Command::new("debootstrap")
            .args(["--variant=minbase", SUITE])
            .arg(&tmp)
            .arg(MIRROR));
    } else {
        panic!(
            "the package tests need a scratch Debian root: install mmdebstrap or debootstrap (apt-get install mmdebstrap dpkg-dev)"
        );
    }
    fs::rename(&tmp, &root).expect("move the new root into the cache");
    root
}

/// A test package.
pub struct Pkg<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub depends: &'a str,
    /// (path, content) of files it ships.
    pub files: &'a [(&'a str, &'a str)],
    /// Paths among `files` that are conffiles.
    pub conffiles: &'a [&'a str],
    /// A postinst script body, if any.
    pub postinst: Option<&'a str>,
    /// More control fields (`Conflicts: x\n`).
    pub control: &'a str,
    /// A postrm script body, if any (`$1` is remove or purge).
    pub postrm: Option<&'a str>,
}

impl<'a> Pkg<'a> {
    pub fn new(name: &'a str, version: &'a str) -> Pkg<'a> {
        Pkg {
            name,
            version,
            depends: "",
            files: &[],
            conffiles: &[],
            postinst: None,
            control: "",
            postrm: None,
        }
    }
}

/// A scratch Debian root (a copy of the cached one) with a local apt
/// repository at `/srv/repo` as its only source.
pub struct DebEnv {
    pub env: TestEnv,
}

impl DebEnv {
    pub fn new() -> DebEnv {
        let src = debian_root();
        let dir = tempfile::tempdir().expect("temp dir");
        let env = TestEnv { dir };
        sh(Command::new("cp").arg("-a").arg(&src).arg(env.root()));
        fs::create_dir_all(env.cfg()).expect("mkdir cfg");
        fs::create_dir_all(env.at("/srv/repo")).expect("mkdir repo");
        // The local repository is the only source: the tests run offline.
        let _ = fs::remove_dir_all(env.at("/etc/apt/sources.list.d"));
        fs::create_dir_all(env.at("/etc/apt/sources.list.d")).expect("mkdir");
        env.write_root(
            "/etc/apt/sources.list",
            "deb [trusted=yes] file:/srv/repo ./\n",
        );
        DebEnv { env }
    }

    /// Builds a package with dpkg-deb into the repository (`publish` makes
    /// the index).
    pub fn build(&self, p: &Pkg<'_>) {
        let work = self
            .env
            .dir
            .path()
            .join(format!("build-{}-{}", p.name, p.version));
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(work.join("DEBIAN")).expect("mkdir DEBIAN");
        let mut control = format!(
            "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: sysgen tests <tests@sysgen.invalid>\nDescription: sysgen test package\n",
            p.name, p.version
        );
        if !p.depends.is_empty() {
            control.push_str(&format!("Depends: {}\n", p.depends));
        }
        control.push_str(p.control);
        fs::write(work.join("DEBIAN/control"), control).expect("control");
        for (path, content) in p.files {
            let f = work.join(path.trim_start_matches('/'));
            fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            fs::write(&f, content).expect("write");
        }
        if !p.conffiles.is_empty() {
            fs::write(
                work.join("DEBIAN/conffiles"),
                p.conffiles
                    .iter()
                    .map(|c| format!("{c}\n"))
                    .collect::<String>(),
            )
            .expect("conffiles");
        }
        for (script, body) in [("postinst", p.postinst), ("postrm", p.postrm)] {
            let Some(body) = body else { continue };
            let f = work.join("DEBIAN").join(script);
            fs::write(&f, format!("#!/bin/sh\n{body}\n")).expect("maintainer script");
            fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        sh(Command::new("dpkg-deb")
            .args(["-Zgzip", "--root-owner-group", "--build"])
            .arg(&work)
            .arg(
                self.repo()
                    .join(format!("{}_{}_all.deb", p.name, p.version)),
            ));
    }

    /// sg-db 1.0: keeps state in /var/lib/sg-db (made by its postinst,
    /// deleted by its postrm on purge, as Debian policy has it) and has a
    /// conffile, /etc/sg-db.conf.
    pub fn build_sg_db(&self) {
        self.build(&Pkg {
            files: &[
                ("/etc/sg-db.conf", "port = 1\n"),
                ("/usr/bin/sg-db", "#!/bin/sh\necho db\n"),
            ],
            conffiles: &["/etc/sg-db.conf"],
            postinst: Some(
                "mkdir -p /var/lib/sg-db\n[ -e /var/lib/sg-db/data ] || echo empty > /var/lib/sg-db/data",
            ),
            postrm: Some(r#"if [ "$1" = purge ]; then rm -rf /var/lib/sg-db; fi"#),
            ..Pkg::new("sg-db", "1.0")
        });
    }

    pub fn repo(&self) -> PathBuf {
        self.env.at("/srv/repo")
    }

    /// Writes the repository index and runs `apt-get update` in the root.
    pub fn publish(&self) {
        let index = sh(Command::new("dpkg-scanpackages")
            .args(["-m", "."])
            .current_dir(self.repo()));
        fs::write(self.repo().join("Packages"), index).expect("Packages");
        self.chroot(&["apt-get", "update", "-qq"]);
    }

    /// Drops a package file from the repository (publish afterwards).
    pub fn unpublish(&self, name: &str, version: &str) {
        fs::remove_file(self.repo().join(format!("{name}_{version}_all.deb"))).expect("rm deb");
    }

    /// Runs a command in the root, as an admin would; panics on failure.
    pub fn chroot(&self, args: &[&str]) -> String {
        sh(Command::new("chroot")
            .arg(self.env.root())
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
    }

    /// Every package on the root: `name version status auto|manual`, sorted.
    pub fn packages(&self) -> String {
        let auto: Vec<String> = self
            .chroot(&["apt-mark", "showauto"])
            .lines()
            .map(str::to_owned)
            .collect();
        let list = self.chroot(&[
            "dpkg-query",
            "-W",
            "-f=${Package} ${Version} ${db:Status-Abbrev}\n",
        ]);
        let mut lines: Vec<String> = list
            .lines()
            .filter(|l| !l.contains(" un") && !l.trim().is_empty())
            .map(|l| {
                let name = l.split(' ').next().unwrap_or_default();
                let how = if auto.iter().any(|a| a == name) {
                    "auto"
                } else {
                    "manual"
                };
                format!("{} {how}", l.trim_end())
            })
            .collect();
        lines.sort();
        lines.join("\n")
    }

    /// The version of one package, if installed.
    pub fn version_of(&self, name: &str) -> Option<String> {
        self.packages().lines().find_map(|l| {
            let mut f = l.split(' ');
            (f.next() == Some(name)).then(|| f.next().unwrap_or_default().to_owned())
        })
    }

    /// The whole root, less what apt and dpkg keep for themselves (logs,
    /// caches, their databases: `packages()` compares those), the test
    /// repository, `/dev` and sysgen's state.
    pub fn tree(&self) -> String {
        let skip: Vec<PathBuf> = [
            "/var/lib/sysgen",
            "/var/log",
            "/var/cache",
            "/var/lib/dpkg",
            "/var/lib/apt",
            "/srv/repo",
            "/tmp",
            // Device nodes: reading /dev/zero never ends.
            "/dev",
        ]
        .iter()
        .map(|p| self.env.at(p))
        .collect();
        dump_tree(&self.env.root(), &skip)
    }

    /// Holds the dpkg frontend lock of the root, as a running apt would,
    /// until the returned file is dropped.
    pub fn hold_dpkg_lock(&self) -> fs::File {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.env.at("/var/lib/dpkg/lock-frontend"))
            .expect("open lock");
        let fl = nix::libc::flock {
            l_type: nix::libc::F_WRLCK as i16,
            l_whence: nix::libc::SEEK_SET as i16,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETLK(&fl)).expect("take the dpkg lock");
        f
    }
}

impl Default for DebEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl DebEnv {
    /// Where the store keeps an object with the content of `file`.
    pub fn store_object(&self, file: &Path) -> PathBuf {
        let hex = blake3::hash(&fs::read(file).expect("read")).to_hex();
        self.env
            .state()
            .join("store/objects")
            .join(&hex[..2])
            .join(&hex[2..])
    }
}

/// The lines only one of two listings has, `-` for `a`'s and `+` for
/// `b`'s: a short message for a failed comparison of whole trees.
pub fn changed_lines(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out: Vec<String> = la
        .iter()
        .filter(|l| !lb.contains(l))
        .map(|l| format!("- {l}"))
        .collect();
    out.extend(
        lb.iter()
            .filter(|l| !la.contains(l))
            .map(|l| format!("+ {l}")),
    );
    out.join("\n")
}

/// Asserts that two (packages, tree) states are the same, naming only the
/// lines that differ.
#[track_caller]
pub fn assert_same(got: &(String, String), want: &(String, String), what: &str) {
    assert!(
        got == want,
        "{what}: packages:\n{}\ntree:\n{}",
        changed_lines(&want.0, &got.0),
        changed_lines(&want.1, &got.1)
    );
}
