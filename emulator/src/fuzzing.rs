//! Entry points for the fuzz targets in `fuzz/` (run with `cargo fuzz`, see `fuzz/README.md`):
//! the upload path exactly as the API runs it, reachable from outside the crate. Not an API for
//! anything else; nothing in the emulator calls it.

use std::path::Path;

use crate::control::packages::{self, ResourcePool};

/// What an upload came to.
#[derive(Debug, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Refused at the check (the API's 402, or 100): nothing was unpacked.
    Refused,
    /// Passed the check but failed while unpacking (staging would fail).
    FailedToUnpack,
    /// Unpacked under the destination.
    Unpacked,
}

/// Checks the zip at `zip` as an upload is checked, and if it passes, unpacks it into `dest`
/// (created) as staging does, with a resource pool under `scratch`.
pub fn check_and_unpack(
    zip: &Path,
    dest: &Path,
    scratch: &Path,
    max_unpacked: u64,
) -> UploadOutcome {
    if packages::check_zip(zip, max_unpacked).is_err() {
        return UploadOutcome::Refused;
    }
    let Ok(pool) = ResourcePool::new(scratch.join("pool")) else {
        return UploadOutcome::FailedToUnpack;
    };
    match packages::unpack(zip, &[], &pool, dest, max_unpacked) {
        Ok(()) => UploadOutcome::Unpacked,
        Err(_) => UploadOutcome::FailedToUnpack,
    }
}

/// Parses the `resources` part of an upload; the relative paths it would write to, when valid.
pub fn parse_resources(json: &[u8]) -> Option<Vec<std::path::PathBuf>> {
    packages::parse_resources(json)
        .ok()
        .map(|resources| resources.into_iter().map(|r| r.path).collect())
}
