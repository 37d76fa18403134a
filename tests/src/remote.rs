//! Test support for remotes: a deploying root and the hosts that pull from
//! it, a `file://` remote in a scratch directory, a web server publishing
//! that directory, and host ssh keys made by the real `ssh-keygen`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::http::{Route, Server};
use crate::{Run, TestEnv, cannot_run, s};

/// A remote directory and its `file://` URL.
pub struct RemoteDir {
    pub dir: tempfile::TempDir,
}

impl RemoteDir {
    pub fn new() -> RemoteDir {
        RemoteDir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The remote's own directory (created by the first push).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("remote")
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    /// Every key the remote holds (files, relative paths), sorted; temp and
    /// lock files included, so a test sees one left behind.
    pub fn keys(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let base = self.path();
        for (p, m) in crate::entries_under(&base) {
            if m.is_file() {
                out.insert(
                    p.strip_prefix(&base)
                        .expect("under the remote")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        out
    }

    /// The keys under `prefix/`.
    pub fn keys_under(&self, prefix: &str) -> BTreeSet<String> {
        self.keys()
            .into_iter()
            .filter(|k| k.starts_with(&format!("{prefix}/")))
            .collect()
    }

    /// A web server publishing the remote's files under `/pub/`.
    pub fn serve(&self) -> Server {
        let server = Server::start();
        self.publish(&server);
        server
    }

    /// (Re)publishes every file on `server` (call after a push).
    pub fn publish(&self, server: &Server) {
        for k in self.keys() {
            let bytes = fs::read(self.path().join(&k)).expect("read remote file");
            server.route(&format!("/pub/{k}"), Route::Full(bytes));
        }
    }
}

impl Default for RemoteDir {
    fn default() -> Self {
        Self::new()
    }
}

/// Makes the root's signing key (`<state>/signing.key`); returns the
/// public key file.
pub fn keygen(env: &TestEnv) -> PathBuf {
    env.run(&["key", "generate"]).ok();
    env.state().join("signing.key.pub")
}

/// Makes `env` trust the key in `pub_file`.
pub fn trust(env: &TestEnv, pub_file: &Path) {
    env.run(&["key", "trust", s(pub_file)]).ok();
}

/// An ssh ed25519 host key pair made by `ssh-keygen` in `dir` (private key
/// path, public key path); `None` (after [`cannot_run`]) without ssh-keygen.
pub fn host_key(dir: &Path, name: &str, test: &str) -> Option<(PathBuf, PathBuf)> {
    let key = dir.join(name);
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output();
    match made {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("ssh-keygen failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            cannot_run(test, &format!("ssh-keygen (OpenSSH) is not installed: {e}"));
            return None;
        }
    }
    let mut p = key.clone().into_os_string();
    p.push(".pub");
    Some((key, PathBuf::from(p)))
}

/// The `moved` object of a push, pull or copy's JSON as (objects, nodes,
/// manifests, objects already present).
pub fn moved(r: &Run) -> (u64, u64, u64, u64) {
    let j = r.json();
    let m = &j["moved"];
    let n = |k: &str| {
        m[k].as_u64()
            .unwrap_or_else(|| panic!("no moved.{k} in {j}"))
    };
    (
        n("objects"),
        n("nodes"),
        n("manifests"),
        n("objects_present"),
    )
}

/// The hex BLAKE3 of `content`: its object's name.
pub fn object_key(content: &[u8]) -> String {
    format!("objects/{}", blake3::hash(content).to_hex())
}

/// A byte count as sysgen prints it for people (`1.2 KiB`).
pub fn human(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// A configuration of `n` files in two directories, file `i` holding
/// `"{prefix}file {i}\n"`, and file `changed` (if any) other content.
pub fn files(n: usize, changed: Option<usize>, prefix: &str) -> serde_json::Value {
    let mut files = serde_json::Map::new();
    for i in 0..n {
        let dir = if i % 2 == 0 { "a" } else { "b" };
        let content = match changed {
            Some(c) if c == i => format!("{prefix}file {i}, changed\n"),
            _ => format!("{prefix}file {i}\n"),
        };
        files.insert(
            format!("/srv/{dir}/f{i:03}"),
            serde_json::json!({ "content": content }),
        );
    }
    serde_json::json!({ "files": files })
}

/// Builds `cfg` (written as `name`) on `env`; the generation id.
pub fn build(env: &TestEnv, name: &str, cfg: serde_json::Value) -> String {
    let c = env.config(name, cfg);
    let r = env.run(&["--json", "build", s(&c)]).ok();
    r.json()["id"]
        .as_str()
        .expect("build prints an id")
        .to_owned()
}
