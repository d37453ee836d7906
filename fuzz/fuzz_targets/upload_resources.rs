//! The `resources` part of an upload (`[{size, sha1, fn}]`): whatever the bytes, nothing panics,
//! and every path it accepts is relative, non-empty and stays inside the app directory.
#![no_main]

use std::path::Component;

use afemu_emulator::fuzzing::parse_resources;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|json: &[u8]| {
    let Some(paths) = parse_resources(json) else {
        return;
    };
    for path in paths {
        assert!(!path.as_os_str().is_empty());
        assert!(
            path.components().all(|c| matches!(c, Component::Normal(_))),
            "{path:?} from {:?}",
            String::from_utf8_lossy(json)
        );
    }
});
