//! What the binary tells the kinds about the host: which tools to run,
//! whether systemd is up, and the flags that change how a kind plans. The
//! library never reads `PATH` or the environment; the CLI fills these in.

use std::path::PathBuf;
use std::time::Duration;

/// What the binary tells the kinds about the host: which tools to run and
/// whether systemd is up, and the flags of a switch. One value for every
/// kind, passed through unopened by switch, recover, verify and gc.
#[derive(Clone, Debug)]
pub struct Options {
    pub services: ServiceOptions,
    /// Where btrfs and zfs are.
    pub tools: Tools,
    /// Something that fails to come up (a unit that does not start, a
    /// failed check) stops the switch and rolls it back; false: the switch
    /// goes on and reports it.
    pub rollback_on_failure: bool,
    /// `rollback --with-data`: restore the target generation's snapshots.
    pub with_data: bool,
    /// How long one run of apt or dpkg may take before it is stopped
    /// (a maintainer script that hangs would hold the locks forever).
    pub package_timeout: Duration,
    /// Where the tools a step runs (apt-get) show their output as it comes
    /// (`-v`); `None`: it is only captured.
    pub tool_output: Option<ToolOutput>,
}

/// A sink for a tool's output lines, as they come.
#[derive(Clone)]
pub struct ToolOutput(pub std::sync::Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for ToolOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToolOutput")
    }
}

/// The package timeout when none is given: long enough for a large
/// upgrade, short of holding the dpkg lock all day.
pub const DEFAULT_PACKAGE_TIMEOUT: Duration = Duration::from_secs(3600);

impl Default for Options {
    fn default() -> Self {
        Options {
            services: ServiceOptions::default(),
            tools: Tools::default(),
            rollback_on_failure: true,
            with_data: false,
            package_timeout: DEFAULT_PACKAGE_TIMEOUT,
            tool_output: None,
        }
    }
}

/// What the binary tells the library about systemd on this root.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// The `systemctl` to run (the CLI passes the one on its PATH).
    pub systemctl: PathBuf,
    /// systemd runs on the root (it is `/` and `/run/systemd/system`
    /// exists): runtime steps are planned to run, not skipped.
    pub runtime: bool,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            systemctl: PathBuf::from("systemctl"),
            runtime: false,
        }
    }
}

/// Where the external tools are; `None`: not installed. The CLI finds them
/// (the library never reads `PATH`).
#[derive(Clone, Debug, Default)]
pub struct Tools {
    pub btrfs: Option<PathBuf>,
    pub zfs: Option<PathBuf>,
}

/// What a switch needs to know about datasets beyond the two generations.
#[derive(Clone, Debug, Default)]
pub struct DatasetOptions {
    pub tools: Tools,
    /// `rollback --with-data`: restore the target generation's snapshots.
    pub with_data: bool,
}
