//! The recorder: runs operations several times, prints progress, keeps results.

use crate::Result;
use crate::measure::{self, Run, Summary};
use serde::Serialize;
use std::path::PathBuf;
use std::process::Command;

/// All runs of one operation of one tool.
#[derive(Debug, Clone, Serialize)]
pub struct OpResult {
    pub key: String,
    pub label: String,
    pub tool: String,
    pub command: String,
    pub runs: Vec<Run>,
    /// Wall-clock seconds over the successful runs.
    pub wall: Option<Summary>,
    pub user_s: Option<Summary>,
    pub sys_s: Option<Summary>,
    pub maxrss_kib: Option<u64>,
    pub error: Option<String>,
    pub skipped: Option<String>,
}

impl OpResult {
    fn new(key: &str, label: &str, tool: &str) -> Self {
        OpResult {
            key: key.into(),
            label: label.into(),
            tool: tool.into(),
            command: String::new(),
            runs: Vec::new(),
            wall: None,
            user_s: None,
            sys_s: None,
            maxrss_kib: None,
            error: None,
            skipped: None,
        }
    }
}

pub struct Recorder {
    logs: PathBuf,
    seq: usize,
    pub ops: Vec<OpResult>,
}

/// Something to run before a timed run (untimed).
pub type Prep<'a> = &'a mut dyn FnMut(usize) -> Result<()>;
/// The command of run `i` (1-based).
pub type Cmd<'a> = &'a mut dyn FnMut(usize) -> Result<Command>;

/// One operation of [`Recorder::measure_interleaved`].
pub struct Interleaved<'a> {
    pub key: &'a str,
    pub label: &'a str,
    pub tool: &'a str,
    pub prep: Prep<'a>,
    pub cmd: Cmd<'a>,
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

impl Recorder {
    pub fn new(logs: PathBuf) -> Self {
        Recorder {
            logs,
            seq: 0,
            ops: Vec::new(),
        }
    }

    fn log_base(&mut self, name: &str) -> PathBuf {
        self.seq += 1;
        self.logs.join(format!("{:03}-{name}", self.seq))
    }

    /// Time `n` runs of an operation. `prep(i)` runs untimed before run `i`, then
    /// `sync`. A failing run ends the operation (reported, never fatal).
    #[allow(clippy::too_many_arguments)]
    pub fn measure(
        &mut self,
        step: &str,
        key: &str,
        label: &str,
        tool: &str,
        n: usize,
        prep: Prep,
        cmd: Cmd,
    ) -> bool {
        let mut res = OpResult::new(key, label, tool);
        for i in 1..=n {
            if !self.run_once(step, &mut res, n, i, prep, cmd) {
                break;
            }
        }
        self.finish(res)
    }

    /// Time `n` rounds of several operations, one run of each per round in
    /// turn (A B A B ...), so that a slow drift of the machine (writeback of
    /// an earlier step, ext4 after a mass delete) reaches every side alike.
    /// Each is recorded as [`Recorder::measure`] would, with its own spread;
    /// one that fails stops, the others go on. True if all succeeded.
    pub fn measure_interleaved(&mut self, step: &str, n: usize, ops: &mut [Interleaved]) -> bool {
        let mut results: Vec<(OpResult, bool)> = ops
            .iter()
            .map(|o| (OpResult::new(o.key, o.label, o.tool), true))
            .collect();
        for i in 1..=n {
            for (op, (res, going)) in ops.iter_mut().zip(&mut results) {
                if *going {
                    *going = self.run_once(step, res, n, i, op.prep, op.cmd);
                }
            }
        }
        let mut ok = true;
        for (res, _) in results {
            ok &= self.finish(res);
        }
        ok
    }

    /// Run `i` of `n` of `res`'s operation: false if it failed (recorded).
    fn run_once(
        &mut self,
        step: &str,
        res: &mut OpResult,
        n: usize,
        i: usize,
        prep: Prep,
        cmd: Cmd,
    ) -> bool {
        let label = res.label.clone();
        if let Err(e) = prep(i) {
            eprintln!("{step} {label}: setup of run {i} failed: {e}");
            res.error = Some(format!("setup of run {i}: {e}"));
            return false;
        }
        let c = match cmd(i) {
            Ok(c) => c,
            Err(e) => {
                res.error = Some(format!("run {i}: {e}"));
                return false;
            }
        };
        res.command = describe(&c);
        measure::sync();
        eprint!("{step} {label}: run {i}/{n} ...");
        let base = self.log_base(&res.key);
        match measure::run(c, &base) {
            Ok(r) => {
                let ok = r.ok();
                if ok {
                    eprintln!(" {:.3} s, {} MiB", r.wall_s, r.maxrss_kib / 1024);
                } else {
                    eprintln!(" FAILED (exit {}): {}", r.status, r.stderr_tail());
                    res.error = Some(format!("run {i} exited {}: {}", r.status, r.stderr_tail()));
                }
                res.runs.push(r);
                ok
            }
            Err(e) => {
                eprintln!(" FAILED: {e}");
                res.error = Some(format!("run {i}: {e}"));
                false
            }
        }
    }

    /// Summarizes the runs of `res` and keeps it; true if it had no error.
    fn finish(&mut self, mut res: OpResult) -> bool {
        let good: Vec<&Run> = res.runs.iter().filter(|r| r.ok()).collect();
        let pick =
            |f: fn(&Run) -> f64| measure::summarize(&good.iter().map(|r| f(r)).collect::<Vec<_>>());
        res.wall = pick(|r| r.wall_s);
        res.user_s = pick(|r| r.user_s);
        res.sys_s = pick(|r| r.sys_s);
        res.maxrss_kib = good.iter().map(|r| r.maxrss_kib).max();
        let ok = res.error.is_none();
        self.ops.push(res);
        ok
    }

    /// Record an operation that was not measured, and why.
    pub fn skip(&mut self, key: &str, label: &str, tool: &str, why: &str) {
        eprintln!("skip {label} ({tool}): {why}");
        let mut res = OpResult::new(key, label, tool);
        res.skipped = Some(why.into());
        self.ops.push(res);
    }

    pub fn get(&self, key: &str) -> Option<&OpResult> {
        self.ops.iter().find(|o| o.key == key)
    }
}
