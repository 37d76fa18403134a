//! The rules of `load` that the derived schema does not say by itself,
//! added to it so an editor refuses what sysgen refuses: the shape of a
//! path, of a unit or package name, the fields that need one another.
//!
//! The patterns use only what ECMA-262 (editors) and Rust's `regex`
//! (sysgen's own schema test) both read: no look-around.

use serde_json::{Value, json};

/// The schema's identifier. A URN: the schema is served by `sysgen schema`,
/// not from a web address.
pub(crate) const SCHEMA_ID: &str = "urn:sysgen:schema:config:1";

/// A character allowed in a path component: not `/`, not a control
/// character (C0, DEL, C1: what `char::is_control` calls one; the loader
/// refuses those, they would forge plan lines).
const CHAR: &str = r"[^/\x00-\x1f\x7f-\x9f]";

/// An absolute path in canonical form, as `EntryPath::parse` wants it:
/// components that are neither empty, `.` nor `..`, no trailing slash,
/// not `/` itself.
pub(crate) fn path_pattern() -> String {
    // A component starts with a character that is not a dot, or with one
    // dot and such a character, or with two dots and anything.
    let not_dot = r"[^/.\x00-\x1f\x7f-\x9f]";
    let component = format!(r"(?:{not_dot}|\.{not_dot}|\.\.{CHAR}){CHAR}*");
    format!("^(?:/{component})+$")
}

/// A unit name: a suffix systemd knows, a non-empty stem that does not
/// start with `@`, at most one `@` (a template instance).
const UNIT_PATTERN: &str =
    r"^[A-Za-z0-9:_.\\-]+(?:@[A-Za-z0-9:_.\\-]*)?\.(?:service|socket|timer|target|path|mount)$";

/// `name` or `name=version`: a Debian name of two or more characters, a
/// version `[epoch:]upstream[-revision]` whose upstream starts with a digit.
const APT_PATTERN: &str = r"^[a-z0-9][a-z0-9+.-]+(?:=(?:[0-9]+:)?[0-9][0-9A-Za-z.+~:-]*)?$";

/// Tightens `schema` (the derived one) in place.
pub(crate) fn tighten(schema: &mut Value) {
    let path = path_pattern();
    replace_patterns(schema, "^/", &path);
    let Some(root) = schema.as_object_mut() else {
        return;
    };
    root.insert("$id".into(), SCHEMA_ID.into());
    let props = &mut root["properties"];
    props["sysgen"]["const"] = json!(1);
    props["include"]["items"] = json!({
        "type": "string",
        "minLength": 1,
        "pattern": r"\.(?:json|toml)$",
    });
    props["symlinks"]["additionalProperties"] = json!({
        "type": "string",
        "minLength": 1,
        "maxLength": 4095,
        "pattern": r"^[^\x00-\x1f\x7f-\x9f]+$",
    });
    props["services"]["propertyNames"] = json!({ "pattern": UNIT_PATTERN, "maxLength": 255 });
    props["host"]["maxLength"] = json!(253);
    let defs = &mut root["$defs"];
    defs["Packages"]["properties"]["apt"]["items"] = json!({
        "type": "string",
        "pattern": APT_PATTERN,
    });
    // A zfs dataset needs its name; no other type may have one.
    defs["Dataset"]["if"] = json!({ "properties": { "type": { "const": "zfs" } } });
    defs["Dataset"]["then"] = json!({ "required": ["name"] });
    defs["Dataset"]["else"] = json!({ "not": { "required": ["name"] } });
    // A timeout times a check; a check is a command, not blanks.
    defs["Service"]["dependentRequired"] = json!({ "check_timeout": ["check"] });
    defs["Service"]["properties"]["check"]["pattern"] = json!(r"\S");
    // A name has no `:`, `/`, blank or control character.
    defs["Principal"]["oneOf"][0]["pattern"] = json!(r"^[^:/\s\x00-\x1f\x7f-\x9f]+$");
    // A glob says what to leave out; an empty one says nothing.
    defs["Tree"]["properties"]["exclude"]["items"] = json!({
        "type": "string",
        "pattern": r"[^/]",
    });
}

/// Every `"pattern": from` becomes `to`: the derived schema writes `^/` for
/// every key or item that is a path.
fn replace_patterns(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "pattern" && x.as_str() == Some(from) {
                    *x = to.into();
                } else {
                    replace_patterns(x, from, to);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| replace_patterns(x, from, to)),
        _ => {}
    }
}
