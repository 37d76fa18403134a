//! A tree's `exclude` globs, checked when the configuration is loaded so a
//! bad one is reported at its line, not when the tree is walked.

/// Why `glob` is not a glob `generations` can match, in words that say
/// what to write instead.
pub(super) fn check_glob(glob: &str) -> Result<(), String> {
    let body = glob.strip_suffix('/').unwrap_or(glob);
    let body = body.strip_prefix('/').unwrap_or(body);
    if body.is_empty() {
        return Err("an empty glob; write what to leave out, such as *.swp or cache/".to_owned());
    }
    if glob.contains(char::is_control) {
        return Err("the glob contains a control character; remove it".to_owned());
    }
    globset::Glob::new(body).map(|_| ()).map_err(|e| {
        format!(
            "invalid glob: {}; see the globset syntax (*, **, ?, [abc], {{a,b}})",
            e.kind()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::check_glob;

    #[test]
    fn globs() {
        for g in ["*.swp", "*~", ".#*", "cache/", "/build/**", "a/{b,c}/*.o"] {
            assert!(check_glob(g).is_ok(), "{g}");
        }
        for g in ["", "/", "a[", "{a,b"] {
            assert!(check_glob(g).is_err(), "{g:?}");
        }
    }
}
