//! A real S3 server for the s3 transport tests: Garage, unmodified, on
//! 127.0.0.1 in a scratch directory (one node, `replication_factor = 1`,
//! sqlite metadata), with a layout applied, one bucket and one key allowed
//! on it. Stopped (killed) when dropped; its directory goes with it.
//!
//! The binary is `garage` on PATH or in `~/.cargo/bin` (scripts/test-deps
//! builds it once per machine). Without it a test fails unless
//! `SYSGEN_TEST_ALLOW_SKIP=1` ([`crate::cannot_run`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cannot_run;
use crate::sshd::free_port;

pub struct Garage {
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
    pub endpoint: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    child: Child,
}

/// Where Garage is: PATH first, then cargo's bin directory.
pub fn garage_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("garage"))
            .find(|c| c.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
        Some(home.join("bin/garage")).filter(|p| p.is_file())
    })
}

impl Garage {
    /// Starts Garage with a bucket `sysgen`; `None` (after [`cannot_run`])
    /// when it is not installed.
    pub fn start(test: &str) -> Option<Garage> {
        let Some(bin) = garage_bin() else {
            cannot_run(
                test,
                "garage is not installed (scripts/test-deps builds it into ~/.cargo/bin)",
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("sysgen-garage-")
            .tempdir()
            .expect("temp dir");
        let (s3, rpc) = (free_port(), free_port());
        let d = dir.path().display();
        let mut secret = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut secret))
            .expect("/dev/urandom");
        let rpc_secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{d}/meta\"\n\
                 data_dir = \"{d}/data\"\n\
                 db_engine = \"sqlite\"\n\
                 replication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{rpc_secret}\"\n\
                 [s3_api]\n\
                 s3_region = \"garage\"\n\
                 api_bind_addr = \"127.0.0.1:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n"
            ),
        )
        .expect("write garage.toml");
        let log = std::fs::File::create(dir.path().join("garage.log")).expect("garage.log");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start garage");
        let mut g = Garage {
            dir,
            bin,
            endpoint: format!("http://127.0.0.1:{s3}"),
            bucket: "sysgen".into(),
            key_id: String::new(),
            secret: String::new(),
            child,
        };
        g.set_up();
        Some(g)
    }

    /// `garage -c CONFIG ARGS…`, which must succeed; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run garage");
        assert!(
            out.status.success(),
            "garage {args:?} failed:\n{}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn set_up(&mut self) {
        let config = self.dir.path().join("garage.toml");
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new(&self.bin)
                .arg("-c")
                .arg(&config)
                .arg("status")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            assert!(
                Instant::now() < until,
                "garage did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let id = self.cli(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap_or_default().to_owned();
        self.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        self.cli(&["layout", "apply", "--version", "1"]);
        self.cli(&["bucket", "create", &self.bucket.clone()]);
        let key: serde_json::Value = serde_json::from_str(&self.cli(&[
            "json-api",
            "CreateKey",
            r#"{"name":"sysgen-tests"}"#,
        ]))
        .expect("CreateKey answers JSON");
        self.key_id = key["accessKeyId"].as_str().expect("accessKeyId").to_owned();
        self.secret = key["secretAccessKey"]
            .as_str()
            .expect("secretAccessKey")
            .to_owned();
        let (bucket, key_id) = (self.bucket.clone(), self.key_id.clone());
        self.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", &bucket, "--key", &key_id,
        ]);
    }

    /// `s3://sysgen/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The `AWS_*` variables a client needs (set on each command: tests
    /// run in parallel threads and must not share the process's).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", self.key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.as_str()),
            ("AWS_REGION", "garage"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Options for opening the transport directly, the lock's timing
    /// shortened (a waiting test costs seconds, not a minute).
    pub fn options(&self) -> sysgen_remote::s3::S3Options {
        sysgen_remote::s3::S3Options {
            vars: self.env(),
            home: None,
            lock: sysgen_remote::s3::LockTiming {
                ttl: Duration::from_secs(10),
                settle: Duration::from_millis(200),
                wait: Duration::from_secs(10),
            },
            heads_in_flight: 0,
            list_from: 0,
        }
    }

    /// The transport on `s3://sysgen/PREFIX`.
    pub fn open(&self, prefix: &str) -> sysgen_remote::s3::S3Transport {
        sysgen_remote::s3::open(&self.url(prefix), &self.options())
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url(prefix)))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
