//! `sysgen schema`: the JSON Schema of the configuration format, for
//! editors. It is JSON already, so `--json` prints the same.

use sysgen_generations::Error;

pub fn run() -> Result<i32, Error> {
    let schema = sysgen_schema::json_schema();
    let text = serde_json::to_string_pretty(&schema).map_err(|e| Error::Io {
        path: "standard output".into(),
        source: e.into(),
    })?;
    println!("{text}");
    Ok(0)
}
