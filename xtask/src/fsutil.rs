//! File writes that leave unchanged files alone. cargo (and `wit_bindgen::generate!`, which
//! makes the process crates depend on every file in `target/wit`) decides what to recompile
//! from mtimes, so rewriting a file with the same bytes would rebuild every process crate.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` unless it already holds exactly them. Returns whether it wrote.
/// A write goes to a temporary sibling first and is then renamed over `path`, so an
/// interrupted build never leaves a truncated file behind.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool> {
    if let Ok(existing) = std::fs::read(path) {
        if existing == bytes {
            return Ok(false);
        }
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut tmp_name = OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(".xtask-tmp");
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("moving {} to {}", tmp.display(), path.display()))?;
    Ok(true)
}

/// Copies `from` to `to` unless `to` already has the same contents. Returns whether it wrote.
pub fn copy_if_changed(from: &Path, to: &Path) -> Result<bool> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write_if_changed(to, &bytes)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

/// Deletes every entry of `dir` (files and directories) whose name is not in `keep`.
/// Returns the names it removed, sorted.
pub fn remove_other_entries(dir: &Path, keep: &[OsString]) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if keep.contains(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("removing {}", path.display()))?;
        removed.push(entry.file_name().to_string_lossy().into_owned());
    }
    removed.sort();
    Ok(removed)
}

/// Makes `to` a copy of the directory tree `from`: changed files are rewritten, unchanged
/// ones keep their mtime, entries `from` lacks are deleted. Returns how many files it wrote.
pub fn mirror_dir(from: &Path, to: &Path) -> Result<usize> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let mut names = Vec::new();
    let mut written = 0;
    for entry in std::fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry.with_context(|| format!("listing {}", from.display()))?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            if dest.is_file() {
                std::fs::remove_file(&dest)
                    .with_context(|| format!("removing {}", dest.display()))?;
            }
            written += mirror_dir(&path, &dest)?;
        } else {
            if dest.is_dir() {
                std::fs::remove_dir_all(&dest)
                    .with_context(|| format!("removing {}", dest.display()))?;
            }
            written += usize::from(copy_if_changed(&path, &dest)?);
        }
        names.push(entry.file_name());
    }
    remove_other_entries(to, &names)?;
    Ok(written)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::{Duration, SystemTime};

    /// A fresh empty directory under the system temp dir.
    pub fn scratch(name: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("xtask-test-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A recognisable old mtime: if a file still has it, nobody wrote the file.
    pub const OLD: Duration = Duration::from_secs(1_000_000_000);

    pub fn age(path: &Path) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(SystemTime::UNIX_EPOCH + OLD)
            .unwrap();
    }

    pub fn untouched(path: &Path) -> bool {
        std::fs::metadata(path).unwrap().modified().unwrap() == SystemTime::UNIX_EPOCH + OLD
    }

    #[test]
    fn write_if_changed_writes_only_different_contents() {
        let dir = scratch("write");
        let path = dir.join("sub/a.wit");
        assert!(
            write_if_changed(&path, b"one").unwrap(),
            "new file is written"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"one");

        age(&path);
        assert!(!write_if_changed(&path, b"one").unwrap());
        assert!(untouched(&path), "same bytes: the mtime must not change");

        assert!(write_if_changed(&path, b"two").unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!untouched(&path));
        // Same length, different bytes; and an empty file.
        assert!(write_if_changed(&path, b"tw0").unwrap());
        assert!(write_if_changed(&path, b"").unwrap());
        assert!(!write_if_changed(&path, b"").unwrap());

        let names: Vec<_> = std::fs::read_dir(dir.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.wit"], "no temporary file is left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn copy_if_changed_keeps_identical_copies() {
        let dir = scratch("copy");
        let (from, to) = (dir.join("from"), dir.join("to"));
        std::fs::write(&from, "x").unwrap();
        assert!(copy_if_changed(&from, &to).unwrap());
        age(&to);
        assert!(!copy_if_changed(&from, &to).unwrap());
        assert!(untouched(&to));
        std::fs::write(&from, "y").unwrap();
        assert!(copy_if_changed(&from, &to).unwrap());
        assert_eq!(std::fs::read(&to).unwrap(), b"y");
        assert!(copy_if_changed(&dir.join("missing"), &to).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mirror_dir_updates_changed_and_removes_stale_entries() {
        let dir = scratch("mirror");
        let (from, to) = (dir.join("from"), dir.join("to"));
        std::fs::create_dir_all(from.join("assets")).unwrap();
        std::fs::write(from.join("index.html"), "<html>").unwrap();
        std::fs::write(from.join("assets/app.js"), "1").unwrap();
        assert_eq!(mirror_dir(&from, &to).unwrap(), 2);

        age(&to.join("index.html"));
        std::fs::write(from.join("assets/app.js"), "2").unwrap();
        std::fs::write(to.join("stale.js"), "old").unwrap();
        std::fs::create_dir_all(to.join("old-dir")).unwrap();
        assert_eq!(mirror_dir(&from, &to).unwrap(), 1);
        assert!(untouched(&to.join("index.html")));
        assert_eq!(std::fs::read(to.join("assets/app.js")).unwrap(), b"2");
        assert!(!to.join("stale.js").exists() && !to.join("old-dir").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
