//! A rollout: hosts in batches (the canary batch first), each batch in
//! parallel, a failure budget that stops it, and, when it stops, the
//! hosts already switched rolled back if asked.
//!
//! One host's deploy is three steps over ssh: push (only the objects the
//! host lacks), `switch --confirm-within`, then `confirm` over a fresh
//! connection. The push is one function given by the caller
//! ([`Steps::push`]), so the transport can change under it.

use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::inventory::Host;
use crate::ssh;

/// How to roll out.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hosts deployed at once within a batch, and the size of a batch.
    pub parallel: usize,
    /// Hosts in the first batch; any failure there stops the rollout.
    pub canary: usize,
    /// Failures tolerated after the canary batch before the rollout stops.
    pub max_failures: usize,
    pub rollback_on_stop: bool,
    /// `--confirm-within` for the hosts' switches (a duration as sysgen
    /// reads it); `None`: no dead-man's rollback.
    pub confirm_within: Option<String>,
}

/// Where a host ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Not reached: the rollout stopped before its batch.
    Untouched,
    /// Already on its generation.
    Unchanged,
    /// Switched and confirmed.
    Switched,
    Failed,
    /// Switched, then rolled back because the rollout stopped.
    RolledBack,
}

/// One host's row of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    pub outcome: Outcome,
    /// The generation (id) built for it.
    pub generation: String,
    /// Its active generation number before and after.
    pub from: Option<u64>,
    pub to: Option<u64>,
    /// What the push moved to it.
    pub objects: u64,
    pub bytes: u64,
    /// The step that failed ("push", "switch", "confirm", "rollback"), and why.
    pub failed_step: Option<&'static str>,
    pub error: Option<String>,
    pub seconds: f64,
}

/// What the push of a generation to a host moved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Moved {
    pub objects: u64,
    pub bytes: u64,
}

/// What a host's deploy needs from the caller.
pub trait Steps: Sync {
    /// Copies the generation `id` (hex) to `host`: only what it lacks.
    fn push(&self, host: &Host, id: &str) -> Result<Moved, String>;
    /// A host's row changed (started, a step done, finished): the live view.
    fn progress(&self, report: &HostReport, step: &str);
}

#[derive(Debug, Serialize)]
pub struct Rollout {
    pub hosts: Vec<HostReport>,
    /// Why the rollout stopped early, if it did.
    pub stopped: Option<String>,
    pub failed: usize,
}

/// Deploys `targets` (host, generation id) in batches.
pub fn run(targets: &[(Host, String)], opts: &Options, steps: &dyn Steps) -> Rollout {
    let mut reports: Vec<HostReport> = targets
        .iter()
        .map(|(h, id)| HostReport {
            host: h.name.clone(),
            outcome: Outcome::Untouched,
            generation: id.clone(),
            from: None,
            to: None,
            objects: 0,
            bytes: 0,
            failed_step: None,
            error: None,
            seconds: 0.0,
        })
        .collect();
    let parallel = opts.parallel.max(1);
    let canary = opts.canary.min(targets.len());
    let mut batches: Vec<std::ops::Range<usize>> = Vec::new();
    if canary > 0 {
        batches.push(0..canary);
    }
    let mut i = canary;
    while i < targets.len() {
        let end = (i + parallel).min(targets.len());
        batches.push(i..end);
        i = end;
    }
    let mut stopped = None;
    let mut failed = 0;
    for (b, range) in batches.iter().enumerate() {
        let done = run_batch(&targets[range.clone()], parallel, opts, steps);
        for (k, r) in done.into_iter().enumerate() {
            reports[range.start + k] = r;
        }
        let now_failed = reports[range.clone()]
            .iter()
            .filter(|r| r.outcome == Outcome::Failed)
            .count();
        failed += now_failed;
        let is_canary = b == 0 && canary > 0;
        if is_canary && now_failed > 0 {
            stopped = Some(format!(
                "{now_failed} of {} canary host(s) failed",
                range.len()
            ));
        } else if failed > opts.max_failures {
            stopped = Some(format!(
                "{failed} host(s) failed, more than --max-failures {}",
                opts.max_failures
            ));
        }
        if stopped.is_some() {
            break;
        }
    }
    if stopped.is_some() && opts.rollback_on_stop {
        roll_back_switched(targets, &mut reports, parallel, steps);
    }
    Rollout {
        hosts: reports,
        stopped,
        failed,
    }
}

/// Deploys a batch, `parallel` hosts at a time; reports in input order.
fn run_batch(
    batch: &[(Host, String)],
    parallel: usize,
    opts: &Options,
    steps: &dyn Steps,
) -> Vec<HostReport> {
    let next = Mutex::new(0usize);
    let out: Mutex<Vec<Option<HostReport>>> = Mutex::new(vec![None; batch.len()]);
    std::thread::scope(|s| {
        for _ in 0..parallel.min(batch.len()) {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some((host, id)) = batch.get(i) else {
                        break;
                    };
                    let r = deploy_one(host, id, opts, steps);
                    out.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    out.into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .zip(batch)
        .map(|(r, (h, id))| {
            r.unwrap_or_else(|| HostReport {
                host: h.name.clone(),
                outcome: Outcome::Failed,
                generation: id.clone(),
                from: None,
                to: None,
                objects: 0,
                bytes: 0,
                failed_step: None,
                error: Some("the deploy of this host did not finish (a bug)".into()),
                seconds: 0.0,
            })
        })
        .collect()
}

/// Push, switch (with the dead-man's rollback armed), confirm.
fn deploy_one(host: &Host, id: &str, opts: &Options, steps: &dyn Steps) -> HostReport {
    let started = Instant::now();
    let mut r = HostReport {
        host: host.name.clone(),
        outcome: Outcome::Failed,
        generation: id.to_owned(),
        from: None,
        to: None,
        objects: 0,
        bytes: 0,
        failed_step: None,
        error: None,
        seconds: 0.0,
    };
    let fail = |mut r: HostReport, step: &'static str, e: String| {
        r.failed_step = Some(step);
        r.error = Some(e);
        r.outcome = Outcome::Failed;
        r.seconds = started.elapsed().as_secs_f64();
        steps.progress(&r, "failed");
        r
    };
    steps.progress(&r, "push");
    match steps.push(host, id) {
        Ok(m) => (r.objects, r.bytes) = (m.objects, m.bytes),
        Err(e) => return fail(r, "push", e),
    }
    // Whether the host has a generation to go back to: the dead-man's
    // rollback needs one (a first deploy has nothing to fall back on).
    let active = match ssh::run(host, &["status"]) {
        Ok(reply) if reply.code == Some(0) => reply.json::<ssh::Status>().map(|s| s.active),
        Ok(reply) => Err(reply.reason()),
        Err(e) => Err(e),
    };
    let active = match active {
        Ok(a) => a,
        Err(e) => return fail(r, "switch", e),
    };
    r.from = active.as_ref().map(|a| a.number);
    if active.as_ref().is_some_and(|a| a.id == id) {
        r.to = r.from;
        r.outcome = Outcome::Unchanged;
        r.seconds = started.elapsed().as_secs_f64();
        steps.progress(&r, "unchanged");
        return r;
    }
    steps.progress(&r, "switch");
    let mut args = vec!["switch", id];
    let armed = active.is_some() && opts.confirm_within.is_some();
    if let (true, Some(d)) = (armed, &opts.confirm_within) {
        args.extend(["--confirm-within", d.as_str()]);
    }
    let switched = match ssh::run(host, &args) {
        Ok(reply) if reply.code == Some(0) => reply.json::<ssh::Switched>(),
        Ok(reply) => Err(reply.reason()),
        Err(e) => Err(e),
    };
    match switched {
        Ok(s) => {
            r.from = s.from;
            r.to = Some(s.number);
            if s.unchanged {
                r.outcome = Outcome::Unchanged;
            }
        }
        Err(e) => return fail(r, "switch", e),
    }
    if armed {
        // A fresh connection: it proves the host still answers after
        // its switch.
        steps.progress(&r, "confirm");
        match ssh::run(host, &["confirm", id]) {
            Ok(reply) if reply.code == Some(0) => {}
            Ok(reply) => return fail(r, "confirm", reply.reason()),
            Err(e) => return fail(r, "confirm", e),
        }
    }
    if r.outcome != Outcome::Unchanged {
        r.outcome = Outcome::Switched;
    }
    r.seconds = started.elapsed().as_secs_f64();
    steps.progress(&r, "done");
    r
}

/// `--rollback-on-stop`: every host switched by this rollout goes back
/// to the generation it had.
fn roll_back_switched(
    targets: &[(Host, String)],
    reports: &mut [HostReport],
    parallel: usize,
    steps: &dyn Steps,
) {
    let todo: Vec<usize> = (0..reports.len())
        .filter(|&i| reports[i].outcome == Outcome::Switched && reports[i].from.is_some())
        .collect();
    let results: Mutex<Vec<(usize, Result<(), String>)>> = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    std::thread::scope(|s| {
        for _ in 0..parallel.min(todo.len()) {
            s.spawn(|| {
                loop {
                    let k = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        *n += 1;
                        *n - 1
                    };
                    let Some(&i) = todo.get(k) else { break };
                    let from = reports[i].from.unwrap_or_default().to_string();
                    let res = match ssh::run(&targets[i].0, &["rollback", "--to", &from]) {
                        Ok(reply) if reply.code == Some(0) => Ok(()),
                        Ok(reply) => Err(reply.reason()),
                        Err(e) => Err(e),
                    };
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((i, res));
                }
            });
        }
    });
    for (i, res) in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        let r = &mut reports[i];
        match res {
            Ok(()) => {
                r.outcome = Outcome::RolledBack;
                r.to = r.from;
            }
            Err(e) => {
                r.failed_step = Some("rollback");
                r.error = Some(e);
                r.outcome = Outcome::Failed;
            }
        }
        steps.progress(r, "rolled back");
    }
}
