//! An entry point for the `manifest` fuzz target in `fuzz/` (run with `cargo fuzz`, see
//! `fuzz/README.md`): `manifest.yml` loaded as `af push` loads it, from text, with no file
//! system. Not an API for anything else; nothing in the client calls it.

use std::path::{Path, PathBuf};

use crate::json::Json;
use crate::manifest::{self, Symbols};

/// Where the fuzzed manifest pretends to be: `/fuzz/manifest.yml`, with `/fuzz` as the working
/// directory.
pub const MANIFEST_DIR: &str = "/fuzz";

/// One application of a loaded manifest, in af's `each_app` order.
#[derive(Debug)]
pub struct App {
    /// Its directory (af's `@application`).
    pub dir: PathBuf,
    /// The directories of the applications it `depends-on`.
    pub depends_on: Vec<PathBuf>,
}

/// The manifest `text` loaded as af loads `/fuzz/manifest.yml` (`inherit`, symbols, then the
/// applications in dependency order), or af's error message. Every file it inherits has the
/// same `text`; nothing outside `/fuzz` can be read.
pub fn load_manifest(text: &str) -> Result<Vec<App>, String> {
    let cwd = Path::new(MANIFEST_DIR);
    let file = cwd.join(manifest::MANIFEST);
    let read = |path: &Path| {
        if path.starts_with(cwd) {
            Ok(text.to_owned())
        } else {
            Err(std::io::ErrorKind::NotFound.into())
        }
    };
    let home = Path::new("/home");
    let mut infra = None;
    let mut tree = manifest::load_structure_with(&file, &file, cwd, home, &mut infra, &read)
        .map_err(|e| format!("{e:?}"))?;
    let symbols = Symbols {
        target_url: "https://api.example.com",
        suggest_url: manifest::needs_suggest_url(&tree).then_some("example.com"),
        application: None,
    };
    manifest::resolve(&mut tree, &symbols).map_err(|e| format!("{e:?}"))?;
    let apps = manifest::each_app(Some(&tree), Some(&file), ".", cwd, home, true)
        .map_err(|e| format!("{e:?}"))?;
    // af orders by `depends-on` only among `applications`, and only when the working directory
    // is the manifest's rather than inside one application's (then that one app is pushed
    // alone); otherwise `depends-on` is ignored.
    let ordered = tree.get("applications").as_object().is_some_and(|apps| {
        !apps.iter().any(|(key, _)| {
            let dir = crate::context::expand_path(&format!("../{key}"), &file, home);
            cwd.to_string_lossy().starts_with(&*dir.to_string_lossy())
        })
    });
    Ok(apps
        .into_iter()
        .map(|app| {
            let dir = PathBuf::from(&app.application);
            let info = app.info.unwrap_or(Json::Null);
            let depends_on = match info.get("depends-on") {
                _ if !ordered => Vec::new(),
                Json::Array(items) => items.iter().map(Json::to_ruby_s).collect(),
                Json::Null | Json::Bool(false) => Vec::new(),
                other => vec![other.to_ruby_s()],
            };
            let depends_on = depends_on
                .iter()
                .map(|dep| crate::context::expand_path(&format!("../{dep}"), &file, home))
                .collect();
            App { dir, depends_on }
        })
        .collect())
}
