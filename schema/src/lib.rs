//! The sysgen configuration format (SPEC §2): raw serde types become a
//! validated [`HostSpec`]. The only I/O is reading the configuration files
//! themselves in [`load`].

mod path;
mod spec;

pub use path::{EntryPath, PathError};
pub use spec::*;
