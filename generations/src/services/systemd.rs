//! Running service steps: `systemctl` (always as a child process with
//! explicit arguments, its stderr kept for the error message) and the
//! activation checks (`/bin/sh -c COMMAND` with a deadline).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Action, ServiceStep, Services};
use crate::db::Db;
pub use crate::error::{Failure, ServiceError};
pub use crate::host::ServiceOptions;

fn command_text(systemctl: &Path, args: &[String]) -> String {
    let mut s = systemctl.display().to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Runs `systemctl ARGS`; returns its exit code, stdout and stderr.
fn systemctl(
    opts: &ServiceOptions,
    args: &[String],
) -> Result<(i32, String, String), ServiceError> {
    let out = Command::new(&opts.systemctl)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ServiceError::Tool {
            command: command_text(&opts.systemctl, args),
            why: format!("{e}; install systemd (systemctl) or remove the services section"),
        })?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    ))
}

fn root_arg(root: &Path) -> String {
    format!("--root={}", root.display())
}

/// Whether each unit of `new` that `old` lacks is enabled on the root now
/// (`systemctl --root=ROOT is-enabled`): what a unit goes back to when it
/// leaves the configuration. A unit whose file does not exist yet is not
/// enabled.
pub fn origins_on_root(
    opts: &ServiceOptions,
    root: &Path,
    old: &Services,
    new: &Services,
) -> Result<BTreeMap<String, bool>, ServiceError> {
    let mut out = BTreeMap::new();
    for unit in new.0.keys().filter(|u| !old.0.contains_key(*u)) {
        let state = enabled_state(opts, root, unit)?;
        out.insert(unit.clone(), state == "enabled");
    }
    Ok(out)
}

/// What `systemctl --root=ROOT is-enabled UNIT` says (`enabled`,
/// `disabled`, `static`, `masked`, …).
fn enabled_state(opts: &ServiceOptions, root: &Path, unit: &str) -> Result<String, ServiceError> {
    let args = [
        root_arg(root),
        "is-enabled".into(),
        "--".into(),
        unit.to_owned(),
    ];
    let (_, state, _) = systemctl(opts, &args)?;
    Ok(state)
}

/// Units of the active generation whose enablement on the root is not what
/// the generation says (for `verify` and `status`). A unit declared
/// enabled drifts when it is disabled, masked or gone; one declared
/// disabled, when it is enabled. Static units (no `[Install]`) cannot be
/// either and never drift. Whether units run is not compared: that is
/// systemd's to keep.
pub fn enablement_drift(
    opts: &ServiceOptions,
    root: &Path,
    services: &Services,
) -> Result<Vec<crate::Drift>, ServiceError> {
    let mut out = Vec::new();
    for (unit, u) in &services.0 {
        let state = enabled_state(opts, root, unit)?;
        let drifted = if u.enable {
            matches!(
                state.as_str(),
                "disabled" | "masked" | "masked-runtime" | ""
            )
        } else {
            state == "enabled"
        };
        if drifted {
            let state = if state.is_empty() {
                "not found"
            } else {
                &state
            };
            out.push(crate::Drift {
                path: unit.clone(),
                what: format!(
                    "{state}, the generation {} it",
                    if u.enable { "enables" } else { "disables" }
                ),
            });
        }
    }
    Ok(out)
}

/// Runs one service step on `root`. A unit that does not come up is an
/// error when `opts.rollback_on_failure`, else it is added to `failed` and
/// the plan goes on.
pub fn apply_step(
    root: &Path,
    db: &mut Db,
    opts: &ServiceOptions,
    step: &ServiceStep,
    rollback_on_failure: bool,
    failed: &mut Vec<Failure>,
) -> Result<(), crate::Error> {
    let result = match step {
        ServiceStep::Enable { unit, adopt, .. } | ServiceStep::Disable { unit, adopt, .. } => {
            // Recorded before the change, so a crash right after it still
            // knows what to go back to.
            if let Some(was) = adopt {
                db.set_unit_origin(unit, *was)?;
            }
            let verb = if matches!(step, ServiceStep::Enable { .. }) {
                "enable"
            } else {
                "disable"
            };
            let args = [root_arg(root), verb.into(), "--".into(), unit.clone()];
            let (code, _, err) = systemctl(opts, &args)?;
            // Disabling a unit whose file is gone leaves nothing enabled:
            // that is the state asked for. A unit that cannot be enabled
            // (no unit file, masked) fails like one that cannot start, so
            // the switch is rolled back rather than left half done.
            if code != 0 && !(verb == "disable" && err.contains("does not exist")) {
                Err(Failure {
                    unit: unit.clone(),
                    what: format!(
                        "`{}` exited with status {code}: {err}",
                        command_text(&opts.systemctl, &args)
                    ),
                    log: Vec::new(),
                })
            } else {
                Ok(())
            }
        }
        ServiceStep::Runtime { skipped: true, .. } => Ok(()),
        ServiceStep::Runtime { action, .. } => run_action(opts, action)?,
    };
    match result {
        Ok(()) => Ok(()),
        Err(failure) if rollback_on_failure => Err(ServiceError::Failed {
            failure,
            rolled_back: None,
        }
        .into()),
        Err(failure) => {
            failed.push(failure);
            Ok(())
        }
    }
}

/// `Ok(Err(failure))`: the unit (or systemd) did not do as asked; `Err`:
/// systemctl itself could not be run.
fn run_action(opts: &ServiceOptions, action: &Action) -> Result<Result<(), Failure>, ServiceError> {
    let s = |v: &str| v.to_owned();
    match action {
        Action::DaemonReload => {
            let args = [s("daemon-reload")];
            let (code, _, err) = systemctl(opts, &args)?;
            Ok((code == 0).then_some(()).ok_or_else(|| Failure {
                unit: "systemd".into(),
                what: format!("`systemctl daemon-reload` exited with status {code}: {err}"),
                log: Vec::new(),
            }))
        }
        Action::Stop { unit } => {
            let (code, _, err) = systemctl(opts, &[s("stop"), s("--"), unit.clone()])?;
            // 5: the unit is not loaded, so it is not running either.
            if code == 0 || code == 5 {
                return Ok(Ok(()));
            }
            Ok(Err(failure(
                opts,
                unit,
                format!("`systemctl stop {unit}` exited with status {code}: {err}"),
                Vec::new(),
            )))
        }
        Action::Start { unit } | Action::Restart { unit, .. } | Action::Reload { unit, .. } => {
            let verb = match action {
                Action::Start { .. } => "start",
                Action::Restart {
                    if_running: false, ..
                } => "restart",
                Action::Restart {
                    if_running: true, ..
                } => "try-restart",
                Action::Reload {
                    if_running: false, ..
                } => "reload-or-restart",
                _ => "try-reload-or-restart",
            };
            let (code, _, err) = systemctl(opts, &[s(verb), s("--"), unit.clone()])?;
            if code != 0 {
                return Ok(Err(failure(
                    opts,
                    unit,
                    format!("`systemctl {verb} {unit}` exited with status {code}: {err}"),
                    Vec::new(),
                )));
            }
            // A unit that dies at once passes `start` (Type=simple): look
            // again, so a dead unit is not reported as started. Only
            // "failed" counts: a oneshot unit that ran is "inactive".
            if verb == "start" || verb == "restart" {
                let args = [
                    s("show"),
                    s("-p"),
                    s("ActiveState"),
                    s("--value"),
                    s("--"),
                    unit.clone(),
                ];
                let (_, state, _) = systemctl(opts, &args)?;
                if state == "failed" {
                    return Ok(Err(failure(
                        opts,
                        unit,
                        format!("it is failed after `systemctl {verb}`"),
                        Vec::new(),
                    )));
                }
            }
            Ok(Ok(()))
        }
        Action::Check {
            unit,
            command,
            timeout_secs,
        } => Ok(run_check(command, Duration::from_secs(*timeout_secs))
            .map_err(|(what, output)| failure(opts, unit, what, output))),
    }
}

/// A failure with the unit's last log lines (`systemctl status` shows them
/// from the journal) after the check's own output.
fn failure(opts: &ServiceOptions, unit: &str, what: String, mut log: Vec<String>) -> Failure {
    let args = [
        "status".to_owned(),
        "--no-pager".into(),
        "--full".into(),
        "--lines=10".into(),
        "--".into(),
        unit.to_owned(),
    ];
    if let Ok((_, out, _)) = systemctl(opts, &args) {
        log.extend(out.lines().map(str::to_owned));
    }
    Failure {
        unit: unit.to_owned(),
        what,
        log,
    }
}

/// Runs `/bin/sh -c command`; `Err((what failed, its output))` when it exits
/// non-zero or outlives `timeout` (then it is killed).
fn run_check(command: &str, timeout: Duration) -> Result<(), (String, Vec<String>)> {
    let cannot = |e: std::io::Error| {
        (
            format!("its check `{command}` could not run: {e}"),
            Vec::new(),
        )
    };
    // Output goes to an anonymous file, not a pipe: a process the check
    // leaves behind cannot then keep sysgen waiting for end of file.
    let mut log = anonymous_file().map_err(cannot)?;
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().map_err(cannot)?))
        .stderr(Stdio::from(log.try_clone().map_err(cannot)?))
        .spawn()
        .map_err(cannot)?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                return Err((
                    format!("its check `{command}` could not be waited for: {e}"),
                    Vec::new(),
                ));
            }
        }
    };
    let mut bytes = Vec::new();
    let _ = log
        .seek(SeekFrom::Start(0))
        .and_then(|_| log.read_to_end(&mut bytes));
    let text = String::from_utf8_lossy(&bytes);
    let output: Vec<String> = text
        .lines()
        .rev()
        .take(10)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|l| format!("check: {l}"))
        .collect();
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err((
            format!(
                "its check `{command}` exited with {}",
                s.code()
                    .map_or("a signal".to_owned(), |c| format!("status {c}"))
            ),
            output,
        )),
        None => Err((
            format!(
                "its check `{command}` did not finish within {}s",
                timeout.as_secs()
            ),
            output,
        )),
    }
}

/// A file with no name (memfd), gone when closed.
fn anonymous_file() -> std::io::Result<File> {
    let fd =
        nix::sys::memfd::memfd_create(c"sysgen-check", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_pass_fail_and_time_out_with_their_output() {
        assert_eq!(run_check("true", Duration::from_secs(5)), Ok(()));
        let (what, out) = run_check("echo one; echo two >&2; exit 3", Duration::from_secs(5))
            .expect_err("exit 3 fails");
        assert!(what.contains("exited with status 3"), "{what}");
        assert_eq!(out, ["check: one", "check: two"]);
        // A check that leaves a process behind holding its output, and one
        // that outlives its timeout: neither keeps sysgen waiting.
        let start = Instant::now();
        assert_eq!(run_check("sleep 3 & true", Duration::from_secs(5)), Ok(()));
        let (what, _) = run_check("sleep 4", Duration::from_secs(1)).expect_err("times out");
        assert!(what.contains("did not finish within 1s"), "{what}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
