//! An installable package: the zip `cargo xtask build` writes (the contents of `pkg/`), read
//! the way Hyperdrive's app-store installs it (platform notes §1.2).

use crate::bindings::wit::{Capability, ProcessId};
use crate::ids::messaging_cap;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a process does when it exits (`on_exit` in the manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnExitSpec {
    None,
    Restart,
    /// Requests sent on exit are not supported here; kept for reporting.
    Requests(Value),
}

/// One `pkg/manifest.json` entry.
#[derive(Debug, Clone)]
pub struct ManifestEntry {
    pub process_name: String,
    pub process_wasm_path: String,
    pub on_exit: OnExitSpec,
    pub request_networking: bool,
    pub request_capabilities: Vec<Value>,
    pub grant_capabilities: Vec<Value>,
    pub public: bool,
}

#[derive(Deserialize)]
struct RawEntry {
    process_name: String,
    process_wasm_path: String,
    #[serde(default)]
    on_exit: Option<Value>,
    #[serde(default)]
    request_networking: bool,
    #[serde(default)]
    request_capabilities: Vec<Value>,
    #[serde(default)]
    grant_capabilities: Vec<Value>,
    #[serde(default)]
    public: bool,
}

/// A package: its id, manifest and files.
#[derive(Debug, Clone)]
pub struct Package {
    pub package_name: String,
    pub publisher: String,
    pub manifest: Vec<ManifestEntry>,
    /// Every file of the zip by path (no leading `/`).
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Package {
    /// Read `<package>:<publisher>.zip` (the id comes from the file name, as kit names it).
    pub fn from_zip_file(path: &Path) -> Result<Package> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".zip"))
            .ok_or_else(|| anyhow!("{} is not named <package>:<publisher>.zip", path.display()))?;
        let (package, publisher) = name
            .split_once(':')
            .ok_or_else(|| anyhow!("{} is not named <package>:<publisher>.zip", path.display()))?;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Package::from_zip_bytes(package, publisher, &bytes)
            .with_context(|| format!("reading the package {}", path.display()))
    }

    pub fn from_zip_bytes(package: &str, publisher: &str, bytes: &[u8]) -> Result<Package> {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).context("not a zip")?;
        let mut files = BTreeMap::new();
        for i in 0..zip.len() {
            let mut f = zip.by_index(i)?;
            if f.is_dir() {
                continue;
            }
            let name = f.name().trim_start_matches('/').to_string();
            let mut data = Vec::new();
            f.read_to_end(&mut data)
                .with_context(|| format!("unpacking {name}"))?;
            files.insert(name, data);
        }
        let manifest = files
            .get("manifest.json")
            .ok_or_else(|| anyhow!("the zip has no manifest.json"))?;
        let manifest = parse_manifest(manifest)?;
        for e in &manifest {
            let path = e.process_wasm_path.trim_start_matches('/');
            if !files.contains_key(path) {
                bail!(
                    "manifest entry {:?} names {:?}, which is not in the zip",
                    e.process_name,
                    e.process_wasm_path
                );
            }
        }
        Ok(Package {
            package_name: package.to_string(),
            publisher: publisher.to_string(),
            manifest,
            files,
        })
    }

    /// `package:publisher`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.package_name, self.publisher)
    }

    /// The process id of a manifest entry.
    pub fn process_id(&self, process_name: &str) -> ProcessId {
        ProcessId::new(process_name, &self.package_name, &self.publisher)
    }

    pub fn wasm(&self, entry: &ManifestEntry) -> &[u8] {
        &self.files[entry.process_wasm_path.trim_start_matches('/')]
    }
}

pub fn parse_manifest(bytes: &[u8]) -> Result<Vec<ManifestEntry>> {
    let raw: Vec<RawEntry> =
        serde_json::from_slice(bytes).context("manifest.json is not a list of process entries")?;
    raw.into_iter()
        .map(|r| {
            ProcessId::parse(&format!("{}:x:y", r.process_name))
                .with_context(|| format!("process_name {:?}", r.process_name))?;
            let on_exit = match &r.on_exit {
                None => OnExitSpec::None,
                Some(Value::String(s)) if s == "None" => OnExitSpec::None,
                Some(Value::String(s)) if s == "Restart" => OnExitSpec::Restart,
                Some(Value::Object(o)) if o.contains_key("Requests") => {
                    OnExitSpec::Requests(o["Requests"].clone())
                }
                Some(v) => bail!("{}: unknown on_exit {v}", r.process_name),
            };
            Ok(ManifestEntry {
                process_name: r.process_name,
                process_wasm_path: r.process_wasm_path,
                on_exit,
                request_networking: r.request_networking,
                request_capabilities: r.request_capabilities,
                grant_capabilities: r.grant_capabilities,
                public: r.public,
            })
        })
        .collect()
}

/// A capability named in a manifest: a string `"proc:pkg:pub"` is the messaging capability on
/// that process; an object `{"process": "...", "params": <json>}` a capability with params.
/// Issued on `node`. Returns the issuer process and the capability.
pub fn manifest_cap(node: &str, v: &Value) -> Result<(ProcessId, Capability)> {
    match v {
        Value::String(s) => {
            let pid = ProcessId::parse(s)?;
            Ok((pid.clone(), messaging_cap(node, &pid)))
        }
        Value::Object(o) => {
            let process = o
                .get("process")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("capability {v} has no \"process\""))?;
            let pid = ProcessId::parse(process)?;
            let params = o.get("params").cloned().unwrap_or(Value::Null);
            Ok((
                pid.clone(),
                Capability {
                    issuer: crate::bindings::wit::Address::new(node, pid),
                    params: params.to_string(),
                },
            ))
        }
        _ => bail!("capability {v} is neither a process id nor an object"),
    }
}

/// `target/<package>:<publisher>.zip` of this workspace, or an error telling how to build it.
pub fn workspace_package_zip() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("test/emu is not inside the workspace"))?
        .to_path_buf();
    // `cargo xtask build` always writes the zip to <workspace>/target, whatever
    // CARGO_TARGET_DIR says (cargo's own build outputs follow that variable).
    let zip = root.join("target").join("p2p-patterns:p2p-patterns.os.zip");
    if !zip.is_file() {
        bail!(
            "{} is missing: the emulator runs the built package. Run `cargo xtask build` in {} \
             first (it builds pkg/*.wasm and the zip), then run these tests again.",
            zip.display(),
            root.display()
        );
    }
    Ok(zip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_entries_and_capabilities_parse() {
        let m = parse_manifest(
            br#"[{"process_name": "a", "process_wasm_path": "/a.wasm", "on_exit": "Restart",
                  "request_networking": true, "request_capabilities": ["sqlite:distro:sys",
                  {"process": "vfs:distro:sys", "params": {"root": true}}],
                  "grant_capabilities": [], "public": true},
                 {"process_name": "b", "process_wasm_path": "b.wasm", "on_exit": "None"}]"#,
        )
        .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].on_exit, OnExitSpec::Restart);
        assert!(m[0].request_networking && m[0].public);
        assert!(!m[1].public && m[1].on_exit == OnExitSpec::None);
        let (pid, cap) = manifest_cap("n.os", &m[0].request_capabilities[0]).unwrap();
        assert_eq!(pid.to_string(), "sqlite:distro:sys");
        assert_eq!(cap.params, "\"messaging\"");
        let (_, cap) = manifest_cap("n.os", &m[0].request_capabilities[1]).unwrap();
        assert_eq!(cap.params, r#"{"root":true}"#);
        assert!(parse_manifest(br#"[{"process_name": "a_b", "process_wasm_path": "x"}]"#).is_err());
    }

    #[test]
    fn a_zip_without_the_named_wasm_is_refused() {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.start_file("manifest.json", zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(
                &mut w,
                br#"[{"process_name": "a", "process_wasm_path": "/a.wasm"}]"#,
            )
            .unwrap();
            w.finish().unwrap();
        }
        let err = Package::from_zip_bytes("p", "q.os", buf.get_ref()).unwrap_err();
        assert!(err.to_string().contains("a.wasm"), "{err}");
    }
}
