//! `sysgen man DIR`: the man pages, `sysgen.8` and one page per command
//! (`sysgen-switch.8`, …), made by `clap_mangen` from the definitions the
//! parser uses; the Debian package ships them. Section 8: sysgen
//! administers the host and runs as root.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};
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
    let subs: Vec<clap::Command> = top.get_subcommands().cloned().collect();
    let names: Vec<String> = subs
        .iter()
        .map(|c| c.get_display_name().unwrap_or(c.get_name()).to_owned())
        .collect();
    let mut pages = Vec::new();
    for (cmd, see_also) in std::iter::once((top.clone(), names.clone()))
        .chain(subs.into_iter().map(|c| (c, vec!["sysgen".to_owned()])))
    {
        let examples = examples(&cmd);
        let man = Man::new(cmd).section("8").manual("System Administration");
        let path = dir.join(man.get_filename());
        let mut page = Vec::new();
        render(&man, &examples, &see_also, &mut page)
            .and_then(|()| std::fs::write(&path, &page))
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        out.line(format!("wrote {}", path.display()));
        pages.push(man.get_filename());
    }
    out.doc(ManOutput {
        ok: true,
        dir: dir.to_owned(),
        pages,
    })?;
    Ok(0)
}

/// The lines of a command's `--help` examples, less their heading.
fn examples(cmd: &clap::Command) -> Vec<String> {
    cmd.get_after_help()
        .map(|h| {
            h.to_string()
                .lines()
                .filter(|l| *l != "Examples:")
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The page as `clap_mangen` renders it, but with the examples in an
/// EXAMPLES section (unfilled, so each keeps its line) where it would
/// print them as EXTRA, and a SEE ALSO section naming the other pages.
fn render(
    man: &Man,
    examples: &[String],
    see_also: &[String],
    w: &mut Vec<u8>,
) -> std::io::Result<()> {
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    // The top page lists the commands; a command's page names only sysgen.
    if see_also.len() > 1 {
        man.render_subcommands_section(w)?;
    }
    let mut roff = Roff::default();
    if !examples.is_empty() {
        roff.control("SH", ["EXAMPLES"]);
        roff.control("nf", [] as [&str; 0]);
        for line in examples {
            roff.text([roman(line.as_str())]);
        }
        roff.control("fi", [] as [&str; 0]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut refs = Vec::new();
    for (i, page) in see_also.iter().enumerate() {
        refs.push(bold(page.as_str()));
        refs.push(roman(if i + 1 < see_also.len() {
            "(8), "
        } else {
            "(8)"
        }));
    }
    roff.text(refs);
    roff.to_writer(w)?;
    man.render_version_section(w)
}
