//! `sysgen completions SHELL`: the completion script for a shell, made by
//! `clap_complete` from the same definitions the parser uses, so it never
//! falls behind the command line.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;
use serde::Serialize;
use sysgen_generations::Error;

use crate::args::Cli;
use crate::output::Out;

#[derive(Serialize)]
struct CompletionsOutput {
    ok: bool,
    shell: String,
    script: String,
}

pub fn run(out: &Out, shell: Shell) -> Result<i32, Error> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sysgen", &mut script);
    let script = String::from_utf8(script)
        .map_err(|e| Error::Internal(format!("the {shell} completion script is not UTF-8: {e}")))?;
    if out.json {
        out.doc(CompletionsOutput {
            ok: true,
            shell: shell.to_string(),
            script,
        })?;
    } else {
        // The script is the output itself: `-q` must not swallow it.
        std::io::stdout()
            .write_all(script.as_bytes())
            .map_err(|source| Error::Io {
                path: "standard output".into(),
                source,
            })?;
    }
    Ok(0)
}
