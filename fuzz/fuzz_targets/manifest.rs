//! `manifest.yml` loading (`afemu_cli::fuzzing::load_manifest`: YAML, `inherit`, `${symbol}`
//! resolution, `depends-on` ordering), on any text: nothing panics or overflows the stack,
//! self-reference, deep nesting and alias bombs end in an error rather than a hang, and the
//! applications come out after what they depend on.
#![no_main]

use afemu_cli::fuzzing::{MANIFEST_DIR, load_manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(apps) = load_manifest(&text) else {
        return;
    };
    for (position, app) in apps.iter().enumerate() {
        for dep in &app.depends_on {
            assert!(
                apps[..position].iter().any(|earlier| earlier.dir == *dep),
                "{app:?} comes before its dependency {dep:?} in {apps:?} (from {MANIFEST_DIR}/manifest.yml)"
            );
        }
    }
});
