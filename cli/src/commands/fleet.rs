//! `sysgen fleet status REMOTE`: what the pull agents reported under
//! `reports/` (`sysgen_fleet::report`): one row per host (active
//! generation, drift, last failure, age of the report), hosts per
//! generation, stale reports. Exit 1 when a host reports drift or a
//! failure, or its report is older than `--stale-after`.

use serde::Serialize;
use sysgen_fleet::report::{self, Report};
use sysgen_generations::Error;

use super::push::remote_err;
use crate::Env;
use crate::output::{Out, plural};

#[derive(Serialize)]
struct StatusOutput<'a> {
    ok: bool,
    remote: String,
    hosts: &'a [Report],
    /// Hosts per active generation id.
    generations: std::collections::BTreeMap<String, usize>,
    /// Hosts whose last report is older than --stale-after.
    stale: Vec<&'a str>,
    unreadable: &'a std::collections::BTreeMap<String, String>,
}

pub fn status(env: &Env, out: &Out, remote: &str, stale_after: i64) -> Result<i32, Error> {
    let t = crate::commands::fleet::open(remote)?;
    let fleet = report::collect(t.as_ref()).map_err(remote_err)?;
    let stale: Vec<&str> = fleet
        .hosts
        .iter()
        .filter(|r| env.now - r.at > stale_after)
        .map(|r| r.host.as_str())
        .collect();
    let w = fleet
        .hosts
        .iter()
        .map(|r| r.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    out.line(format!(
        "{:<w$}  {:>4}  {:<12}  {:>5}  {:>8}  failure",
        "host", "gen", "id", "drift", "age"
    ));
    for r in &fleet.hosts {
        let (n, id): (String, String) = r.active.as_ref().map_or(("-".into(), "-".into()), |a| {
            (a.number.to_string(), a.id.chars().take(12).collect())
        });
        out.line(format!(
            "{:<w$}  {n:>4}  {id:<12}  {:>5}  {:>8}  {}",
            r.host,
            r.drift.len(),
            age(env.now - r.at),
            r.failure.as_deref().unwrap_or("")
        ));
    }
    let generations = fleet.by_generation();
    for (id, n) in &generations {
        out.line(format!(
            "{}: {}",
            id.chars().take(12).collect::<String>(),
            plural(*n as u64, "host")
        ));
    }
    for s in &stale {
        out.line(format!(
            "stale: {s} has not reported for more than {stale_after}s"
        ));
    }
    for (k, why) in &fleet.unreadable {
        eprintln!("warning: {remote}: {k}: {why}");
    }
    let ok = stale.is_empty()
        && fleet.unreadable.is_empty()
        && fleet
            .hosts
            .iter()
            .all(|r| r.drift.is_empty() && r.failure.is_none());
    out.doc(StatusOutput {
        ok,
        remote: t.describe(),
        hosts: &fleet.hosts,
        generations,
        stale,
        unreadable: &fleet.unreadable,
    })?;
    Ok(if ok { 0 } else { 1 })
}

fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The remote at `url`, through the `remote` crate's dispatch (read only:
/// nothing is created).
pub fn open(url: &str) -> Result<Box<dyn sysgen_remote::Transport>, Error> {
    super::push::open_remote(url, false)
}

/// `pull --report`: writes `reports/HOST` on the remote after the pull,
/// whatever it did: the active generation, the drift verify finds, and the
/// pull's failure if it failed. The pull's own outcome is returned; a
/// report that cannot be written turns a success into exit 1 (a pull
/// agent whose reports never arrive must not look healthy).
pub fn report_after_pull(
    env: &Env,
    remote: &str,
    ref_name: &str,
    pulled: Result<i32, Error>,
) -> Result<i32, Error> {
    let failure = match &pulled {
        Ok(0) => None,
        Ok(code) => Some(format!("the switch failed (exit {code})")),
        Err(e) => Some(e.to_string()),
    };
    let written = host_name(ref_name).and_then(|host| {
        let mut r = Report::new(&host, env.now, ref_name);
        r.failure = failure;
        // What the host runs, read after the pull let go of the state.
        if let Ok(state) = env.open(sysgen_generations::state::Access::Read) {
            r.active = state.db.active()?.map(|a| report::Active {
                number: a.number,
                id: a.id.to_string(),
            });
            let v = sysgen_generations::verify::verify(
                &state,
                false,
                &env.kinds,
                &sysgen_generations::progress::NoProgress,
            )?;
            r.drift = v
                .drift
                .iter()
                .map(|d| format!("{}: {}", d.path, d.what))
                .collect();
        }
        let t = open(remote)?;
        report::write(t.as_ref(), &r).map_err(remote_err)
    });
    match (pulled, written) {
        (r, Ok(())) => r,
        (Ok(0), Err(e)) => Err(e),
        (r, Err(e)) => {
            eprintln!("error: the report was not written: {e}");
            r
        }
    }
}

/// The name a host reports under: `hosts/NAME`'s NAME, else the host name.
fn host_name(ref_name: &str) -> Result<String, Error> {
    let name = match ref_name.strip_prefix("hosts/") {
        Some(n) => n.to_owned(),
        // The kernel's host name: the host this pull agent runs on.
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .map_err(|e| {
                Error::Invalid(format!(
                    "--report: pull a hosts/NAME ref, or let this host have a name (/proc/sys/kernel/hostname: {e})"
                ))
            })?,
    };
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(Error::Invalid(format!(
            "--report: {name:?} cannot name a report (no slashes, no leading dot)"
        )));
    }
    Ok(name)
}
