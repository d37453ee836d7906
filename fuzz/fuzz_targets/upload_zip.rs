//! The upload path's zip handling (`check_zip`, then `unpack` as staging runs it): whatever the
//! bytes, nothing panics, and nothing is written outside the app directory, directly or through
//! a link.
#![no_main]

use std::path::Path;

use afemu_emulator::fuzzing::{UploadOutcome, check_and_unpack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|zip: &[u8]| {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let root = scratch.path().canonicalize().unwrap();
    let upload = root.join("upload.zip");
    std::fs::write(&upload, zip).unwrap();
    let app = root.join("app");
    let outcome = check_and_unpack(&upload, &app, &root, 1 << 20);

    // Only what the upload path itself makes is next to the app directory.
    for entry in std::fs::read_dir(&root).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(
            ["upload.zip", "app", "pool"].contains(&name.to_str().unwrap_or("?")),
            "{name:?} was written outside the app directory ({outcome:?})"
        );
    }
    if outcome == UploadOutcome::Refused {
        assert!(!app.exists(), "a refused upload unpacked something");
    }
    if app.exists() {
        assert_inside(&app.canonicalize().unwrap(), &app);
    }
});

/// Every entry under `dir` is inside `app`, links included (a dangling link is harmless).
fn assert_inside(app: &Path, dir: &Path) {
    for entry in walkdir::WalkDir::new(dir).follow_links(false) {
        let entry = entry.unwrap();
        if let Ok(real) = entry.path().canonicalize() {
            assert!(
                real.starts_with(app),
                "{} resolves to {} outside the app directory",
                entry.path().display(),
                real.display()
            );
        }
    }
}
