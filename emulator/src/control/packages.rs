//! Packages, as v1's cloud controller kept them: the resource pool, checking an upload, and
//! putting the bits together (the zip plus the pooled resources it names) for the stager.
//!
//! This is the one place uploaded bits touch the disk. Every zip entry must stay inside the app
//! directory; symbolic links are created last and only when they resolve inside it; the unpacked
//! size is bounded, so a zip bomb is refused instead of filling the disk.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha1::{Digest, Sha1};

use crate::error::ApiError;

/// The most entries an upload may have.
const MAX_ENTRIES: usize = 100_000;

/// A file the client did not send because the server said it had it (`POST /resources`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resource {
    pub(crate) size: u64,
    pub(crate) sha1: String,
    /// Where the file goes, relative to the app directory (checked).
    pub(crate) path: PathBuf,
}

#[derive(Deserialize)]
struct WireResource {
    size: u64,
    sha1: String,
    #[serde(rename = "fn")]
    file_name: String,
}

/// Parses the `resources` part of an upload: `[{size, sha1, fn}]`.
pub(crate) fn parse_resources(json: &[u8]) -> Result<Vec<Resource>, ApiError> {
    let trimmed = std::str::from_utf8(json)
        .map_err(|_| ApiError::BadRequest("resources is not UTF-8".into()))?
        .trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let wire: Vec<WireResource> = serde_json::from_str(trimmed).map_err(|e| {
        ApiError::BadRequest(format!(
            "resources must be a JSON array of {{size, sha1, fn}}: {e}"
        ))
    })?;
    wire.into_iter()
        .map(|r| {
            if r.sha1.len() != 40 || !r.sha1.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ApiError::BadRequest(format!(
                    "resource sha1 {:?} is not 40 hex digits",
                    r.sha1
                )));
            }
            let path =
                safe_relative_path(r.file_name.trim_start_matches('/')).ok_or_else(|| {
                    ApiError::PackagingFailed(format!(
                        "resource {:?} would be outside the app directory",
                        r.file_name
                    ))
                })?;
            Ok(Resource {
                size: r.size,
                sha1: r.sha1.to_ascii_lowercase(),
                path,
            })
        })
        .collect()
}

/// A relative path with no `..`, no root and no empty name: safe to join onto a directory.
pub(crate) fn safe_relative_path(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!clean.as_os_str().is_empty()).then_some(clean)
}

/// Content-addressed files from earlier uploads, so clients need not send them again.
#[derive(Clone, Debug)]
pub(crate) struct ResourcePool {
    dir: PathBuf,
}

impl ResourcePool {
    pub(crate) fn new(dir: PathBuf) -> io::Result<ResourcePool> {
        fs::create_dir_all(&dir)?;
        Ok(ResourcePool { dir })
    }

    fn path(&self, sha1: &str) -> PathBuf {
        self.dir.join(sha1)
    }

    pub(crate) fn has(&self, sha1: &str, size: u64) -> bool {
        fs::metadata(self.path(sha1)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Adds every regular file under `dir` to the pool.
    pub(crate) fn add_tree(&self, dir: &Path) -> io::Result<()> {
        for entry in walkdir::WalkDir::new(dir).follow_links(false) {
            let entry = entry.map_err(io::Error::other)?;
            if !entry.file_type().is_file() {
                continue;
            }
            let sha1 = sha1_file(entry.path())?;
            let target = self.path(&sha1);
            if !target.exists() {
                // A file of its own for each copy, so concurrent stagings never share one.
                let mut partial = tempfile::NamedTempFile::new_in(&self.dir)?;
                io::copy(&mut fs::File::open(entry.path())?, partial.as_file_mut())?;
                partial.persist(&target).map_err(|e| e.error)?;
            }
        }
        Ok(())
    }
}

pub(crate) fn sha1_file(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha1::new();
    let mut buffer = [0u8; 64 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks an uploaded zip without unpacking it: readable, every entry inside the app directory,
/// not too big. Refusing here means a bad upload changes nothing.
pub(crate) fn check_zip(zip_path: &Path, max_unpacked: u64) -> Result<ZipSummary, ApiError> {
    let file = fs::File::open(zip_path).map_err(|e| ApiError::System(e.to_string()))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| {
        ApiError::PackagingFailed(format!("the application is not a valid zip file: {e}"))
    })?;
    if archive.len() > MAX_ENTRIES {
        return Err(ApiError::PackagingFailed(format!(
            "the zip has {} entries, more than the limit of {MAX_ENTRIES}",
            archive.len()
        )));
    }
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| ApiError::PackagingFailed(format!("unreadable zip entry: {e}")))?;
        let name = entry
            .name()
            .map_or_else(|_| String::from("<unreadable name>"), |n| n.into_owned());
        // An absolute name is hostile even though it could be read as relative: refuse it.
        let absolute = name.starts_with('/') || name.starts_with('\\');
        let relative = entry
            .enclosed_name()
            .and_then(|p| safe_relative_path(&p.to_string_lossy()))
            .filter(|_| !absolute);
        let Some(relative) = relative else {
            if name == "./" {
                continue;
            }
            return Err(ApiError::PackagingFailed(format!(
                "zip entry {name:?} would be outside the app directory"
            )));
        };
        total = total.saturating_add(entry.size());
        if total > max_unpacked {
            return Err(ApiError::PackagingFailed(format!(
                "the application unpacks to more than the limit of {max_unpacked} bytes"
            )));
        }
        if is_symlink(entry.unix_mode()) {
            drop(entry);
            let target = read_link_target(&mut archive, index)?;
            if !link_stays_inside(&relative, &target) {
                return Err(ApiError::PackagingFailed(format!(
                    "zip entry {name:?} links to {target:?}, outside the app directory"
                )));
            }
        }
    }
    Ok(ZipSummary {
        entries: archive.len(),
        unpacked: total,
    })
}

/// What a checked zip holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ZipSummary {
    pub(crate) entries: usize,
    /// The sizes its entries declare, summed.
    pub(crate) unpacked: u64,
}

/// Refuses an upload whose zip and resources together are too many files or too many bytes:
/// a resource list naming one big pooled file ten thousand times is a bomb too.
pub(crate) fn check_totals(
    zip: ZipSummary,
    resources: &[Resource],
    max_unpacked: u64,
) -> Result<(), ApiError> {
    if zip.entries + resources.len() > MAX_ENTRIES {
        return Err(ApiError::PackagingFailed(format!(
            "the application has more than {MAX_ENTRIES} files"
        )));
    }
    let total = resources
        .iter()
        .fold(zip.unpacked, |sum, r| sum.saturating_add(r.size));
    if total > max_unpacked {
        return Err(ApiError::PackagingFailed(format!(
            "the application unpacks to more than the limit of {max_unpacked} bytes"
        )));
    }
    Ok(())
}

fn is_symlink(mode: Option<u32>) -> bool {
    mode.is_some_and(|mode| mode & 0o170000 == 0o120000)
}

fn read_link_target<R: io::Read + io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    index: usize,
) -> Result<String, ApiError> {
    let mut entry = archive
        .by_index(index)
        .map_err(|e| ApiError::PackagingFailed(format!("unreadable zip entry: {e}")))?;
    let mut target = String::new();
    entry
        .by_ref()
        .take(4096)
        .read_to_string(&mut target)
        .map_err(|e| ApiError::PackagingFailed(format!("unreadable link in the zip: {e}")))?;
    Ok(target)
}

/// Whether a link at `link` (relative to the app root) to `target` resolves inside the root,
/// judged on the names alone. Links are also checked on the disk after unpacking.
fn link_stays_inside(link: &Path, target: &str) -> bool {
    if target.is_empty() || Path::new(target).is_absolute() {
        return false;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for component in Path::new(target).components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Unpacks a checked upload into `dest` (created), with resources from the pool. Regular files
/// first, links last, so no entry is ever written through a link.
pub(crate) fn unpack(
    zip_path: &Path,
    resources: &[super::packages::Resource],
    pool: &ResourcePool,
    dest: &Path,
    max_unpacked: u64,
) -> Result<(), String> {
    fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let file = fs::File::open(zip_path).map_err(|e| format!("cannot open the package: {e}"))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| format!("not a zip file: {e}"))?;
    let mut budget = max_unpacked;
    let mut links = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| format!("zip entry {index}: {e}"))?;
        let Some(relative) = entry
            .enclosed_name()
            .and_then(|p| safe_relative_path(&p.to_string_lossy()))
        else {
            continue; // the root itself ("./"); anything else was refused by check_zip
        };
        let path = dest.join(&relative);
        if is_symlink(entry.unix_mode()) {
            let mut target = String::new();
            entry
                .by_ref()
                .take(4096)
                .read_to_string(&mut target)
                .map_err(|e| format!("link {}: {e}", relative.display()))?;
            links.push((relative, target));
        } else if entry.is_dir() {
            fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", relative.display()))?;
        } else {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", relative.display()))?;
            }
            let mut out =
                fs::File::create(&path).map_err(|e| format!("{}: {e}", relative.display()))?;
            let copied = io::copy(&mut entry.by_ref().take(budget + 1), &mut out)
                .map_err(|e| format!("{}: {e}", relative.display()))?;
            if copied > budget {
                return Err(format!(
                    "the application unpacks to more than {max_unpacked} bytes"
                ));
            }
            budget -= copied;
            if let Some(mode) = entry.unix_mode() {
                set_mode(&path, mode & 0o777);
            }
        }
    }
    for resource in resources {
        if resource.size > budget {
            return Err(format!(
                "the application unpacks to more than {max_unpacked} bytes"
            ));
        }
        budget -= resource.size;
        let path = dest.join(&resource.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", resource.path.display()))?;
        }
        fs::copy(pool.path(&resource.sha1), &path)
            .map_err(|e| format!("resource {}: {e}", resource.path.display()))?;
    }
    let root = dest
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    // Links last, never written through: each goes into a real directory of the app (no link
    // on the way), and once all exist each must resolve inside the app.
    for (relative, target) in &links {
        if !link_stays_inside(relative, target) {
            return Err(format!(
                "{} links outside the app directory",
                relative.display()
            ));
        }
        real_directory(&root, relative.parent().unwrap_or(Path::new("")))
            .map_err(|e| format!("link {}: {e}", relative.display()))?;
        let path = root.join(relative);
        match fs::symlink_metadata(&path) {
            Err(_) => {}
            Ok(meta) if meta.is_file() => {
                fs::remove_file(&path).map_err(|e| format!("{}: {e}", relative.display()))?;
            }
            Ok(_) => {
                return Err(format!(
                    "{} is both a link and a directory",
                    relative.display()
                ));
            }
        }
        std::os::unix::fs::symlink(target, &path)
            .map_err(|e| format!("link {}: {e}", relative.display()))?;
    }
    for (relative, _) in &links {
        match root.join(relative).canonicalize() {
            Ok(resolved) if resolved.starts_with(&root) => {}
            Ok(_) => {
                return Err(format!(
                    "{} links outside the app directory",
                    relative.display()
                ));
            }
            Err(_) => {
                return Err(format!(
                    "{} is a broken or looping link",
                    relative.display()
                ));
            }
        }
    }
    Ok(())
}

/// Makes sure `relative` (under `root`) is a real directory, creating what is missing, without
/// ever passing through a link.
fn real_directory(root: &Path, relative: &Path) -> Result<(), String> {
    let mut path = root.to_path_buf();
    for component in relative.components() {
        path.push(component);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a link: nothing goes through it",
                    path.display()
                ));
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("{} is not a directory", path.display())),
            Err(_) => fs::create_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?,
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    // Only the permission bits; never setuid and friends. Keep the owner able to read and write.
    let _ = fs::set_permissions(path, fs::Permissions::from_mode((mode & 0o777) | 0o600));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    fn zip_with(entries: &[(&str, &[u8], Option<u32>)]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut writer = zip::ZipWriter::new(file.reopen().unwrap());
        for (name, content, mode) in entries {
            match mode {
                Some(mode) if mode & 0o170000 == 0o120000 => {
                    writer
                        .add_symlink(
                            *name,
                            std::str::from_utf8(content).unwrap(),
                            SimpleFileOptions::default(),
                        )
                        .unwrap();
                }
                _ => {
                    let options =
                        SimpleFileOptions::default().unix_permissions(mode.unwrap_or(0o644));
                    writer.start_file(*name, options).unwrap();
                    writer.write_all(content).unwrap();
                }
            }
        }
        writer.finish().unwrap();
        file
    }

    fn pool() -> (tempfile::TempDir, ResourcePool) {
        let dir = tempfile::tempdir().unwrap();
        let pool = ResourcePool::new(dir.path().join("pool")).unwrap();
        (dir, pool)
    }

    #[test]
    fn a_plain_zip_unpacks() {
        let zip = zip_with(&[
            ("index.html", b"<h1>v1</h1>", None),
            ("css/site.css", b"body{}", None),
            ("bin/run", b"#!/bin/sh", Some(0o755)),
        ]);
        check_zip(zip.path(), 1 << 20).unwrap();
        let (dir, pool) = pool();
        let dest = dir.path().join("app");
        unpack(zip.path(), &[], &pool, &dest, 1 << 20).unwrap();
        assert_eq!(fs::read(dest.join("index.html")).unwrap(), b"<h1>v1</h1>");
        assert_eq!(fs::read(dest.join("css/site.css")).unwrap(), b"body{}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(dest.join("bin/run"))
                .unwrap()
                .permissions()
                .mode()
                & 0o111,
            0o111
        );
    }

    #[test]
    fn entries_escaping_the_app_dir_are_refused() {
        for name in ["../evil", "a/../../evil", "/etc/passwd"] {
            let zip = zip_with(&[("index.html", b"ok", None), (name, b"x", None)]);
            let error = check_zip(zip.path(), 1 << 20).unwrap_err();
            assert_eq!(error.code(), 402, "{name}: {error}");
            assert!(
                error.to_string().contains("outside the app directory"),
                "{error}"
            );
        }
    }

    #[test]
    fn links_escaping_the_app_dir_are_refused() {
        for target in ["../../etc", "/etc/passwd", "a/../../x"] {
            let zip = zip_with(&[("link", target.as_bytes(), Some(0o120777))]);
            let error = check_zip(zip.path(), 1 << 20).unwrap_err();
            assert!(
                error.to_string().contains("outside the app directory"),
                "{target}: {error}"
            );
        }
        // A link to a sibling directory is fine, as node_modules/.bin links are.
        let zip = zip_with(&[
            ("node_modules/x/bin/x", b"#!", Some(0o755)),
            ("node_modules/.bin/x", b"../x/bin/x", Some(0o120777)),
        ]);
        check_zip(zip.path(), 1 << 20).unwrap();
        let (dir, pool) = pool();
        unpack(zip.path(), &[], &pool, &dir.path().join("app"), 1 << 20).unwrap();
        assert_eq!(
            fs::read(dir.path().join("app/node_modules/.bin/x")).unwrap(),
            b"#!"
        );
    }

    #[test]
    fn a_chain_of_links_cannot_escape_on_disk() {
        // "up" points at the root itself; "up2" = "up/.." looks inside by name but is the parent.
        let zip = zip_with(&[
            ("index.html", b"ok", None),
            ("d/up", b"..", Some(0o120777)),
            ("d/up2", b"up/..", Some(0o120777)),
        ]);
        let (dir, pool) = pool();
        let error = unpack(zip.path(), &[], &pool, &dir.path().join("app"), 1 << 20);
        assert!(error.is_err(), "{error:?}");
    }

    #[test]
    fn links_through_links_never_write_outside() {
        // Found in review: in this order the chain was created through itself, a victim file
        // outside the app was replaced, and the static server served the host's files.
        let (dir, pool) = pool();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let zip = zip_with(&[
            ("index.html", b"ok", None),
            ("d/up3", b"up2/..", Some(0o120777)),
            ("d/up2", b"up/..", Some(0o120777)),
            ("d/up", b"..", Some(0o120777)),
            ("d/up3/victim", b"x", Some(0o120777)),
        ]);
        let dest = dir.path().join("droplet").join("app");
        let result = unpack(zip.path(), &[], &pool, &dest, 1 << 20);
        assert!(result.is_err(), "{result:?}");
        assert_eq!(
            fs::read(&victim).unwrap(),
            b"precious",
            "nothing outside was touched"
        );
        assert!(
            !fs::symlink_metadata(&victim)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // A dangling link is refused too: it could be made to point anywhere later.
        let zip = zip_with(&[
            ("index.html", b"ok", None),
            ("gone", b"nothing/here", Some(0o120777)),
        ]);
        let result = unpack(zip.path(), &[], &pool, &dir.path().join("other"), 1 << 20);
        assert!(result.unwrap_err().contains("broken or looping"));
    }

    #[test]
    fn resources_count_against_the_limits() {
        let zip = ZipSummary {
            entries: 1,
            unpacked: 10,
        };
        let big = Resource {
            size: 600,
            sha1: "a".repeat(40),
            path: "x".into(),
        };
        assert!(check_totals(zip, std::slice::from_ref(&big), 1000).is_ok());
        let error = check_totals(zip, &[big.clone(), big.clone()], 1000).unwrap_err();
        assert_eq!(error.code(), 402);
        let many = vec![
            Resource {
                size: 0,
                ..big.clone()
            };
            MAX_ENTRIES
        ];
        assert!(check_totals(zip, &many, u64::MAX).is_err());
        // And staging charges them too.
        let (dir, pool) = pool();
        let source = dir.path().join("src");
        fs::create_dir_all(&source).unwrap();
        fs::write(source.join("big"), vec![1u8; 600]).unwrap();
        pool.add_tree(&source).unwrap();
        let sha1 = sha1_file(&source.join("big")).unwrap();
        let resources: Vec<_> = (0..3)
            .map(|n| Resource {
                size: 600,
                sha1: sha1.clone(),
                path: format!("copy{n}").into(),
            })
            .collect();
        let empty = zip_with(&[("index.html", b"ok", None)]);
        let result = unpack(
            empty.path(),
            &resources,
            &pool,
            &dir.path().join("app"),
            1000,
        );
        assert!(result.unwrap_err().contains("more than 1000 bytes"));
    }

    #[test]
    fn zip_bombs_are_refused() {
        let zip = zip_with(&[("big", &vec![0u8; 100_000], None)]);
        let error = check_zip(zip.path(), 50_000).unwrap_err();
        assert!(error.to_string().contains("limit"), "{error}");
    }

    #[test]
    fn garbage_is_not_a_zip() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"this is not a zip").unwrap();
        assert_eq!(check_zip(file.path(), 1 << 20).unwrap_err().code(), 402);
    }

    #[test]
    fn resources_come_from_the_pool() {
        let (dir, pool) = pool();
        let source = dir.path().join("src");
        fs::create_dir_all(source.join("lib")).unwrap();
        fs::write(source.join("lib/big.js"), b"shared bytes").unwrap();
        pool.add_tree(&source).unwrap();
        let sha1 = sha1_file(&source.join("lib/big.js")).unwrap();
        assert!(pool.has(&sha1, 12));
        assert!(!pool.has(&sha1, 13));
        let resources = parse_resources(
            format!(r#"[{{"size":12,"sha1":"{sha1}","fn":"lib/big.js"}}]"#).as_bytes(),
        )
        .unwrap();
        let zip = zip_with(&[("index.html", b"ok", None)]);
        let dest = dir.path().join("app");
        unpack(zip.path(), &resources, &pool, &dest, 1 << 20).unwrap();
        assert_eq!(fs::read(dest.join("lib/big.js")).unwrap(), b"shared bytes");
    }

    #[test]
    fn resource_lists_are_checked() {
        assert!(parse_resources(b"").unwrap().is_empty());
        assert!(parse_resources(b"[]").unwrap().is_empty());
        assert_eq!(parse_resources(b"{").unwrap_err().code(), 100);
        assert_eq!(
            parse_resources(br#"[{"size":1,"sha1":"zz","fn":"a"}]"#)
                .unwrap_err()
                .code(),
            100
        );
        let escaping = format!(
            r#"[{{"size":1,"sha1":"{}","fn":"../../x"}}]"#,
            "a".repeat(40)
        );
        assert_eq!(
            parse_resources(escaping.as_bytes()).unwrap_err().code(),
            402
        );
    }
}
