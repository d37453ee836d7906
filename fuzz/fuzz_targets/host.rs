//! Host normalisation (`afemu_router::normalise_host`): whatever a client sends as `Host`, the
//! route key is never empty, has no port, path or upper-case ASCII, and is its own key.
#![no_main]

use afemu_router::normalise_host;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for suffix in ["", ".localhost"] {
        let Some(key) = normalise_host(raw, suffix) else {
            continue;
        };
        assert!(!key.is_empty(), "{raw:?}");
        assert!(
            !key.bytes().any(|b| b.is_ascii_uppercase()),
            "{raw:?} → {key:?}"
        );
        assert!(!key.contains('/'), "{raw:?} → {key:?}");
        assert!(
            key.starts_with('[') || !key.contains(':'),
            "{raw:?} → {key:?}"
        );
        assert_eq!(key.trim(), key, "{raw:?} → {key:?}");
        // A key is its own key; stripping the suffix can reveal another one ("a.localhost.localhost").
        if suffix.is_empty() || !key.ends_with(suffix) {
            assert_eq!(
                normalise_host(&key, suffix).as_deref(),
                Some(&*key),
                "{raw:?} → {key:?}"
            );
        }
    }
});
