//! State snapshots: everything a user set up — users, tokens, services, apps with their uploaded
//! bits and desired state — as one JSON document. `GET`/`PUT /_afemu/state` export and import it
//! (tests in any language load a fixture this way); `--state FILE` loads it at start and saves it
//! after each change and at shutdown, atomically, so a kill at any moment leaves a whole file.
//! Runtime facts (instances, crashes, ports) are not part of it: they are re-created.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;

/// The snapshot format's version.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Always [`FORMAT`].
    pub afemu_state: u32,
    #[serde(default)]
    pub users: Vec<UserRecord>,
    /// token → email
    #[serde(default)]
    pub tokens: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub services: Vec<ServiceRecord>,
    #[serde(default)]
    pub apps: Vec<AppRecord>,
    /// Uploaded bits by hash, as hex-encoded zips (each stored once, whichever apps share it).
    #[serde(default)]
    pub packages: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceRecord {
    pub owner: String,
    pub name: String,
    pub vendor: String,
    pub version: String,
    pub credentials: Value,
    #[serde(default)]
    pub infra: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppRecord {
    pub owner: String,
    pub name: String,
    pub framework: String,
    #[serde(default)]
    pub runtime: Option<String>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub uris: Vec<String>,
    pub instances: u32,
    pub memory_mb: u64,
    /// `STARTED` or `STOPPED`.
    pub state: String,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub infra: Option<String>,
    /// The hash of the last upload, a key of `packages`.
    #[serde(default)]
    pub package: Option<String>,
}

impl Snapshot {
    /// Parses and checks a snapshot document (format, types, references).
    pub fn parse(document: &Value) -> Result<Snapshot, ApiError> {
        let snapshot: Snapshot = serde_json::from_value(document.clone())
            .map_err(|e| ApiError::BadRequest(format!("not an afemu state snapshot: {e}")))?;
        if snapshot.afemu_state != FORMAT {
            return Err(ApiError::BadRequest(format!(
                "state snapshot format {} is not {FORMAT}",
                snapshot.afemu_state
            )));
        }
        for app in &snapshot.apps {
            if let Some(hash) = &app.package
                && !snapshot.packages.contains_key(hash)
            {
                return Err(ApiError::BadRequest(format!(
                    "app {:?} names package {hash:?}, which the snapshot does not hold",
                    app.name
                )));
            }
            if !matches!(app.state.as_str(), "STARTED" | "STOPPED") {
                return Err(ApiError::BadRequest(format!(
                    "app {:?}: state must be STARTED or STOPPED",
                    app.name
                )));
            }
        }
        Ok(snapshot)
    }
}

/// Writes `bytes` to `path` so that a reader (or a crash) only ever sees the old file or the new
/// one: a temporary file in the same directory, flushed to disk, then renamed over it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temporary = tempfile::Builder::new()
        .prefix(&partial_prefix(path))
        .tempfile_in(dir)?;
    temporary.write_all(bytes)?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|e| e.error)?;
    // The rename itself is durable once the directory is.
    if let Ok(directory) = std::fs::File::open(dir) {
        let _ = directory.sync_all();
    }
    Ok(())
}

/// What the temporary files of a write to `path` are named like: `.<name>.partial-…`.
fn partial_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    format!(".{name}.partial-")
}

/// Removes what an interrupted write to `path` (a process killed while saving) left beside it.
pub fn remove_partial_writes(path: &Path) {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = partial_prefix(path);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snapshots_are_checked() {
        assert!(Snapshot::parse(&json!({"afemu_state": 1})).is_ok());
        for bad in [
            json!({"afemu_state": 2}),
            json!({"afemu_state": 1, "apps": [{"owner": "a", "name": "x", "framework": "node", "instances": 1, "memory_mb": 64, "state": "STARTED", "package": "missing"}]}),
            json!({"afemu_state": 1, "apps": [{"owner": "a", "name": "x", "framework": "node", "instances": 1, "memory_mb": 64, "state": "RUNNING"}]}),
            json!({"afemu_state": 1, "users": [{"email": 7}]}),
            json!({"afemu_state": 1, "extra": true}),
            json!([]),
        ] {
            assert_eq!(Snapshot::parse(&bad).unwrap_err().code(), 100, "{bad}");
        }
    }

    #[test]
    fn atomic_writes_replace_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // What a killed write leaves behind is cleaned up, and only that.
        std::fs::write(dir.path().join(".state.json.partial-abc"), b"half").unwrap();
        std::fs::write(dir.path().join("other"), b"keep").unwrap();
        remove_partial_writes(&path);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        // A write that cannot happen leaves the old file as it was.
        let missing = dir.path().join("no/such/dir/state.json");
        assert!(write_atomically(&missing, b"three").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
    }
}
