//! Running the root's tools: the command (directly on `/`, through
//! `chroot(8)` elsewhere, never interactive), and the apt-get transaction
//! that first finishes an interrupted dpkg.

use std::process::{Command, Stdio};

use super::Apt;
use super::output::{Output, failed_package};
use crate::{Error, PackageError};

impl Apt {
    /// A command for `prog` in the root; `cwd` is a directory inside it.
    pub(super) fn command(&self, prog: &str, cwd: Option<&str>) -> Command {
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
    pub(super) fn run(
        &self,
        prog: &str,
        cwd: Option<&str>,
        args: &[&str],
    ) -> Result<Output, Error> {
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
    pub(super) fn transaction(&self, args: &[&str]) -> Result<Output, Error> {
        let out = self.run_shown("apt-get", None, args)?;
        if out.ok || !out.stderr.contains("dpkg was interrupted") {
            return Ok(out);
        }
        let fix = self.run_shown("dpkg", None, &["--configure", "-a"])?;
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
        self.run_shown("apt-get", None, args)
    }
}

pub(super) fn tool_failed(out: &Output, package: Option<String>) -> Error {
    Error::Package(PackageError {
        package,
        what: format!("`{}` failed:{}", out.cmdline, out.tail()),
        hint: "run the same command in the root to see the whole problem".into(),
    })
}
