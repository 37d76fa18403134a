//! The apt/dpkg backend: the real `apt-get`, `apt-cache`, `apt-mark`,
//! `dpkg` and `dpkg-query` of the root, run as child processes with
//! explicit arguments (no shell) and their output captured into errors.
//!
//! On `/` they run directly; on any other root they run inside it through
//! `chroot(8)`, so the root's own apt, sources, keyrings and maintainer
//! scripts are used, as `debootstrap` and image builders do. Every call is
//! non-interactive: stdin is closed, `DEBIAN_FRONTEND=noninteractive`, and
//! dpkg keeps the admin's version of a changed conffile
//! (`--force-confdef --force-confold`), so no prompt can hang a switch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sysgen_schema::EntryPath;

use super::{Installed, PackageManager, Resolved, Want};
use crate::rootfs::{Live, RootDir};
use crate::{Error, PackageError};

/// Where apt keeps downloaded packages; sysgen stages `.deb` files there too.
pub const ARCHIVES: &str = "/var/cache/apt/archives";

/// Options that keep a simulation or query from writing apt's binary
/// caches inside the root: building a generation changes nothing there.
const NO_CACHE: [&str; 4] = [
    "-o",
    "Dir::Cache::pkgcache=",
    "-o",
    "Dir::Cache::srcpkgcache=",
];

pub struct Apt {
    /// The root on the host; `None` for `/` (run directly, no chroot).
    chroot: Option<PathBuf>,
    root_display: String,
}

impl Apt {
    /// The apt of `root`. Fails, naming what is missing, when the root has
    /// no apt or dpkg.
    pub fn for_root(root: &RootDir) -> Result<Apt, Error> {
        let path = root.path();
        let is_slash = std::fs::canonicalize(path).is_ok_and(|p| p == Path::new("/"));
        let root_display = if is_slash {
            "/".to_owned()
        } else {
            path.display().to_string()
        };
        for tool in ["/usr/bin/apt-get", "/usr/bin/dpkg"] {
            let p = EntryPath::parse(tool).map_err(|e| Error::Internal(format!("{tool}: {e}")))?;
            if !matches!(root.inspect(&p)?, Live::File(_)) {
                return Err(Error::Invalid(format!(
                    "packages.apt: the root {root_display} has no {tool}; packages are installed with the root's own apt and dpkg, so use a Debian-based root with apt installed (debootstrap or mmdebstrap make one), or remove the packages section"
                )));
            }
        }
        Ok(Apt {
            chroot: (!is_slash).then(|| path.to_owned()),
            root_display,
        })
    }

    /// A command for `prog` in the root; `cwd` is a directory inside it.
    fn command(&self, prog: &str, cwd: Option<&str>) -> Command {
        let mut c = match &self.chroot {
            Some(root) => {
                let mut c = Command::new("chroot");
                c.arg(root);
                if let Some(dir) = cwd {
                    // chroot(8) starts in the new root's `/`.
                    c.arg("/usr/bin/env").arg(format!("--chdir={dir}"));
                }
                c.arg(prog);
                c
            }
            None => {
                let mut c = Command::new(prog);
                if let Some(dir) = cwd {
                    c.current_dir(dir);
                }
                c
            }
        };
        c.stdin(Stdio::null())
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("DEBCONF_NONINTERACTIVE_SEEN", "true")
            // Messages are parsed: no translations.
            .env("LC_ALL", "C")
            // dpkg needs the sbin directories, which a caller's PATH may lack.
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        c
    }

    /// Runs a command to completion; output is captured.
    fn run(&self, prog: &str, cwd: Option<&str>, args: &[&str]) -> Result<Output, Error> {
        let mut c = self.command(prog, cwd);
        c.args(args);
        let o = c.output().map_err(|e| {
            Error::Package(PackageError {
                package: None,
                what: format!("cannot run {prog} in the root {}: {e}", self.root_display),
                hint: "check that the root is complete and that sysgen runs as root".into(),
            })
        })?;
        Ok(Output {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            cmdline: format!("{prog} {}", args.join(" ")),
        })
    }

    /// Runs an apt-get command that changes packages. When an earlier dpkg
    /// run was cut short (a crash, a power cut), apt refuses until
    /// `dpkg --configure -a` has finished it: do that, once, then retry,
    /// so `recover` works after a crash inside dpkg too.
    fn transaction(&self, args: &[&str]) -> Result<Output, Error> {
        let out = self.run("apt-get", None, args)?;
        if out.ok || !out.stderr.contains("dpkg was interrupted") {
            return Ok(out);
        }
        let fix = self.run("dpkg", None, &["--configure", "-a"])?;
        if !fix.ok {
            return Err(Error::Package(PackageError {
                package: failed_package(&fix),
                what: format!(
                    "an earlier dpkg run in the root {} was interrupted, and `dpkg --configure -a` cannot finish it:{}",
                    self.root_display,
                    fix.tail()
                ),
                hint:
                    "fix the cause and run `dpkg --configure -a` in the root, then `sysgen recover`"
                        .into(),
            }));
        }
        self.run("apt-get", None, args)
    }

    /// Why the `apt-get <verb>` that printed `out` failed: the dpkg lock, or
    /// the package (and maintainer script) that broke, with `hint`.
    fn transaction_error(&self, out: &Output, verb: &str, hint: &str) -> Error {
        self.dpkg_lock_error(out).unwrap_or_else(|| {
            let pkg = failed_package(out);
            let on = pkg.as_ref().map(|p| format!(" on {p}")).unwrap_or_default();
            Error::Package(PackageError {
                what: format!(
                    "apt-get {verb} failed{on}{}:{}",
                    script_failure(out),
                    out.tail()
                ),
                package: pkg,
                hint: hint.into(),
            })
        })
    }

    fn dpkg_lock_error(&self, out: &Output) -> Option<Error> {
        let text = format!("{}{}", out.stderr, out.stdout);
        let line = text.lines().find(|l| {
            l.contains("Could not get lock") || l.contains("Unable to acquire the dpkg")
        })?;
        Some(Error::Package(PackageError {
            package: None,
            what: format!(
                "the dpkg lock of the root {} is held by another program: {}",
                self.root_display,
                line.trim_start_matches("E: ")
            ),
            hint:
                "wait for the other apt or dpkg to finish (or stop it), then run the command again"
                    .into(),
        }))
    }
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
    cmdline: String,
}

impl Output {
    /// The last lines of the output, for an error message, less the
    /// chatter that says nothing about the failure.
    fn tail(&self) -> String {
        const NOISE: [&str; 4] = [
            "debconf: delaying package configuration",
            "E: Can not write log",
            "(Reading database",
            "Reading package lists",
        ];
        let all: Vec<&str> = self
            .stdout
            .lines()
            .chain(self.stderr.lines())
            .filter(|l| !l.trim().is_empty() && !NOISE.iter().any(|n| l.starts_with(n)))
            .collect();
        let start = all.len().saturating_sub(12);
        all[start..]
            .iter()
            .map(|l| format!("\n    {l}"))
            .collect::<String>()
    }
}

/// `Inst name [old] (new repo [arch])` or `Inst name (new repo [arch])`.
fn parse_inst(line: &str) -> Option<(String, String, String)> {
    let rest = line.strip_prefix("Inst ")?;
    let (name, rest) = rest.split_once(' ')?;
    let open = rest.find('(')?;
    let inner = &rest[open + 1..rest.rfind(')')?];
    let version = inner.split_whitespace().next()?.to_owned();
    let arch = inner
        .rsplit_once('[')
        .and_then(|(_, a)| a.strip_suffix(']'))
        .unwrap_or("all")
        .to_owned();
    // Multi-arch qualified names keep the bare name as the key.
    let name = name.split(':').next().unwrap_or(name).to_owned();
    Some((name, version, arch))
}

/// `Remv name [ver]` / `Purg name [ver]`.
fn parse_remv(line: &str) -> Option<String> {
    let rest = line
        .strip_prefix("Remv ")
        .or_else(|| line.strip_prefix("Purg "))?;
    let name = rest.split_whitespace().next()?;
    Some(name.split(':').next().unwrap_or(name).to_owned())
}

/// The file name apt gives a package: `name_version_arch.deb`, with the
/// epoch's colon escaped.
pub fn deb_file_name(name: &str, version: &str, arch: &str) -> String {
    format!("{name}_{}_{arch}.deb", version.replace(':', "%3a"))
}

impl PackageManager for Apt {
    fn name(&self) -> &'static str {
        "apt"
    }

    fn installed(&self) -> Result<BTreeMap<String, Installed>, Error> {
        let out = self.run(
            "dpkg-query",
            None,
            &[
                "-W",
                "-f=${Package}\t${Version}\t${Architecture}\t${db:Status-Abbrev}\n",
            ],
        )?;
        if !out.ok {
            return Err(tool_failed(&out, None));
        }
        let mut map = BTreeMap::new();
        for line in out.stdout.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if let [name, version, arch, status] = f[..] {
                // Second letter: n = not installed, c = only conffiles left.
                let state = status.as_bytes().get(1).copied().unwrap_or(b'n');
                if state == b'n' || state == b'c' || version.is_empty() {
                    continue;
                }
                map.insert(
                    name.to_owned(),
                    Installed {
                        version: version.to_owned(),
                        arch: arch.to_owned(),
                        healthy: state == b'i' && status.as_bytes().get(2) == Some(&b' '),
                    },
                );
            }
        }
        Ok(map)
    }

    fn auto_marked(&self) -> Result<BTreeSet<String>, Error> {
        let out = self.run("apt-mark", None, &["showauto"])?;
        if !out.ok {
            return Err(tool_failed(&out, None));
        }
        Ok(out
            .stdout
            .lines()
            .map(|l| l.split(':').next().unwrap_or(l).to_owned())
            .collect())
    }

    fn resolve(&self, wanted: &[Want]) -> Result<Resolved, Error> {
        let mut args: Vec<String> = [
            "-s",
            "-q",
            "--no-install-recommends",
            "--allow-downgrades",
            "install",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(NO_CACHE.iter().map(|s| s.to_string()));
        for w in wanted {
            args.push(match &w.version {
                Some(v) => format!("{}={v}", w.name),
                None => w.name.clone(),
            });
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run("apt-get", None, &argv)?;
        if !out.ok {
            return Err(self.resolve_error(&out, wanted));
        }
        let mut res = Resolved::default();
        for line in out.stdout.lines() {
            if let Some((name, version, arch)) = parse_inst(line) {
                res.installs.insert(name, (version, arch));
            } else if let Some(name) = parse_remv(line) {
                res.removes.push(name);
            }
        }
        Ok(res)
    }

    fn closure(&self, names: &[String]) -> Result<BTreeSet<String>, Error> {
        let mut args = vec![
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
        ];
        args.extend(NO_CACHE);
        args.extend(names.iter().map(String::as_str));
        let out = self.run("apt-cache", None, &args)?;
        if !out.ok {
            return Err(tool_failed(&out, None));
        }
        // Package names start a line; their dependencies are indented.
        Ok(out
            .stdout
            .lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('<') && !l.is_empty())
            .map(|l| l.split(':').next().unwrap_or(l).to_owned())
            .collect())
    }

    fn download(&self, pkgs: &[(String, String, String)]) -> Result<Vec<EntryPath>, Error> {
        let mut args = vec![
            "-q".to_owned(),
            "-o".to_owned(),
            // The files are read back as root; no need to hand them to `_apt`.
            "APT::Sandbox::User=root".to_owned(),
            "download".to_owned(),
        ];
        for (name, version, arch) in pkgs {
            args.push(format!("{name}:{arch}={version}"));
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run("apt-get", Some(ARCHIVES), &argv)?;
        if !out.ok {
            let pkg = pkgs
                .iter()
                .find(|(n, v, _)| out.stderr.contains(&format!("'{n}'")) || out.stderr.contains(v))
                .map(|(n, _, _)| n.clone());
            return Err(Error::Package(PackageError {
                package: pkg,
                what: format!("cannot download the packages to install:{}", out.tail()),
                hint: "check the root's apt sources and network (run `apt-get update` in the root), or rebuild the configuration against the versions the archive serves now; nothing was changed".into(),
            }));
        }
        pkgs.iter()
            .map(|(n, v, a)| {
                EntryPath::parse(&format!("{ARCHIVES}/{}", deb_file_name(n, v, a)))
                    .map_err(|e| Error::Internal(format!("the package file of {n} {v}: {e}")))
            })
            .collect()
    }

    fn install(
        &self,
        files: &[EntryPath],
        manual: &[String],
        auto: &[String],
    ) -> Result<(), Error> {
        if !files.is_empty() {
            let mut args: Vec<String> = [
                "-y",
                "-q",
                "--no-install-recommends",
                "--allow-downgrades",
                // Everything the transaction needs was fetched into the store
                // first: never quietly pull in something the generation
                // does not record.
                "--no-download",
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
                "install",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(files.iter().map(|f| f.to_string()));
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = self.transaction(&argv)?;
            if !out.ok {
                return Err(self.transaction_error(
                    &out,
                    "install",
                    "fix the cause (or remove the package from the configuration), then run `sysgen recover` to finish the switch, or `sysgen recover --rollback` to undo it",
                ));
            }
        }
        // A local .deb is marked as installed by hand; dependencies must be
        // automatic so apt's own autoremove sees them as such.
        for (how, names) in [("auto", auto), ("manual", manual)] {
            if names.is_empty() {
                continue;
            }
            let mut args = vec![how];
            args.extend(names.iter().map(String::as_str));
            let out = self.run("apt-mark", None, &args)?;
            if !out.ok {
                return Err(tool_failed(&out, None));
            }
        }
        Ok(())
    }

    fn removal_extras(&self, names: &[String]) -> Result<Vec<String>, Error> {
        let mut args = vec!["-s", "-q", "purge"];
        args.extend(NO_CACHE);
        args.extend(names.iter().map(String::as_str));
        let out = self.run("apt-get", None, &args)?;
        if !out.ok {
            return Err(tool_failed(&out, None));
        }
        let ours: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        Ok(out
            .stdout
            .lines()
            .filter_map(parse_remv)
            .filter(|n| !ours.contains(n.as_str()))
            .collect())
    }

    fn unneeded_after(&self, names: &[String]) -> Result<BTreeSet<String>, Error> {
        let mut args = vec!["-s", "-q"];
        if names.is_empty() {
            args.push("autoremove");
        } else {
            args.extend(["--autoremove", "purge"]);
        }
        args.extend(NO_CACHE);
        args.extend(names.iter().map(String::as_str));
        let out = self.run("apt-get", None, &args)?;
        if !out.ok {
            return Err(tool_failed(&out, None));
        }
        Ok(out.stdout.lines().filter_map(parse_remv).collect())
    }

    fn changed_conffiles(&self, name: &str) -> Result<Vec<EntryPath>, Error> {
        // `dpkg --verify` compares each conffile with the checksum dpkg
        // recorded; a changed one shows `??5?????? c /etc/…`. It exits 1
        // when it found something, so only the output counts.
        let out = self.run("dpkg", None, &["--verify", name])?;
        let mut changed = Vec::new();
        for line in out.stdout.lines() {
            let mut f = line.split_whitespace();
            let (Some(flags), Some("c"), Some(path)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if flags.as_bytes().get(2) == Some(&b'5')
                && let Ok(p) = EntryPath::parse(path)
            {
                changed.push(p);
            }
        }
        Ok(changed)
    }

    fn purge(&self, names: &[String]) -> Result<(), Error> {
        let mut args = vec![
            "-y",
            "-q",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "purge",
        ];
        args.extend(names.iter().map(String::as_str));
        let out = self.transaction(&args)?;
        if !out.ok {
            return Err(self.transaction_error(
                &out,
                "purge",
                "fix the cause, then run `sysgen recover` to finish the switch, or `sysgen recover --rollback` to undo it",
            ));
        }
        Ok(())
    }

    fn lock_holder(&self, root: &RootDir) -> Result<Option<(String, u32)>, Error> {
        for lock in ["/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock"] {
            let p = EntryPath::parse(lock).map_err(|e| Error::Internal(format!("{lock}: {e}")))?;
            if !matches!(root.inspect(&p)?, Live::File(_)) {
                continue;
            }
            let f = root.open_file(&p)?;
            // F_GETLK asks who would block a write lock, without taking it.
            let mut fl = libc::flock {
                l_type: libc::F_WRLCK as i16,
                l_whence: libc::SEEK_SET as i16,
                l_start: 0,
                l_len: 0,
                l_pid: 0,
            };
            nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETLK(&mut fl))
                .map_err(|e| crate::io_err(root.display(&p))(e.into()))?;
            if fl.l_type != libc::F_UNLCK as i16 {
                return Ok(Some((lock.to_owned(), fl.l_pid as u32)));
            }
        }
        Ok(None)
    }

    fn root_display(&self) -> &str {
        &self.root_display
    }
}

impl Apt {
    /// Turns a failed simulation into the message for the package at fault.
    fn resolve_error(&self, out: &Output, wanted: &[Want]) -> Error {
        if let Some(e) = self.dpkg_lock_error(out) {
            return e;
        }
        for line in out.stderr.lines() {
            // E: Unable to locate package foo
            if let Some(name) = line.strip_prefix("E: Unable to locate package ") {
                let name = name.trim();
                return Error::Invalid(format!(
                    "{}packages.apt.{name}: no package {name} is known to the apt of the root {}; check the name, or run `apt-get update` in the root if its package lists are old",
                    declared_in(wanted, name),
                    self.root_display
                ));
            }
            // E: Version '9.9' for 'sg-hello' was not found
            if let Some(rest) = line.strip_prefix("E: Version '")
                && let Some((v, rest)) = rest.split_once("' for '")
            {
                let name = rest.split('\'').next().unwrap_or(rest);
                return Error::Invalid(format!(
                    "{}packages.apt.{name}: version {v} of {name} is not available to the apt of the root {}; `apt-cache policy {name}` in the root lists the versions it has",
                    declared_in(wanted, name),
                    self.root_display
                ));
            }
        }
        // Unmet dependencies: name the package apt names first.
        let pkg = out.stdout.lines().chain(out.stderr.lines()).find_map(|l| {
            let l = l.trim();
            let (name, rest) = l.split_once(" : ")?;
            rest.contains("Depends")
                .then(|| name.trim().to_owned())
                .or_else(|| rest.contains("Conflicts").then(|| name.trim().to_owned()))
                .or_else(|| rest.contains("Breaks").then(|| name.trim().to_owned()))
        });
        Error::Package(PackageError {
            what: format!(
                "apt cannot install the declared packages together{}:{}",
                pkg.as_ref()
                    .map(|p| format!(" ({p} has a dependency problem)"))
                    .unwrap_or_default(),
                out.tail()
            ),
            package: pkg,
            hint: "change the declared packages or versions so that apt can satisfy them (`apt-get -s install …` in the root shows the problem); nothing was changed".into(),
        })
    }
}

fn declared_in(wanted: &[Want], name: &str) -> String {
    wanted
        .iter()
        .find(|w| w.name == name)
        .map(|w| format!("{}: ", w.declared_in.display()))
        .unwrap_or_default()
}

/// The package dpkg names in "dpkg: error processing package X (...)".
fn failed_package(out: &Output) -> Option<String> {
    out.stdout.lines().chain(out.stderr.lines()).find_map(|l| {
        let rest = l
            .split_once("error processing package ")
            .map(|(_, r)| r)
            .or_else(|| l.split_once("error processing archive ").map(|(_, r)| r))?;
        let name = rest.split_whitespace().next()?;
        let name = name.rsplit('/').next().unwrap_or(name);
        Some(name.split(['_', ':']).next().unwrap_or(name).to_owned())
    })
}

/// ": its post-installation script failed (exit status 1)" when dpkg says
/// that a maintainer script failed.
fn script_failure(out: &Output) -> String {
    out.stdout
        .lines()
        .chain(out.stderr.lines())
        .find_map(|l| {
            let (_, rest) = l.split_once(" package ")?;
            let (script, status) = rest.split_once(" subprocess returned error exit status ")?;
            Some(format!(
                ": its {script} failed (exit status {})",
                status.trim()
            ))
        })
        .unwrap_or_default()
}

fn tool_failed(out: &Output, package: Option<String>) -> Error {
    Error::Package(PackageError {
        package,
        what: format!("`{}` failed:{}", out.cmdline, out.tail()),
        hint: "run the same command in the root to see the whole problem".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_simulation_lines() {
        assert_eq!(
            parse_inst("Inst sg-hello [1.0] (2.0 localhost [all])"),
            Some(("sg-hello".into(), "2.0".into(), "all".into()))
        );
        assert_eq!(
            parse_inst("Inst libc6:amd64 (2.36-9+deb12u4 Debian:12.5/stable [amd64])"),
            Some(("libc6".into(), "2.36-9+deb12u4".into(), "amd64".into()))
        );
        assert_eq!(parse_remv("Purg sg-hello [1.0]"), Some("sg-hello".into()));
        assert_eq!(parse_inst("Conf sg-hello (2.0 localhost [all])"), None);
    }

    #[test]
    fn names_debs_like_apt() {
        assert_eq!(deb_file_name("a", "1:2.0-1", "all"), "a_1%3a2.0-1_all.deb");
    }
}
