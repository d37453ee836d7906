//! Packing an app directory as `af` does before an upload: every file under the directory, except
//! `.git/`, `*.log` files (af's `zip -x \*.log`), editor backups and sockets, into a deflated zip
//! with unix permissions and symbolic links kept.

use std::io::{self, Write};
use std::path::Path;

use zip::write::SimpleFileOptions;

/// Zips `dir` into memory.
pub fn zip_dir(dir: &Path) -> io::Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    let mut any = false;
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| entry.file_name() != ".git");
    for entry in walker {
        let entry = entry.map_err(io::Error::other)?;
        let relative = entry.path().strip_prefix(dir).map_err(io::Error::other)?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let name = relative.to_string_lossy().replace('\\', "/");
        let file_name = entry.file_name().to_string_lossy();
        if file_name.ends_with(".log")
            || file_name.ends_with('~')
            || (file_name.starts_with('#') && file_name.ends_with('#'))
        {
            continue;
        }
        let file_type = entry.file_type();
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            entry
                .metadata()
                .map_err(io::Error::other)?
                .permissions()
                .mode()
        };
        let options = SimpleFileOptions::default().unix_permissions(mode & 0o777);
        if file_type.is_dir() {
            writer
                .add_directory(format!("{name}/"), options)
                .map_err(io::Error::other)?;
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            writer
                .add_symlink(name, target.to_string_lossy(), options)
                .map_err(io::Error::other)?;
            any = true;
        } else if file_type.is_file() {
            writer.start_file(name, options).map_err(io::Error::other)?;
            writer.write_all(&std::fs::read(entry.path())?)?;
            any = true;
        }
    }
    if !any {
        // af adds an empty marker so the zip is never empty.
        writer
            .start_file(".__empty__", SimpleFileOptions::default())
            .map_err(io::Error::other)?;
    }
    let cursor = writer.finish().map_err(io::Error::other)?;
    Ok(cursor.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn logs_and_git_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "hi").unwrap();
        std::fs::write(dir.path().join("debug.log"), "noise").unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "ref").unwrap();
        let bytes = zip_dir(dir.path()).unwrap();
        let mut archive = zip::ZipArchive::new(io::Cursor::new(bytes)).unwrap();
        let names: Vec<String> = archive
            .file_names()
            .map(|n| n.unwrap().into_owned())
            .collect();
        assert_eq!(names, vec!["index.html"]);
        let mut content = String::new();
        archive
            .by_name("index.html")
            .unwrap()
            .read_to_string(&mut content)
            .unwrap();
        assert_eq!(content, "hi");
    }

    #[test]
    fn an_empty_dir_gets_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = zip_dir(dir.path()).unwrap();
        let archive = zip::ZipArchive::new(io::Cursor::new(bytes)).unwrap();
        let names: Vec<String> = archive
            .file_names()
            .map(|n| n.unwrap().into_owned())
            .collect();
        assert_eq!(names, vec![".__empty__"]);
    }
}
