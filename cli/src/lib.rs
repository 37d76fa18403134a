//! The `sysgen` binary: parses the command line, passes the clock, the
//! environment's fault points and a progress sink to the library, and turns
//! outcomes and errors into text, JSON and exit codes. Nothing below this
//! crate prints. Each command lives in its own file under `commands/`.

mod args;
mod commands;
mod diagnostic;
mod help;
mod output;
mod render;
mod signals;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde::Serialize;
use sysgen_generations::error::{Failure, ServiceError};
use sysgen_generations::host::{Options, ServiceOptions, Tools};
use sysgen_generations::state::{Access, reserved_path};
use sysgen_generations::{Error, State};
use sysgen_store::FaultPoint;

use crate::args::{Cli, Command, Global};
use crate::output::Out;

/// Exit status: 0 success, 1 the operation failed or verify found drift,
/// 2 the command line or the configuration is invalid.
pub fn main() -> i32 {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`sysgen diff |
    // head -1`) fails and `println!` panics. Unix tools die quietly of the
    // signal instead; a command prints only after its work is done, so
    // nothing is cut short but the printing.
    // SAFETY: this runs first, before any thread or other handler, and
    // SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        nix::libc::signal(nix::libc::SIGPIPE, nix::libc::SIG_DFL);
    }
    // Before any thread allocates: see the function.
    sysgen_generations::memory::tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            // Usage goes to stdout or stderr; if that fails there is
            // nowhere left to say so, and the exit status still tells.
            let _ = e.print();
            return code;
        }
    };
    signals::install();
    cli.global.color.apply();
    let out = Out {
        json: cli.global.json,
        quiet: cli.global.quiet,
        verbose: cli.global.verbose,
    };
    signals::exit_code(match run(&cli, &out) {
        Ok(code) => code,
        Err(e) => {
            let code = output::exit_code(&e);
            diagnostic::eprint(&e);
            if let Err(e) = out.doc(ErrorOutput::new(&e, code)) {
                eprintln!("error: {e}");
            }
            code
        }
    })
}

/// The `--json` document of a command that failed.
#[derive(Serialize)]
struct ErrorOutput<'a> {
    ok: bool,
    error: String,
    exit: i32,
    /// A unit that failed: which, why, its log…
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<&'a [Failure]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rolled_back: Option<bool>,
    /// …and where the automatic rollback landed (`null`: the root as it
    /// was before sysgen); present only when it rolled back.
    #[serde(skip_serializing_if = "Option::is_none")]
    active: Option<Option<u64>>,
    /// A configuration error's parts: code, message, file, line, column,
    /// path, hint.
    #[serde(skip_serializing_if = "Option::is_none")]
    diagnostic: Option<diagnostic::Diagnostic>,
}

impl<'a> ErrorOutput<'a> {
    fn new(e: &'a Error, exit: i32) -> ErrorOutput<'a> {
        let mut doc = ErrorOutput {
            ok: false,
            error: e.to_string(),
            exit,
            failed: None,
            rolled_back: None,
            active: None,
            diagnostic: diagnostic::Diagnostic::new(e),
        };
        match e {
            Error::Service(ServiceError::Failed {
                failure,
                rolled_back,
            }) => {
                doc.failed = Some(std::slice::from_ref(failure));
                doc.rolled_back = Some(rolled_back.is_some());
                doc.active = *rolled_back;
            }
            Error::Service(ServiceError::RollbackFailed { failure, .. }) => {
                doc.failed = Some(std::slice::from_ref(failure));
                doc.rolled_back = Some(false);
            }
            _ => {}
        }
        doc
    }
}

/// Everything a command needs from outside the library.
pub(crate) struct Env {
    pub root: PathBuf,
    pub state_dir: PathBuf,
    pub now: i64,
    pub fault_after: Option<u64>,
    /// The store's named fault point (`SYSGEN_FAULT_POINT`), for crash tests.
    pub fault_point: FaultPoint,
    /// What the kinds need from the host: systemd on this root (whether
    /// it runs, which systemctl), where btrfs and zfs are.
    pub kinds: Options,
    /// The proxy for downloads, from `https_proxy`/`http_proxy`/`all_proxy`
    /// and `no_proxy` (upper case too), as curl and apt read them.
    pub proxy: Option<sysgen_generations::download::Proxy>,
}

impl Env {
    /// What every build of this command is given: the pinned or real
    /// clock, the progress bar, the proxy of downloads.
    pub(crate) fn build_options<'a>(
        &self,
        bar: &'a crate::output::Bar,
    ) -> sysgen_generations::ingest::BuildOptions<'a> {
        sysgen_generations::ingest::BuildOptions {
            now: self.now,
            progress: bar,
            proxy: self.proxy.clone(),
        }
    }

    fn new(g: &Global) -> Result<Env, Error> {
        let state_dir = g
            .state_dir
            .clone()
            .unwrap_or_else(|| g.root.join("var/lib/sysgen"));
        // A test hook: a pinned clock makes dates in the output stable.
        let now = match number_from_env("SYSGEN_NOW", "seconds since the epoch")? {
            Some(n) => n,
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        };
        let fault_after = number_from_env("SYSGEN_FAULT_AFTER_STEPS", "steps")?;
        let fault_point = match std::env::var("SYSGEN_FAULT_POINT") {
            Ok(name) => FaultPoint::named(&name).ok_or_else(|| {
                Error::Invalid(format!(
                    "SYSGEN_FAULT_POINT={name:?} names no fault point; unset it or give one of: {}",
                    sysgen_store::fault::POINTS.join(", ")
                ))
            })?,
            Err(_) => FaultPoint::default(),
        };
        if !g.root.is_dir() {
            return Err(Error::Invalid(format!(
                "--root {}: not a directory; create it or name another",
                g.root.display()
            )));
        }
        Ok(Env {
            root: g.root.clone(),
            state_dir,
            now,
            fault_after,
            fault_point,
            kinds: Options {
                services: ServiceOptions {
                    systemctl: PathBuf::from("systemctl"),
                    runtime: systemd_runs_on(&g.root),
                },
                tools: Tools {
                    btrfs: find_tool(&g.btrfs),
                    zfs: find_tool(&g.zfs),
                },
                rollback_on_failure: true,
                with_data: false,
                package_timeout: std::time::Duration::from_secs(g.package_timeout),
                tool_output: None,
            },
            proxy: sysgen_generations::download::Proxy::try_from_env(),
        })
    }

    pub fn open(&self, access: Access) -> Result<State, Error> {
        let mut state = State::open(&self.root, &self.state_dir, access)?;
        state.store.set_fault_point(self.fault_point);
        Ok(state)
    }

    pub fn load(&self, config: &Path) -> Result<sysgen_schema::HostSpec, Error> {
        let reserved = reserved_path(&self.root, &self.state_dir)
            .into_iter()
            .collect();
        Ok(sysgen_schema::load(
            config,
            &sysgen_schema::LoadOptions { reserved },
        )?)
    }
}

/// A whole number from the environment variable `name`, if it is set.
fn number_from_env<T: std::str::FromStr>(name: &str, unit: &str) -> Result<Option<T>, Error> {
    match std::env::var(name) {
        Ok(v) => v.trim().parse::<T>().map(Some).map_err(|_| {
            Error::Invalid(format!(
                "{name}={v:?} is not a whole number of {unit}; unset it or give one"
            ))
        }),
        Err(_) => Ok(None),
    }
}

/// Runtime service steps (start, restart, reload, check) run only on the
/// running system: the root is `/` and systemd is PID 1 there (the test
/// `sd_booted()` uses). A chroot or image gets the offline part only.
fn systemd_runs_on(root: &Path) -> bool {
    root.canonicalize().is_ok_and(|r| r == Path::new("/"))
        && Path::new("/run/systemd/system").is_dir()
}

/// A tool given as a path is used if it is an executable file; a bare
/// name is looked up in `PATH`, skipping files that are not executable, as
/// the shell does. `None`: not installed (the library says so when it
/// needs it).
fn find_tool(t: &Path) -> Option<PathBuf> {
    which::which(t).ok()
}

fn run(cli: &Cli, out: &Out) -> Result<i32, Error> {
    use crate::commands::*;
    // The schema needs no root.
    if let Command::Schema = cli.command {
        return schema::run();
    }
    // Nor do these: they print or write what the command line defines.
    match &cli.command {
        Command::Completions { shell } => return completions::run(out, *shell),
        Command::Man { dir } => return man::run(out, dir),
        Command::Init { file } => return init::run(out, file),
        _ => {}
    }
    let mut env = Env::new(&cli.global)?;
    if out.verbose && !out.json {
        env.kinds.tool_output = Some(output::tool_output());
    }
    let bar = out.progress();
    match &cli.command {
        Command::Schema => schema::run(),
        Command::Build { config } => build::run(&env, out, &bar, config),
        Command::Switch {
            target,
            dry_run,
            force,
            no_rollback_on_failure,
            confirm_within,
        } => switch::run(
            &env,
            out,
            &bar,
            target,
            *confirm_within,
            &switch::Flags {
                dry_run: *dry_run,
                force: *force,
                rollback_on_failure: !*no_rollback_on_failure,
            },
        ),
        Command::Rollback {
            to,
            with_data,
            dry_run,
            force,
            no_rollback_on_failure,
        } => rollback::run(
            &env,
            out,
            &bar,
            *to,
            *with_data,
            &switch::Flags {
                dry_run: *dry_run,
                force: *force,
                rollback_on_failure: !*no_rollback_on_failure,
            },
        ),
        Command::Diff { a, b, patch } => {
            diff::run(&env, out, &bar, a.as_deref(), b.as_deref(), *patch)
        }
        Command::List => list::run(&env, out),
        Command::Status => status::run(&env, out, &bar),
        Command::Verify { store } => verify::run(&env, out, &bar, *store),
        Command::Gc {
            keep,
            older_than,
            dry_run,
        } => gc::run(&env, out, &bar, *keep, *older_than, *dry_run),
        Command::Pin { number } => pin::run(&env, out, *number, true),
        Command::Unpin { number } => pin::run(&env, out, *number, false),
        Command::Recover { rollback } => recover::run(&env, out, &bar, *rollback),
        Command::Completions { shell } => completions::run(out, *shell),
        Command::Man { dir } => man::run(out, dir),
        Command::Init { file } => init::run(out, file),
        Command::Adopt {
            paths,
            into,
            packages,
            units,
        } => adopt::run(
            &env,
            out,
            &adopt::Request {
                paths,
                into,
                packages: *packages,
                units: *units,
            },
        ),
        Command::Log => log::run(&env, out),
        Command::Show { generation } => show::run(&env, out, generation.as_deref()),
        Command::Saved { copy, to } => saved::run(&env, out, copy.as_deref(), to.as_deref()),
        Command::Repair { dry_run } => repair::run(&env, out, &bar, *dry_run),
        Command::Confirm {
            generation,
            check: false,
            ..
        } => confirm::confirm(&env, out, &bar, generation.as_deref()),
        Command::Confirm {
            check: true, wait, ..
        } => confirm::check(&env, out, &bar, *wait),
        Command::Fleet(args::FleetCommand::Status {
            remote,
            stale_after,
        }) => fleet::status(&env, out, remote, *stale_after),
        Command::Deploy {
            inventory,
            limit,
            parallel,
            canary,
            max_failures,
            rollback_on_stop,
            confirm_within,
            remote_program,
        } => deploy::run(
            &env,
            out,
            &bar,
            &deploy::Request {
                inventory,
                limit: limit.as_deref(),
                parallel: *parallel as usize,
                canary: *canary as usize,
                max_failures: *max_failures as usize,
                rollback_on_stop: *rollback_on_stop,
                confirm_within: confirm_within.as_deref(),
                remote_program: remote_program.as_deref(),
            },
        ),
        Command::Push {
            generation,
            remote,
            ref_name,
            key,
            recipient,
        } => push::run(
            &env,
            out,
            &bar,
            &push::Request {
                generation,
                remote,
                ref_name: ref_name.as_deref(),
                key: key.as_deref(),
                recipient: recipient.as_deref(),
            },
        ),
        Command::Pull {
            remote,
            ref_name,
            switch,
            identity,
            report,
        } => pull::run(
            &env,
            out,
            &bar,
            &pull::Request {
                remote,
                ref_name,
                switch: *switch,
                identity: identity.as_deref(),
                report: *report,
            },
        ),
        Command::Copy { src, dst, ref_name } => copy::run(&env, out, &bar, src, dst, ref_name),
        Command::Key { action } => match action {
            args::KeyAction::Generate { out: file } => key::generate(&env, out, file.as_deref()),
            args::KeyAction::Trust { key: k, comment } => {
                key::trust(&env, out, k, comment.as_deref())
            }
            args::KeyAction::List => key::list(&env, out),
        },
        Command::Serve { identity } => serve::run(&env, out, identity.as_deref()),
    }
}
