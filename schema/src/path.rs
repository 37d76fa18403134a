//! `EntryPath`: an absolute, normalized path inside a root. Built only valid,
//! so nothing below the parser re-checks it.

use std::fmt;

/// An absolute, normalized path relative to a root: starts with `/`, no `.`,
/// `..` or empty component, no trailing slash, not `/` itself, no NUL.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryPath(String);

/// Why a string is not an [`EntryPath`]; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must be absolute (start with /)")]
    NotAbsolute,
    #[error("path must not be / itself")]
    IsRoot,
    #[error("path must not end with /")]
    TrailingSlash,
    #[error("path must not contain an empty component (//)")]
    EmptyComponent,
    #[error("path must not contain a . or .. component")]
    DotComponent,
    #[error("path must not contain a NUL byte")]
    Nul,
    #[error("path has a component of {0} bytes; a name may have at most 255 (NAME_MAX)")]
    NameTooLong(usize),
    #[error("path has {0} bytes; a path may have at most 4095 (PATH_MAX)")]
    TooLong(usize),
    #[error("a name must not contain /")]
    SlashInName,
}

/// The longest file name Linux accepts (NAME_MAX).
pub const NAME_MAX: usize = 255;
/// The longest path Linux accepts, without its NUL (PATH_MAX - 1).
pub const PATH_MAX: usize = 4095;

impl EntryPath {
    pub fn parse(s: &str) -> Result<Self, PathError> {
        let rest = s.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
        if rest.is_empty() {
            return Err(PathError::IsRoot);
        }
        if s.contains('\0') {
            return Err(PathError::Nul);
        }
        if rest.ends_with('/') {
            return Err(PathError::TrailingSlash);
        }
        for c in rest.split('/') {
            match c {
                "" => return Err(PathError::EmptyComponent),
                "." | ".." => return Err(PathError::DotComponent),
                c if c.len() > NAME_MAX => return Err(PathError::NameTooLong(c.len())),
                _ => {}
            }
        }
        // Checked here, not when applying: a path the kernel refuses would
        // otherwise fail halfway through a switch.
        if s.len() > PATH_MAX {
            return Err(PathError::TooLong(s.len()));
        }
        Ok(EntryPath(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components below the root, in order (`/a/b` gives `a`, `b`).
    pub fn components(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.0[1..].split('/')
    }

    /// Number of components: `/a` is 1, `/a/b` is 2.
    pub fn depth(&self) -> usize {
        self.0.bytes().filter(|&b| b == b'/').count()
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        match self.0.rfind('/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// The parent path, or `None` for a top-level path such as `/etc`.
    pub fn parent(&self) -> Option<EntryPath> {
        let i = self.0.rfind('/')?;
        (i > 0).then(|| EntryPath(self.0[..i].to_owned()))
    }

    /// Every proper ancestor, shallowest first (`/a/b/c` gives `/a`, `/a/b`).
    pub fn ancestors(&self) -> Vec<EntryPath> {
        let mut out = Vec::new();
        for (i, b) in self.0.bytes().enumerate().skip(1) {
            if b == b'/' {
                out.push(EntryPath(self.0[..i].to_owned()));
            }
        }
        out
    }

    /// `self` joined with one component; `name` must be a valid component.
    pub fn join(&self, name: &str) -> Result<EntryPath, PathError> {
        EntryPath::parse(&format!("{}/{}", self.0, name))
    }

    /// `self` joined with the one name `name`, only the name checked
    /// (`self` is valid already), where [`EntryPath::join`] parses the
    /// whole path again: a diff or a walk makes a path of every entry it
    /// reports. A `/` in `name` is refused, never taken as a separator.
    pub fn child(&self, name: &str) -> Result<EntryPath, PathError> {
        EntryPath::with_name(&self.0, name)
    }

    /// A top-level path `/name`; `name` is one name, as for [`EntryPath::child`].
    pub fn top(name: &str) -> Result<EntryPath, PathError> {
        EntryPath::with_name("", name)
    }

    /// `dir` (a valid path, or "" for the root) joined with `name`, checked.
    fn with_name(dir: &str, name: &str) -> Result<EntryPath, PathError> {
        match name {
            "" => return Err(PathError::EmptyComponent),
            "." | ".." => return Err(PathError::DotComponent),
            n if n.len() > NAME_MAX => return Err(PathError::NameTooLong(n.len())),
            _ => {}
        }
        match name.bytes().find(|b| *b == b'/' || *b == 0) {
            Some(0) => return Err(PathError::Nul),
            Some(_) => return Err(PathError::SlashInName),
            None => {}
        }
        let len = dir.len() + 1 + name.len();
        if len > PATH_MAX {
            return Err(PathError::TooLong(len));
        }
        let mut s = String::with_capacity(len);
        s.push_str(dir);
        s.push('/');
        s.push_str(name);
        Ok(EntryPath(s))
    }

    /// True when `self` lies strictly below `other`.
    pub fn is_under(&self, other: &EntryPath) -> bool {
        self.0.len() > other.0.len()
            && self.0.starts_with(&other.0)
            && self.0.as_bytes()[other.0.len()] == b'/'
    }
}

impl fmt::Display for EntryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EntryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl serde::Serialize for EntryPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for EntryPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EntryPath::parse(&s).map_err(|e| serde::de::Error::custom(format!("{s}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok = ["/a", "/etc/motd", "/a/b/c.d", "/a/.hidden", "/a/..b"];
        for s in ok {
            assert_eq!(
                EntryPath::parse(s).map(|p| p.to_string()),
                Ok(s.to_owned()),
                "{s}"
            );
        }
        let bad = [
            ("", PathError::NotAbsolute),
            ("etc", PathError::NotAbsolute),
            ("/", PathError::IsRoot),
            ("/etc/", PathError::TrailingSlash),
            ("/etc//x", PathError::EmptyComponent),
            ("/etc/./x", PathError::DotComponent),
            ("/etc/../x", PathError::DotComponent),
            ("/a\0b", PathError::Nul),
        ];
        for (s, e) in bad {
            assert_eq!(EntryPath::parse(s), Err(e), "{s:?}");
        }
    }

    /// `child` makes what `join` makes of a name `join` takes as one
    /// component, and refuses what it refuses (and a `/` in a name).
    #[test]
    fn child_is_join_of_one_name() {
        let d = EntryPath::parse("/a/b").unwrap();
        for name in ["x", ".x", "..x", "a b", "é"] {
            assert_eq!(d.child(name), d.join(name), "{name:?}");
            assert!(d.child(name).is_ok(), "{name:?}");
        }
        let long = "n".repeat(NAME_MAX + 1);
        for name in ["", ".", "..", "a\0b", long.as_str()] {
            assert!(d.child(name).is_err() && d.join(name).is_err(), "{name:?}");
        }
        assert_eq!(d.child("x/y"), Err(PathError::SlashInName));
        assert_eq!(EntryPath::top("x/y"), Err(PathError::SlashInName));
        assert_eq!(EntryPath::top("x").unwrap().as_str(), "/x");
        assert!(EntryPath::top("").is_err() && EntryPath::top("..").is_err());
        assert!(d.join("x/y").is_ok(), "join parses a whole path");
        // 4,080 bytes: a name of 14 makes the longest path, one of 15 one too long.
        let deep = EntryPath::parse(&"/d".repeat(2040)).unwrap();
        let (fits, over) = ("x".repeat(14), "x".repeat(15));
        assert_eq!(deep.child(&fits), deep.join(&fits));
        assert!(deep.child(&fits).is_ok());
        assert_eq!(deep.child(&over), Err(PathError::TooLong(PATH_MAX + 1)));
        assert_eq!(deep.join(&over), deep.child(&over));
    }

    #[test]
    fn relations() {
        let p = EntryPath::parse("/a/b/c").unwrap();
        assert_eq!(p.depth(), 3);
        assert_eq!(p.file_name(), "c");
        assert_eq!(p.parent().unwrap().as_str(), "/a/b");
        assert_eq!(EntryPath::parse("/a").unwrap().parent(), None);
        let anc: Vec<String> = p.ancestors().iter().map(|a| a.to_string()).collect();
        assert_eq!(anc, ["/a", "/a/b"]);
        assert!(p.is_under(&EntryPath::parse("/a").unwrap()));
        assert!(
            !EntryPath::parse("/ab")
                .unwrap()
                .is_under(&EntryPath::parse("/a").unwrap())
        );
        assert!(!p.is_under(&p));
    }
}
