//! The dead-man's rollback: `switch --confirm-within D` arms it ([`arm`]),
//! `sysgen confirm [GEN]` (run by the deployer over a fresh connection)
//! keeps the switch, and `sysgen confirm --check [--wait]` (the watcher,
//! and `sysgen-confirm-check.service` at boot) rolls back a switch whose
//! confirmation did not come in time. The record lives in the state
//! directory (`sysgen_fleet::pending`), so it outlasts the connection, a
//! switch that breaks the network and a reboot.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use serde::Serialize;
use sysgen_fleet::pending::{self, Pending, RolledBack, Watcher};
use sysgen_generations::error::StateError;
use sysgen_generations::manifest::GenerationId;
use sysgen_generations::recover::{RecoverOptions, recover};
use sysgen_generations::state::Access;
use sysgen_generations::switch::{SwitchOutcome, resolve, switch_to};
use sysgen_generations::{Error, State};

use super::switch::{Flags, kinds, options};
use crate::Env;
use crate::output::{Bar, Out};

/// A switch can be armed only where there is a generation to go back to.
pub fn refuse_unless_armable(state: &State) -> Result<(), Error> {
    match state.db.active()? {
        Some(_) => Ok(()),
        None => Err(Error::Invalid(
            "--confirm-within: no generation is active on this root, so there is nothing to roll back to; switch once without it".into(),
        )),
    }
}

/// Records the pending confirmation of a switch to `to` and starts its
/// watcher, before the switch changes anything. Returns false when there
/// is nothing to confirm (`to` is already active).
pub fn arm(env: &Env, state: &State, to: GenerationId, within: i64) -> Result<bool, Error> {
    if within <= 0 {
        return Err(Error::Invalid(
            "--confirm-within: give a duration above zero (e.g. 2m)".into(),
        ));
    }
    refuse_unless_armable(state)?;
    let Some(active) = state.db.active()? else {
        return Ok(false);
    };
    if active.id == to {
        return Ok(false);
    }
    // Switches chained before a confirmation go back to the last
    // confirmed generation, not to the unconfirmed one in between.
    let (from, from_id) = match pending::read(&state.dir)? {
        Some(p) if p.rolled_back.is_none() => (p.from, p.from_id),
        _ => (active.number, active.id),
    };
    let mut p = Pending::new(from, from_id, to, env.now, within);
    // Durable before the watcher exists: a watcher that finds no record
    // has nothing to do, a record without a watcher is finished at boot.
    pending::write(&state.dir, &p)?;
    let program = std::env::current_exe().map_err(|e| Error::Io {
        path: "/proc/self/exe".into(),
        source: e,
    })?;
    let watcher = sysgen_fleet::watch::spawn(
        &program,
        &global_args(env),
        within,
        env.kinds.services.runtime,
    );
    match watcher {
        Ok(w) => {
            p.watcher = Some(w);
            pending::write(&state.dir, &p)?;
            Ok(true)
        }
        Err(e) => {
            pending::remove(&state.dir)?;
            Err(e)
        }
    }
}

/// After an armed switch: a switch that failed (or was undone by its own
/// automatic rollback) and left the root on the generation the record
/// would go back to needs no watching.
pub fn settle(state: &State, result: &Result<SwitchOutcome, Error>) -> Result<(), Error> {
    let Some(p) = pending::read(&state.dir)? else {
        return Ok(());
    };
    let on_from = state.db.active()?.is_some_and(|a| a.id == p.from_id);
    if result.is_err() && on_from && state.journal()?.is_none() {
        pending::remove(&state.dir)?;
    }
    Ok(())
}

/// `--root R --state-dir S` as absolute paths: the watcher runs from
/// another working directory (systemd's is `/`).
fn global_args(env: &Env) -> Vec<OsString> {
    let abs = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    vec![
        "--root".into(),
        abs(&env.root).into(),
        "--state-dir".into(),
        abs(&env.state_dir).into(),
    ]
}

#[derive(Serialize)]
struct ConfirmOutput {
    ok: bool,
    /// "confirmed", "nothing-pending", "pending", "rolled-back",
    /// "already-rolled-back".
    outcome: &'static str,
    /// The generation active now.
    active: Option<u64>,
    /// The pending record as it stands (absent once confirmed).
    pending: Option<Pending>,
}

/// How long `confirm` waits for the state lock before it gives up.
const CONFIRM_PATIENCE: Duration = Duration::from_secs(60);

/// `sysgen confirm [GEN]`: keeps the switch. Exit 0 when the switch to GEN
/// stands (confirmed now, or nothing was pending and GEN is active), 1
/// when it is too late (the host rolled back, now or before), 2 when GEN
/// is not the generation waiting for confirmation.
pub fn confirm(env: &Env, out: &Out, bar: &Bar, generation: Option<&str>) -> Result<i32, Error> {
    // A rollback under way (or a switch) holds the lock for a while; what
    // it leaves decides the answer.
    let mut state = open_write(env, Some(CONFIRM_PATIENCE))?;
    let want = generation.map(|g| resolve(&state, g)).transpose()?;
    let active = state.db.active()?;
    let Some(mut p) = pending::read(&state.dir)? else {
        return match (want, &active) {
            (Some(w), Some(a)) if a.id == w => {
                out.line(format!(
                    "generation {} is active; no confirmation was pending",
                    a.number
                ));
                done(out, "nothing-pending", Some(a.number), None, 0)
            }
            (Some(w), _) => Err(Error::Invalid(format!(
                "generation {} is not active and no confirmation is pending; nothing to confirm",
                w.short()
            ))),
            (None, _) => Err(Error::Invalid(
                "no confirmation is pending on this root; nothing to confirm".into(),
            )),
        };
    };
    if let Some(w) = want
        && w != p.to_id
    {
        return Err(Error::Invalid(format!(
            "the pending confirmation is for generation {}, not {}",
            p.to_id.short(),
            w.short()
        )));
    }
    if let Some(rb) = &p.rolled_back {
        eprintln!(
            "error: too late: the switch to {} was not confirmed by {} and the host rolled back to generation {} at {}",
            p.to_id.short(),
            crate::output::local(p.deadline),
            p.from,
            crate::output::local(rb.at)
        );
        let from = p.from;
        return done(out, "already-rolled-back", Some(from), Some(p), 1);
    }
    if !p.awaited(env.now) {
        // Expired, and the watcher has not acted yet (or is gone): the
        // rollback is due now, and confirming would be a lie.
        let to = p.to_id.short();
        let n = roll_back(env, bar, &mut state, &mut p)?;
        eprintln!(
            "error: too late: the switch to {to} was not confirmed by {}; rolled back to generation {n}",
            crate::output::local(p.deadline)
        );
        return done(out, "rolled-back", Some(n), Some(p), 1);
    }
    match &active {
        Some(a) if a.id == p.to_id => {}
        _ => {
            return Err(Error::Corrupt(format!(
                "the pending confirmation is for generation {}, which is not active; `sysgen status` shows the root",
                p.to_id.short()
            )));
        }
    }
    pending::remove(&state.dir)?;
    if let Some(Watcher::Systemd { unit }) = &p.watcher {
        // Best effort: with the record gone, the timer's check finds
        // nothing to do anyway.
        let _ = std::process::Command::new("systemctl")
            .args(["stop", &format!("{unit}.timer")])
            .status();
    }
    let n = active.map(|a| a.number);
    out.line(format!(
        "confirmed generation {} ({})",
        n.unwrap_or_default(),
        p.to_id.short()
    ));
    done(out, "confirmed", n, None, 0)
}

/// `sysgen confirm --check [--wait]`: rolls back a pending switch whose
/// deadline passed; with `--wait`, first waits for the deadline (or for
/// the record to go). Exit 0 when the root is where it should be.
pub fn check(env: &Env, out: &Out, bar: &Bar, wait: bool) -> Result<i32, Error> {
    let started = Instant::now();
    // The clock: the command's `now` (the tests pin it), advanced by the
    // time spent waiting here.
    let now = || env.now + started.elapsed().as_secs() as i64;
    loop {
        if wait {
            // Wait without the lock, reading the record alone once a
            // second: a confirm must never find the lock taken by a
            // watcher that only looks. A confirm removes the record.
            while pending::read(&env.state_dir)?.is_some_and(|p| p.awaited(now())) {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        // Due, gone or rolled back: decided under the lock (waiting, with
        // --wait, for the switch that started us or a confirm to finish).
        let mut state = open_write(env, wait.then_some(Duration::MAX))?;
        let active = state.db.active()?.map(|a| a.number);
        let Some(mut p) = pending::read(&state.dir)? else {
            out.line("no confirmation is pending");
            return done(out, "nothing-pending", active, None, 0);
        };
        if p.rolled_back.is_some() {
            out.line(format!(
                "the switch to {} was already rolled back to generation {}",
                p.to_id.short(),
                p.from
            ));
            return done(out, "already-rolled-back", active, Some(p), 0);
        }
        if p.awaited(now()) {
            if wait {
                // Another armed switch replaced the record meanwhile.
                continue;
            }
            out.line(format!(
                "a confirmation of {} is pending until {}",
                p.to_id.short(),
                crate::output::local(p.deadline)
            ));
            return done(out, "pending", active, Some(p), 0);
        }
        let to = p.to_id.short();
        let n = roll_back(env, bar, &mut state, &mut p)?;
        out.line(format!(
            "the switch to {to} was not confirmed by {}: rolled back to generation {n}",
            crate::output::local(p.deadline)
        ));
        return done(out, "rolled-back", Some(n), Some(p), 0);
    }
}

/// Opens the state for writing; while another command holds the lock,
/// tries again for up to `patience` (none: fails at once, naming it).
fn open_write(env: &Env, patience: Option<Duration>) -> Result<State, Error> {
    let started = Instant::now();
    loop {
        match env.open(Access::Write) {
            Err(Error::State(StateError::Locked { .. }))
                if patience.is_some_and(|p| started.elapsed() < p) =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            r => return r,
        }
    }
}

/// Puts the root back on `p.from`: finishes an interrupted switch
/// backwards first, then switches; marks the record rolled back.
fn roll_back(env: &Env, bar: &Bar, state: &mut State, p: &mut Pending) -> Result<u64, Error> {
    if state.journal()?.is_some() {
        recover(
            state,
            &RecoverOptions {
                rollback: true,
                now: env.now,
                fault_after: env.fault_after,
                progress: bar,
                kinds: &env.kinds,
                automatic: true,
            },
        )?;
    }
    if state.db.active()?.is_none_or(|a| a.id != p.from_id) {
        let flags = Flags {
            dry_run: false,
            force: false,
            rollback_on_failure: true,
        };
        let k = kinds(env, &flags, false);
        switch_to(state, p.from_id, &options(env, &k, &flags, "rollback", bar))?;
    }
    p.rolled_back = Some(RolledBack { at: env.now });
    pending::write(&state.dir, p)?;
    Ok(p.from)
}

fn done(
    out: &Out,
    outcome: &'static str,
    active: Option<u64>,
    pending: Option<Pending>,
    code: i32,
) -> Result<i32, Error> {
    out.doc(ConfirmOutput {
        ok: code == 0,
        outcome,
        active,
        pending,
    })?;
    Ok(code)
}
