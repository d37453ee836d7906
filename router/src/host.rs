//! Host normalisation, shared by both sides of a route: the `Host` of a request and the URI an app
//! is mapped to. v1's routers lower-cased the host and matched it exactly, with no wildcards; the
//! gorouter of the time also dropped the port (spec/v1-runtime.md §2). afemu does the same and, so
//! that `http://example.com.localhost:9080/` works from a browser, also strips a dev suffix.

use std::borrow::Cow;

/// The dev suffix stripped by default: browsers resolve every `*.localhost` name to loopback.
pub const DEFAULT_DEV_SUFFIX: &str = ".localhost";

/// Turns a `Host` header value or a mapped URI into the key the route table is indexed by.
///
/// Lower-cases ASCII, drops a scheme (`http://`), a path, a port and trailing dots, then the dev
/// suffix (when something is left before it). Returns `None` when nothing is left, so that an
/// empty or port-only host is a bad request rather than a lookup.
pub fn normalise_host<'a>(raw: &'a str, dev_suffix: &str) -> Option<Cow<'a, str>> {
    let mut host = raw.trim();
    for scheme in ["http://", "https://"] {
        if let Some(rest) = strip_prefix_ignore_case(host, scheme) {
            host = rest;
        }
    }
    if let Some(slash) = host.find('/') {
        host = &host[..slash];
    }
    // White space left between the scheme and the host is trimmed before the port is looked
    // for, so that a bracketed literal is recognised as one ("http://\u{b}[::1]:80").
    host = trim(strip_port(host.trim_start()));
    if !dev_suffix.is_empty() && host.len() > dev_suffix.len() {
        let split = host.len() - dev_suffix.len();
        if host.is_char_boundary(split) && host[split..].eq_ignore_ascii_case(dev_suffix) {
            // What was before the suffix is trimmed like the whole was ("a..localhost").
            host = trim(&host[..split]);
        }
    }
    if host.is_empty() {
        return None;
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
}

/// Leading white space, trailing white space and dots, in any mix ("a. ." is "a").
fn trim(host: &str) -> &str {
    host.trim_start()
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Drops `:port`. An IPv6 literal keeps its brackets; anything else loses everything from the
/// first colon, as gorouter's `hostWithoutPort` did.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.find(':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(raw: &str, expected: Option<&str>) {
        assert_eq!(
            normalise_host(raw, DEFAULT_DEV_SUFFIX).as_deref(),
            expected,
            "normalise_host({raw:?})"
        );
    }

    #[test]
    fn host_normalisation_table() {
        check("example.com", Some("example.com"));
        check("Example.COM", Some("example.com"));
        check("example.com:9080", Some("example.com"));
        check("WWW.Example.com:80", Some("www.example.com"));
        check("example.com.", Some("example.com"));
        check("example.com.localhost", Some("example.com"));
        check("example.com.LOCALHOST:9080", Some("example.com"));
        check("localhost", Some("localhost"));
        check(".localhost", Some(".localhost"));
        check("http://Example.com/path", Some("example.com"));
        check("HTTPS://example.com:443", Some("example.com"));
        check("  example.com  ", Some("example.com"));
        check("[::1]:9080", Some("[::1]"));
        check("127.0.0.1:9080", Some("127.0.0.1"));
        check("", None);
        check(":80", None);
        check("http://", None);
    }

    /// Found by proptest (`proptest-regressions/host.txt`): a multi-byte character where a
    /// scheme prefix would end must not be sliced through.
    #[test]
    fn multibyte_hosts_do_not_panic() {
        check("𐺰ꪥඒמּí", Some("𐺰ꪥඒמּí"));
        check("ꪥඒמּ:80", Some("ꪥඒמּ"));
    }

    /// Found by `cargo fuzz run host` (fuzz/corpus/host keeps the input): what is left before
    /// the dev suffix must be trimmed too, or the key is not its own key.
    #[test]
    fn what_is_left_before_the_dev_suffix_is_trimmed() {
        check("d..localhost", Some("d"));
        check("a .localhost:9080", Some("a"));
        check("\u{c}d\0..localhost", Some("d\0"));
        check(" ..localhost", None);
        check("\u{c}$\u{c}.:80/x", Some("$"));
    }

    /// Found by the fuzzer in CI: white space after the scheme hid the bracket of an IPv6
    /// literal from the port stripping, so the key was not its own key.
    #[test]
    fn white_space_after_the_scheme_does_not_hide_a_bracketed_literal() {
        check("http://\u{b}[::1]:8080/x", Some("[::1]"));
        check("http://\u{b}[]]]]\u{1b}t/l", Some("[]"));
    }

    #[test]
    fn no_dev_suffix_keeps_localhost_names() {
        assert_eq!(
            normalise_host("a.localhost", "").as_deref(),
            Some("a.localhost")
        );
    }

    #[test]
    fn already_normal_hosts_are_borrowed() {
        assert!(matches!(
            normalise_host("example.com", DEFAULT_DEV_SUFFIX),
            Some(Cow::Borrowed(_))
        ));
    }

    proptest! {
        /// Whatever case and port a client sends, the key is the same as for the mapped URI.
        #[test]
        fn case_and_port_never_change_the_key(
            labels in proptest::collection::vec("[a-z0-9-]{1,10}", 1..4),
            upper in proptest::collection::vec(any::<bool>(), 40),
            port in proptest::option::of(1u16..),
        ) {
            let host = labels.join(".");
            let mixed: String = host
                .chars()
                .zip(upper.iter().cycle())
                .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
                .collect();
            let raw = match port {
                Some(port) => format!("{mixed}:{port}"),
                None => mixed,
            };
            let key = normalise_host(&raw, DEFAULT_DEV_SUFFIX);
            prop_assert_eq!(key.as_deref(), Some(host.as_str()));
        }

        /// Normalising is idempotent: a key is its own key.
        #[test]
        fn normalisation_is_idempotent(raw in "\\PC{0,40}") {
            if let Some(key) = normalise_host(&raw, DEFAULT_DEV_SUFFIX) {
                let again = normalise_host(&key, DEFAULT_DEV_SUFFIX);
                // Stripping the dev suffix can reveal another one ("a.localhost.localhost").
                if !key.ends_with(DEFAULT_DEV_SUFFIX) {
                    prop_assert_eq!(again.as_deref(), Some(&*key));
                }
            }
        }
    }
}
