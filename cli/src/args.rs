//! The command line (SPEC §3), apart from the code that runs it. Global
//! options may stand before or after the command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
}

#[derive(Subcommand, Debug)]
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
    /// What switching from A to B adds, removes and changes (default: previous against current)
    #[command(after_help = crate::help::DIFF)]
    Diff {
        /// A generation number, id, id prefix, or a configuration file
        a: Option<String>,
        /// A generation number, id, id prefix, or a configuration file [default: the active one]
        b: Option<String>,
    },
    /// List generations: number, id, date, active and pinned markers
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
        /// Delete only generations older than this (e.g. 30d, 12h, 90m, 2w)
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
}

/// `30d`, `12h`, `90m`, `45s`, `2w` (or a bare number of seconds) to seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| {
        format!("{s:?} is not a duration; write a number and a unit: 45s, 90m, 12h, 30d, 2w")
    })?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?}; use s, m, h, d or w"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86400));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("45"), Ok(45));
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("3y").is_err());
    }

    #[test]
    fn global_options_before_or_after_the_command() {
        let a = Cli::try_parse_from(["sysgen", "--root", "/r", "switch", "c.json"]).unwrap();
        let b = Cli::try_parse_from(["sysgen", "switch", "-v", "--root", "/r", "c.json"]).unwrap();
        assert_eq!(a.global.root, b.global.root);
        assert!(b.global.verbose);
    }
}
