//! The fixture the loader's tests share: configuration files in a temp
//! dir, loaded with sysgen's state directory reserved.

use std::path::PathBuf;

use sysgen_schema::{EntryPath, HostSpec, LoadError, LoadOptions, load};

pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(files: &[(&str, &str)]) -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        for (rel, text) in files {
            f.write(rel, text);
        }
        f
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    #[allow(
        dead_code,
        reason = "each test file is its own crate: errors.rs has no use for it"
    )]
    pub fn real(&self, rel: &str) -> PathBuf {
        self.path(rel).canonicalize().unwrap()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        if let Some(dir) = rel.strip_suffix('/') {
            std::fs::create_dir_all(self.path(dir)).unwrap();
        } else {
            std::fs::write(p, text).unwrap();
        }
    }

    pub fn load(&self, rel: &str) -> Result<HostSpec, LoadError> {
        load(&self.path(rel), &opts())
    }
}

pub fn opts() -> LoadOptions {
    LoadOptions {
        reserved: vec![ep("/var/lib/sysgen")],
    }
}

pub fn ep(s: &str) -> EntryPath {
    EntryPath::parse(s).unwrap()
}
