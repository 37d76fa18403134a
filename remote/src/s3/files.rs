//! The AWS shared files, for what the `AWS_*` variables leave out:
//! `~/.aws/credentials` (keys) and `~/.aws/config` (region, endpoint), in
//! the profile `AWS_PROFILE` names or `default`, at the paths
//! `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` name if set. The
//! variables win, as in the AWS tools. A file that is missing or cannot be
//! read adds nothing: most hosts have none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each file key and the variable it stands for.
const KEYS: &[(&str, &str)] = &[
    ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
    ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
    ("aws_session_token", "AWS_SESSION_TOKEN"),
    ("region", "AWS_REGION"),
    ("endpoint_url", "AWS_ENDPOINT_URL"),
];

/// The settings as `AWS_*` variables: the files' first, the variables
/// given over them.
pub fn settings(vars: &[(String, String)], home: Option<&Path>) -> BTreeMap<String, String> {
    let var = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let aws = home.map(|h| h.join(".aws"));
    let path = |name: &str, file: &str| -> Option<PathBuf> {
        var(name)
            .map(PathBuf::from)
            .or_else(|| aws.as_ref().map(|d| d.join(file)))
    };
    let mut out = BTreeMap::new();
    // The config file names profiles `[profile NAME]`, except `[default]`.
    let config_section = if profile == "default" {
        profile.clone()
    } else {
        format!("profile {profile}")
    };
    for (file, section) in [
        (path("AWS_CONFIG_FILE", "config"), config_section.as_str()),
        (
            path("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            profile.as_str(),
        ),
    ] {
        let Some(text) = file.and_then(|f| std::fs::read_to_string(f).ok()) else {
            continue;
        };
        for (k, v) in section_of(&text, section) {
            if let Some((_, name)) = KEYS.iter().find(|(fk, _)| *fk == k) {
                out.insert((*name).to_owned(), v);
            }
        }
    }
    for (k, v) in vars {
        if k.starts_with("AWS_") {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// The `key = value` lines of `[section]` in an INI file.
fn section_of(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_win_over_the_files_and_profiles_are_chosen() {
        let home = tempfile::tempdir().expect("tempdir");
        let aws = home.path().join(".aws");
        std::fs::create_dir_all(&aws).expect("mkdir");
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n\
             [ci]\naws_access_key_id = C\naws_secret_access_key = CS\n",
        )
        .expect("write");
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = eu-west-1\n[profile ci]\nregion = garage\nendpoint_url = http://127.0.0.1:3900\n",
        )
        .expect("write");
        let vars = vec![
            ("AWS_PROFILE".to_owned(), "ci".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "FROM-ENV".to_owned()),
            ("HOME".to_owned(), "ignored".to_owned()),
        ];
        let got = settings(&vars, Some(home.path()));
        let want: BTreeMap<String, String> = [
            ("AWS_ACCESS_KEY_ID", "C"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:3900"),
            ("AWS_PROFILE", "ci"),
            ("AWS_REGION", "garage"),
            ("AWS_SECRET_ACCESS_KEY", "FROM-ENV"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(got, want);
        let none = settings(&[], Some(&home.path().join("nowhere")));
        assert!(none.is_empty(), "{none:?}");
    }
}
