//! Deterministic zips of a directory's contents: entries sorted by path, Deflate, unix mode
//! 0o755, one fixed timestamp. The same tree always gives the same bytes, so the package
//! hash only changes when the package does.

use std::io::{Cursor, Write};
use std::path::Path;

use anyhow::{anyhow, ensure, Context, Result};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::fsutil;

/// Timestamp on every entry (the one kit uses).
pub const FIXED_MTIME: (u16, u8, u8, u8, u8, u8) = (2023, 6, 19, 0, 0, 0);
pub const UNIX_MODE: u32 = 0o755;

/// Zips the contents of `src` (the zip's root is inside `src`) into `dest`, which may live
/// inside `src` (it is never part of the archive). `dest` is only rewritten if its bytes
/// change; returns whether it was.
pub fn zip_dir(src: &Path, dest: &Path) -> Result<bool> {
    ensure!(src.is_dir(), "{} is not a directory", src.display());
    let mut entries = Vec::new();
    collect(src, src, &mut entries)?;
    if let Ok(skip) = dest.strip_prefix(src) {
        entries.retain(|(rel, _)| Path::new(rel) != skip);
    }
    entries.sort();

    let (y, mo, d, h, mi, s) = FIXED_MTIME;
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(UNIX_MODE)
        .last_modified_time(
            DateTime::from_date_and_time(y, mo, d, h, mi, s)
                .map_err(|e| anyhow!("bad fixed zip timestamp: {e}"))?,
        );

    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (rel, is_dir) in &entries {
        if *is_dir {
            zip.add_directory(rel.as_str(), options)
                .with_context(|| format!("adding directory {rel} to the zip"))?;
        } else {
            let path = src.join(rel);
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            zip.start_file(rel.as_str(), options)
                .with_context(|| format!("adding {rel} to the zip"))?;
            zip.write_all(&bytes)
                .with_context(|| format!("compressing {rel}"))?;
        }
    }
    let bytes = zip.finish().context("finishing the zip")?.into_inner();
    fsutil::write_if_changed(dest, &bytes).with_context(|| format!("writing {}", dest.display()))
}

/// Relative paths (with `/`) of everything under `dir`, directories flagged `true`.
fn collect(base: &Path, dir: &Path, out: &mut Vec<(String, bool)>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        let rel = path
            .strip_prefix(base)
            .with_context(|| format!("{} is not under {}", path.display(), base.display()))?
            .components()
            .map(|c| {
                c.as_os_str()
                    .to_str()
                    .ok_or_else(|| anyhow!("non-UTF-8 file name {}", path.display()))
            })
            .collect::<Result<Vec<_>>>()?
            .join("/");
        // `metadata` follows symlinks, so linked files are stored as files.
        let meta = std::fs::metadata(&path).with_context(|| format!("stat {}", path.display()))?;
        if meta.is_dir() {
            out.push((format!("{rel}/"), true));
            collect(base, &path, out)?;
        } else {
            out.push((rel, false));
        }
    }
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::tests::{age, scratch, untouched};
    use std::fs::File;
    use std::io::Read;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn fill_pkg(pkg: &Path) {
        write(&pkg.join("manifest.json"), "[]");
        write(&pkg.join("b.wasm"), "component bytes b");
        write(&pkg.join("a.wasm"), "component bytes a");
        write(&pkg.join("ui/index.html"), "<html></html>");
        write(&pkg.join("ui/assets/app.js"), "console.log(1)");
    }

    fn names(zip_path: &Path) -> Vec<String> {
        let archive = zip::ZipArchive::new(File::open(zip_path).unwrap()).unwrap();
        archive.file_names().map(String::from).collect()
    }

    #[test]
    fn zip_is_deterministic_and_rooted_inside_the_dir() {
        let dir = scratch("zip");
        let pkg = dir.join("pkg");
        fill_pkg(&pkg);
        let first = dir.join("out/one.zip");
        zip_dir(&pkg, &first).unwrap();

        // Rewrite a file (new mtime, same bytes) and zip again: identical archive.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(&pkg.join("a.wasm"), "component bytes a");
        let second = dir.join("two.zip");
        zip_dir(&pkg, &second).unwrap();
        let (one, two) = (
            std::fs::read(&first).unwrap(),
            std::fs::read(&second).unwrap(),
        );
        assert_eq!(sha256_hex(&one), sha256_hex(&two));

        // Root of the archive is the inside of pkg/, entries sorted.
        let listed = names(&first);
        assert!(listed.contains(&"manifest.json".to_string()), "{listed:?}");
        assert!(listed.iter().all(|n| !n.starts_with("pkg/")), "{listed:?}");
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(listed, sorted);
        assert!(
            listed.contains(&"ui/assets/app.js".to_string()),
            "{listed:?}"
        );

        // Metadata and contents survive.
        let mut archive = zip::ZipArchive::new(File::open(&first).unwrap()).unwrap();
        let mut entry = archive.by_name("manifest.json").unwrap();
        assert_eq!(entry.compression(), CompressionMethod::Deflated);
        assert_eq!(entry.unix_mode().map(|m| m & 0o777), Some(UNIX_MODE));
        let t = entry.last_modified().unwrap();
        assert_eq!((t.year(), t.month(), t.day()), (2023, 6, 19));
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        assert_eq!(text, "[]");
        drop(entry);

        // A content change changes the hash.
        write(&pkg.join("a.wasm"), "component bytes A");
        zip_dir(&pkg, &second).unwrap();
        assert_ne!(
            sha256_hex(&one),
            sha256_hex(&std::fs::read(&second).unwrap())
        );

        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn zip_inside_its_own_dir_does_not_include_itself() {
        let dir = scratch("selfzip");
        fill_pkg(&dir);
        let dest = dir.join("api.zip");
        zip_dir(&dir, &dest).unwrap();
        zip_dir(&dir, &dest).unwrap();
        let listed = names(&dest);
        assert!(!listed
            .iter()
            .any(|n| n.ends_with(".zip") || n.contains("tmp")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn zip_is_rewritten_only_when_its_bytes_change() {
        let dir = scratch("rezip");
        let pkg = dir.join("pkg");
        fill_pkg(&pkg);
        let dest = dir.join("p.zip");
        assert!(zip_dir(&pkg, &dest).unwrap());
        age(&dest);
        // Same contents (even rewritten with a new mtime): the zip is left alone.
        write(&pkg.join("a.wasm"), "component bytes a");
        assert!(!zip_dir(&pkg, &dest).unwrap());
        assert!(untouched(&dest));
        write(&pkg.join("a.wasm"), "component bytes A");
        assert!(zip_dir(&pkg, &dest).unwrap());
        assert!(!untouched(&dest));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn zip_of_missing_dir_is_an_error() {
        let dir = scratch("missing");
        let err = zip_dir(&dir.join("nope"), &dir.join("x.zip")).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
