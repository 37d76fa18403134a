//! The inventory of `sysgen deploy`: hosts with an ssh address, a
//! configuration (usually includes of roles) and tags, and defaults.
//!
//! ```toml
//! [defaults]
//! ssh = "ssh://root@{name}"             # {name}: the host's name
//! program = "sysgen"                    # the sysgen on the hosts
//! ssh_options = ["-o", "ConnectTimeout=10"]
//! confirm_within = "2m"
//!
//! [hosts.web-01]
//! config = "hosts/web-01.toml"          # relative to this file
//! tags = ["web", "canary"]
//! [hosts.db-01]
//! ssh = "ssh://admin@10.0.0.7:2222"
//! config = "hosts/db-01.toml"
//! root = "/"                            # the root sysgen manages there
//! recipient = "keys/db-01.pub"         # its ssh host key, for secrets
//! ```
//!
//! Every error names the inventory file and the host or key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sysgen_generations::Error;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    defaults: RawHost,
    #[serde(default)]
    hosts: BTreeMap<String, RawHost>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawHost {
    ssh: Option<String>,
    config: Option<PathBuf>,
    root: Option<String>,
    state_dir: Option<String>,
    program: Option<String>,
    ssh_options: Option<Vec<String>>,
    confirm_within: Option<String>,
    /// The host's ssh ed25519 public key (or its .pub file): its secrets
    /// are encrypted to it on the way.
    recipient: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// Where a host's sshd listens and as whom to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAddress {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl SshAddress {
    /// `ssh://[user@]host[:port]`
    pub fn parse(s: &str) -> Result<SshAddress, String> {
        let rest = s
            .strip_prefix("ssh://")
            .ok_or_else(|| format!("{s:?} is not an ssh:// address (ssh://[user@]host[:port])"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_owned()), h),
            None => (None, rest),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("{s:?}: the port {p:?} is not a number"))?;
                (h.trim_matches(['[', ']']).to_owned(), Some(port))
            }
            _ => (hostport.to_owned(), None),
        };
        let bad = |c: char| c.is_whitespace() || c == '/' || c == '@';
        if host.is_empty()
            || host.starts_with('-')
            || host.contains(bad)
            || user
                .as_deref()
                .is_some_and(|u| u.is_empty() || u.starts_with('-') || u.contains(bad))
        {
            return Err(format!(
                "{s:?} is not an ssh:// address (ssh://[user@]host[:port])"
            ));
        }
        Ok(SshAddress { user, host, port })
    }

    /// `ssh://[user@]host[:port]`
    pub fn url(&self) -> String {
        let mut u = String::from("ssh://");
        if let Some(user) = &self.user {
            u.push_str(user);
            u.push('@');
        }
        if self.host.contains(':') {
            u.push_str(&format!("[{}]", self.host));
        } else {
            u.push_str(&self.host);
        }
        if let Some(p) = self.port {
            u.push_str(&format!(":{p}"));
        }
        u
    }

    /// `[user@]host`, as ssh takes it.
    pub fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }
}

/// One host, with the defaults applied.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub ssh: SshAddress,
    /// The configuration file (absolute, or relative to the working directory).
    pub config: PathBuf,
    pub root: String,
    pub state_dir: Option<String>,
    pub program: String,
    pub ssh_options: Vec<String>,
    pub confirm_within: Option<String>,
    pub recipient: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug)]
pub struct Inventory {
    pub path: PathBuf,
    pub hosts: Vec<Host>,
}

impl Inventory {
    /// Reads and checks an inventory; every host ends up complete.
    pub fn load(path: &Path) -> Result<Inventory, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_owned(),
            source: e,
        })?;
        let bad = |what: String| Error::Invalid(format!("{}: {what}", path.display()));
        let raw: RawInventory = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if raw.hosts.is_empty() {
            return Err(bad("no [hosts.NAME] in the inventory".into()));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let d = &raw.defaults;
        if d.config.is_some() {
            return Err(bad(
                "defaults.config: each host names its own configuration".into(),
            ));
        }
        let mut hosts = Vec::new();
        for (name, h) in &raw.hosts {
            let at = |key: &str, what: String| bad(format!("hosts.{name}.{key}: {what}"));
            if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(bad(format!(
                    "hosts.{name:?}: a host name has no spaces or slashes"
                )));
            }
            let ssh = h
                .ssh
                .clone()
                .or_else(|| d.ssh.as_ref().map(|s| s.replace("{name}", name)))
                .ok_or_else(|| at("ssh", "missing (and no defaults.ssh)".into()))?;
            let ssh = SshAddress::parse(&ssh).map_err(|e| at("ssh", e))?;
            let config = h
                .config
                .clone()
                .ok_or_else(|| at("config", "missing: the host's configuration file".into()))?;
            let mut tags = d.tags.clone();
            tags.extend(h.tags.iter().cloned());
            hosts.push(Host {
                name: name.clone(),
                ssh,
                config: base.join(config),
                root: h
                    .root
                    .clone()
                    .or_else(|| d.root.clone())
                    .unwrap_or("/".into()),
                state_dir: h.state_dir.clone().or_else(|| d.state_dir.clone()),
                program: h
                    .program
                    .clone()
                    .or_else(|| d.program.clone())
                    .unwrap_or("sysgen".into()),
                ssh_options: h
                    .ssh_options
                    .clone()
                    .or_else(|| d.ssh_options.clone())
                    .unwrap_or_default(),
                confirm_within: h
                    .confirm_within
                    .clone()
                    .or_else(|| d.confirm_within.clone()),
                // A key file, like the configuration, is relative to the
                // inventory; a key's own line (`ssh-ed25519 AAAA…`) is as is.
                recipient: h.recipient.as_ref().map(|r| {
                    if r.starts_with("ssh-") {
                        r.clone()
                    } else {
                        base.join(r).display().to_string()
                    }
                }),
                tags,
            });
        }
        Ok(Inventory {
            path: path.to_owned(),
            hosts,
        })
    }

    /// The hosts `--limit` selects: a comma-separated list of host names
    /// and `@tag`s, each of which may hold `*` wildcards; `None`: all.
    pub fn limit(&self, pattern: Option<&str>) -> Result<Vec<Host>, Error> {
        let Some(pattern) = pattern else {
            return Ok(self.hosts.clone());
        };
        let parts: Vec<&str> = pattern
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let picked: Vec<Host> = self
            .hosts
            .iter()
            .filter(|h| {
                parts.iter().any(|p| match p.strip_prefix('@') {
                    Some(tag) => h.tags.iter().any(|t| glob(tag, t)),
                    None => glob(p, &h.name),
                })
            })
            .cloned()
            .collect();
        if picked.is_empty() {
            return Err(Error::Invalid(format!(
                "--limit {pattern:?}: no host of {} matches (names, or @tag)",
                self.path.display()
            )));
        }
        Ok(picked)
    }
}

/// `*` matches any run of characters; everything else itself.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            let Some(rest) = s.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let a = SshAddress::parse("ssh://root@127.0.0.1:2222").unwrap();
        assert_eq!(a.destination(), "root@127.0.0.1");
        assert_eq!(a.port, Some(2222));
        let a = SshAddress::parse("ssh://web-01").unwrap();
        assert_eq!((a.destination(), a.port), ("web-01".into(), None));
        for bad in [
            "web-01",
            "ssh://",
            "ssh://-oProxyCommand=x",
            "ssh://a b",
            "ssh://h:port",
        ] {
            assert!(SshAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob("web-*", "web-01"));
        assert!(glob("*", "x"));
        assert!(glob("w*-0*", "web-01"));
        assert!(!glob("web-*", "db-01"));
        assert!(!glob("web", "web-01"));
    }

    #[test]
    fn an_inventory_with_defaults_and_a_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fleet.toml");
        std::fs::write(
            &p,
            r#"
[defaults]
ssh = "ssh://root@{name}"
tags = ["all"]
[hosts.web-01]
config = "web.toml"
tags = ["canary"]
[hosts.db-01]
ssh = "ssh://admin@10.0.0.7:2222"
config = "/abs/db.toml"
root = "/srv/root"
"#,
        )
        .unwrap();
        let inv = Inventory::load(&p).unwrap();
        let names = |hs: &[Host]| hs.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&inv.hosts), ["db-01", "web-01"]);
        let web = &inv.hosts[1];
        assert_eq!(web.ssh.destination(), "root@web-01");
        assert_eq!(web.config, dir.path().join("web.toml"));
        assert_eq!(web.tags, ["all", "canary"]);
        assert_eq!(inv.hosts[0].root, "/srv/root");
        assert_eq!(names(&inv.limit(Some("@canary")).unwrap()), ["web-01"]);
        assert_eq!(names(&inv.limit(Some("db-*, web-01")).unwrap()).len(), 2);
        assert!(inv.limit(Some("nope")).is_err());
    }

    #[test]
    fn bad_inventories_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fleet.toml");
        for (text, want) in [
            ("[hosts.a]\nssh = \"ssh://a\"\n", "hosts.a.config: missing"),
            ("[hosts.a]\nconfig = \"c\"\n", "hosts.a.ssh: missing"),
            ("[hosts.a]\nconfig = \"c\"\nssh = \"a\"\n", "hosts.a.ssh"),
            (
                "[hosts.a]\nconfig = \"c\"\nssh = \"ssh://a\"\ncolour = 1\n",
                "colour",
            ),
            ("", "no [hosts.NAME]"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = Inventory::load(&p).unwrap_err();
            assert!(e.is_invalid_input(), "{e}");
            let e = e.to_string();
            assert!(
                e.contains("fleet.toml") && e.contains(want),
                "{e} lacks {want}"
            );
        }
    }
}
