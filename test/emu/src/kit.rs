//! `kit run-tests` on emulated nodes: the same `test/tests.toml`, the same packages (the
//! zips `cargo xtask build` writes), the same tester protocol.
//!
//! For each `[[tests]]` entry: one node per `[[tests.nodes]]` (`fake_node_name`, `.os`
//! appended without a dot), every setup package with `run = true` installed on every node
//! from its zip (as kit's app-store install does), kit's tester `tester:tester:sys` on every
//! node, and each test package's wasm at `/tester:sys/tests/<name>.wasm` on the first node.
//! Then what Hyperdrive's tester does on the first node: spawn the test (`<n>:tester:sys`,
//! with the manifest's requested capabilities and the tester's, and its grants), send it
//! `{"Run": {"input_node_names", "test_names", "test_timeout"}}` and wait for
//! `{"Run": {"Ok": null}}` or `{"Run": {"Err": {"test", "file", "line", "column"}}}`. The
//! other nodes' testers answer `Ok` without running anything, as on a node.

use crate::bindings::wit::{Address, Capability, OnExit, ProcessId};
use crate::emulator::Emulator;
use crate::ids::{messaging_cap, network_cap};
use crate::kernel::{AppSpec, Crash, EmuConfig, LogLine};
use crate::package::{manifest_cap, Package};
use anyhow::{anyhow, bail, Context as _, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Deserialize)]
struct TestsToml {
    tests: Vec<TestEntry>,
}

#[derive(Deserialize)]
struct TestEntry {
    #[serde(default)]
    setup_packages: Vec<SetupPackage>,
    test_package_paths: Vec<String>,
    timeout_secs: u64,
    nodes: Vec<NodeEntry>,
}

#[derive(Deserialize)]
struct SetupPackage {
    path: String,
    run: bool,
}

#[derive(Deserialize)]
struct NodeEntry {
    fake_node_name: String,
}

/// One `[[tests]]` entry, resolved to built packages.
#[derive(Debug, Clone)]
pub struct KitTest {
    pub nodes: Vec<String>,
    /// Setup packages to install and start on every node.
    pub setup: Vec<Package>,
    /// Test packages: (test name, package).
    pub tests: Vec<(String, Package)>,
    pub timeout_secs: u64,
}

/// What the tester reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// `FAIL: <test> <file>:<line>:<column>`.
    Fail {
        test: String,
        file: String,
        line: u32,
        column: u32,
    },
    /// No answer, or no tester answer (with what came instead).
    NoVerdict(String),
}

/// One emulated `kit run-tests` entry's outcome.
#[derive(Debug, Clone)]
pub struct KitReport {
    pub nodes: Vec<String>,
    pub verdict: Verdict,
    /// Every process that panicked or trapped, with its message.
    pub crashes: Vec<Crash>,
    /// The test processes' own lines (`p2p-patterns-test: presence passed`).
    pub test_lines: Vec<LogLine>,
    pub virtual_ms: u64,
    pub real: Duration,
}

impl KitReport {
    /// Kit's last line, with the crashes after a failure.
    pub fn summary(&self) -> String {
        let mut out = match &self.verdict {
            Verdict::Pass => "PASS".to_string(),
            Verdict::Fail {
                test,
                file,
                line,
                column,
            } => format!("FAIL: {test} {file}:{line}:{column}"),
            Verdict::NoVerdict(why) => format!("FAIL: no verdict: {why}"),
        };
        for c in &self.crashes {
            out.push_str(&format!(
                "\n  {} on {} crashed at {} ms: {}",
                c.process, c.node, c.at, c.message
            ));
        }
        out
    }
}

/// A built package for a package folder: `<workspace>/target/<package>:<publisher>.zip`
/// (from the folder's metadata.json).
fn built_package(workspace: &Path, dir: &Path) -> Result<Package> {
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("metadata.json"))
            .with_context(|| format!("{}/metadata.json", dir.display()))?,
    )?;
    let props = &meta["properties"];
    let (Some(name), Some(publisher)) =
        (props["package_name"].as_str(), props["publisher"].as_str())
    else {
        bail!(
            "{}/metadata.json has no package_name and publisher",
            dir.display()
        );
    };
    let zip = workspace
        .join("target")
        .join(format!("{name}:{publisher}.zip"));
    if !zip.is_file() {
        bail!(
            "{} is missing: run `cargo xtask build` first (it builds {})",
            zip.display(),
            dir.display()
        );
    }
    Package::from_zip_file(&zip)
}

/// Read `tests.toml` (paths in it are relative to its folder; packages come from
/// `<workspace>/target`).
pub fn load(tests_toml: &Path, workspace: &Path) -> Result<Vec<KitTest>> {
    let text = std::fs::read_to_string(tests_toml)
        .with_context(|| format!("reading {}", tests_toml.display()))?;
    let parsed: TestsToml =
        toml::from_str(&text).with_context(|| format!("parsing {}", tests_toml.display()))?;
    let base = tests_toml.parent().unwrap_or(Path::new("."));
    let dir = |p: &str| -> PathBuf { base.join(p) };
    parsed
        .tests
        .into_iter()
        .map(|t| {
            let nodes = t
                .nodes
                .iter()
                .map(|n| {
                    if n.fake_node_name.contains('.') {
                        n.fake_node_name.clone()
                    } else {
                        format!("{}.os", n.fake_node_name)
                    }
                })
                .collect();
            let setup = t
                .setup_packages
                .iter()
                .filter(|s| s.run)
                .map(|s| built_package(workspace, &dir(&s.path)))
                .collect::<Result<_>>()?;
            let tests = t
                .test_package_paths
                .iter()
                .map(|p| {
                    let d = dir(p);
                    let name = d
                        .file_name()
                        .and_then(|n| n.to_str())
                        .ok_or_else(|| anyhow!("test package path {p:?}"))?
                        .to_string();
                    Ok((name, built_package(workspace, &d)?))
                })
                .collect::<Result<_>>()?;
            Ok(KitTest {
                nodes,
                setup,
                tests,
                timeout_secs: t.timeout_secs,
            })
        })
        .collect()
}

/// The tester's process id.
pub fn tester_pid() -> ProcessId {
    ProcessId::new("tester", "tester", "sys")
}

/// Run one entry on fresh emulated nodes. `cache_dir` keeps compiled components.
pub fn run(test: &KitTest, cfg: EmuConfig, cache_dir: Option<PathBuf>) -> Result<KitReport> {
    let real = Instant::now();
    if test.nodes.is_empty() {
        bail!("no [[tests.nodes]]");
    }
    let emu = Emulator::new(cfg)?;
    if let Some(d) = cache_dir {
        emu.set_cache_dir(d);
    }
    let tester = tester_pid();
    for node in &test.nodes {
        emu.add_node(node)?;
        for p in &test.setup {
            emu.install(node, p)
                .with_context(|| format!("installing {} on {node}", p.id()))?;
        }
        let spec = AppSpec {
            public: false,
            request_networking: true,
            grants: vec![],
            request_capabilities: vec![],
            auto_reply: None,
        };
        emu.add_app(node, &tester.to_string(), spec)?;
    }
    let master = test.nodes[0].clone();
    let test_names: Vec<String> = test.tests.iter().map(|(n, _)| n.clone()).collect();
    let run_body = serde_json::to_vec(&serde_json::json!({"Run": {
        "input_node_names": test.nodes,
        "test_names": test_names,
        "test_timeout": test.timeout_secs,
    }}))?;
    let mut verdict = Verdict::Pass;
    for (name, package) in &test.tests {
        let [entry] = package.manifest.as_slice() else {
            bail!("test package {name} must have exactly one manifest entry");
        };
        let path = format!("tester:sys/tests/{name}.wasm");
        emu.write_file(&master, &path, package.wasm(entry).to_vec());
        // What the tester hands the spawned test: the manifest's requested capabilities
        // and its own; the manifest's grants (the tester holds what it passes on).
        let mut request: Vec<Capability> = vec![network_cap(&master)];
        for v in &entry.request_capabilities {
            request.push(manifest_cap(&master, v)?.1);
        }
        let grants: Vec<(ProcessId, String)> = entry
            .grant_capabilities
            .iter()
            .map(|v| {
                let (pid, cap) = manifest_cap(&master, v)?;
                // A grant string is messaging on the test itself.
                Ok((pid, cap.params))
            })
            .collect::<Result<_>>()?;
        request.push(messaging_cap(&master, &tester));
        let child = emu.spawn_for_test(&master, &tester, &path, request, grants)?;
        let test_addr = Address::new(&master, child);
        let from = Address::new(&master, tester.clone());
        let answer = emu.request(&from, &test_addr, run_body.clone(), test.timeout_secs);
        verdict = match answer {
            Err(kind) => Verdict::NoVerdict(format!("{name} did not answer Run: {kind:?}")),
            Ok(reply) => {
                let v = reply.json();
                match v.get("Run") {
                    Some(r) if r.get("Ok").is_some() => Verdict::Pass,
                    Some(r) => match r.get("Err") {
                        Some(f) => Verdict::Fail {
                            test: f["test"].as_str().unwrap_or(name).to_string(),
                            file: f["file"].as_str().unwrap_or("?").to_string(),
                            line: f["line"].as_u64().unwrap_or(0) as u32,
                            column: f["column"].as_u64().unwrap_or(0) as u32,
                        },
                        None => Verdict::NoVerdict(format!("{name} answered {v}")),
                    },
                    None => Verdict::NoVerdict(format!("{name} answered {v}")),
                }
            }
        };
        if verdict != Verdict::Pass {
            break;
        }
    }
    let tester_package = tester.package_id();
    let test_lines = emu
        .logs()
        .into_iter()
        .filter(|l| l.process.ends_with(&tester_package) && l.process != tester.to_string())
        .collect();
    Ok(KitReport {
        nodes: test.nodes.clone(),
        verdict,
        crashes: emu.crashes(),
        test_lines,
        virtual_ms: emu.now(),
        real: real.elapsed(),
    })
}

/// Spawn on behalf of the test runner (the tester's `spawn`).
impl Emulator {
    pub(crate) fn spawn_for_test(
        &self,
        node: &str,
        parent: &ProcessId,
        wasm_path: &str,
        request: Vec<Capability>,
        grants: Vec<(ProcessId, String)>,
    ) -> Result<ProcessId> {
        self.with_world(|w| {
            if let Some(p) = w.nodes.get_mut(node).and_then(|n| n.proc_mut(parent)) {
                for c in &request {
                    p.add_cap(c.clone());
                }
            }
            w.spawn(
                node,
                parent,
                None,
                wasm_path,
                OnExit::None,
                request,
                grants,
                false,
            )
            .map_err(|e| anyhow!("spawning {wasm_path}: {e:?}"))
        })
    }
}
