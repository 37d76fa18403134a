//! `sysgen deploy INVENTORY`: builds every host's generation in this
//! (the deployer's) state, content shared between hosts stored once;
//! then, batch by batch (canaries first), pushes to each host only what
//! it lacks, switches it over ssh with the dead-man's rollback armed, and
//! confirms over a fresh connection (`sysgen_fleet::rollout`). A live
//! view on a terminal, a summary table, `--json`; exit 1 unless every
//! host ended on its generation.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sysgen_fleet::inventory::{Host, Inventory};
use sysgen_fleet::rollout::{self, HostReport, Moved, Outcome, Rollout, Steps};
use sysgen_generations::Error;
use sysgen_generations::State;
use sysgen_generations::ingest::build;
use sysgen_generations::manifest::GenerationId;
use sysgen_generations::progress::NoProgress;
use sysgen_generations::state::Access;
use sysgen_remote::local::StateTransport;
use sysgen_remote::secret::Recipient;
use sysgen_remote::ssh::SshOptions;
use sysgen_remote::sync::{Side, SyncOptions, sync_generation};
use sysgen_store::Hash;

use crate::Env;
use crate::output::{Bar, Out, plural};

pub struct Request<'a> {
    pub inventory: &'a Path,
    pub limit: Option<&'a str>,
    pub parallel: usize,
    pub canary: usize,
    pub max_failures: usize,
    pub rollback_on_stop: bool,
    pub confirm_within: Option<&'a str>,
    /// Overrides the inventory's `program` (the tests' binary).
    pub remote_program: Option<&'a str>,
}

#[derive(Serialize)]
struct DeployOutput<'a> {
    ok: bool,
    /// Distinct generations built (hosts with the same configuration share one).
    generations: usize,
    stopped: &'a Option<String>,
    failed: usize,
    hosts: &'a [HostReport],
}

pub fn run(env: &Env, out: &Out, bar: &Bar, req: &Request<'_>) -> Result<i32, Error> {
    let inventory = Inventory::load(req.inventory)?;
    let mut hosts = inventory.limit(req.limit)?;
    // Canaries first: hosts tagged `canary`, then the rest, by name.
    hosts.sort_by_key(|h| (!h.tags.iter().any(|t| t == "canary"), h.name.clone()));
    for h in &mut hosts {
        if let Some(p) = req.remote_program {
            h.program = p.to_owned();
        }
    }
    // A deploy without the dead-man's rollback would trust every switch
    // to leave the host reachable: on unless the inventory says `0`.
    let confirm_within = req
        .confirm_within
        .map(str::to_owned)
        .or_else(|| hosts.iter().find_map(|h| h.confirm_within.clone()))
        .unwrap_or_else(|| "2m".to_owned());
    let secs = crate::args::parse_duration(&confirm_within)
        .map_err(|e| Error::Invalid(format!("--confirm-within: {e}")))?;
    let confirm_within = (secs > 0).then_some(confirm_within);
    let targets = build_all(env, out, bar, &hosts)?;
    let generations = targets
        .iter()
        .map(|(_, id)| id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    out.line(format!(
        "built {} for {}",
        plural(generations as u64, "generation"),
        plural(hosts.len() as u64, "host")
    ));
    let view = View::new(out, hosts.len());
    let steps = DeploySteps {
        root: &env.root,
        state_dir: &env.state_dir,
        now: env.now,
        view: &view,
    };
    let r = rollout::run(
        &targets,
        &rollout::Options {
            parallel: req.parallel,
            canary: req.canary,
            max_failures: req.max_failures,
            rollback_on_stop: req.rollback_on_stop,
            confirm_within,
        },
        &steps,
    );
    view.finish();
    summary(out, &r);
    let ok = r.stopped.is_none()
        && r.hosts
            .iter()
            .all(|h| matches!(h.outcome, Outcome::Switched | Outcome::Unchanged));
    out.doc(DeployOutput {
        ok,
        generations,
        stopped: &r.stopped,
        failed: r.failed,
        hosts: &r.hosts,
    })?;
    Ok(if ok { 0 } else { 1 })
}

/// Builds each host's configuration into this state: one store, so what
/// hosts share is hashed and kept once.
fn build_all(
    env: &Env,
    out: &Out,
    bar: &Bar,
    hosts: &[Host],
) -> Result<Vec<(Host, String)>, Error> {
    let mut state = env.open(Access::Write)?;
    let mut targets = Vec::new();
    for h in hosts {
        let spec = env.load(&h.config).map_err(|e| match e {
            Error::Config(_) => e,
            other => Error::Invalid(format!("host {}: {other}", h.name)),
        })?;
        let b = build(&mut state, &spec, &env.build_options(bar))?;
        out.detail(format!("{}: built {}", h.name, b.id.short()));
        targets.push((h.clone(), b.id.to_string()));
    }
    Ok(targets)
}

struct DeploySteps<'a> {
    /// The deployer's root and state, which the pushes read from.
    root: &'a Path,
    state_dir: &'a Path,
    now: i64,
    view: &'a View,
}

impl Steps for DeploySteps<'_> {
    fn push(&self, host: &Host, id: &str) -> Result<Moved, String> {
        push(self.root, self.state_dir, self.now, host, id)
    }

    fn progress(&self, report: &HostReport, step: &str) {
        self.view.update(report, step);
    }
}

/// The one push step: the generation `id`'s closure from this state to
/// the host's, over ssh (`sysgen serve` on the host, `--root` and
/// `--state-dir` as the inventory gives them), moving only what the host
/// lacks: objects, then nodes, then the manifest, which registers the
/// generation there. No ref moves and nothing is signed: the deployer
/// speaks to the host's own state as root over ssh, which is the trust.
fn push(root: &Path, state_dir: &Path, now: i64, host: &Host, id: &str) -> Result<Moved, String> {
    let gid = Hash::from_hex(id)
        .map(GenerationId)
        .map_err(|e| format!("generation {id}: {e}"))?;
    let state = State::open(root, state_dir, Access::Read).map_err(|e| e.to_string())?;
    let mut src = StateTransport::new(state, now);
    let recipient = host
        .recipient
        .as_deref()
        .map(Recipient::parse)
        .transpose()
        .map_err(|e| format!("recipient: {e}"))?;
    if let Some(r) = &recipient {
        src = src.with_recipient(r.clone());
    }
    let mut url = host.ssh.url();
    if host.root != "/" {
        url.push_str(&host.root);
    }
    if let Some(s) = &host.state_dir {
        url.push_str(&format!("?state={s}"));
    }
    let mut args: Vec<String> = sysgen_fleet::ssh::BASE_OPTIONS
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(host.ssh_options.iter().cloned());
    let opts = SshOptions {
        ssh: "ssh".into(),
        args,
        program: host.program.clone(),
    };
    // The .deb files the generation's packages need travel with it, so
    // the host installs and rolls back without an apt source.
    let debs = sysgen_remote::debs::record(&src.lock(), &gid).map_err(|e| e.to_string())?;
    let dst = sysgen_remote::ssh::open(&url, &opts).map_err(|e| e.to_string())?;
    let moved = sync_generation(
        &src,
        &dst,
        &gid,
        &SyncOptions {
            recipient: recipient.as_ref().map(|r| r.id.as_str()),
            read_nodes_from: Side::Source,
            packages: debs.as_ref(),
            progress: &NoProgress,
            fault: None,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(Moved {
        objects: moved.objects,
        bytes: moved.bytes,
    })
}

/// The live view: on a terminal, a bar of hosts done with the step each
/// running host is at; each finished host's line printed above it.
/// Piped, only the finished hosts' lines.
struct View {
    bar: Option<ProgressBar>,
    lines: bool,
    running: Mutex<std::collections::BTreeMap<String, String>>,
}

impl View {
    fn new(out: &Out, hosts: usize) -> View {
        let live = !out.json && !out.quiet && std::io::stderr().is_terminal();
        let bar = live.then(|| {
            let pb = ProgressBar::new(hosts as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{pos}/{len} hosts [{bar:30}] {elapsed} {msg}")
            {
                pb.set_style(style.progress_chars("=> "));
            }
            pb
        });
        View {
            bar,
            lines: !out.json && !out.quiet,
            running: Mutex::new(Default::default()),
        }
    }

    fn update(&self, r: &HostReport, step: &str) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let finished = matches!(step, "done" | "failed" | "unchanged" | "rolled back");
        if finished {
            running.remove(&r.host);
        } else {
            running.insert(r.host.clone(), step.to_owned());
        }
        let line = finished.then(|| host_line(r));
        match &self.bar {
            Some(pb) => {
                if let Some(l) = &line {
                    pb.suspend(|| eprintln!("{l}"));
                    if step != "rolled back" {
                        pb.inc(1);
                    }
                }
                let now: Vec<String> = running.iter().map(|(h, s)| format!("{h}: {s}")).collect();
                pb.set_message(now.join(", "));
            }
            None => {
                if let (Some(l), true) = (line, self.lines) {
                    eprintln!("{l}");
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
    }
}

fn number(n: Option<u64>) -> String {
    n.map_or("-".into(), |n| n.to_string())
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Untouched => "untouched",
        Outcome::Unchanged => "unchanged",
        Outcome::Switched => "switched",
        Outcome::Failed => "FAILED",
        Outcome::RolledBack => "rolled back",
    }
}

fn host_line(r: &HostReport) -> String {
    let mut l = format!(
        "{}: {} ({} -> {}, {} objects, {} bytes, {:.1}s)",
        r.host,
        outcome(r.outcome),
        number(r.from),
        number(r.to),
        r.objects,
        r.bytes,
        r.seconds
    );
    if let (Some(step), Some(e)) = (r.failed_step, &r.error) {
        l.push_str(&format!(": {step}: {e}"));
    }
    l
}

/// The table: one row per host, then the verdict.
fn summary(out: &Out, r: &Rollout) {
    let w = r
        .hosts
        .iter()
        .map(|h| h.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    out.line(format!(
        "{:<w$}  {:<11}  {:>5}  {:>5}  {:>8}  {:>12}  error",
        "host", "outcome", "from", "to", "objects", "bytes"
    ));
    for h in &r.hosts {
        let err = match (h.failed_step, &h.error) {
            (Some(s), Some(e)) => format!("{s}: {e}"),
            _ => String::new(),
        };
        let row = format!(
            "{:<w$}  {:<11}  {:>5}  {:>5}  {:>8}  {:>12}  {err}",
            h.host,
            outcome(h.outcome),
            number(h.from),
            number(h.to),
            h.objects,
            h.bytes
        );
        out.line(row.trim_end());
    }
    let count = |o: Outcome| r.hosts.iter().filter(|h| h.outcome == o).count();
    out.line(format!(
        "{} switched, {} unchanged, {} failed, {} rolled back, {} untouched",
        count(Outcome::Switched),
        count(Outcome::Unchanged),
        count(Outcome::Failed),
        count(Outcome::RolledBack),
        count(Outcome::Untouched)
    ));
    if let Some(why) = &r.stopped {
        out.line(format!("the rollout stopped: {why}"));
    }
}
