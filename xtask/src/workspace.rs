//! What the build needs to know about the workspace: where it is, which crates are processes,
//! which package it is, and where cargo put `hyperware_process_lib`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;

/// The wasm target the processes are compiled for.
pub const WASM_TARGET: &str = "wasm32-wasip1";

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| xtask_dir.to_path_buf())
}

/// The cargo that runs us (`cargo xtask` sets `CARGO`), or `cargo` from `PATH`.
pub fn cargo_command() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `package_name` and `publisher` from metadata.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageId {
    pub package_name: String,
    pub publisher: String,
}

impl PackageId {
    /// Name of the installable zip, as kit names it: `<package>:<publisher>.zip`.
    pub fn zip_file_name(&self) -> String {
        format!("{}:{}.zip", self.package_name, self.publisher)
    }
}

pub fn read_package_id(root: &Path) -> Result<PackageId> {
    let path = root.join("metadata.json");
    let json = read_json(&path)?;
    let props = json
        .get("properties")
        .ok_or_else(|| anyhow!("{}: no `properties` object", path.display()))?;
    let field = |name: &str, allowed: fn(char) -> bool| -> Result<String> {
        let value = props
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{}: `properties.{name}` must be a string", path.display()))?;
        ensure!(
            !value.is_empty() && value.chars().all(allowed),
            "{}: `properties.{name}` = {value:?} has characters a package id may not contain",
            path.display()
        );
        Ok(value.to_string())
    };
    Ok(PackageId {
        package_name: field("package_name", |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        })?,
        publisher: field("publisher", |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
        })?,
    })
}

pub fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {} as JSON", path.display()))
}

/// Output of `cargo metadata` for the wasm target (so wasm-only deps such as
/// `hyperware_process_lib` are part of the resolve).
pub struct Metadata {
    json: Value,
}

impl Metadata {
    pub fn load(root: &Path) -> Result<Self> {
        let output = cargo_command()
            .current_dir(root)
            .args(["metadata", "--format-version", "1", "--filter-platform"])
            .arg(WASM_TARGET)
            .output()
            .context("running `cargo metadata`")?;
        if !output.status.success() {
            bail!(
                "`cargo metadata` failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let json = serde_json::from_slice(&output.stdout)
            .context("parsing the output of `cargo metadata`")?;
        Ok(Metadata { json })
    }

    fn packages(&self) -> impl Iterator<Item = &Value> {
        self.json
            .get("packages")
            .and_then(Value::as_array)
            .map(|v| v.iter())
            .into_iter()
            .flatten()
    }

    /// `hyperware-wit/hyperware.wit` inside the (single) resolved `hyperware_process_lib`.
    pub fn process_lib_wit(&self) -> Result<PathBuf> {
        let libs: Vec<&Value> = self
            .packages()
            .filter(|p| p.get("name").and_then(Value::as_str) == Some("hyperware_process_lib"))
            .collect();
        let versions: BTreeSet<&str> = libs
            .iter()
            .filter_map(|p| p.get("version").and_then(Value::as_str))
            .collect();
        match libs.as_slice() {
            [] => bail!(
                "`cargo metadata --filter-platform {WASM_TARGET}` lists no hyperware_process_lib; \
                 is it a dependency of the process crates?"
            ),
            [lib] => {
                let manifest = lib
                    .get("manifest_path")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("hyperware_process_lib has no manifest_path"))?;
                let wit = Path::new(manifest)
                    .parent()
                    .ok_or_else(|| anyhow!("odd manifest_path {manifest}"))?
                    .join("hyperware-wit")
                    .join("hyperware.wit");
                ensure!(
                    wit.is_file(),
                    "{} does not exist (hyperware_process_lib {} should ship it)",
                    wit.display(),
                    versions.iter().next().copied().unwrap_or("?")
                );
                Ok(wit)
            }
            _ => bail!(
                "several hyperware_process_lib versions are resolved ({}); \
                 all processes must use one",
                versions.into_iter().collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// The workspace package whose manifest is `manifest` (compared after canonicalizing).
    fn package_at(&self, manifest: &Path) -> Option<&Value> {
        let wanted = manifest.canonicalize().ok()?;
        self.packages().find(|p| {
            p.get("manifest_path")
                .and_then(Value::as_str)
                .and_then(|m| Path::new(m).canonicalize().ok())
                .is_some_and(|m| m == wanted)
        })
    }
}

/// A crate built into a component: a process crate (a top-level directory holding
/// `src/lib.rs`), or an example app under `examples/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Directory, relative to the workspace root: `presence`, or `examples/presence-watch`.
    pub dir: String,
    /// Cargo package name (for `-p`).
    pub crate_name: String,
    /// Library target name, i.e. the core module's file stem (`-` → `_`).
    pub lib_name: String,
}

impl Process {
    /// `target/wasm32-wasip1/release/<lib>.wasm`.
    pub fn core_wasm(&self, target_dir: &Path) -> PathBuf {
        target_dir
            .join(WASM_TARGET)
            .join("release")
            .join(format!("{}.wasm", self.lib_name))
    }

    /// File name of the component inside `pkg/`: the crate name with `_` → `-`.
    pub fn component_file_name(&self) -> String {
        format!("{}.wasm", self.crate_name.replace('_', "-"))
    }
}

/// Every top-level directory of `root` with `src/lib.rs`, sorted by name (the rule kit uses).
pub fn discover_processes(root: &Path, metadata: &Metadata) -> Result<Vec<Process>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        let path = entry.path();
        if path.is_dir() && path.join("src").join("lib.rs").is_file() {
            let name = entry
                .file_name()
                .into_string()
                .map_err(|n| anyhow!("directory name {n:?} is not UTF-8"))?;
            dirs.push(name);
        }
    }
    dirs.sort();

    let mut processes = Vec::new();
    for dir in dirs {
        let manifest = root.join(&dir).join("Cargo.toml");
        let package = metadata.package_at(&manifest).ok_or_else(|| {
            anyhow!(
                "{dir}/src/lib.rs exists, so {dir}/ is a process crate, but {} is not a \
                 workspace member (add it to [workspace] members, or move its library root)",
                manifest.display()
            )
        })?;
        processes.push(wasm_crate(dir, &manifest, package)?);
    }
    Ok(processes)
}

/// The folder of example apps: each `examples/<name>/` with a Cargo.toml is a workspace
/// member built for wasm32 like a process, but not part of the package (kit only looks at
/// top-level folders, so it never sees them).
pub const EXAMPLES_DIR: &str = "examples";

/// Every `examples/<name>/` holding a Cargo.toml, sorted by name; each must be a workspace
/// member with a cdylib target named like its folder. `dir` is `examples/<name>`.
pub fn discover_examples(root: &Path, metadata: &Metadata) -> Result<Vec<Process>> {
    let examples = root.join(EXAMPLES_DIR);
    if !examples.is_dir() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for entry in
        std::fs::read_dir(&examples).with_context(|| format!("listing {}", examples.display()))?
    {
        let entry = entry.with_context(|| format!("listing {}", examples.display()))?;
        if entry.path().join("Cargo.toml").is_file() {
            let name = entry
                .file_name()
                .into_string()
                .map_err(|n| anyhow!("directory name {n:?} is not UTF-8"))?;
            names.push(name);
        }
    }
    names.sort();
    let mut found = Vec::new();
    for name in names {
        let dir = format!("{EXAMPLES_DIR}/{name}");
        let manifest = root.join(&dir).join("Cargo.toml");
        let package = metadata.package_at(&manifest).ok_or_else(|| {
            anyhow!(
                "{} is not a workspace member; add \"{dir}\" to [workspace] members",
                manifest.display()
            )
        })?;
        found.push(wasm_crate(dir, &manifest, package)?);
    }
    Ok(found)
}

/// A crate built into a component: named like its folder, with a cdylib target.
fn wasm_crate(dir: String, manifest: &Path, package: &Value) -> Result<Process> {
    let folder = dir.rsplit('/').next().unwrap_or(&dir).to_string();
    let crate_name = package
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{}: package without a name", manifest.display()))?
        .to_string();
    ensure!(
        crate_name.replace('_', "-") == folder.replace('_', "-"),
        "directory {dir}/ holds crate `{crate_name}`; the directory must be named \
         like the crate (kit looks for target/{WASM_TARGET}/release/<dir>.wasm)"
    );
    let lib = package
        .get("targets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|t| has_kind(t, "cdylib"))
        .ok_or_else(|| {
            anyhow!(
                "crate `{crate_name}` has no cdylib target; add \
                 `[lib] crate-type = [\"cdylib\"]` to {}",
                manifest.display()
            )
        })?;
    let lib_name = lib
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(&crate_name)
        .replace('-', "_");
    Ok(Process {
        dir,
        crate_name,
        lib_name,
    })
}

fn has_kind(target: &Value, kind: &str) -> bool {
    target
        .get("kind")
        .and_then(Value::as_array)
        .is_some_and(|kinds| kinds.iter().any(|k| k.as_str() == Some(kind)))
}

/// The `process_wasm_path`s of pkg/manifest.json, without the leading `/`.
pub fn manifest_wasm_files(manifest: &Value) -> Result<Vec<String>> {
    let entries = manifest
        .as_array()
        .ok_or_else(|| anyhow!("pkg/manifest.json must be a JSON array"))?;
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let path = entry
                .get("process_wasm_path")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("pkg/manifest.json entry {i} has no process_wasm_path"))?;
            Ok(path.trim_start_matches('/').to_string())
        })
        .collect()
}

/// Every manifest entry must name a wasm some process crate builds. Returns the components
/// that are built but not started by the manifest (child processes), for information.
pub fn check_manifest_against(
    manifest_files: &[String],
    processes: &[Process],
) -> Result<Vec<String>> {
    let built: BTreeSet<String> = processes.iter().map(Process::component_file_name).collect();
    let missing: Vec<&String> = manifest_files
        .iter()
        .filter(|f| !built.contains(f.as_str()))
        .collect();
    ensure!(
        missing.is_empty(),
        "pkg/manifest.json starts {}, but no process crate builds it (built: {})",
        missing
            .iter()
            .map(|f| format!("/{f}"))
            .collect::<Vec<_>>()
            .join(", "),
        built.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(built
        .into_iter()
        .filter(|b| !manifest_files.contains(b))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(name: &str) -> Process {
        Process {
            dir: name.into(),
            crate_name: name.into(),
            lib_name: name.replace('-', "_"),
        }
    }

    #[test]
    fn manifest_must_match_built_processes() {
        let manifest = serde_json::json!([
            {"process_name": "a", "process_wasm_path": "/a-b.wasm"},
            {"process_name": "c", "process_wasm_path": "c.wasm"},
        ]);
        let files = manifest_wasm_files(&manifest).unwrap();
        assert_eq!(files, ["a-b.wasm", "c.wasm"]);

        let extra =
            check_manifest_against(&files, &[process("a-b"), process("c"), process("w")]).unwrap();
        assert_eq!(extra, ["w.wasm"]);

        let err = check_manifest_against(&files, &[process("a-b")]).unwrap_err();
        assert!(err.to_string().contains("/c.wasm"), "{err}");
    }

    #[test]
    fn component_names_follow_kit() {
        let p = Process {
            dir: "my_proc".into(),
            crate_name: "my_proc".into(),
            lib_name: "my_proc".into(),
        };
        assert_eq!(p.component_file_name(), "my-proc.wasm");
        assert_eq!(
            p.core_wasm(Path::new("t")),
            Path::new("t/wasm32-wasip1/release/my_proc.wasm")
        );
    }

    #[test]
    fn this_workspace_has_processes_and_a_package_id() {
        let root = workspace_root();
        let id = read_package_id(&root).unwrap();
        assert!(!id.package_name.is_empty() && !id.publisher.is_empty());
        let metadata = Metadata::load(&root).unwrap();
        let processes = discover_processes(&root, &metadata).unwrap();
        assert!(!processes.is_empty());
        // The library crate and the tools are never processes.
        for p in &processes {
            assert!(root.join(&p.dir).join("src/lib.rs").is_file());
            assert_ne!(p.crate_name, "xtask");
        }
        let wit = metadata.process_lib_wit().unwrap();
        let text = std::fs::read_to_string(wit).unwrap();
        assert!(text.contains("package hyperware:process@1.0.0;"));

        // The example apps are built for wasm32 too, but they are no processes of the package.
        let examples = discover_examples(&root, &metadata).unwrap();
        let names: Vec<&str> = examples.iter().map(|e| e.crate_name.as_str()).collect();
        assert_eq!(names, ["http-echo", "presence-watch"]);
        assert_eq!(examples[1].dir, "examples/presence-watch");
        assert_eq!(examples[1].component_file_name(), "presence-watch.wasm");
        assert!(processes
            .iter()
            .all(|p| p.crate_name != "presence-watch" && p.crate_name != "http-echo"));
        let manifest = read_json(&root.join("pkg/manifest.json")).unwrap();
        assert!(!manifest_wasm_files(&manifest)
            .unwrap()
            .contains(&"presence-watch.wasm".to_string()));
    }
}
