//! Running one timed child process, and the statistics over several runs.

use crate::Result;
use serde::Serialize;
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One timed run of one child process.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub wall_s: f64,
    pub user_s: f64,
    pub sys_s: f64,
    /// Peak resident set of the child (and of the descendants it waited for), KiB.
    pub maxrss_kib: u64,
    /// Exit status, or 128 + signal number.
    pub status: i32,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.status == 0
    }

    pub fn stdout_text(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// The last few lines of stderr, for error reports.
    pub fn stderr_tail(&self) -> String {
        let s = fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(4)..].join(" | ")
    }
}

fn tv_secs(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}

/// Flush dirty pages, so that the write-back of one run is not billed to the next.
pub fn sync() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// The first argument that makes `sysgen-bench` a [`child_main`] runner.
pub const RUNNER_ARG: &str = "--measure-child";

/// Run `cmd` to completion with stdout/stderr captured into `log_base.out`/`.err`;
/// time it from spawn to reap and take its rusage from wait4(2).
///
/// Through a runner (this binary again, see [`child_main`]): a child's
/// `ru_maxrss` is at least the resident set of the process that spawned
/// it (Linux records the spawner's high-water mark at `execve`, which
/// vfork and fork share), so spawned from the benchmark itself every
/// operation's peak would read at least the benchmark's own (66 MiB at
/// 300k files: a no-op switch of 7 MiB read 66). The runner is small.
pub fn run(cmd: Command, log_base: &Path) -> Result<Run> {
    run_through(&std::env::current_exe()?, cmd, log_base)
}

/// [`run`] through the runner `runner` (this binary, but in tests).
fn run_through(runner_exe: &Path, cmd: Command, log_base: &Path) -> Result<Run> {
    let stdout = log_base.with_extension("out");
    let stderr = log_base.with_extension("err");
    let report = log_base.with_extension("rusage");
    let mut runner = Command::new(runner_exe);
    runner.arg(RUNNER_ARG).arg(&report).arg(cmd.get_program());
    runner.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => runner.env(k, v),
            None => runner.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        runner.current_dir(d);
    }
    runner
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout)?)
        .stderr(fs::File::create(&stderr)?);
    let (_, _, status) = spawn_wait(runner)?;
    let text = fs::read_to_string(&report).map_err(|e| {
        format!(
            "the runner of {:?} left no report (status {status}): {e}",
            cmd.get_program()
        )
    })?;
    let f: Vec<&str> = text.split_whitespace().collect();
    let num = |i: usize| -> Result<f64> {
        Ok(f.get(i)
            .ok_or_else(|| format!("short runner report {text:?}"))?
            .parse::<f64>()?)
    };
    let run = Run {
        wall_s: num(0)?,
        user_s: num(1)?,
        sys_s: num(2)?,
        maxrss_kib: num(3)? as u64,
        status: num(4)? as i32,
        stdout,
        stderr,
    };
    fs::remove_file(&report)?;
    Ok(run)
}

/// The runner: `sysgen-bench --measure-child REPORT PROGRAM ARGS…` runs
/// PROGRAM with this process's stdio, environment and directory, and
/// writes `wall user sys maxrss_kib status` to REPORT.
pub fn child_main(args: &[std::ffi::OsString]) -> Result<()> {
    let [report, program, rest @ ..] = args else {
        return Err(format!("usage: sysgen-bench {RUNNER_ARG} REPORT PROGRAM [ARG…]").into());
    };
    let mut cmd = Command::new(program);
    cmd.args(rest);
    let (wall_s, ru, status) = spawn_wait(cmd)?;
    fs::write(
        report,
        format!(
            "{wall_s} {} {} {} {status}\n",
            tv_secs(ru.ru_utime),
            tv_secs(ru.ru_stime),
            ru.ru_maxrss
        ),
    )?;
    Ok(())
}

/// Spawns `cmd` and reaps it with wait4(2): wall time from spawn to reap,
/// its rusage, and its exit status (128 + signal number if killed).
fn spawn_wait(mut cmd: Command) -> Result<(f64, libc::rusage, i32)> {
    let t0 = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = loop {
        // SAFETY: `pid` is our own unreaped child; `status` and `ru` are valid for writes.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        break rc;
    };
    let wall_s = t0.elapsed().as_secs_f64();
    // We reaped it ourselves: std must not wait for it again.
    drop(child);
    if rc != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()).into());
    }
    let status = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    };
    Ok((wall_s, ru, status))
}

/// Median and spread of a sample.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

pub fn summarize(xs: &[f64]) -> Option<Summary> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// Disk usage of a tree like `du -s` (allocated blocks, hard links counted once), bytes.
pub fn disk_usage(root: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
            continue;
        }
        total += m.blocks() * 512;
        if m.is_dir()
            && let Ok(rd) = fs::read_dir(&p)
        {
            stack.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
        }
    }
    total
}

/// Sum of the sizes of the regular files under `root` (apparent size).
pub fn apparent_file_bytes(root: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_file() {
            total += m.len();
        } else if m.is_dir()
            && let Ok(rd) = fs::read_dir(&p)
        {
            stack.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = summarize(&[4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 10.0));
        let s = summarize(&[5.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (5.0, 5.0, 5.0));
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn the_runner_reports_its_childs_status_and_rss() {
        let d = tempfile::tempdir().unwrap();
        let report = d.path().join("report");
        child_main(&[report.clone().into()]).expect_err("a report path and a program are needed");
        child_main(&[
            report.clone().into(),
            "sh".into(),
            "-c".into(),
            "exit 3".into(),
        ])
        .unwrap();
        let f: Vec<f64> = fs::read_to_string(&report)
            .unwrap()
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(f.len(), 5);
        assert!(f[0] >= 0.0 && f[3] > 0.0, "wall and rss: {f:?}");
        assert_eq!(f[4], 3.0);
    }

    #[test]
    fn run_reads_the_runners_report_and_captures_output() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        // A runner that speaks the protocol with figures of its own.
        let runner = d.path().join("runner");
        fs::write(
            &runner,
            "#!/bin/sh\nshift; report=$1; shift; \"$@\"; s=$?\necho \"0.5 0.1 0.2 1234 $s\" > \"$report\"\n",
        )
        .unwrap();
        fs::set_permissions(&runner, fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = Command::new("sh");
        c.args(["-c", "echo hi; exit 3"]);
        let r = run_through(&runner, c, &d.path().join("x")).unwrap();
        assert_eq!((r.status, r.maxrss_kib, r.wall_s), (3, 1234, 0.5));
        assert_eq!(r.stdout_text(), "hi\n");
        assert!(!d.path().join("x.rusage").exists(), "the report is removed");
    }

    #[test]
    fn du_counts_hardlinks_once() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a"), vec![1u8; 64 * 1024]).unwrap();
        let one = disk_usage(d.path());
        fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        assert_eq!(disk_usage(d.path()), one);
        assert_eq!(apparent_file_bytes(d.path()), 128 * 1024);
    }
}
