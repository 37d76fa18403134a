//! Verified downloads (`files.<path>.url` with `sha256` or `blake3`):
//! fetched at build into the store, checked against the digest, and never
//! fetched again while the store holds the content.
//!
//! - The body streams into an unnamed temp file in the store's `tmp/`
//!   (gone by itself if the process dies), hashed with SHA-256 and BLAKE3
//!   on the way; only content that matches the digest enters the store.
//!   A failure (no connection, an HTTP error, a body cut short, a
//!   mismatch) stores nothing and records nothing: the build stops.
//! - The stat cache remembers `download:<sha256|blake3>:<hex>` -> the
//!   object: a later build with the same digest reads the store, and a
//!   rollback never needs the network, since a generation's files are
//!   store objects like any other (gc keeps what kept generations use).
//! - The proxy is the one the binary passes (it reads `https_proxy`,
//!   `http_proxy`, `all_proxy` and `no_proxy`); the library never reads the
//!   environment.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use sha2::Digest as _;
use sysgen_schema::{Digest, Download, EntryPath};
use sysgen_store::{Area, Hash, Store};

use crate::db::CacheRow;
use crate::{Error, Progress, io_err};

pub use ureq::Proxy;

/// How long connecting, and then each read, may wait: a server that stops
/// sending fails the build instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Downloads of one build: the stat cache's rows for downloads, and the
/// rows to record once the build is stored.
pub struct Fetcher<'a> {
    store: &'a Store,
    cache: HashMap<String, CacheRow>,
    agent: ureq::Agent,
    progress: &'a dyn Progress,
    pub(crate) rows: Vec<(String, CacheRow)>,
}

impl<'a> Fetcher<'a> {
    pub fn new(
        store: &'a Store,
        cache: HashMap<String, CacheRow>,
        proxy: Option<Proxy>,
        progress: &'a dyn Progress,
    ) -> Fetcher<'a> {
        let agent = ureq::Agent::config_builder()
            .proxy(proxy)
            .timeout_connect(Some(TIMEOUT))
            .timeout_per_read(Some(TIMEOUT))
            .user_agent(concat!("sysgen/", env!("CARGO_PKG_VERSION")))
            // The host's trust store (/etc/ssl/certs, as apt and curl use),
            // so an admin's own CA for a mirror works.
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                    .build(),
            )
            .build()
            .into();
        Fetcher {
            store,
            cache,
            agent,
            progress,
            rows: Vec::new(),
        }
    }

    /// The object holding the content of `d` (declared at `p`), downloaded
    /// and stored unless the store has it already; its hash and size.
    pub fn fetch(
        &mut self,
        what: &str,
        p: &EntryPath,
        d: &Download,
        secret: bool,
    ) -> Result<(Hash, u64), Error> {
        let area = if secret { Area::Secret } else { Area::Public };
        let key = cache_key(&d.digest);
        if let Some(row) = self.cache.get(&key)
            && self.store.contains(&row.hash, area)?
        {
            return Ok((row.hash, row.size));
        }
        if let Digest::Blake3(hex) = &d.digest {
            let hash = Hash::from_hex(hex)?;
            if self.store.contains(&hash, area)? {
                let size = self.store.copy_to(&hash, area, &mut std::io::sink())?;
                self.remember(key, hash, size);
                return Ok((hash, size));
            }
        }
        let fail = |why: String| {
            Error::Download(format!(
                "{what}: files.{p}: {}: {why}; nothing was stored",
                shown(&d.url)
            ))
        };
        let mut temp = tempfile::tempfile_in(self.store.dir().join("tmp"))
            .map_err(io_err(self.store.dir().join("tmp")))?;
        let (sha256, blake3, size) = self.get(&d.url, &mut temp).map_err(fail)?;
        let (want, got, alg) = match &d.digest {
            Digest::Sha256(w) => (w, &sha256, "sha256"),
            Digest::Blake3(w) => (w, &blake3, "blake3"),
        };
        if want != got {
            return Err(fail(format!(
                "{alg} mismatch: the configuration expects {want}, the download has {got}; check the url and the digest"
            )));
        }
        temp.rewind().map_err(io_err("a download's temp file"))?;
        // The unnamed file, reopened by its descriptor's name.
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", temp.as_raw_fd()));
        let (hash, stored) = self.store.put_file(&by_fd, area)?;
        if hash.to_hex() != blake3 || stored != size {
            return Err(Error::Internal(format!(
                "{}: the stored download differs from what was hashed",
                shown(&d.url)
            )));
        }
        self.remember(key, hash, size);
        Ok((hash, size))
    }

    fn remember(&mut self, key: String, hash: Hash, size: u64) {
        let row = CacheRow {
            dev: 0,
            ino: 0,
            size,
            mtime_ns: 0,
            ctime_ns: 0,
            hash,
        };
        self.cache.insert(key.clone(), row);
        self.rows.push((key, row));
    }

    /// GETs `url` into `out`; its SHA-256, BLAKE3 (hex) and size.
    fn get(&self, url: &str, out: &mut File) -> Result<(String, String, u64), String> {
        let resp = self.agent.get(url).call().map_err(|e| e.to_string())?;
        let total = resp.body().content_length();
        let mut body = resp.into_body().into_reader();
        let mut sha = sha2::Sha256::new();
        let mut b3 = blake3::Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        self.progress
            .start(&format!("downloading {}", shown(url)), total.unwrap_or(0));
        let result = loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(format!("the transfer broke off after {size} bytes: {e}")),
            };
            sha.update(&buf[..n]);
            b3.update(&buf[..n]);
            if let Err(e) = out.write_all(&buf[..n]) {
                break Err(format!("writing the store's temp file: {e}"));
            }
            size += n as u64;
            self.progress.advance(n as u64);
        };
        self.progress.finish();
        result?;
        if let Some(t) = total.filter(|&t| t != size) {
            return Err(format!("the server announced {t} bytes but sent {size}"));
        }
        Ok((
            hex::encode(sha.finalize()),
            b3.finalize().to_hex().to_string(),
            size,
        ))
    }
}

/// `url` as messages show it: without a password it may carry
/// (`https://user:secret@host/…` becomes `https://user@host/…`).
fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}@{host}{}", &rest[end..])
        }
        None => url.to_owned(),
    }
}

fn cache_key(d: &Digest) -> String {
    match d {
        Digest::Sha256(h) => format!("download:sha256:{h}"),
        Digest::Blake3(h) => format!("download:blake3:{h}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_in_a_url_is_never_shown() {
        for (url, want) in [
            ("https://example.org/a", "https://example.org/a"),
            ("https://u:pw@example.org/a@b", "https://u@example.org/a@b"),
            ("http://u@h:8080", "http://u@h:8080"),
            ("http://u:p:q@h/x", "http://u@h/x"),
        ] {
            assert_eq!(super::shown(url), want);
        }
    }
}
