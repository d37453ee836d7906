//! Files of an instance, as v1's DEA served them (`dea/lib/dea/directory.rb`): a directory is a
//! plain-text listing, a file is its bytes. Everything is confined to the instance directory: a
//! path with `..` is refused, and so is one that resolves (through links) outside of it.

use std::path::{Path, PathBuf};

/// What a path names inside an instance directory.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    Directory {
        path: PathBuf,
        is_root: bool,
    },
    File(PathBuf),
    /// The DEA answered `404 Entity not found.`.
    NotFound,
    /// The DEA answered `403 Not accessible`.
    Forbidden,
}

/// Resolves a requested path (as the client sent it: `/logs/x`, `logs/x`, `` for the root).
pub(crate) fn resolve(instance_dir: &Path, requested: &str) -> Resolved {
    if requested.split(['/', '\\']).any(|part| part == "..") {
        return Resolved::Forbidden;
    }
    let relative = requested.trim_start_matches('/');
    let Ok(root) = instance_dir.canonicalize() else {
        return Resolved::NotFound;
    };
    let candidate = root.join(relative);
    let Ok(real) = candidate.canonicalize() else {
        return Resolved::NotFound;
    };
    if !real.starts_with(&root) {
        return Resolved::Forbidden;
    }
    match std::fs::metadata(&real) {
        Ok(meta) if meta.is_dir() => Resolved::Directory {
            is_root: real == root,
            path: real,
        },
        Ok(meta) if meta.is_file() => Resolved::File(real),
        _ => Resolved::NotFound,
    }
}

/// The listing: one `"%-35s %10s"` line per entry (directories with a `/` and `-` for a size),
/// sorted, dot-files left out, joined by newlines with none at the end. At the instance root only
/// `app/`, `logs/` and a Java web app's `jetty/` are shown, as v1 hid its control files and
/// showed its Java apps' `tomcat/`.
pub(crate) fn listing(dir: &Path, is_root: bool) -> std::io::Result<String> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    for name in names {
        if is_root && !matches!(name.as_str(), "app" | "logs" | "jetty") {
            continue;
        }
        // Following links, as Ruby's File.stat did; a broken link is skipped.
        let Ok(meta) = std::fs::metadata(dir.join(&name)) else {
            continue;
        };
        if meta.is_dir() {
            entries.push((format!("{name}/"), "-".into()));
        } else {
            entries.push((name, filesize(meta.len())));
        }
    }
    Ok(entries
        .iter()
        .map(|(name, size)| format!("{name:<35} {size:>10}"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `123B`, `1.2K`, `3.4M`, `5.6G`, `7.8T`.
pub(crate) fn filesize(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes >= size {
            return format!("{:.1}{unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app/lib")).unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        std::fs::write(dir.path().join("app/server.js"), vec![b'x'; 1536]).unwrap();
        std::fs::write(dir.path().join("app/.hidden"), b"x").unwrap();
        std::fs::write(dir.path().join("logs/stdout.log"), b"hello\n").unwrap();
        std::fs::write(dir.path().join("run.pid"), b"123\n").unwrap();
        dir
    }

    #[test]
    fn the_root_lists_only_app_and_logs() {
        let dir = instance();
        let Resolved::Directory { path, is_root } = resolve(dir.path(), "/") else {
            panic!()
        };
        assert!(is_root);
        assert_eq!(
            listing(&path, is_root).unwrap(),
            format!("{:<35} {:>10}\n{:<35} {:>10}", "app/", "-", "logs/", "-")
        );
        // The pid file is not listed but can be read.
        assert!(matches!(resolve(dir.path(), "run.pid"), Resolved::File(_)));
    }

    #[test]
    fn a_java_web_app_shows_its_servlet_container() {
        let dir = instance();
        std::fs::create_dir_all(dir.path().join("jetty/webapps")).unwrap();
        std::fs::write(dir.path().join("jetty/startup"), b"#!/bin/sh\n").unwrap();
        let root = listing(dir.path(), true).unwrap();
        let names: Vec<_> = root.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(names, ["app/", "jetty/", "logs/"]);
        let jetty = listing(&dir.path().join("jetty"), false).unwrap();
        assert_eq!(
            jetty,
            format!(
                "{:<35} {:>10}\n{:<35} {:>10}",
                "startup", "10B", "webapps/", "-"
            )
        );
    }

    #[test]
    fn subdirectories_list_files_with_sizes() {
        let dir = instance();
        let Resolved::Directory { path, is_root } = resolve(dir.path(), "/app") else {
            panic!()
        };
        assert!(!is_root);
        assert_eq!(
            listing(&path, is_root).unwrap(),
            format!(
                "{:<35} {:>10}\n{:<35} {:>10}",
                "lib/", "-", "server.js", "1.5K"
            )
        );
    }

    #[test]
    fn escapes_are_forbidden_and_missing_is_not_found() {
        let dir = instance();
        assert_eq!(resolve(dir.path(), "/../etc/passwd"), Resolved::Forbidden);
        assert_eq!(resolve(dir.path(), "app/../../x"), Resolved::Forbidden);
        std::os::unix::fs::symlink("/etc", dir.path().join("app/etc")).unwrap();
        assert_eq!(resolve(dir.path(), "/app/etc/passwd"), Resolved::Forbidden);
        assert_eq!(resolve(dir.path(), "/logs/nope.log"), Resolved::NotFound);
        // An absolute path is read as relative to the instance, never as the machine's.
        assert_eq!(resolve(dir.path(), "//etc/passwd"), Resolved::NotFound);
    }

    #[test]
    fn sizes_as_v1_printed_them() {
        let table = [
            (0, "0B"),
            (1023, "1023B"),
            (1024, "1.0K"),
            (1536, "1.5K"),
            (5 << 20, "5.0M"),
            (3 << 30, "3.0G"),
        ];
        for (bytes, text) in table {
            assert_eq!(filesize(bytes), text);
        }
    }
}
