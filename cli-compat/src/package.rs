//! What `af` uploads (`upload_app_bits`, `lib/cli/zip_util.rb`): the app's files gathered as af
//! gathers them into its temporary "explode" directory (a `*.war` or `*.zip` unpacked instead of
//! the directory, `.afignore` honoured, sockets skipped, links that leave the app refused), the
//! fingerprints for `POST /resources`, af's content hash, and the zip made as `zip -y -r -x \*~
//! \#*# \*.log` makes it: `*.log` files never go up, links stay links.
//!
//! Everything is kept in memory: nothing is written to a temporary directory, so two uploads of
//! the same app name cannot collide as af's fixed temporary names did.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use md5::Digest as _;

use crate::afignore::{AfIgnore, fnmatch};

/// One thing in the explode directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Dir,
    File(Vec<u8>),
    /// A symbolic link and its target, as written in the link.
    Link(String),
}

/// One entry, by its path relative to the app root (`/`-separated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub content: Content,
    /// Unix permission bits.
    pub mode: u32,
}

/// The files af would upload for one app, in af's glob order.
#[derive(Clone, Debug, Default)]
pub struct Bundle {
    pub entries: Vec<Entry>,
}

/// Why the files could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Links that point outside the app (af's own message, without `Error: `).
    #[error("Can't deploy application containing links '{0}' that reach outside its root '.'")]
    LinksOutside(String),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Zip(#[from] zip::result::ZipError),
}

impl Bundle {
    /// Gathers `path` as af does: a `.war`/`.zip` file is unpacked; another single file is
    /// the whole app; a directory with a top-level `*.war` (else `*.zip`) is that archive
    /// unpacked; otherwise the directory's files, minus `.afignore` matches and sockets.
    pub fn gather(path: &Path) -> Result<Bundle, PackError> {
        let text = path.to_string_lossy();
        if text.ends_with(".war") || text.ends_with(".zip") {
            return Bundle::unzip(path);
        }
        if !path.is_dir() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let meta = std::fs::metadata(path)?;
            return Ok(Bundle {
                entries: vec![Entry {
                    path: name,
                    content: Content::File(std::fs::read(path)?),
                    mode: mode_of(&meta),
                }],
            });
        }
        let top: Vec<String> = sorted_names(path)?;
        let visible = |ext: &str| {
            top.iter()
                .find(|n| !n.starts_with('.') && n.ends_with(ext) && path.join(n).is_file())
                .cloned()
        };
        if let Some(war) = visible(".war") {
            return Bundle::unzip(&path.join(war));
        }
        if let Some(zip) = visible(".zip") {
            return Bundle::unzip(&path.join(zip));
        }
        Bundle::walk(path)
    }

    fn walk(root: &Path) -> Result<Bundle, PackError> {
        let ignore = match std::fs::read_to_string(root.join(".afignore")) {
            Ok(text) => AfIgnore::new(&text),
            Err(_) => AfIgnore::new(""),
        };
        let real_root = std::fs::canonicalize(root)?;
        let mut entries = Vec::new();
        let mut outside = Vec::new();
        let walker = walkdir::WalkDir::new(root)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                let relative = relative(root, e.path());
                !ignore.excludes(&relative)
            });
        for entry in walker {
            let entry = entry.map_err(io::Error::other)?;
            let relative = relative(root, entry.path());
            let file_type = entry.file_type();
            let meta = entry.path().symlink_metadata()?;
            if file_type.is_symlink() {
                let reaches = std::fs::canonicalize(entry.path())
                    .map(|real| real.starts_with(&real_root))
                    .unwrap_or(false);
                if !reaches {
                    outside.push(relative.clone());
                    continue;
                }
                let target = std::fs::read_link(entry.path())?;
                entries.push(Entry {
                    path: relative,
                    content: Content::Link(target.to_string_lossy().into_owned()),
                    mode: mode_of(&meta),
                });
            } else if file_type.is_dir() {
                entries.push(Entry {
                    path: relative,
                    content: Content::Dir,
                    mode: mode_of(&meta),
                });
            } else if file_type.is_file() {
                entries.push(Entry {
                    path: relative,
                    content: Content::File(std::fs::read(entry.path())?),
                    mode: mode_of(&meta),
                });
            }
            // Sockets, fifos and devices are left out (af skips sockets).
        }
        if !outside.is_empty() {
            return Err(PackError::LinksOutside(outside.join(",")));
        }
        Ok(Bundle { entries })
    }

    fn unzip(path: &Path) -> Result<Bundle, PackError> {
        let mut archive = zip::ZipArchive::new(std::fs::File::open(path)?)?;
        let mut entries = Vec::new();
        for i in 0..archive.len() {
            let mut file = archive.by_index(i)?;
            let Some(name) = file.enclosed_name() else {
                continue;
            };
            let name = name.to_string_lossy().replace('\\', "/");
            let mode = file.unix_mode().unwrap_or(0o644) & 0o777;
            let content = if file.is_dir() {
                Content::Dir
            } else if file.is_symlink() {
                let mut target = String::new();
                file.read_to_string(&mut target)?;
                Content::Link(target)
            } else {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes)?;
                Content::File(bytes)
            };
            entries.push(Entry {
                path: name.trim_end_matches('/').to_owned(),
                content,
                mode,
            });
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Bundle { entries })
    }

    /// The bytes a path holds (a link: what it points to inside the bundle).
    fn bytes_of<'a>(&'a self, entry: &'a Entry) -> Option<&'a [u8]> {
        match &entry.content {
            Content::File(bytes) => Some(bytes),
            Content::Dir => None,
            Content::Link(target) => {
                let base = Path::new(&entry.path).parent().unwrap_or(Path::new(""));
                let resolved = crate::context::normalize(&Path::new("/").join(base).join(target));
                let resolved = resolved.to_string_lossy();
                let resolved = resolved.trim_start_matches('/');
                self.entries
                    .iter()
                    .find(|e| e.path == resolved)
                    .and_then(|e| match &e.content {
                        Content::File(bytes) => Some(bytes.as_slice()),
                        _ => None,
                    })
            }
        }
    }

    /// af's fingerprints for `POST /resources`: size, SHA-1 and the path in af's explode
    /// directory (`<explode_dir>/<path>`), of every file; and their total size.
    pub fn fingerprints(&self, explode_dir: &str) -> (Vec<(u64, String, String)>, u64) {
        let mut list = Vec::new();
        let mut total = 0;
        for entry in &self.entries {
            let Some(bytes) = self.bytes_of(entry) else {
                continue;
            };
            let sha1 = hex::encode(sha1::Sha1::digest(bytes));
            list.push((
                bytes.len() as u64,
                sha1,
                format!("{explode_dir}/{}", entry.path),
            ));
            total += bytes.len() as u64;
        }
        (list, total)
    }

    /// Drops a file the server said it already has.
    pub fn remove(&mut self, path: &str) {
        self.entries.retain(|e| e.path != path);
    }

    /// af's `get_files_to_pack`: everything but `*~`, `#*#` and `*.log` (Ruby `fnmatch` on the
    /// base name, so dot-files ending in `.log` count).
    fn files_to_pack(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| {
            let base = e.path.rsplit('/').next().unwrap_or(&e.path);
            !["*~", "#*#", "*.log"]
                .iter()
                .any(|glob| fnmatch(glob, base, false))
        })
    }

    /// Whether af would add its `.__empty__` marker before packing.
    pub fn nothing_to_pack(&self) -> bool {
        self.files_to_pack().next().is_none()
    }

    /// af's `.__empty__`, so that the upload is never an empty zip.
    pub fn add_empty_marker(&mut self) {
        self.entries.push(Entry {
            path: ".__empty__".into(),
            content: Content::File(Vec::new()),
            mode: 0o644,
        });
    }

    /// af's version hash (the `Hash` header): MD5 of the files' contents and the other
    /// entries' paths, in glob order.
    pub fn hash(&self) -> String {
        let mut md5 = md5::Md5::new();
        for entry in self.files_to_pack() {
            match self.bytes_of(entry) {
                Some(bytes) if !matches!(entry.content, Content::Dir) => md5.update(bytes),
                _ => md5.update(format!("/{}", entry.path).as_bytes()),
            }
        }
        hex::encode(md5.finalize())
    }

    /// The zip af uploads: `zip -y -q -r app.zip . -x \*~ \#*# \*.log` (`*` spans `/` in
    /// zip's wildcards, so `*.log` and `*~` leave out files at any depth). Laid out as
    /// Info-ZIP lays it out (its timestamp and Unix extra fields, a file stored when deflating
    /// does not make it smaller), so that the size af prints comes out the same.
    pub fn zip(&self) -> Result<Vec<u8>, PackError> {
        let mut writer = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let mut written = 0;
        for entry in &self.entries {
            let path = &entry.path;
            if path.ends_with('~')
                || path.ends_with(".log")
                || (path.starts_with('#') && path.ends_with('#') && path.len() > 1)
            {
                continue;
            }
            let stored = match &entry.content {
                Content::File(bytes) => deflated_len(bytes)? >= bytes.len(),
                _ => true,
            };
            let options = info_zip_options(entry.mode, stored)?;
            match &entry.content {
                Content::Dir => writer.add_directory(format!("{path}/"), options)?,
                Content::Link(target) => {
                    writer.add_symlink(path.as_str(), target.as_str(), options)?
                }
                Content::File(bytes) => {
                    writer.start_file(path.as_str(), options)?;
                    writer.write_all(bytes)?;
                }
            }
            written += 1;
        }
        // Info-ZIP's local headers carry the access time too (4 bytes more than the central
        // directory's timestamp); this writer puts the same field in both, so the archive
        // comment makes up the difference and the size comes out as Info-ZIP's.
        writer.set_comment(" ".repeat(4 * written))?;
        Ok(writer.finish()?.into_inner())
    }
}

/// The entry options Info-ZIP's `zip` 3.0 gives: an extended timestamp and a Unix uid/gid field.
fn info_zip_options(
    mode: u32,
    stored: bool,
) -> Result<zip::write::FullFileOptions<'static, 'static>, PackError> {
    let method = if stored {
        zip::CompressionMethod::Stored
    } else {
        zip::CompressionMethod::Deflated
    };
    let mut options = zip::write::FullFileOptions::default()
        .compression_method(method)
        .unix_permissions(mode & 0o777);
    // "UT": the modification time (the size of the central directory's copy).
    options.add_extra_field(0x5455, [1, 0, 0, 0, 0], false)?;
    // "ux": version 1, a 4-byte uid and a 4-byte gid.
    options.add_extra_field(0x7875, [1, 4, 0, 0, 0, 0, 4, 0, 0, 0, 0], false)?;
    Ok(options)
}

/// How long `bytes` are once deflated (level 6, as `zip` does).
fn deflated_len(bytes: &[u8]) -> io::Result<usize> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?.len())
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o777
}

/// Zips an app directory as af would upload it (no resource matching).
pub fn zip_dir(dir: &Path) -> io::Result<Vec<u8>> {
    let mut bundle = Bundle::gather(dir).map_err(io::Error::other)?;
    if bundle.nothing_to_pack() {
        bundle.add_empty_marker();
    }
    bundle.zip().map_err(io::Error::other)
}

/// af's upload size text: `0K` under half a kilobyte, `NK`, or `NM` above a megabyte.
pub fn upload_size(bytes: usize) -> String {
    if bytes > 1024 * 1024 {
        format!("{}M", (bytes as f64 / (1024.0 * 1024.0)).round() as u64)
    } else if bytes > 0 {
        format!("{}K", (bytes as f64 / 1024.0).round() as u64)
    } else {
        "0K".into()
    }
}

/// Where af would have exploded the app (`$TMPDIR/.vmc_<app>_files`), for the `fn` of the
/// resource fingerprints.
pub fn explode_dir(app: &str) -> PathBuf {
    std::env::temp_dir().join(format!(".vmc_{app}_files"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(bytes: Vec<u8>) -> Vec<String> {
        let archive = zip::ZipArchive::new(io::Cursor::new(bytes)).unwrap();
        let mut names: Vec<String> = archive
            .file_names()
            .map(|n| n.unwrap().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn logs_git_and_ignored_files_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("index.html"), "hi").unwrap();
        std::fs::write(root.join("debug.log"), "noise").unwrap();
        std::fs::create_dir_all(root.join("sub/deep")).unwrap();
        std::fs::write(root.join("sub/deep/trace.log"), "noise").unwrap();
        std::fs::write(root.join("sub/keep.txt"), "k").unwrap();
        std::fs::create_dir(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/HEAD"), "ref").unwrap();
        std::fs::create_dir(root.join("tmp")).unwrap();
        std::fs::write(root.join("tmp/x"), "x").unwrap();
        std::fs::write(root.join(".afignore"), "tmp/\n").unwrap();
        std::fs::write(root.join("backup~"), "old").unwrap();
        let bundle = Bundle::gather(root).unwrap();
        assert_eq!(
            names(bundle.zip().unwrap()),
            [
                ".afignore",
                "index.html",
                "sub/",
                "sub/deep/",
                "sub/keep.txt"
            ]
        );
    }

    #[test]
    fn an_empty_dir_gets_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = zip_dir(dir.path()).unwrap();
        assert_eq!(names(bytes), [".__empty__"]);
    }

    #[test]
    fn links_outside_the_app_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir(&app).unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::fs::write(app.join("inside"), "i").unwrap();
        std::os::unix::fs::symlink("../secret", app.join("leak")).unwrap();
        std::os::unix::fs::symlink("inside", app.join("fine")).unwrap();
        let error = Bundle::gather(&app).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Can't deploy application containing links 'leak' that reach outside its root '.'"
        );
        std::fs::remove_file(app.join("leak")).unwrap();
        let bundle = Bundle::gather(&app).unwrap();
        let (prints, total) = bundle.fingerprints("/tmp/.vmc_app_files");
        assert_eq!(total, 2);
        assert_eq!(prints[0].2, "/tmp/.vmc_app_files/fine");
    }

    #[test]
    fn a_war_in_the_directory_is_uploaded_instead() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        writer
            .start_file("WEB-INF/web.xml", zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(b"<web/>").unwrap();
        let war = writer.finish().unwrap().into_inner();
        std::fs::write(dir.path().join("app.war"), war).unwrap();
        std::fs::write(dir.path().join("README"), "r").unwrap();
        let bundle = Bundle::gather(dir.path()).unwrap();
        assert_eq!(names(bundle.zip().unwrap()), ["WEB-INF/web.xml"]);
    }

    #[test]
    fn upload_sizes_like_af() {
        assert_eq!(upload_size(300), "0K");
        assert_eq!(upload_size(600), "1K");
        assert_eq!(upload_size(3 * 1024 * 1024), "3M");
        assert_eq!(upload_size(0), "0K");
    }
}

#[cfg(test)]
mod info_zip_size {
    use super::*;

    #[test]
    fn the_zip_is_as_big_as_info_zips() {
        // `zip -y -q -r` of a.txt ("hello world hello world\n"), d/ and d/b.txt ("x\n") is 453
        // bytes (Info-ZIP 3.0): one deflated file, a directory, one stored file.
        let bundle = Bundle {
            entries: vec![
                Entry {
                    path: "a.txt".into(),
                    content: Content::File(b"hello world hello world\n".to_vec()),
                    mode: 0o644,
                },
                Entry {
                    path: "d".into(),
                    content: Content::Dir,
                    mode: 0o755,
                },
                Entry {
                    path: "d/b.txt".into(),
                    content: Content::File(b"x\n".to_vec()),
                    mode: 0o644,
                },
            ],
        };
        let size = bundle.zip().unwrap().len();
        assert_eq!(size, 453);
    }
}
