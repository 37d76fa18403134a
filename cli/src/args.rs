//! The command line (SPEC §3), apart from the code that runs it. Global
//! options may stand before or after the command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::When;

#[derive(Parser, Debug)]
#[command(
    name = "sysgen",
    version,
    about = "Generations for ordinary Linux hosts: switch exactly, roll back, collect garbage",
    propagate_version = true,
    after_help = crate::help::TOP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// The root directory sysgen manages
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Where generations, the store and the database live [default: <root>/var/lib/sysgen]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print one JSON document on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Say more (every step of a switch)
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print nothing but errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The btrfs command, for btrfs datasets (a name is looked up in PATH)
    #[arg(long, global = true, value_name = "PATH", default_value = "btrfs")]
    pub btrfs: PathBuf,
    /// The zfs command, for zfs datasets (a name is looked up in PATH)
    #[arg(long, global = true, value_name = "PATH", default_value = "zfs")]
    pub zfs: PathBuf,
    /// Seconds one run of apt or dpkg may take before sysgen stops it (and every process it started)
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub package_timeout: u64,
    /// When to colour the output (auto: on a terminal, unless NO_COLOR is set)
    #[arg(long, global = true, value_name = "WHEN", value_enum, default_value_t = When::Auto)]
    pub color: When,
}

/// `defer`: each command's arguments are made only when that command is
/// parsed (or its help, a completion script or the manual is made), not
/// the arguments of all of them for every run: clap's parse was a twelfth
/// of a `diff`'s instructions.
#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Command {
    /// Realize a configuration into the store and print its generation id; the root is not changed
    #[command(after_help = crate::help::BUILD)]
    Build {
        /// The configuration file (.json or .toml)
        config: PathBuf,
    },
    /// Build if needed, then make the generation active, applying exactly the difference
    #[command(after_help = crate::help::SWITCH)]
    Switch {
        /// A configuration file, or a generation number, id or id prefix
        target: String,
        /// Print the plan (every step, in order) and change nothing
        #[arg(long)]
        dry_run: bool,
        /// Overwrite managed files changed on the root (each is saved in the store first); ignore a host mismatch
        #[arg(long)]
        force: bool,
        /// When a unit fails to start or fails its check, keep the new generation and report the unit (exit 1) instead of rolling back
        #[arg(long)]
        no_rollback_on_failure: bool,
        /// Roll back by itself unless `sysgen confirm` keeps the switch within this time (e.g. 2m): the dead-man's rollback of a remote switch
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        confirm_within: Option<i64>,
    },
    /// Switch to an older generation (default: the one active before the current one)
    #[command(after_help = crate::help::ROLLBACK)]
    Rollback {
        /// The generation number to switch to
        #[arg(long, value_name = "N")]
        to: Option<u64>,
        /// Also restore datasets from that generation's snapshots
        #[arg(long)]
        with_data: bool,
        /// Print the plan and change nothing
        #[arg(long)]
        dry_run: bool,
        /// Overwrite managed files changed on the root (each is saved in the store first)
        #[arg(long)]
        force: bool,
        /// When a unit fails to start or fails its check, keep the generation and report the unit (exit 1) instead of rolling back
        #[arg(long)]
        no_rollback_on_failure: bool,
    },
    /// What switching adds (+), removes (-) and changes (~): `diff X` from the active generation to X (what `switch X` would do), `diff A B` from A to B, `diff` from the previous generation to the active one
    #[command(after_help = crate::help::DIFF)]
    Diff {
        /// Alone: the target, compared from the active generation; with B: the side compared from. A generation number, id, id prefix, or a configuration file
        a: Option<String>,
        /// The target: a generation number, id, id prefix, or a configuration file
        b: Option<String>,
        /// Also show the content changes of text files as unified diffs
        #[arg(short, long)]
        patch: bool,
    },
    /// List generations: number, id, date and age, changes against the one before, configuration, active and pinned markers
    #[command(after_help = crate::help::LIST)]
    List,
    /// The active generation, an interrupted switch if any, and a drift summary
    #[command(after_help = crate::help::STATUS)]
    Status,
    /// Compare the root with the active generation
    #[command(after_help = crate::help::VERIFY)]
    Verify {
        /// Also rehash every store object
        #[arg(long)]
        store: bool,
    },
    /// Delete old generations (never the active or pinned ones) and unreferenced store objects
    #[command(after_help = crate::help::GC)]
    Gc {
        /// Keep the N newest generations
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Delete only generations older than this (e.g. 30d, 12h, 1h30m, 2w)
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        older_than: Option<i64>,
        /// Print what would be deleted and delete nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Keep generation N from gc
    #[command(after_help = crate::help::PIN)]
    Pin { number: u64 },
    /// Let gc delete generation N again
    #[command(after_help = crate::help::UNPIN)]
    Unpin { number: u64 },
    /// Finish an interrupted switch, or undo it with --rollback
    #[command(after_help = crate::help::RECOVER)]
    Recover {
        /// Go back to the generation active before the interrupted switch
        #[arg(long)]
        rollback: bool,
    },
    /// Print the JSON Schema of the configuration format
    #[command(after_help = crate::help::SCHEMA)]
    Schema,
    /// Print a completion script for a shell
    #[command(after_help = crate::help::COMPLETIONS)]
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Write the man pages (sysgen.8 and one per command) into a directory
    #[command(after_help = crate::help::MAN)]
    Man {
        /// Where to write them (created if missing)
        dir: PathBuf,
    },
    /// Write a commented example configuration to start from
    #[command(after_help = crate::help::INIT)]
    Init {
        /// The file to write (.toml, with comments; .json, without: JSON has none)
        #[arg(default_value = "sysgen.toml")]
        file: PathBuf,
    },
    /// Write a configuration and source files for what is on the root now, so switching to it changes nothing
    #[command(after_help = crate::help::ADOPT)]
    Adopt {
        /// Paths on the root to adopt (files, directories with all they hold, symlinks)
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// A new or empty directory for the configuration (sysgen.json) and its sources
        #[arg(long, value_name = "DIR")]
        into: PathBuf,
        /// Also declare the packages installed by hand (apt-mark showmanual in the root)
        #[arg(long)]
        packages: bool,
        /// Also declare the systemd units enabled on the root
        #[arg(long)]
        units: bool,
    },
    /// The history of activations: when, how, from which generation to which, and what changed
    #[command(after_help = crate::help::LOG)]
    Log,
    /// One generation: its configuration, entries and sizes per kind, packages, datasets, units
    #[command(after_help = crate::help::SHOW)]
    Show {
        /// A generation number, id or id prefix [default: the active one]
        generation: Option<String>,
    },
    /// The copies sysgen kept of files it overwrote (--force) or took over; write one out with --to
    #[command(after_help = crate::help::SAVED)]
    Saved {
        /// A saved copy's number, or the path of a file sysgen took over
        copy: Option<String>,
        /// Write that copy to this new file (mode 0600)
        #[arg(long, value_name = "FILE", requires = "copy")]
        to: Option<PathBuf>,
    },
    /// Put every managed entry that changed on the root back as the active generation has it, saving each changed copy first
    #[command(after_help = crate::help::REPAIR)]
    Repair {
        /// Print what would be put back and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Keep a switch made with --confirm-within; --check rolls back one whose time ran out
    #[command(after_help = crate::help::CONFIRM)]
    Confirm {
        /// The generation the pending switch went to (number, id or id prefix); refused if it is another
        generation: Option<String>,
        /// Do not confirm: roll back the pending switch if its time ran out (what the watcher and sysgen-confirm-check.service run)
        #[arg(long, conflicts_with = "generation")]
        check: bool,
        /// With --check: wait for the deadline first (or until a confirm removes the record)
        #[arg(long, requires = "check")]
        wait: bool,
    },
    /// Build every host's generation of an inventory, push, switch over ssh in batches (canaries first) and confirm
    #[command(after_help = crate::help::DEPLOY)]
    Deploy {
        /// The inventory (TOML): hosts with an ssh address, a configuration and tags
        inventory: PathBuf,
        /// Only these hosts: names and @tags, comma-separated, `*` wildcards
        #[arg(long, value_name = "PATTERN")]
        limit: Option<String>,
        /// Hosts deployed at once (and the size of each batch after the canaries)
        #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
        parallel: u64,
        /// Hosts in the first batch (tagged `canary` first); any failure there stops the rollout
        #[arg(long, value_name = "N", default_value_t = 1)]
        canary: u64,
        /// Failures tolerated after the canaries before the rollout stops
        #[arg(long, value_name = "N", default_value_t = 0)]
        max_failures: u64,
        /// When the rollout stops, roll back the hosts it switched
        #[arg(long)]
        rollback_on_stop: bool,
        /// Each host rolls back by itself unless confirmed within this time [default: the inventory's, else 2m]
        #[arg(long, value_name = "DURATION")]
        confirm_within: Option<String>,
        /// The sysgen command on the hosts [default: the inventory's, else `sysgen`]
        #[arg(long, value_name = "PATH")]
        remote_program: Option<String>,
    },
    /// A fleet as its pull agents report it
    #[command(subcommand, after_help = crate::help::FLEET)]
    Fleet(FleetCommand),
    /// Publish a generation to a remote (only what it lacks), signed, and move a ref to it
    #[command(after_help = crate::commands::push::HELP)]
    Push {
        /// A generation number, id or id prefix
        generation: String,
        /// file:///path, ssh://[user@]host[:port] or s3://bucket/prefix
        remote: String,
        /// The ref to move to it last: hosts/NAME, roles/NAME or channels/NAME
        #[arg(long = "ref", value_name = "NAME")]
        ref_name: Option<String>,
        /// The signing key [default: <state-dir>/signing.key]
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// The host's ssh ed25519 public key (or its .pub file) its secrets are encrypted to
        #[arg(long, value_name = "KEY|FILE")]
        recipient: Option<String>,
    },
    /// Fetch the generation a signed ref names (only what is missing), then optionally switch to it
    #[command(after_help = crate::commands::pull::HELP)]
    Pull {
        /// file:///path, http(s)://…, ssh://… or s3://…
        remote: String,
        /// hosts/NAME, roles/NAME or channels/NAME
        #[arg(value_name = "REF")]
        ref_name: String,
        /// Switch to the generation once it is here
        #[arg(long)]
        switch: bool,
        /// The host's ssh private key, to decrypt secrets [default: <root>/etc/ssh/ssh_host_ed25519_key]
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// Then write this host's report (active generation, drift, failure) to reports/HOST on the remote (HOST: the ref's name for hosts/NAME, else the host name)
        #[arg(long)]
        report: bool,
    },
    /// Copy a signed ref and its generation from one remote to another
    #[command(after_help = crate::commands::copy::HELP)]
    Copy {
        /// The remote to read
        src: String,
        /// The remote to write
        dst: String,
        /// hosts/NAME, roles/NAME or channels/NAME
        #[arg(value_name = "REF")]
        ref_name: String,
    },
    /// Signing keys: make one, trust another's, list the trusted ones
    #[command(after_help = crate::commands::key::HELP)]
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// The other end of an ssh:// remote: speaks sysgen's protocol on stdin/stdout (run by `ssh HOST sysgen serve`, not by people)
    Serve {
        /// The ssh key that decrypts secrets pushed here [default: the root's /etc/ssh/ssh_host_ed25519_key]
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Summarize the hosts' reports under reports/ on a remote: active generation, drift, failures, stale hosts
    Status {
        /// The remote the hosts pull from (file://, ssh://, s3://, http(s)://)
        remote: String,
        /// A report older than this is stale (exit 1)
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
        stale_after: i64,
    },
}

/// `sysgen key …`.
#[derive(Subcommand, Debug)]
pub enum KeyAction {
    /// Write a new ed25519 signing key (and FILE.pub), trusted here
    Generate {
        /// Where [default: <state-dir>/signing.key]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Accept refs and manifests signed by this public key (ed25519:HEX, or a .pub file)
    Trust {
        #[arg(value_name = "FILE|PUBKEY")]
        key: String,
        /// A note kept with it (whose key it is)
        #[arg(long)]
        comment: Option<String>,
    },
    /// The trusted keys
    List,
}

/// `30d`, `12h`, `1h30m`, `90m`, `45s`, `2w` (or a bare number of seconds) to
/// seconds; a day is 24 hours. jiff reads the units ("1 day 2h" too).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let bad =
        || format!("{s:?} is not a duration; write numbers with units: 45s, 90m, 1h30m, 30d, 2w");
    let span: jiff::Span = s.parse().map_err(|_| bad())?;
    let secs = span
        .total((
            jiff::Unit::Second,
            jiff::SpanRelativeTo::days_are_24_hours(),
        ))
        .map_err(|_| format!("{s:?}: months and years have no fixed length; use days or weeks"))?;
    if secs < 0.0 || secs > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(secs as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86400));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("45"), Ok(45));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("2w"), Ok(14 * 86400));
        assert!(parse_duration("-1h").is_err());
        assert!(parse_duration("3mo").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("3y").is_err());
    }

    /// clap's own checks of the definitions (conflicting names, a bad
    /// default), which a deferred command's arguments would otherwise
    /// pass only when that command runs.
    #[test]
    fn every_command_is_well_defined() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_before_or_after_the_command() {
        let a = Cli::try_parse_from(["sysgen", "--root", "/r", "switch", "c.json"]).unwrap();
        let b = Cli::try_parse_from(["sysgen", "switch", "-v", "--root", "/r", "c.json"]).unwrap();
        assert_eq!(a.global.root, b.global.root);
        assert!(b.global.verbose);
    }
}
