//! The schema an editor reads must accept every configuration sysgen
//! accepts (issue 12). Every run of the binary in the tests that got past
//! loading its configuration (exit 0 or 1: status 2 is bad input) has each
//! configuration file it named, and each file those include, checked
//! against `sysgen schema` by a real JSON Schema validator (`jsonschema`).
//! So the whole suite's configurations are checked, as they are written.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;

/// The commands that load a configuration named on the command line.
const LOADING: [&str; 3] = ["switch", "build", "diff"];

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let schema = sysgen_schema::json_schema();
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("sysgen's schema is not a valid JSON Schema: {e}");
        }
        jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("sysgen's schema does not compile: {e}"))
    })
}

/// A configuration file as the schema sees it: JSON as is, TOML as the
/// JSON of its values (editors with TOML schema support do the same).
pub fn config_value(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => toml::from_str::<toml::Value>(&text)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string())),
        _ => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
    }
}

/// What the schema says is wrong with `value`, one line per error;
/// empty when the schema accepts it.
pub fn schema_errors(value: &Value) -> Vec<String> {
    validator()
        .iter_errors(value)
        .map(|e| format!("at {:?}: {e}", e.instance_path().as_str()))
        .collect()
}

/// After a run of `args` that ended with `code`: panics, naming the file
/// and the schema's complaint, if the schema refuses a configuration that
/// the loader accepted.
pub(crate) fn loaded_configs_are_valid(args: &[&str], code: Option<i32>) {
    if !matches!(code, Some(0 | 1)) || !args.iter().any(|a| LOADING.contains(a)) {
        return;
    }
    for a in args {
        let p = Path::new(a);
        let is_config = matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("json" | "toml")
        );
        if is_config && p.is_file() {
            check_with_includes(p, 0);
        }
    }
}

fn check_with_includes(path: &Path, depth: usize) {
    // The loader refuses deeper nesting and cycles; this only has to stop.
    if depth > 64 {
        return;
    }
    let value = config_value(path).unwrap_or_else(|e| panic!("{e}"));
    let errors = schema_errors(&value);
    assert!(
        errors.is_empty(),
        "sysgen accepted {}, but its schema refuses it:\n{}",
        path.display(),
        errors.join("\n")
    );
    let base = path.parent().unwrap_or(Path::new(""));
    for inc in value["include"].as_array().into_iter().flatten() {
        if let Some(inc) = inc.as_str() {
            check_with_includes(&base.join(inc), depth + 1);
        }
    }
}
