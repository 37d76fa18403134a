//! `s3://bucket/prefix`: a bucket (or a prefix in one) of any S3-compatible
//! store, through `object_store` on a small current-thread tokio runtime
//! that the transport owns (the rest of sysgen is synchronous).
//!
//! Where the endpoint, region and credentials come from: the `AWS_*`
//! variables the caller passes in ([`S3Options::vars`]: the CLI passes its
//! environment; the library never reads it), then the shared files
//! `~/.aws/credentials` and `~/.aws/config` for what the variables leave
//! out (see [`files`]). Plain `http://` endpoints are allowed:
//! loopback stores and test servers rarely have TLS.
//!
//! Refs move by compare-and-swap. Where the server honours conditional
//! writes (`If-None-Match: *`, `If-Match: ETAG`), [`Transport::swap`] uses
//! them; where it does not (Garage ignores both), a lock object serialises
//! the writers. Which one a store gets is probed once per transport, the
//! first time it swaps. The protocol and its limits are in
//! `docs/remote.md`, "Transports: s3 and ssh".

mod files;
mod has;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::path::Path;
use object_store::{
    BackoffConfig, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, UpdateVersion,
};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::transport::{Swap, Transport};

pub use has::{HEADS_IN_FLIGHT, LIST_FROM, LISTED_PER_ASKED};

/// Retries of a failed request (5xx, a dropped connection) before the
/// error is reported: a deploy should fail in seconds, not the three
/// minutes object_store allows by default.
const RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the caller passes in: the `AWS_*` variables (name, value) and the
/// home directory whose `.aws/` files fill in what they leave out.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub vars: Vec<(String, String)>,
    pub home: Option<std::path::PathBuf>,
    /// The lock protocol's timing (tests shorten it).
    pub lock: LockTiming,
    /// HEAD requests `has` keeps in flight (0: [`HEADS_IN_FLIGHT`]).
    pub heads_in_flight: usize,
    /// The smallest batch in one directory that `has` lists (0:
    /// [`has::LIST_FROM`]; `usize::MAX`: never).
    pub list_from: usize,
}

/// The timing of the lock protocol (see docs/remote.md).
#[derive(Debug, Clone, Copy)]
pub struct LockTiming {
    /// How long a lock holds if its owner dies before releasing it.
    pub ttl: Duration,
    /// How long a writer waits after writing the lock before reading it
    /// back: any contender whose read of the lock came before our write
    /// must have written its own by then, or the protocol is unsafe.
    pub settle: Duration,
    /// How long a swap waits for another writer's lock before giving up.
    pub wait: Duration,
}

impl Default for LockTiming {
    fn default() -> Self {
        LockTiming {
            ttl: Duration::from_secs(60),
            settle: Duration::from_millis(500),
            wait: Duration::from_secs(30),
        }
    }
}

/// How this store makes a swap atomic (probed once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Atomicity {
    /// The server honours `If-None-Match: *` and `If-Match`.
    ConditionalWrites,
    /// It ignores them: writers take the lock object first.
    LockObject,
}

pub struct S3Transport {
    url: String,
    bucket: String,
    /// The prefix in the bucket, with a trailing `/`, or empty.
    prefix: String,
    store: Arc<AmazonS3>,
    rt: tokio::runtime::Runtime,
    atomicity: OnceLock<Atomicity>,
    /// Who this transport is, in lock objects: random per transport.
    owner: String,
    lock: LockTiming,
    heads_in_flight: usize,
    list_from: usize,
}

/// Opens `s3://bucket[/prefix]`. No request is made yet.
pub fn open(url: &str, opts: &S3Options) -> Result<S3Transport, Error> {
    let bad = |message: String| Error::Remote {
        remote: url.to_owned(),
        key: String::new(),
        message,
    };
    // The URL and the AWS_* settings are the user's input: exit 2.
    let invalid = |message: String| Error::Invalid(format!("{url}: {message}"));
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| invalid("not an s3:// URL".into()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(invalid("no bucket: write s3://BUCKET[/PREFIX]".into()));
    }
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty() {
        check_key(prefix).map_err(|m| invalid(format!("prefix {prefix:?}: {m}")))?;
    }
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_allow_http(true)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: RETRIES,
            retry_timeout: RETRY_TIMEOUT,
        });
    let set = files::settings(&opts.vars, opts.home.as_deref());
    for (k, v) in &set {
        let key: AmazonS3ConfigKey = match k.to_ascii_lowercase().parse() {
            Ok(key) => key,
            // Variables object_store does not know (AWS_PROFILE, AWS_PAGER…).
            Err(_) => continue,
        };
        if matches!(key, AmazonS3ConfigKey::Bucket) {
            continue; // the URL names the bucket
        }
        b = b.with_config(key, v);
    }
    if !set.contains_key("AWS_REGION") && !set.contains_key("AWS_DEFAULT_REGION") {
        // Signatures need a region; self-hosted stores take any.
        b = b.with_config(AmazonS3ConfigKey::Region, "us-east-1");
    }
    let store = b.build().map_err(|e| {
        invalid(format!(
            "cannot configure the S3 client from the AWS_* settings: {e}"
        ))
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| bad(format!("cannot start the I/O runtime: {e}")))?;
    Ok(S3Transport {
        url: url.to_owned(),
        bucket: bucket.to_owned(),
        prefix: if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        },
        store: Arc::new(store),
        rt,
        atomicity: OnceLock::new(),
        owner: random_hex(16).map_err(bad)?,
        lock: opts.lock,
        heads_in_flight: if opts.heads_in_flight == 0 {
            HEADS_IN_FLIGHT
        } else {
            opts.heads_in_flight
        },
        list_from: if opts.list_from == 0 {
            has::LIST_FROM
        } else {
            opts.list_from
        },
    })
}

/// What a lock object holds.
#[derive(Debug, Serialize, Deserialize)]
struct LockBody {
    owner: String,
    /// Seconds since the epoch after which the lock no longer holds.
    expires: u64,
}

impl S3Transport {
    fn err(&self, key: &str, message: impl std::fmt::Display) -> Error {
        Error::Remote {
            remote: self.url.clone(),
            key: key.to_owned(),
            message: message.to_string(),
        }
    }

    fn path(&self, key: &str) -> Result<Path, Error> {
        check_key(key).map_err(|m| self.err(key, m))?;
        Path::parse(format!("{}{key}", self.prefix)).map_err(|e| self.err(key, e))
    }

    /// The bytes and version of `key`, or `None`.
    fn read(&self, key: &str) -> Result<Option<(Vec<u8>, UpdateVersion)>, Error> {
        let path = self.path(key)?;
        self.rt.block_on(async {
            match self.store.get_opts(&path, GetOptions::default()).await {
                Ok(r) => {
                    let version = UpdateVersion {
                        e_tag: r.meta.e_tag.clone(),
                        version: r.meta.version.clone(),
                    };
                    let bytes = r.bytes().await.map_err(|e| self.err(key, e))?;
                    Ok(Some((bytes.to_vec(), version)))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err(key, e)),
            }
        })
    }

    fn write(&self, key: &str, bytes: &[u8], mode: PutMode) -> Result<(), object_store::Error> {
        let path = self.path(key).map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        })?;
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        self.rt.block_on(
            self.store
                .put_opts(&path, PutPayload::from(bytes.to_vec()), opts),
        )?;
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), Error> {
        let path = self.path(key)?;
        match self.rt.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key, e)),
        }
    }

    /// Which way swaps are made atomic on this store: probed once, with a
    /// scratch object under `locks/probe/`, by writing it twice with
    /// `If-None-Match: *` (the second must be refused) and once with an
    /// `If-Match` that cannot match (it must be refused too).
    pub fn atomicity(&self) -> Result<Atomicity, Error> {
        if let Some(a) = self.atomicity.get() {
            return Ok(*a);
        }
        let key = format!("locks/probe/{}", self.owner);
        let refused = |r: Result<(), object_store::Error>| match r {
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(true),
            Ok(()) => Ok(false),
            // A server that rejects the header outright has no support.
            Err(object_store::Error::NotImplemented { .. }) => Ok(false),
            Err(e) => Err(self.err(&key, e)),
        };
        let first = self.write(&key, b"probe", PutMode::Create);
        let a = match first {
            Ok(()) => {
                let create = refused(self.write(&key, b"probe", PutMode::Create))?;
                let update = refused(self.write(
                    &key,
                    b"probe",
                    PutMode::Update(UpdateVersion {
                        e_tag: Some("\"sysgen-probe-never-matches\"".into()),
                        version: None,
                    }),
                ))?;
                if create && update {
                    Atomicity::ConditionalWrites
                } else {
                    Atomicity::LockObject
                }
            }
            Err(object_store::Error::NotImplemented { .. }) => Atomicity::LockObject,
            Err(e) => return Err(self.err(&key, e)),
        };
        self.delete(&key)?;
        Ok(*self.atomicity.get_or_init(|| a))
    }

    /// Compare-and-swap with conditional writes. A write refused because
    /// another writer came first is read again: if it now holds what we
    /// expected (the other wrote the same bytes back), try again.
    fn swap_conditional(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Swap2 {
        for _ in 0..8 {
            let current = self.read(key)?;
            if current.as_ref().map(|(b, _)| b.as_slice()) != expected {
                return Ok(Swap::Lost(current.map(|(b, _)| b)));
            }
            let mode = match current {
                None => PutMode::Create,
                Some((_, v)) => PutMode::Update(v),
            };
            match self.write(key, new, mode) {
                Ok(()) => return Ok(Swap::Done),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => continue,
                Err(e) => return Err(self.err(key, e)),
            }
        }
        Err(self.err(key, "the ref keeps changing; try again"))
    }

    /// Compare-and-swap under the lock object `locks/KEY`.
    fn swap_locked(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Swap2 {
        let lock = format!("locks/{key}");
        self.acquire(&lock)?;
        let result: Swap2 = (|| {
            let current = self.read(key)?.map(|(b, _)| b);
            if current.as_deref() != expected {
                return Ok(Swap::Lost(current));
            }
            // Still ours, with time to spare: a lock that expired while we
            // read may have been taken over.
            self.still_held(&lock)?;
            self.write(key, new, PutMode::Overwrite)
                .map_err(|e| self.err(key, e))?;
            Ok(Swap::Done)
        })();
        let released = self.release(&lock);
        let swap = result?;
        released?;
        Ok(swap)
    }

    fn read_lock(&self, lock: &str) -> Result<Option<LockBody>, Error> {
        match self.read(lock)? {
            None => Ok(None),
            Some((bytes, _)) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                self.err(
                    lock,
                    format!("a damaged lock object ({e}); delete it if no deployer is running"),
                )
            }),
        }
    }

    fn acquire(&self, lock: &str) -> Result<(), Error> {
        let give_up = std::time::Instant::now() + self.lock.wait;
        loop {
            let now = unix_now();
            if let Some(held) = self.read_lock(lock)?
                && held.expires > now
                && held.owner != self.owner
            {
                if std::time::Instant::now() >= give_up {
                    return Err(self.err(
                        lock,
                        format!(
                            "locked by another deployer ({}) for {} more seconds; try again later",
                            held.owner,
                            held.expires - now
                        ),
                    ));
                }
                std::thread::sleep(self.lock.settle / 2);
                continue;
            }
            let body = LockBody {
                owner: self.owner.clone(),
                expires: now + self.lock.ttl.as_secs(),
            };
            let bytes = serde_json::to_vec(&body).map_err(|e| self.err(lock, e))?;
            self.write(lock, &bytes, PutMode::Overwrite)
                .map_err(|e| self.err(lock, e))?;
            std::thread::sleep(self.lock.settle);
            if self
                .read_lock(lock)?
                .is_some_and(|held| held.owner == self.owner)
            {
                return Ok(());
            }
        }
    }

    fn still_held(&self, lock: &str) -> Result<(), Error> {
        let margin = self.lock.settle.as_secs() + 1;
        match self.read_lock(lock)? {
            Some(held) if held.owner == self.owner && held.expires > unix_now() + margin => Ok(()),
            _ => Err(self.err(
                lock,
                "lost the lock before writing the ref (it expired); nothing was written; try again",
            )),
        }
    }

    /// Deletes the lock if it is still ours (one that expired and was taken
    /// over belongs to its new owner).
    fn release(&self, lock: &str) -> Result<(), Error> {
        match self.read_lock(lock)? {
            Some(held) if held.owner == self.owner => self.delete(lock),
            _ => Ok(()),
        }
    }
}

type Swap2 = Result<Swap, Error>;

impl Transport for S3Transport {
    fn describe(&self) -> String {
        self.url.clone()
    }

    /// A LIST of the keys' directory where that is cheaper, HEADs for the
    /// rest (see `has.rs`).
    fn has(&self, keys: &[String]) -> Result<Vec<bool>, Error> {
        self.has_keys(keys)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.read(key)?.map(|(b, _)| b))
    }

    /// One PUT: S3 replaces an object whole, so a reader sees the old
    /// bytes or the new, never half; the same bytes again change nothing.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), Error> {
        self.write(key, bytes, PutMode::Overwrite)
            .map_err(|e| self.err(key, e))
    }

    /// S3 lists by string prefix; object_store lists by path segments, so
    /// this lists the prefix's directory and keeps the keys that match.
    fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let full = format!("{}{dir}", self.prefix);
        let full = full.trim_end_matches('/');
        let base = if full.is_empty() {
            None
        } else {
            Some(Path::parse(full).map_err(|e| self.err(prefix, e))?)
        };
        let mut out = self.rt.block_on(async {
            let mut stream = self.store.list(base.as_ref());
            let mut out = Vec::new();
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(|e| self.err(prefix, e))?;
                let name = meta.location.as_ref();
                if let Some(key) = name.strip_prefix(self.prefix.as_str())
                    && key.starts_with(prefix)
                {
                    out.push(key.to_owned());
                }
            }
            Ok::<_, Error>(out)
        })?;
        out.sort();
        Ok(out)
    }

    fn swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<Swap, Error> {
        check_key(key).map_err(|m| self.err(key, m))?;
        match self.atomicity()? {
            Atomicity::ConditionalWrites => self.swap_conditional(key, expected, new),
            Atomicity::LockObject => self.swap_locked(key, expected, new),
        }
    }
}

impl std::fmt::Debug for S3Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Transport({}, bucket {})", self.url, self.bucket)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_hex(n: usize) -> Result<String, String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
    Ok(hex::encode(b))
}

/// A key as the layout has them: relative, `/`-separated segments, none
/// empty, `.` or `..`, no control characters (S3 would take them, a
/// directory remote or a log line would not).
pub(crate) fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("an empty key".into());
    }
    if key.chars().any(char::is_control) {
        return Err("a key with control characters".into());
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("not a relative key of /-separated names (no empty, . or .. parts)".into());
    }
    Ok(())
}
