//! `sysgen man DIR`: the man pages, `sysgen.8` and one page per command
//! (`sysgen-switch.8`, …), made by `clap_mangen` from the definitions the
//! parser uses; the Debian package ships them. Section 8: sysgen
//! administers the host and runs as root.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use serde::Serialize;
use sysgen_generations::Error;

use crate::args::Cli;
use crate::output::Out;

#[derive(Serialize)]
struct ManOutput {
    ok: bool,
    dir: PathBuf,
    pages: Vec<String>,
}

pub fn run(out: &Out, dir: &Path) -> Result<i32, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut top = Cli::command().disable_help_subcommand(true);
    // Building gives each command its display name (`sysgen-switch`),
    // which is the page's name.
    top.build();
    let mut pages = Vec::new();
    for cmd in std::iter::once(top.clone()).chain(top.get_subcommands().cloned()) {
        let man = clap_mangen::Man::new(cmd)
            .section("8")
            .manual("System Administration");
        let name = man.get_filename();
        let path = dir.join(&name);
        man.generate_to(dir).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        out.line(format!("wrote {}", path.display()));
        pages.push(name);
    }
    out.doc(ManOutput {
        ok: true,
        dir: dir.to_owned(),
        pages,
    })?;
    Ok(0)
}
