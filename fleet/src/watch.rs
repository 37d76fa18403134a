//! Starting the dead-man's watcher: what rolls the host back when nobody
//! confirms a switch in time.
//!
//! Where systemd is PID 1 on the root being switched, the watcher is a
//! transient timer (`systemd-run --on-active`): it outlives the ssh
//! session even where logind kills a session's processes when it ends
//! (`KillUserProcesses=yes`). Elsewhere, or when `systemd-run` fails, it
//! is a detached process in a session of its own (`setsid`): the end of
//! the ssh session (SIGHUP to its session, closed pipes) does not reach
//! it. Either way the record in the state directory is what counts: a
//! reboot ends both, and `sysgen-confirm-check.service` starts the wait
//! again at boot.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use sysgen_generations::Error;

use crate::pending::Watcher;

/// Variables of the tests' fault injection: the watcher's rollback must
/// not inherit a fault meant for the switch that started it.
const NOT_INHERITED: &[&str] = &["SYSGEN_FAULT_AFTER_STEPS", "SYSGEN_FAULT_POINT"];

/// Starts a watcher running `program ARGS confirm --check` once `secs`
/// have passed (`--wait`: the detached process waits itself). `args` are
/// the global options that name the root and the state directory.
pub fn spawn(
    program: &Path,
    args: &[OsString],
    secs: i64,
    systemd: bool,
) -> Result<Watcher, Error> {
    if systemd && let Some(w) = systemd_timer(program, args, secs) {
        return Ok(w);
    }
    detached(program, args)
}

/// A transient timer; `None` when `systemd-run` is missing or fails (the
/// caller falls back to a detached process).
fn systemd_timer(program: &Path, args: &[OsString], secs: i64) -> Option<Watcher> {
    let unit = format!("sysgen-confirm-{}", std::process::id());
    let status = Command::new("systemd-run")
        .arg(format!("--unit={unit}"))
        .arg(format!("--on-active={}s", secs.max(1)))
        // The default accuracy is a minute: a rollback due in 30 seconds
        // must not wait for 90.
        .arg("--timer-property=AccuracySec=1s")
        .arg("--quiet")
        .arg("--")
        .arg(program)
        .args(args)
        .args(["confirm", "--check"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status.success().then_some(Watcher::Systemd { unit })
}

fn detached(program: &Path, args: &[OsString]) -> Result<Watcher, Error> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .args(["confirm", "--check", "--wait"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for v in NOT_INHERITED {
        cmd.env_remove(v);
    }
    // SAFETY: setsid is async-signal-safe and touches no memory of the
    // parent; it is all the child does between fork and exec.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(Into::into));
    }
    let child = cmd.spawn().map_err(|e| Error::Io {
        path: program.to_owned(),
        source: e,
    })?;
    // Not waited for: once this command exits, init reaps it.
    Ok(Watcher::Process { pid: child.id() })
}
