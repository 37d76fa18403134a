//! Running the root's tools: the command (directly on `/`, through
//! `chroot(8)` elsewhere, never interactive), and the apt-get transaction
//! that first finishes an interrupted dpkg.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::output::{Output, failed_package};
use super::{Apt, children};
use crate::host::ToolOutput;
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

    /// Runs a command to completion, output captured, within the timeout.
    /// The tool runs in a process group of its own: when it overruns the
    /// timeout, or sysgen is asked to stop (SIGTERM, SIGINT), the whole
    /// group (apt, dpkg, a maintainer script and what it started) is
    /// stopped and waited for, so no dpkg is left holding the lock.
    pub(super) fn run(
        &self,
        prog: &str,
        cwd: Option<&str>,
        args: &[&str],
    ) -> Result<Output, Error> {
        self.run_with(prog, cwd, args, None)
    }

    /// `run`, handing each line of the tool's standard output to `shown`
    /// as it comes when there is a sink.
    pub(super) fn run_with(
        &self,
        prog: &str,
        cwd: Option<&str>,
        args: &[&str],
        shown: Option<&ToolOutput>,
    ) -> Result<Output, Error> {
        let cmdline = format!("{prog} {}", args.join(" "));
        let mut c = self.command(prog, cwd);
        c.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let blocked = children::Blocked::new();
        let mut child = c.spawn().map_err(|e| {
            Error::Package(PackageError {
                package: None,
                what: format!("cannot run {prog} in the root {}: {e}", self.root_display),
                hint: "check that the root is complete and that sysgen runs as root".into(),
            })
        })?;
        let group = i32::try_from(child.id())
            .map_err(|_| Error::Internal(format!("{prog}: a process id out of range")))?;
        let running = children::Running::register(group);
        drop(blocked);
        let (tx, rx) = mpsc::channel();
        for (i, pipe) in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .enumerate()
        {
            let tx = tx.clone();
            // Standard output only is shown (`-v`): apt's progress.
            let sink = shown.filter(|_| i == 0).cloned();
            // A reader that never ends (a daemon the tool started keeps the
            // pipe) is left behind rather than waited for.
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(p) = pipe {
                    // A read error leaves what was read: the output is for
                    // messages only.
                    let _ = read_all(p, &mut buf, sink.as_ref());
                }
                let _ = tx.send((i, buf));
            });
        }
        drop(tx);
        let deadline = Instant::now() + self.timeout;
        let stopped = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(format!("cannot wait for it: {e}")),
            }
            if let Some(sig) = children::stop_requested() {
                stop(&mut child, group);
                break Err(format!(
                    "sysgen was asked to stop ({}); it stopped {prog} and every process it started",
                    children::signal_name(sig)
                ));
            }
            if Instant::now() >= deadline {
                stop(&mut child, group);
                break Err(format!(
                    "it did not finish within {} s (the package timeout); sysgen stopped it and every process it started",
                    self.timeout.as_secs()
                ));
            }
            std::thread::sleep(POLL);
        };
        drop(running);
        let mut outs = [Vec::new(), Vec::new()];
        for _ in 0..2 {
            match rx.recv_timeout(OUTPUT_GRACE) {
                Ok((i, buf)) => outs[i] = buf,
                Err(_) => break,
            }
        }
        let [stdout, stderr] = outs;
        let out = Output {
            ok: stopped.as_ref().is_ok_and(|s| s.success()),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            cmdline,
        };
        match stopped {
            Ok(_) => Ok(out),
            Err(why) => Err(Error::Package(PackageError {
                package: failed_package(&out),
                what: format!(
                    "`{}` in the root {}: {why}:{}",
                    out.cmdline,
                    self.root_display,
                    out.tail()
                ),
                hint: "run `sysgen recover --rollback` to undo what it began (a maintainer script it cut short is not run again), or `sysgen recover` to try again; the timeout is --package-timeout".into(),
            })),
        }
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

/// How often a running tool is looked at.
const POLL: Duration = Duration::from_millis(20);
/// How long a stopped tool gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// How long the output of a finished tool is waited for.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Stops the tool's process group: SIGTERM, then SIGKILL after a grace,
/// and waits for the tool itself. The rest of the group goes with it
/// (SIGKILL to the group again once the tool is reaped).
fn stop(child: &mut Child, group: i32) {
    children::signal_group(group, libc::SIGTERM);
    let until = Instant::now() + TERM_GRACE;
    while Instant::now() < until {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(POLL);
    }
    children::signal_group(group, libc::SIGKILL);
    // Reaping cannot fail for a child of ours but by EINTR; it is dead.
    let _ = child.wait();
}

/// Reads `pipe` to its end into `buf`, handing each line to `sink` as it
/// comes when there is one.
fn read_all(
    pipe: Box<dyn Read + Send>,
    buf: &mut Vec<u8>,
    sink: Option<&ToolOutput>,
) -> std::io::Result<()> {
    let Some(sink) = sink else {
        let mut pipe = pipe;
        return pipe.read_to_end(buf).map(|_| ());
    };
    let mut lines = BufReader::new(pipe);
    loop {
        let start = buf.len();
        if lines.read_until(b'\n', buf)? == 0 {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&buf[start..]);
        (sink.0)(line.trim_end_matches('\n'));
    }
}
