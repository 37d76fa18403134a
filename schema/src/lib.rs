//! The sysgen configuration format (SPEC §2): raw serde types become a
//! validated [`HostSpec`]. The only I/O is reading the configuration files
//! themselves (and checking that sources exist) in [`load`].
//!
//! - `raw`: the file as written (serde + schemars); value-level checks
//!   (modes, owners) happen while deserializing, so they carry line:column.
//! - `load`: the include graph, per-file rules, and the merge.
//! - `spec`: the validated output.

mod error;
mod load;
mod locate;
mod path;
mod raw;
mod spec;
mod strict;

pub use error::{Detail, LoadError, LoadErrorKind};
pub use load::{FORMAT_VERSION, LoadOptions, load, located};
pub use path::{EntryPath, PATH_MAX, PathError};
pub use spec::*;

/// The JSON Schema (draft 2020-12) of one configuration file, for editors
/// (`sysgen schema`). Derived from the types `load` deserializes and
/// tightened with the loader's rules of shape (`strict.rs`), so it accepts
/// what `load` accepts, short of the checks a schema cannot express
/// (sources exist, includes resolve, merge conflicts, owners exist).
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(raw::RawConfig).to_value();
    strict::tighten(&mut schema);
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "description".into(),
            "A sysgen host configuration file (format version 1), .json or .toml.".into(),
        );
    }
    schema
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_is_2020_12_and_names_every_key() {
        let s = super::json_schema();
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(s["additionalProperties"], false);
        let props = s["properties"].as_object().unwrap();
        for k in [
            "sysgen",
            "host",
            "include",
            "files",
            "directories",
            "symlinks",
            "trees",
            "packages",
            "datasets",
            "services",
            "vars",
            "secrets",
            "blocks",
            "checks",
            "groups",
            "users",
        ] {
            assert!(props.contains_key(k), "{k} missing from the schema");
        }
        assert_eq!(props.len(), 17);
        // Editors write the schema's address in the file itself.
        assert!(props.contains_key("$schema"));
        // Round-trips as JSON text.
        let text = serde_json::to_string_pretty(&s).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert!(text.contains(crate::raw::MODE_PATTERN));
        for nested in [
            "restart_on",
            "reload_on",
            "secret",
            "check",
            "check_timeout",
        ] {
            assert!(text.contains(nested), "{nested} missing from the schema");
        }
    }
}
