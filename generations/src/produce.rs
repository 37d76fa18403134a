//! Where a declared file's bytes come from at build, for `ingest`: its
//! inline content or source file as they are, a template rendered
//! ([`crate::template`]), or a verified download ([`crate::download`]).
//! Also what the generation records of them: the templates section, and
//! the stat cache rows of downloads.

use std::path::PathBuf;
use std::sync::Arc;

use sysgen_schema::{EntryPath, FileContent, FileSpec, HostSpec};
use sysgen_store::Hash;

use crate::db::CacheRow;
use crate::download::Fetcher;
use crate::ingest::BuildOptions;
use crate::secrets::Secrets;
use crate::sections::Templates;
use crate::template::Renderer;
use crate::{Error, State};

/// A file's content, before `ingest` hashes what is not stored yet.
pub enum Produced {
    Bytes(Vec<u8>),
    Path(PathBuf),
    /// Already in the store: its hash and size.
    Stored(Hash, u64),
}

/// A file's content with the mode and secrecy it ends up with (a template
/// that read a secret makes a secret file).
pub struct Made {
    pub content: Produced,
    pub secret: bool,
    pub mode: u32,
}

pub struct Producer<'a> {
    renderer: Option<Renderer>,
    fetcher: Option<Fetcher<'a>>,
    templates: Templates,
}

impl<'a> Producer<'a> {
    pub fn new(
        state: &'a State,
        spec: &HostSpec,
        opts: &BuildOptions<'a>,
    ) -> Result<Producer<'a>, Error> {
        let renderer = spec
            .files
            .values()
            .any(|f| f.template)
            .then(|| Renderer::new(spec, Arc::new(Secrets::new(spec))));
        let fetcher = if spec
            .files
            .values()
            .any(|f| matches!(f.content, FileContent::Url(_)))
        {
            Some(Fetcher::new(
                &state.store,
                state.db.stat_cache()?,
                opts.proxy.clone(),
                opts.progress,
            ))
        } else {
            None
        };
        Ok(Producer {
            renderer,
            fetcher,
            templates: Templates::default(),
        })
    }

    pub fn file(&mut self, state: &State, p: &EntryPath, f: &FileSpec) -> Result<Made, Error> {
        let plain = |content| Made {
            content,
            secret: f.secret,
            mode: f.mode.bits(),
        };
        if let (true, Some(r)) = (f.template, self.renderer.as_mut()) {
            let out = r.render(state, p, f)?;
            self.templates.0.insert(p.clone(), out.from);
            return Ok(Made {
                content: Produced::Bytes(out.bytes),
                secret: out.secret,
                mode: out.mode,
            });
        }
        Ok(match (&f.content, self.fetcher.as_mut()) {
            (FileContent::Inline(s), _) => plain(Produced::Bytes(s.as_bytes().to_vec())),
            (FileContent::Source(path), _) => plain(Produced::Path(path.clone())),
            (FileContent::Url(d), Some(fetch)) => {
                let what = f.declared_in.display().to_string();
                let (hash, size) = fetch.fetch(&what, p, d, f.secret)?;
                plain(Produced::Stored(hash, size))
            }
            (FileContent::Url(_), None) => {
                return Err(Error::Internal(format!(
                    "files.{p}: a download without a fetcher"
                )));
            }
        })
    }

    /// The templates section, and the stat cache rows of the downloads.
    pub fn finish(self) -> (Templates, Vec<(String, CacheRow)>) {
        let rows = self.fetcher.map(|f| f.rows).unwrap_or_default();
        (self.templates, rows)
    }
}
