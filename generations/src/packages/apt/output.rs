//! What the tools print: the captured output of a run, the lines of an apt
//! simulation, and the errors read from a failed run (the dpkg lock, the
//! package and maintainer script at fault, an unknown package or version).

use super::Apt;
use crate::packages::Want;
use crate::{Error, PackageError};

pub(super) struct Output {
    pub(super) ok: bool,
    pub(super) stdout: String,
    pub(super) stderr: String,
    pub(super) cmdline: String,
}

impl Output {
    /// The last lines of the output, for an error message, less the
    /// chatter that says nothing about the failure.
    pub(super) fn tail(&self) -> String {
        const NOISE: [&str; 4] = [
            "debconf: delaying package configuration",
            "E: Can not write log",
            "(Reading database",
            "Reading package lists",
        ];
        let all: Vec<&str> = self
            .stdout
            .lines()
            .chain(self.stderr.lines())
            .filter(|l| !l.trim().is_empty() && !NOISE.iter().any(|n| l.starts_with(n)))
            .collect();
        let start = all.len().saturating_sub(12);
        all[start..]
            .iter()
            .map(|l| format!("\n    {l}"))
            .collect::<String>()
    }
}

/// `Inst name [old] (new repo [arch])` or `Inst name (new repo [arch])`.
pub(super) fn parse_inst(line: &str) -> Option<(String, String, String)> {
    let rest = line.strip_prefix("Inst ")?;
    let (name, rest) = rest.split_once(' ')?;
    let open = rest.find('(')?;
    let inner = &rest[open + 1..rest.rfind(')')?];
    let version = inner.split_whitespace().next()?.to_owned();
    let arch = inner
        .rsplit_once('[')
        .and_then(|(_, a)| a.strip_suffix(']'))
        .unwrap_or("all")
        .to_owned();
    // Multi-arch qualified names keep the bare name as the key.
    let name = name.split(':').next().unwrap_or(name).to_owned();
    Some((name, version, arch))
}

/// `Remv name [ver]` / `Purg name [ver]`.
pub(super) fn parse_remv(line: &str) -> Option<String> {
    let rest = line
        .strip_prefix("Remv ")
        .or_else(|| line.strip_prefix("Purg "))?;
    let name = rest.split_whitespace().next()?;
    Some(name.split(':').next().unwrap_or(name).to_owned())
}

impl Apt {
    /// Why the `tool` run (`apt-get install`, `dpkg --purge`) that printed
    /// `out` failed: the dpkg lock, or the package (and maintainer script)
    /// that broke, with `hint`.
    pub(super) fn transaction_error(&self, out: &Output, tool: &str, hint: &str) -> Error {
        self.dpkg_lock_error(out).unwrap_or_else(|| {
            let pkg = failed_package(out);
            let on = pkg.as_ref().map(|p| format!(" on {p}")).unwrap_or_default();
            Error::Package(PackageError {
                what: format!("{tool} failed{on}{}:{}", script_failure(out), out.tail()),
                package: pkg,
                hint: hint.into(),
            })
        })
    }

    fn dpkg_lock_error(&self, out: &Output) -> Option<Error> {
        let text = format!("{}{}", out.stderr, out.stdout);
        let line = text.lines().find(|l| {
            l.contains("Could not get lock") || l.contains("Unable to acquire the dpkg")
        })?;
        Some(Error::Package(PackageError {
            package: None,
            what: format!(
                "the dpkg lock of the root {} is held by another program: {}",
                self.root_display,
                line.trim_start_matches("E: ")
            ),
            hint:
                "wait for the other apt or dpkg to finish (or stop it), then run the command again"
                    .into(),
        }))
    }

    /// Turns a failed simulation into the message for the package at fault.
    pub(super) fn resolve_error(&self, out: &Output, wanted: &[Want]) -> Error {
        if let Some(e) = self.dpkg_lock_error(out) {
            return e;
        }
        for line in out.stderr.lines() {
            // E: Unable to locate package foo
            if let Some(name) = line.strip_prefix("E: Unable to locate package ") {
                let name = name.trim();
                return Error::Invalid(format!(
                    "{}packages.apt.{name}: no package {name} is known to the apt of the root {}; check the name, or run `apt-get update` in the root if its package lists are old",
                    declared_in(wanted, name),
                    self.root_display
                ));
            }
            // E: Version '9.9' for 'sg-hello' was not found
            if let Some(rest) = line.strip_prefix("E: Version '")
                && let Some((v, rest)) = rest.split_once("' for '")
            {
                let name = rest.split('\'').next().unwrap_or(rest);
                return Error::Invalid(format!(
                    "{}packages.apt.{name}: version {v} of {name} is not available to the apt of the root {}; `apt-cache policy {name}` in the root lists the versions it has",
                    declared_in(wanted, name),
                    self.root_display
                ));
            }
        }
        // Unmet dependencies: name the package apt names first.
        let pkg = out.stdout.lines().chain(out.stderr.lines()).find_map(|l| {
            let l = l.trim();
            let (name, rest) = l.split_once(" : ")?;
            rest.contains("Depends")
                .then(|| name.trim().to_owned())
                .or_else(|| rest.contains("Conflicts").then(|| name.trim().to_owned()))
                .or_else(|| rest.contains("Breaks").then(|| name.trim().to_owned()))
        });
        Error::Package(PackageError {
            what: format!(
                "apt cannot install the declared packages together{}:{}",
                pkg.as_ref()
                    .map(|p| format!(" ({p} has a dependency problem)"))
                    .unwrap_or_default(),
                out.tail()
            ),
            package: pkg,
            hint: "change the declared packages or versions so that apt can satisfy them (`apt-get -s install …` in the root shows the problem); nothing was changed".into(),
        })
    }
}

fn declared_in(wanted: &[Want], name: &str) -> String {
    wanted
        .iter()
        .find(|w| w.name == name)
        .map(|w| format!("{}: ", w.declared_in.display()))
        .unwrap_or_default()
}

/// The package dpkg names in "dpkg: error processing package X (...)".
pub(super) fn failed_package(out: &Output) -> Option<String> {
    out.stdout.lines().chain(out.stderr.lines()).find_map(|l| {
        let rest = l
            .split_once("error processing package ")
            .map(|(_, r)| r)
            .or_else(|| l.split_once("error processing archive ").map(|(_, r)| r))?;
        let name = rest.split_whitespace().next()?;
        let name = name.rsplit('/').next().unwrap_or(name);
        Some(name.split(['_', ':']).next().unwrap_or(name).to_owned())
    })
}

/// ": its post-installation script failed (exit status 1)" when dpkg says
/// that a maintainer script failed.
fn script_failure(out: &Output) -> String {
    out.stdout
        .lines()
        .chain(out.stderr.lines())
        .find_map(|l| {
            let (_, rest) = l.split_once(" package ")?;
            let (script, status) = rest.split_once(" subprocess returned error exit status ")?;
            Some(format!(
                ": its {script} failed (exit status {})",
                status.trim()
            ))
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_simulation_lines() {
        assert_eq!(
            parse_inst("Inst sg-hello [1.0] (2.0 localhost [all])"),
            Some(("sg-hello".into(), "2.0".into(), "all".into()))
        );
        assert_eq!(
            parse_inst("Inst libc6:amd64 (2.36-9+deb12u4 Debian:12.5/stable [amd64])"),
            Some(("libc6".into(), "2.36-9+deb12u4".into(), "amd64".into()))
        );
        assert_eq!(parse_remv("Purg sg-hello [1.0]"), Some("sg-hello".into()));
        assert_eq!(parse_inst("Conf sg-hello (2.0 localhost [all])"), None);
    }
}
