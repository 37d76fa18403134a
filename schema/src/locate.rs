//! Where a key or value of a configuration file is, in bytes of its text.
//!
//! serde's types keep no positions, so the checks after parsing name what
//! is wrong by its keys (`files./etc/motd: ...`). To point at a line and
//! column, the text is parsed a second time by span-aware parsers
//! (`jsonc-parser` for JSON, `toml_edit` for TOML), and the keys are looked
//! up there. This happens only for a file that has an error.

use std::ops::Range;

use jsonc_parser::ast::{ObjectPropName, Value as JValue};
use jsonc_parser::common::Ranged;
use toml_edit::{ImDocument, Item, Value as TValue};

/// A configuration file's text, parsed with positions.
pub(crate) enum Doc<'a> {
    Json(JValue<'a>),
    Toml(ImDocument<&'a str>),
}

/// One node of either document.
#[derive(Clone, Copy)]
enum Node<'t, 'a> {
    Json(&'t JValue<'a>),
    TomlItem(&'t Item),
    TomlValue(&'t TValue),
}

/// A child of a node: its name (a key, or an array element's string), the
/// span to point at (the key, or the element) and the node itself.
struct Child<'t, 'a> {
    name: Option<String>,
    span: Option<Range<usize>>,
    node: Node<'t, 'a>,
}

/// What a lookup found: the keys walked and the span of the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place {
    pub path: Vec<String>,
    pub span: Range<usize>,
    /// The span of the value at the last key (for a key, its value).
    pub value: Option<Range<usize>>,
}

impl<'a> Doc<'a> {
    /// `None` when the text does not parse (the serde parse reports that).
    pub(crate) fn parse(text: &'a str, json: bool) -> Option<Doc<'a>> {
        if json {
            let opts = jsonc_parser::ParseOptions::default();
            let collect = jsonc_parser::CollectOptions::default();
            jsonc_parser::parse_to_ast(text, &collect, &opts)
                .ok()?
                .value
                .map(Doc::Json)
        } else {
            ImDocument::parse(text).ok().map(Doc::Toml)
        }
    }

    fn root(&self) -> Node<'_, 'a> {
        match self {
            Doc::Json(v) => Node::Json(v),
            Doc::Toml(d) => Node::TomlItem(d.as_item()),
        }
    }

    /// The place of exactly these keys; `None` if one is missing.
    pub(crate) fn find(&self, path: &[String]) -> Option<Place> {
        let mut node = self.root();
        let mut span = node.span()?;
        for key in path {
            let mut children = node.children();
            // An array element is named by its string, or by its index (as
            // serde names one that is not a string).
            let at = children
                .iter()
                .position(|c| c.name.as_deref() == Some(key.as_str()))
                .or_else(|| key.parse::<usize>().ok().filter(|_| node.is_array()))?;
            if at >= children.len() {
                return None;
            }
            let child = children.swap_remove(at);
            span = child.span.clone().or_else(|| child.node.span())?;
            node = child.node;
        }
        Some(Place {
            path: path.to_vec(),
            span,
            value: node.span(),
        })
    }

    /// The place a message's label names: `files./etc/motd.mode`, where keys
    /// may hold dots themselves (`/etc/nginx.conf`, `nginx.service`), so each
    /// split is tried against the keys that exist. A package `name=version`
    /// is named by its name. When no whole match exists, the deepest
    /// partial one.
    pub(crate) fn resolve(&self, label: &str) -> Option<Place> {
        let mut best: Option<Place> = None;
        walk(self.root(), label, &mut Vec::new(), None, &mut best);
        best
    }
}

/// Depth-first over the splits of `rest`; a whole match ends the search.
fn walk(
    node: Node<'_, '_>,
    rest: &str,
    keys: &mut Vec<String>,
    span: Option<Range<usize>>,
    best: &mut Option<Place>,
) -> bool {
    if let Some(span) = &span
        && best.as_ref().is_none_or(|b| b.path.len() < keys.len())
    {
        *best = Some(Place {
            path: keys.clone(),
            span: span.clone(),
            value: node.span(),
        });
    }
    if rest.is_empty() {
        return true;
    }
    for child in node.children() {
        let Some(name) = &child.name else { continue };
        // A message escapes control characters; match the escaped form too.
        let escaped = name.escape_debug().to_string();
        let package = name.split_once('=').map(|(n, _)| n);
        for written in [Some(name.as_str()), Some(escaped.as_str()), package]
            .into_iter()
            .flatten()
        {
            let Some(after) = rest.strip_prefix(written) else {
                continue;
            };
            let next = match after.strip_prefix('.') {
                Some(n) if !n.is_empty() => n,
                _ if after.is_empty() => "",
                _ => continue,
            };
            keys.push(name.clone());
            let span = child.span.clone().or_else(|| child.node.span());
            if walk(child.node, next, keys, span, best) {
                return true;
            }
            keys.pop();
        }
    }
    false
}

impl<'t, 'a> Node<'t, 'a> {
    fn is_array(&self) -> bool {
        matches!(
            self,
            Node::Json(JValue::Array(_))
                | Node::TomlItem(Item::Value(TValue::Array(_)))
                | Node::TomlValue(TValue::Array(_))
        )
    }

    fn span(&self) -> Option<Range<usize>> {
        match self {
            Node::Json(v) => {
                let r = v.range();
                Some(r.start..r.end)
            }
            Node::TomlItem(i) => i.span(),
            Node::TomlValue(v) => v.span(),
        }
    }

    fn children(&self) -> Vec<Child<'t, 'a>> {
        match *self {
            Node::Json(JValue::Object(o)) => o
                .properties
                .iter()
                .map(|p| {
                    let (name, r) = match &p.name {
                        ObjectPropName::String(s) => (s.value.to_string(), s.range),
                        ObjectPropName::Word(w) => (w.value.to_owned(), w.range),
                    };
                    Child {
                        name: Some(name),
                        span: Some(r.start..r.end),
                        node: Node::Json(&p.value),
                    }
                })
                .collect(),
            Node::Json(JValue::Array(a)) => a
                .elements
                .iter()
                .map(|e| Child {
                    name: match e {
                        JValue::StringLit(s) => Some(s.value.to_string()),
                        _ => None,
                    },
                    span: None,
                    node: Node::Json(e),
                })
                .collect(),
            Node::Json(_) => Vec::new(),
            Node::TomlItem(Item::Value(v)) => Node::TomlValue(v).children(),
            Node::TomlItem(Item::Table(t)) => t
                .iter()
                .filter_map(|(k, _)| t.get_key_value(k))
                .map(|(k, i)| Child {
                    name: Some(k.get().to_owned()),
                    span: k.span(),
                    node: Node::TomlItem(i),
                })
                .collect(),
            Node::TomlItem(_) => Vec::new(),
            Node::TomlValue(TValue::InlineTable(t)) => t
                .iter()
                .filter_map(|(k, _)| t.get_key_value(k))
                .map(|(k, i)| Child {
                    name: Some(k.get().to_owned()),
                    span: k.span(),
                    node: Node::TomlItem(i),
                })
                .collect(),
            Node::TomlValue(TValue::Array(a)) => a
                .iter()
                .map(|v| Child {
                    name: v.as_str().map(str::to_owned),
                    span: None,
                    node: Node::TomlValue(v),
                })
                .collect(),
            Node::TomlValue(_) => Vec::new(),
        }
    }

    /// An integer literal as written in `text` (`0o644` stays `0o644`).
    fn integer(&self, text: &str) -> Option<Integer> {
        match *self {
            Node::Json(JValue::NumberLit(n)) => Some(Integer::Json(n.value.to_owned())),
            Node::TomlItem(Item::Value(TValue::Integer(i)))
            | Node::TomlValue(TValue::Integer(i)) => {
                let raw = i.span().and_then(|r| text.get(r))?.trim().to_owned();
                Some(Integer::Toml(raw, *i.value()))
            }
            _ => None,
        }
    }
}

/// The mode someone who wrote the number `raw` most likely meant: its
/// digits read as octal when they are octal digits (`644` is "0644"),
/// else an example.
fn meant(raw: &str) -> String {
    let octal = (1..=4).contains(&raw.len()) && raw.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if octal {
        format!("{raw:0>4}")
    } else {
        "0644".to_owned()
    }
}

/// An integer as written, for the modes.
enum Integer {
    Json(String),
    Toml(String, i64),
}

/// A mode written as a number must be TOML's octal literal (`0o644`):
/// JSON has no octal numbers, and a decimal `644` would silently mean
/// 0o1204. Returns the place and the message of the first such mode.
pub(crate) fn number_modes(doc: &Doc<'_>, text: &str) -> Option<(Place, String)> {
    let mut found = None;
    find_modes(doc.root(), text, &mut Vec::new(), &mut found);
    found
}

fn find_modes(
    node: Node<'_, '_>,
    text: &str,
    keys: &mut Vec<String>,
    found: &mut Option<(Place, String)>,
) {
    for child in node.children() {
        if found.is_some() {
            return;
        }
        let Some(name) = child.name else { continue };
        keys.push(name.clone());
        let bad = (name == "mode")
            .then(|| child.node.integer(text))
            .flatten()
            .and_then(|n| match n {
                Integer::Json(raw) => Some(format!(
                    "invalid mode {raw}: JSON has no octal numbers; write the mode as a string, such as \"{}\"",
                    meant(&raw)
                )),
                Integer::Toml(raw, _) if raw.starts_with("0o") => None,
                Integer::Toml(raw, v) => {
                    let m = meant(&raw);
                    let digits = match m.trim_start_matches('0') {
                        "" => "0",
                        d => d,
                    };
                    Some(format!(
                        "invalid mode {raw}: a mode written as a number must be octal (0o{v:o} is what {raw} means); write it as 0o{digits} or \"{m}\""
                    ))
                }
            });
        match bad {
            Some(msg) => {
                let span = child.node.span().or(child.span);
                if let Some(span) = span {
                    *found = Some((
                        Place {
                            path: keys.clone(),
                            span: span.clone(),
                            value: Some(span),
                        },
                        msg,
                    ));
                }
            }
            None => find_modes(child.node, text, keys, found),
        }
        keys.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(p: &Place) -> Vec<&str> {
        p.path.iter().map(String::as_str).collect()
    }

    #[test]
    fn json_keys_with_dots_resolve_to_their_span() {
        let text = "{\n \"services\": {\n  \"nginx.service\": { \"check_timeout\": 3 }\n },\n \"packages\": { \"apt\": [\"vim\", \"curl=7.0\"] }\n}\n";
        let doc = Doc::parse(text, true).unwrap();
        let p = doc.resolve("services.nginx.service.check_timeout").unwrap();
        assert_eq!(keys(&p), ["services", "nginx.service", "check_timeout"]);
        assert_eq!(&text[p.span.clone()], "\"check_timeout\"");
        let p = doc.resolve("packages.apt.curl").unwrap();
        assert_eq!(&text[p.span], "\"curl=7.0\"");
        // A partial match: the deepest key that exists.
        let p = doc.resolve("services.other.service").unwrap();
        assert_eq!(keys(&p), ["services"]);
        assert!(doc.resolve("nothing").is_none());
    }

    #[test]
    fn toml_tables_and_inline_tables() {
        let text = "[files.\"/etc/a.conf\"]\ncontent = \"x\"\nmode = 420\n\n[services]\n\"a.service\" = { check_timeout = 5 }\n";
        let doc = Doc::parse(text, false).unwrap();
        let p = doc.resolve("files./etc/a.conf.mode").unwrap();
        assert_eq!(&text[p.span], "mode");
        let p = doc.resolve("services.a.service.check_timeout").unwrap();
        assert_eq!(&text[p.span], "check_timeout");
        let exact = doc.find(&["files".into(), "/etc/a.conf".into()]).unwrap();
        let doc2 = Doc::parse("restart_on = [\"/a\", 7]\n", false).unwrap();
        let second = doc2.find(&["restart_on".into(), "1".into()]).unwrap();
        assert_eq!(second.span, 20..21);
        assert_eq!(&text[exact.span], "\"/etc/a.conf\"");
        let (place, msg) = number_modes(&doc, text).unwrap();
        assert_eq!(&text[place.span], "420");
        assert!(msg.contains("0o644"), "{msg}");
    }

    #[test]
    fn octal_modes_pass_and_json_numbers_do_not() {
        let text = "[directories.\"/srv\"]\nmode = 0o750\n";
        let doc = Doc::parse(text, false).unwrap();
        assert!(number_modes(&doc, text).is_none());
        let text = "{\"files\": {\"/a\": {\"content\": \"\", \"mode\": 644}}}";
        let doc = Doc::parse(text, true).unwrap();
        let (place, msg) = number_modes(&doc, text).unwrap();
        assert_eq!(&text[place.span], "644");
        assert!(msg.contains("as a string"), "{msg}");
    }
}
