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

pub mod children;
mod output;
mod run;
mod shown;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sysgen_schema::EntryPath;

use super::closure::{Relations, parse_depends};
use super::{Installed, PackageManager, Resolved, Want};
use crate::rootfs::{Live, RootDir};
use crate::{Error, PackageError};
use output::{parse_inst, parse_remv};
use run::tool_failed;

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
    /// How long one run of a tool may take before it is stopped.
    timeout: Duration,
    /// Where transactions show their output as it comes (`-v`).
    shown: Option<crate::host::ToolOutput>,
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
            timeout: crate::host::DEFAULT_PACKAGE_TIMEOUT,
            shown: None,
        })
    }

    /// The same apt, each run of a tool stopped after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Apt {
        self.timeout = timeout;
        self
    }
}

impl Apt {
    /// Every package dpkg knows: name, version, architecture and the
    /// abbreviated status (`ii `, `rc `, `iF `…).
    fn status(&self) -> Result<Vec<(String, String, String, String)>, Error> {
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
        Ok(out
            .stdout
            .lines()
            .filter_map(|line| match line.split('\t').collect::<Vec<_>>()[..] {
                [name, version, arch, status] => Some((
                    name.to_owned(),
                    version.to_owned(),
                    arch.to_owned(),
                    status.to_owned(),
                )),
                _ => None,
            })
            .collect())
    }
}

/// The relations of one package from its control fields.
fn relations(pre: &str, deps: &str, provides: &str, essential: &str, priority: &str) -> Relations {
    let mut depends = parse_depends(pre);
    depends.extend(parse_depends(deps));
    Relations {
        depends,
        provides: parse_depends(provides).into_iter().flatten().collect(),
        base: essential == "yes" || matches!(priority, "required" | "important"),
    }
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
        let mut map = BTreeMap::new();
        for (name, version, arch, status) in self.status()? {
            // Second letter: n = not installed, c = only conffiles left.
            let state = status.as_bytes().get(1).copied().unwrap_or(b'n');
            if state == b'n' || state == b'c' || version.is_empty() {
                continue;
            }
            map.insert(
                name,
                Installed {
                    version,
                    arch,
                    healthy: state == b'i' && status.as_bytes().get(2) == Some(&b' '),
                },
            );
        }
        Ok(map)
    }

    fn leftovers(&self) -> Result<BTreeMap<String, String>, Error> {
        Ok(self
            .status()?
            .into_iter()
            .filter(|(_, _, _, status)| status.as_bytes().get(1) == Some(&b'c'))
            .map(|(name, version, _, _)| (name, version))
            .collect())
    }

    fn conffiles(&self, name: &str) -> Result<Vec<EntryPath>, Error> {
        let out = self.run("dpkg-query", None, &["-W", "-f=${Conffiles}\n", name])?;
        if !out.ok {
            return Err(tool_failed(&out, Some(name.to_owned())));
        }
        // " /etc/x.conf <md5> [obsolete]", one a line.
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|p| EntryPath::parse(p).ok())
            .collect())
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

    fn relations(
        &self,
        candidates: &[(String, String)],
    ) -> Result<BTreeMap<String, Relations>, Error> {
        let out = self.run(
            "dpkg-query",
            None,
            &[
                "-W",
                "-f=${Package}\t${db:Status-Abbrev}\t${Pre-Depends}\t${Depends}\t${Provides}\t${Essential}\t${Priority}\n",
            ],
        )?;
        if !out.ok {
            return Err(tool_failed(&out, None));
        }
        let mut world = BTreeMap::new();
        for line in out.stdout.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if let [name, status, pre, deps, provides, essential, priority] = f[..] {
                // Present: not "not installed", not only configuration left.
                if matches!(status.as_bytes().get(1), Some(b'n' | b'c') | None) {
                    continue;
                }
                world.insert(
                    name.to_owned(),
                    relations(pre, deps, provides, essential, priority),
                );
            }
        }
        if candidates.is_empty() {
            return Ok(world);
        }
        // The versions the transaction installs, not apt's candidates.
        let mut args: Vec<String> = vec!["show".into()];
        args.extend(NO_CACHE.iter().map(|s| s.to_string()));
        args.extend(candidates.iter().map(|(n, v)| format!("{n}={v}")));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run("apt-cache", None, &argv)?;
        if !out.ok {
            return Err(tool_failed(&out, None));
        }
        for para in out.stdout.split("\n\n") {
            let field = |key: &str| -> String {
                let mut v = String::new();
                let mut inside = false;
                for l in para.lines() {
                    if let Some(rest) = l.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
                        v.push_str(rest.trim());
                        inside = true;
                    } else if inside && l.starts_with(' ') {
                        v.push_str(l.trim());
                    } else {
                        inside = false;
                    }
                }
                v
            };
            let name = field("Package");
            if name.is_empty() {
                continue;
            }
            world.insert(
                name,
                relations(
                    &field("Pre-Depends"),
                    &field("Depends"),
                    &field("Provides"),
                    &field("Essential"),
                    &field("Priority"),
                ),
            );
        }
        Ok(world)
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
                    "apt-get install",
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
        let mut args = vec!["-s", "-q", "remove"];
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
            args.extend(["--autoremove", "remove"]);
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

    fn remove(&self, names: &[String], purge: bool) -> Result<(), Error> {
        let verb = if purge { "purge" } else { "remove" };
        let mut args = vec![
            "-y",
            "-q",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            verb,
        ];
        args.extend(names.iter().map(String::as_str));
        let out = self.transaction(&args)?;
        if !out.ok {
            return Err(self.transaction_error(
                &out,
                &format!("apt-get {verb}"),
                "fix the cause, then run `sysgen recover` to finish the switch, or `sysgen recover --rollback` to undo it",
            ));
        }
        Ok(())
    }

    fn purge_leftovers(&self, names: &[String]) -> Result<(), Error> {
        // Only configuration is left: dpkg alone runs the postrm purge.
        let mut args = vec!["--purge"];
        args.extend(names.iter().map(String::as_str));
        let out = self.run("dpkg", None, &args)?;
        if !out.ok {
            return Err(self.transaction_error(
                &out,
                "dpkg --purge",
                "fix the cause (the package's postrm script), then run `sysgen gc` again",
            ));
        }
        Ok(())
    }

    fn abandon(&self, names: &[String], purge: bool) -> Result<(), Error> {
        // dpkg directly: apt would first insist on `dpkg --configure -a`,
        // which runs the very postinst being undone. The dependencies are
        // put right by the undo's own transaction and removal.
        let mut args = vec![
            if purge { "--purge" } else { "--remove" },
            "--force-remove-reinstreq",
            "--force-depends",
        ];
        args.extend(names.iter().map(String::as_str));
        let out = self.run("dpkg", None, &args)?;
        if !out.ok {
            return Err(self.transaction_error(
                &out,
                if purge { "dpkg --purge" } else { "dpkg --remove" },
                "fix the cause (the package's prerm or postrm script), then run `sysgen recover --rollback` again",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_debs_like_apt() {
        assert_eq!(deb_file_name("a", "1:2.0-1", "all"), "a_1%3a2.0-1_all.deb");
    }
}
