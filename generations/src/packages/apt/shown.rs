//! A package transaction whose output is shown as it comes (`-v`: apt's
//! progress) and captured as usual for parsing and error messages.

use super::Apt;
use super::output::Output;
use crate::Error;
use crate::host::ToolOutput;

impl Apt {
    /// Shows the output of the transactions this apt runs to `shown`.
    pub fn showing(mut self, shown: Option<&ToolOutput>) -> Apt {
        self.shown = shown.cloned();
        self
    }

    /// Runs a command like `run` (in its own process group, within the
    /// timeout), handing each line of its standard output to the sink as
    /// it comes when there is one.
    pub(super) fn run_shown(
        &self,
        prog: &str,
        cwd: Option<&str>,
        args: &[&str],
    ) -> Result<Output, Error> {
        self.run_with(prog, cwd, args, self.shown.as_ref())
    }
}
