//! A package transaction whose output is shown as it comes (`-v`: apt's
//! progress) and captured as usual for parsing and error messages.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use super::Apt;
use super::output::Output;
use crate::host::ToolOutput;
use crate::{Error, PackageError};

impl Apt {
    /// Shows the output of the transactions this apt runs to `shown`.
    pub fn showing(mut self, shown: Option<&ToolOutput>) -> Apt {
        self.shown = shown.cloned();
        self
    }

    /// Runs a command like `run`, handing each line of its standard output
    /// to the sink as it comes when there is one.
    pub(super) fn run_shown(
        &self,
        prog: &str,
        cwd: Option<&str>,
        args: &[&str],
    ) -> Result<Output, Error> {
        let Some(shown) = &self.shown else {
            return self.run(prog, cwd, args);
        };
        let cannot = |e: std::io::Error| {
            Error::Package(PackageError {
                package: None,
                what: format!("cannot run {prog} in the root {}: {e}", self.root_display),
                hint: "check that the root is complete and that sysgen runs as root".into(),
            })
        };
        let mut c = self.command(prog, cwd);
        c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().map_err(cannot)?;
        let (Some(out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(Error::Internal(format!("{prog}: its output was not piped")));
        };
        // stderr is read on its own thread, so that neither pipe fills
        // while the other is read.
        let errors = std::thread::spawn(move || {
            let mut s = String::new();
            err.read_to_string(&mut s).map(|_| s)
        });
        let mut stdout = String::new();
        for line in BufReader::new(out).lines() {
            let line = line.map_err(cannot)?;
            (shown.0)(&line);
            stdout.push_str(&line);
            stdout.push('\n');
        }
        let status = child.wait().map_err(cannot)?;
        let stderr = errors
            .join()
            .map_err(|_| Error::Internal(format!("reading {prog}'s errors failed")))?
            .map_err(cannot)?;
        Ok(Output {
            ok: status.success(),
            stdout,
            stderr,
            cmdline: format!("{prog} {}", args.join(" ")),
        })
    }
}
