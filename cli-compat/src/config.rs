//! af's dot-files, kept exactly as af 0.3.22 keeps them so that it and this client can be used
//! in turn on the same home directory:
//!
//! - `~/.af_target`: the target URL, one line;
//! - `~/.af_token`: JSON `{"<target url>": "<token>", …}`, one line (`--token-file` picks
//!   another file);
//! - `~/.af_instances`: JSON `{"<app>-1": "<instance id>", …}`, rewritten on every crash check;
//! - `~/.af_aliases`: YAML `alias: command`;
//! - `~/.af_crash`: details of the last failure.
//!
//! af writes each with a newline at the end and mode 0600 when it creates it.

use std::io;
use std::path::{Path, PathBuf};

use crate::json::Json;

/// af's default target.
pub const DEFAULT_TARGET: &str = "api.appfog.com";

/// The dot-files under one home directory.
#[derive(Clone, Debug)]
pub struct Config {
    home: PathBuf,
}

impl Config {
    pub fn new(home: impl Into<PathBuf>) -> Config {
        Config { home: home.into() }
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    fn file(&self, name: &str) -> PathBuf {
        self.home.join(name)
    }

    pub fn target_file(&self) -> PathBuf {
        self.file(".af_target")
    }

    pub fn token_file(&self) -> PathBuf {
        self.file(".af_token")
    }

    pub fn instances_file(&self) -> PathBuf {
        self.file(".af_instances")
    }

    pub fn aliases_file(&self) -> PathBuf {
        self.file(".af_aliases")
    }

    pub fn crash_file(&self) -> PathBuf {
        self.file(".af_crash")
    }

    /// The target: `~/.af_target` or af's default, with `https://` added when there is no
    /// scheme and trailing slashes removed.
    pub fn target_url(&self) -> String {
        let stored = std::fs::read_to_string(self.target_file())
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| DEFAULT_TARGET.to_owned());
        normalize_target(&stored)
    }

    pub fn store_target(&self, url: &str) -> io::Result<()> {
        write_line(&self.target_file(), url)
    }

    /// Every stored token, by target URL (`None` when the file does not exist).
    pub fn tokens(&self, token_file: Option<&Path>) -> io::Result<Option<Json>> {
        let path = token_file.map_or_else(|| self.token_file(), Path::to_path_buf);
        read_json(&path)
    }

    /// The token stored for `target`.
    pub fn auth_token(
        &self,
        target: &str,
        token_file: Option<&Path>,
    ) -> io::Result<Option<String>> {
        Ok(self
            .tokens(token_file)?
            .and_then(|tokens| tokens.get(target).as_str().map(str::to_owned)))
    }

    /// Stores `token` for `target`, keeping the others (`null` when the server sent none).
    pub fn store_token(
        &self,
        target: &str,
        token: Option<&str>,
        token_file: Option<&Path>,
    ) -> io::Result<()> {
        let path = token_file.map_or_else(|| self.token_file(), Path::to_path_buf);
        let mut tokens = read_json(&path)?.unwrap_or_else(Json::object);
        tokens.set(target, token.map_or(Json::Null, Json::str));
        write_line(&path, &tokens.compact())
    }

    /// `af logout`: the whole token file goes, for every target.
    pub fn remove_token_file(&self) -> io::Result<()> {
        match std::fs::remove_file(self.token_file()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn instances(&self) -> io::Result<Option<Json>> {
        read_json(&self.instances_file())
    }

    pub fn store_instances(&self, map: &Json) -> io::Result<()> {
        write_line(&self.instances_file(), &map.compact())
    }

    /// The aliases (`{}` when the file is missing or unreadable, as af rescues).
    pub fn aliases(&self) -> Vec<(String, Option<String>)> {
        let Ok(text) = std::fs::read_to_string(self.aliases_file()) else {
            return Vec::new();
        };
        let Ok(docs) = yaml_rust2::YamlLoader::load_from_str(&text) else {
            return Vec::new();
        };
        let Some(yaml_rust2::Yaml::Hash(hash)) = docs.into_iter().next() else {
            return Vec::new();
        };
        hash.into_iter()
            .filter_map(|(k, v)| {
                let key = crate::manifest::yaml_scalar_text(&k)?;
                let value = crate::manifest::yaml_scalar_text(&v);
                Some((key, value))
            })
            .collect()
    }

    /// Writes the aliases as Ruby's `to_yaml` would.
    pub fn store_aliases(&self, aliases: &[(String, Option<String>)]) -> io::Result<()> {
        let tree = Json::Object(
            aliases
                .iter()
                .map(|(k, v)| (k.clone(), Json::from(v.clone())))
                .collect(),
        );
        std::fs::write(self.aliases_file(), crate::yaml_out::to_yaml(&tree))
    }

    pub fn store_crash(&self, log: &str) -> io::Result<()> {
        write_line(&self.crash_file(), log)
    }
}

/// af's target normalisation: `https://` unless the URL starts with `http`, no trailing `/`.
pub fn normalize_target(url: &str) -> String {
    let url = if url.starts_with("http") {
        url.to_owned()
    } else {
        format!("https://{url}")
    };
    url.trim_end_matches('/').to_owned()
}

fn read_json(path: &Path) -> io::Result<Option<Json>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Json::parse(text.trim())
            .map(Some)
            .map_err(|_| io::Error::other(format!("unexpected token at '{}'", text.trim()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// af's `lock_and_write`: the contents and a newline, mode 0600 when created.
fn write_line(path: &Path, contents: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    if !contents.ends_with('\n') {
        file.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_json_keyed_by_target() {
        let home = tempfile::tempdir().unwrap();
        let config = Config::new(home.path());
        config.store_token("http://a:1", Some("t1"), None).unwrap();
        config.store_token("http://b:2", Some("t2"), None).unwrap();
        config.store_token("http://a:1", Some("t3"), None).unwrap();
        let text = std::fs::read_to_string(config.token_file()).unwrap();
        assert_eq!(text, "{\"http://a:1\":\"t3\",\"http://b:2\":\"t2\"}\n");
        assert_eq!(
            config.auth_token("http://b:2", None).unwrap().as_deref(),
            Some("t2")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(config.token_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn targets_are_normalised() {
        let home = tempfile::tempdir().unwrap();
        let config = Config::new(home.path());
        assert_eq!(config.target_url(), "https://api.appfog.com");
        config.store_target("localhost:9022/").unwrap();
        assert_eq!(config.target_url(), "https://localhost:9022");
        config.store_target("http://localhost:9022").unwrap();
        assert_eq!(
            std::fs::read_to_string(config.target_file()).unwrap(),
            "http://localhost:9022\n"
        );
    }

    #[test]
    fn aliases_round_trip_as_yaml() {
        let home = tempfile::tempdir().unwrap();
        let config = Config::new(home.path());
        assert!(config.aliases().is_empty());
        config
            .store_aliases(&[
                ("ls".into(), Some("apps".into())),
                ("yes".into(), Some("no".into())),
            ])
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(config.aliases_file()).unwrap(),
            "---\nls: apps\n'yes': 'no'\n"
        );
        assert_eq!(
            config.aliases(),
            vec![
                ("ls".into(), Some("apps".into())),
                ("yes".into(), Some("no".into()))
            ]
        );
        config.store_aliases(&[]).unwrap();
        assert_eq!(
            std::fs::read_to_string(config.aliases_file()).unwrap(),
            "--- {}\n"
        );
    }
}
