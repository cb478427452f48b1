//! `cargo xtask build`: the installable package, built offline without kit.
//!
//! 1. `target/wit/` = process_lib's `hyperware.wit` + `api/*.wit`
//! 2. `cargo build --release --target wasm32-wasip1` of every process crate
//! 3. core module → component (`pkg/<process>.wasm`), validated
//! 4. interface check of each component
//! 5. optional `ui/` → `pkg/ui/`
//! 6. `api/` → `pkg/api.zip`, contents of `pkg/` → `target/<package>:<publisher>.zip`
//!
//! Example apps (`examples/<name>/`, see [`workspace::discover_examples`]) are compiled in a
//! second wasm build, made components and interface-checked the same way, and written to
//! `target/examples/<name>.wasm`: checked, never put into `pkg/` or the package zip.
//!
//! Every file is written only when its contents change. `target/wit` in particular is an
//! input of every process crate (`wit_bindgen::generate!` tracks its files), so rewriting it
//! with the same bytes would make cargo recompile all of them on every build.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::component;
use crate::fsutil;
use crate::pkgzip;
use crate::prereq::Prereq;
use crate::wit_check::{self, InterfaceReport};
use crate::workspace::{self, Metadata, PackageId, Process, WASM_TARGET};

pub struct BuiltComponent {
    pub file_name: String,
    pub size: u64,
    pub report: InterfaceReport,
}

pub struct BuildOutput {
    pub components: Vec<BuiltComponent>,
    /// Example apps' components (in `target/examples/`, not in the package).
    pub examples: Vec<BuiltComponent>,
    /// The kit test package's component (`test/p2p-patterns-test/pkg/`), if present.
    pub test_package: Option<BuiltComponent>,
    /// What the wasm build recompiled, e.g. `up to date, nothing recompiled`.
    pub wasm_build: String,
    pub zip_path: PathBuf,
    pub zip_sha256: String,
    pub zip_size: u64,
    pub elapsed: Duration,
}

/// What `cargo xtask build` needs from the machine.
pub const NEEDS: &[Prereq] = &[Prereq::Rust, Prereq::WasmTarget];

/// `cargo xtask build`.
pub fn build(root: &Path) -> Result<BuildOutput> {
    let started = Instant::now();
    let plan = Plan::load(root)?;
    let recompiled = plan.compile()?;
    plan.package(recompiled, started)
}

/// What a build works on, read once: the package id, the process crates, the paths.
pub struct Plan {
    root: PathBuf,
    package: PackageId,
    processes: Vec<Process>,
    /// Example apps: built and checked, not packaged.
    examples: Vec<Process>,
    hyperware_wit: PathBuf,
    pkg: PathBuf,
    target: PathBuf,
}

impl Plan {
    pub fn load(root: &Path) -> Result<Plan> {
        let package = workspace::read_package_id(root)?;
        let metadata = Metadata::load(root)?;
        let processes = workspace::discover_processes(root, &metadata)?;
        let examples = workspace::discover_examples(root, &metadata)?;
        ensure!(
            !processes.is_empty(),
            "no process crates: no top-level directory of {} has src/lib.rs",
            root.display()
        );
        let pkg = root.join("pkg");
        let manifest = workspace::read_json(&pkg.join("manifest.json"))?;
        let not_started = workspace::check_manifest_against(
            &workspace::manifest_wasm_files(&manifest)?,
            &processes,
        )?;
        println!(
            "xtask build: package {}:{} with processes {}",
            package.package_name,
            package.publisher,
            process_list(&processes)
        );
        for name in &not_started {
            println!("note: {name} is built but not started by pkg/manifest.json (child process?)");
        }
        if !examples.is_empty() {
            println!(
                "xtask build: example apps {} (built and checked, not packaged)",
                process_list(&examples)
            );
        }
        Ok(Plan {
            root: root.to_path_buf(),
            package,
            processes,
            examples,
            hyperware_wit: metadata.process_lib_wit()?,
            pkg,
            target: root.join("target"),
        })
    }

    /// Every crate the wasm build compiles into a component: processes, then examples.
    pub fn wasm_crates(&self) -> Vec<Process> {
        self.processes
            .iter()
            .chain(&self.examples)
            .cloned()
            .collect()
    }

    /// Steps 1–2: `target/wit` and the wasm build. Returns the targets cargo recompiled.
    pub fn compile(&self) -> Result<Vec<String>> {
        step("assembling target/wit");
        assemble_wit(&self.root, &self.target.join("wit"), &self.hyperware_wit)?;

        step(&format!(
            "compiling {} for {WASM_TARGET} (release)",
            process_list(&self.processes)
        ));
        if !self.target.join(WASM_TARGET).join("release").is_dir() {
            println!(
                "first {WASM_TARGET} build in {}: this also compiles hyperware_process_lib and \
                 its dependencies, which takes several minutes",
                self.target.display()
            );
        }
        let mut recompiled = cargo_build_processes(&self.root, &self.target, &self.processes)?;
        if !self.examples.is_empty() {
            // A build of its own, so the processes are built exactly as without examples.
            step(&format!(
                "compiling example apps {} for {WASM_TARGET} (release)",
                process_list(&self.examples)
            ));
            recompiled.extend(cargo_build_processes(
                &self.root,
                &self.target,
                &self.examples,
            )?);
            recompiled.sort();
            recompiled.dedup();
        }
        if let Some(test) = self.test_package() {
            step(&format!(
                "compiling the kit test package {} for {WASM_TARGET} (release)",
                TEST_PACKAGE_DIR
            ));
            assemble_wit_from(
                &[test.join("api")],
                &test.join("target").join("wit"),
                &self.hyperware_wit,
            )?;
            recompiled.extend(cargo_build_processes(
                &test,
                &self.target,
                &[test_process()],
            )?);
            recompiled.sort();
            recompiled.dedup();
        }
        println!(
            "wasm build: {}",
            describe_recompiled(&recompiled, &self.wasm_crates())
        );
        Ok(recompiled)
    }

    /// `test/p2p-patterns-test`, the kit test package (its own workspace), if present.
    fn test_package(&self) -> Option<PathBuf> {
        let dir = self.root.join(TEST_PACKAGE_DIR);
        dir.join("Cargo.toml").is_file().then_some(dir)
    }

    /// The test package's component in its `pkg/`, checked, and its zip
    /// `target/p2p-patterns-test:<publisher>.zip` (what the emulator's kit step installs).
    fn build_test_package(&self) -> Result<Option<BuiltComponent>> {
        let Some(test) = self.test_package() else {
            return Ok(None);
        };
        let process = test_process();
        let core_path = process.core_wasm(&self.target);
        let core = std::fs::read(&core_path)
            .with_context(|| format!("reading {}", core_path.display()))?;
        let bytes = component::componentize(&core)
            .with_context(|| format!("turning {} into a component", core_path.display()))?;
        let report = wit_check::check_component(&bytes)
            .with_context(|| format!("interface check of {TEST_PACKAGE_DIR}"))?;
        let file_name = process.component_file_name();
        let out = test.join("pkg").join(&file_name);
        let written = fsutil::write_if_changed(&out, &bytes)
            .with_context(|| format!("writing {}", out.display()))?;
        let package = workspace::read_package_id(&test)?;
        let zip = self.target.join(package.zip_file_name());
        pkgzip::zip_dir(&test.join("pkg"), &zip)?;
        println!(
            "test package {TEST_PACKAGE_DIR}: {} bytes ({:.1} KiB){}; interface check OK: {report}; zip {}",
            bytes.len(),
            bytes.len() as f64 / 1024.0,
            unchanged_note(written),
            zip.display()
        );
        Ok(Some(BuiltComponent {
            file_name: format!("{TEST_PACKAGE_DIR}/pkg/{file_name}"),
            size: bytes.len() as u64,
            report,
        }))
    }

    /// Steps 3–6: components, interface checks, UI, zips; prints the summary.
    pub fn package(&self, recompiled: Vec<String>, started: Instant) -> Result<BuildOutput> {
        let pkg = &self.pkg;
        step("building components");
        let mut built = Vec::new();
        for process in &self.processes {
            let core_path = process.core_wasm(&self.target);
            let core = std::fs::read(&core_path).with_context(|| {
                format!(
                    "reading {} (cargo should have built it for `{}`)",
                    core_path.display(),
                    process.crate_name
                )
            })?;
            let bytes = component::componentize(&core)
                .with_context(|| format!("turning {} into a component", core_path.display()))?;
            let file_name = process.component_file_name();
            let out = pkg.join(&file_name);
            let written = fsutil::write_if_changed(&out, &bytes)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "component {file_name}: {} bytes ({:.1} KiB; core module {} bytes){}",
                bytes.len(),
                bytes.len() as f64 / 1024.0,
                core.len(),
                unchanged_note(written)
            );
            if component::size_limit(&file_name).is_some() {
                println!(
                    "size {}",
                    component::size_line(&file_name, bytes.len() as u64).0
                );
            }
            built.push((file_name, bytes));
        }
        warn_stale_components(pkg, &self.processes)?;
        component::check_sizes(built.iter().map(|(n, b)| (n.as_str(), b.len() as u64)))?;

        let examples = if self.examples.is_empty() {
            Vec::new()
        } else {
            step("building and checking example components (not packaged)");
            self.build_examples()?
        };

        let test_package = self.build_test_package()?;

        step("checking component interfaces");
        let mut components = Vec::new();
        let mut failures = Vec::new();
        for (file_name, bytes) in built {
            match wit_check::check_component(&bytes) {
                Ok(report) => {
                    println!("interface check OK   {file_name}: {report}");
                    components.push(BuiltComponent {
                        file_name,
                        size: bytes.len() as u64,
                        report,
                    });
                }
                Err(err) => {
                    println!("interface check FAIL {file_name}: {err:#}");
                    failures.push(file_name);
                }
            }
        }
        if !failures.is_empty() {
            bail!(
                "interface check failed for {} (see above)",
                failures.join(", ")
            );
        }

        step("ui");
        build_ui(&self.root, pkg)?;

        step("zipping the package");
        let api = self.root.join("api");
        if api.is_dir() {
            let written = pkgzip::zip_dir(&api, &pkg.join("api.zip"))?;
            println!("pkg/api.zip{}", written_note(written));
        } else {
            println!("no api/ directory; pkg/api.zip not written");
        }
        let zip_path = self.target.join(self.package.zip_file_name());
        pkgzip::zip_dir(pkg, &zip_path)?;
        let zip_bytes =
            std::fs::read(&zip_path).with_context(|| format!("reading {}", zip_path.display()))?;
        let output = BuildOutput {
            components,
            examples,
            test_package,
            wasm_build: describe_recompiled(&recompiled, &self.wasm_crates()),
            zip_sha256: pkgzip::sha256_hex(&zip_bytes),
            zip_size: zip_bytes.len() as u64,
            zip_path,
            elapsed: started.elapsed(),
        };
        output.print_summary();
        Ok(output)
    }

    /// The examples' components: made, validated, interface-checked, written to
    /// `target/examples/`, and never to `pkg/`.
    fn build_examples(&self) -> Result<Vec<BuiltComponent>> {
        let dir = self.target.join("examples");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut built = Vec::new();
        for example in &self.examples {
            let core_path = example.core_wasm(&self.target);
            let core = std::fs::read(&core_path).with_context(|| {
                format!(
                    "reading {} (cargo should have built it for `{}`)",
                    core_path.display(),
                    example.crate_name
                )
            })?;
            let bytes = component::componentize(&core)
                .with_context(|| format!("turning {} into a component", core_path.display()))?;
            let report = wit_check::check_component(&bytes)
                .with_context(|| format!("interface check of example {}", example.crate_name))?;
            let file_name = example.component_file_name();
            let out = dir.join(&file_name);
            let written = fsutil::write_if_changed(&out, &bytes)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "example {}: {} bytes ({:.1} KiB; core module {} bytes){}; interface check OK: {report}",
                example.dir,
                bytes.len(),
                bytes.len() as f64 / 1024.0,
                core.len(),
                unchanged_note(written)
            );
            built.push(BuiltComponent {
                file_name: format!("target/examples/{file_name}"),
                size: bytes.len() as u64,
                report,
            });
        }
        Ok(built)
    }
}

/// The kit test package (kit's layout: its own workspace and `pkg/`).
pub const TEST_PACKAGE_DIR: &str = "test/p2p-patterns-test";

fn test_process() -> Process {
    Process {
        dir: "p2p-patterns-test".into(),
        crate_name: "p2p-patterns-test".into(),
        lib_name: "p2p_patterns_test".into(),
    }
}

fn process_list(processes: &[Process]) -> String {
    processes
        .iter()
        .map(|p| p.crate_name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The process crates among cargo's recompiled targets, in process order.
pub fn recompiled_processes<'a>(recompiled: &[String], processes: &'a [Process]) -> Vec<&'a str> {
    processes
        .iter()
        .filter(|p| recompiled.contains(&p.lib_name))
        .map(|p| p.crate_name.as_str())
        .collect()
}

/// `up to date, nothing recompiled` or `recompiled presence, sync and 2 other crates`.
pub fn describe_recompiled(recompiled: &[String], processes: &[Process]) -> String {
    if recompiled.is_empty() {
        return "up to date, nothing recompiled".to_string();
    }
    let ours = recompiled_processes(recompiled, processes);
    let others = recompiled.len() - ours.len();
    let others = match others {
        0 => String::new(),
        1 => "1 other crate".to_string(),
        n => format!("{n} other crates"),
    };
    match (ours.is_empty(), others.is_empty()) {
        (true, _) => format!("recompiled {others} (no process crate)"),
        (false, true) => format!("recompiled {}", ours.join(", ")),
        (false, false) => format!("recompiled {} and {others}", ours.join(", ")),
    }
}

fn unchanged_note(written: bool) -> &'static str {
    if written {
        ""
    } else {
        " (unchanged)"
    }
}

fn written_note(written: bool) -> &'static str {
    if written {
        ": written"
    } else {
        ": unchanged"
    }
}

impl BuildOutput {
    pub fn print_summary(&self) {
        step("summary");
        for c in &self.components {
            println!(
                "{}: {} bytes ({:.1} KiB); {}",
                c.file_name,
                c.size,
                c.size as f64 / 1024.0,
                c.report
            );
        }
        for c in &self.examples {
            println!(
                "example {}: {} bytes ({:.1} KiB), not in the package; {}",
                c.file_name,
                c.size,
                c.size as f64 / 1024.0,
                c.report
            );
        }
        if let Some(c) = &self.test_package {
            println!(
                "test package {}: {} bytes ({:.1} KiB), not in the package; {}",
                c.file_name,
                c.size,
                c.size as f64 / 1024.0,
                c.report
            );
        }
        println!(
            "package {}: {} bytes ({:.1} KiB)",
            self.zip_path.display(),
            self.zip_size,
            self.zip_size as f64 / 1024.0
        );
        println!("package sha256: {}", self.zip_sha256);
        println!(
            "xtask build: done in {:.1}s (wasm build: {})",
            self.elapsed.as_secs_f64(),
            self.wasm_build
        );
    }
}

fn step(title: &str) {
    println!("==> {title}");
}

/// Makes `wit_dir` hold exactly `hyperware.wit` and the package's `api/*.wit` (unchanged files
/// keep their mtime, other entries are deleted), then parses it so WIT mistakes surface here
/// rather than inside a `wit_bindgen::generate!` expansion.
pub fn assemble_wit(root: &Path, wit_dir: &Path, hyperware_wit: &Path) -> Result<()> {
    assemble_wit_from(&[root.join("api")], wit_dir, hyperware_wit)
}

/// [`assemble_wit`] with the `*.wit` files of several folders (the test package adds the
/// tester API it would otherwise fetch from a node).
pub fn assemble_wit_from(api_dirs: &[PathBuf], wit_dir: &Path, hyperware_wit: &Path) -> Result<()> {
    let mut sources = vec![(OsString::from("hyperware.wit"), hyperware_wit.to_path_buf())];
    for api in api_dirs.iter().filter(|d| d.is_dir()) {
        let mut wits = Vec::new();
        for entry in
            std::fs::read_dir(&api).with_context(|| format!("listing {}", api.display()))?
        {
            let path = entry
                .with_context(|| format!("listing {}", api.display()))?
                .path();
            if path.is_file() && path.extension().is_some_and(|e| e == "wit") {
                wits.push(path);
            }
        }
        wits.sort();
        for path in wits {
            let name = path.file_name().unwrap_or_default().to_owned();
            ensure!(
                name != "hyperware.wit",
                "api/hyperware.wit would overwrite the runtime's WIT; rename it"
            );
            sources.push((name, path));
        }
    }

    if wit_dir.is_file() {
        std::fs::remove_file(wit_dir).with_context(|| format!("removing {}", wit_dir.display()))?;
    }
    std::fs::create_dir_all(wit_dir).with_context(|| format!("creating {}", wit_dir.display()))?;
    let mut written = Vec::new();
    for (name, from) in &sources {
        if fsutil::copy_if_changed(from, &wit_dir.join(name))? {
            written.push(name.to_string_lossy().into_owned());
        }
    }
    let names: Vec<OsString> = sources.iter().map(|(name, _)| name.clone()).collect();
    let removed = fsutil::remove_other_entries(wit_dir, &names)?;

    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve
        .push_dir(wit_dir)
        .with_context(|| format!("the assembled WIT in {} does not parse", wit_dir.display()))?;
    let worlds: Vec<&str> = resolve.packages[pkg]
        .worlds
        .keys()
        .map(String::as_str)
        .collect();
    let changes = match (written.is_empty(), removed.is_empty()) {
        (true, true) => "unchanged".to_string(),
        (false, true) => format!("wrote {}", written.join(", ")),
        (true, false) => format!("removed {}", removed.join(", ")),
        (false, false) => format!(
            "wrote {}; removed {}",
            written.join(", "),
            removed.join(", ")
        ),
    };
    println!(
        "target/wit: {} (package {}, worlds {}; {changes})",
        names
            .iter()
            .map(|n| n.to_string_lossy())
            .collect::<Vec<_>>()
            .join(", "),
        resolve.packages[pkg].name,
        worlds.join(", ")
    );
    Ok(())
}

/// The wasm build. cargo's own progress goes to the terminal (stderr is inherited); its
/// JSON messages on stdout tell which targets were recompiled, which this returns (target
/// names, e.g. `presence`, sorted).
fn cargo_build_processes(root: &Path, target: &Path, processes: &[Process]) -> Result<Vec<String>> {
    let mut cmd = workspace::cargo_command();
    cmd.current_dir(root)
        .args(["build", "--release", "--target"])
        .arg(WASM_TARGET)
        .arg("--target-dir")
        .arg(target)
        .arg("--message-format=json-render-diagnostics");
    for p in processes {
        cmd.arg("-p").arg(&p.crate_name);
    }
    let shown = shown(&cmd);
    println!("$ {shown}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{shown}`"))?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut recompiled = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.with_context(|| format!("reading the output of `{shown}`"))?;
        if let Some(name) = recompiled_target(&line) {
            recompiled.push(name);
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{shown}`"))?;
    ensure!(status.success(), "`{shown}` failed ({status})");
    recompiled.sort();
    recompiled.dedup();
    Ok(recompiled)
}

/// For one line of `cargo --message-format=json` output: the target's name if the line
/// reports a compiled artifact that was not fresh (so cargo recompiled it). Build scripts
/// are named `<package dir> (build script)`.
pub fn recompiled_target(line: &str) -> Option<String> {
    let message: Value = serde_json::from_str(line).ok()?;
    if message.get("reason")?.as_str()? != "compiler-artifact" || message.get("fresh")?.as_bool()? {
        return None;
    }
    let target = message.get("target")?;
    let name = target.get("name")?.as_str()?;
    let is_build_script = target
        .get("kind")
        .and_then(Value::as_array)
        .is_some_and(|kinds| kinds.iter().any(|k| k.as_str() == Some("custom-build")));
    if !is_build_script {
        return Some(name.to_string());
    }
    let manifest = message.get("manifest_path")?.as_str()?;
    let dir = Path::new(manifest).parent()?.file_name()?.to_string_lossy();
    Some(format!("{dir} (build script)"))
}

fn shown(cmd: &Command) -> String {
    format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Runs `cmd` with inherited output; errors if it cannot start or exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = shown(cmd);
    println!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("starting `{shown}`"))?;
    ensure!(status.success(), "`{shown}` failed ({status})");
    Ok(())
}

fn warn_stale_components(pkg: &Path, processes: &[Process]) -> Result<()> {
    let expected: Vec<String> = processes.iter().map(Process::component_file_name).collect();
    for path in component::pkg_components(pkg)? {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !expected.iter().any(|e| *e == name) {
            println!(
                "warning: {} is not built by any process crate but will be zipped; delete it if stale",
                path.display()
            );
        }
    }
    Ok(())
}

/// Files and bytes under `dir`.
fn dir_size(dir: &Path) -> Result<(usize, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let meta = e.metadata()?;
        if meta.is_dir() {
            let (f, b) = dir_size(&e.path())?;
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += meta.len();
        }
    }
    Ok((files, bytes))
}

/// If `ui/package.json` exists: install, build, and copy `ui/dist/` to `pkg/ui/`.
fn build_ui(root: &Path, pkg: &Path) -> Result<()> {
    let ui = root.join("ui");
    if !ui.join("package.json").is_file() {
        println!("no ui/package.json; skipping the UI");
        return Ok(());
    }
    let install = if ui.join("package-lock.json").is_file() {
        "ci"
    } else {
        "install"
    };
    run(Command::new("npm").current_dir(&ui).arg(install))?;
    run(Command::new("npm").current_dir(&ui).args(["run", "build"]))?;
    let dist = ui.join("dist");
    ensure!(
        dist.is_dir(),
        "`npm run build` did not produce {}",
        dist.display()
    );
    let written = fsutil::mirror_dir(&dist, &pkg.join("ui"))?;
    let (files, bytes) = dir_size(&dist)?;
    println!("ui/dist mirrored to pkg/ui ({written} files written); the UI is {files} files, {bytes} bytes");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::tests::{age, scratch, untouched};

    #[test]
    fn assembled_wit_parses_and_bad_api_wit_is_reported() {
        let root = crate::workspace::workspace_root();
        let hyperware = Metadata::load(&root).unwrap().process_lib_wit().unwrap();
        let scratch = scratch("wit");
        let fake_root = scratch.join("root");
        std::fs::create_dir_all(fake_root.join("api")).unwrap();
        let api_wit = fake_root.join("api/x:y.os-v0.wit");
        std::fs::write(
            &api_wit,
            "interface x { variant request { ping } }\n\
             world x-y-dot-os-v0 { import x; include process-v1; }\n",
        )
        .unwrap();
        let wit_dir = scratch.join("wit");
        std::fs::create_dir_all(wit_dir.join("stale-dir")).unwrap();
        std::fs::write(wit_dir.join("stale.wit"), "garbage").unwrap();
        assemble_wit(&fake_root, &wit_dir, &hyperware).unwrap();
        assert!(
            !wit_dir.join("stale.wit").exists(),
            "stale files are removed"
        );
        assert!(
            !wit_dir.join("stale-dir").exists(),
            "stale dirs are removed"
        );
        assert!(wit_dir.join("hyperware.wit").is_file());
        assert!(wit_dir.join("x:y.os-v0.wit").is_file());

        // Nothing changed: nothing is rewritten (cargo would recompile every process crate).
        age(&wit_dir.join("hyperware.wit"));
        age(&wit_dir.join("x:y.os-v0.wit"));
        assemble_wit(&fake_root, &wit_dir, &hyperware).unwrap();
        assert!(untouched(&wit_dir.join("hyperware.wit")));
        assert!(untouched(&wit_dir.join("x:y.os-v0.wit")));

        // One API file changed: only it is rewritten.
        let text = std::fs::read_to_string(&api_wit).unwrap();
        std::fs::write(&api_wit, text.replace("ping", "ping, pong")).unwrap();
        assemble_wit(&fake_root, &wit_dir, &hyperware).unwrap();
        assert!(untouched(&wit_dir.join("hyperware.wit")));
        assert!(!untouched(&wit_dir.join("x:y.os-v0.wit")));
        assert!(std::fs::read_to_string(wit_dir.join("x:y.os-v0.wit"))
            .unwrap()
            .contains("pong"));

        std::fs::write(&api_wit, "world broken {").unwrap();
        let err = assemble_wit(&fake_root, &wit_dir, &hyperware).unwrap_err();
        assert!(format!("{err:#}").contains("does not parse"), "{err:#}");
        std::fs::remove_dir_all(&scratch).unwrap();
    }

    fn artifact(name: &str, kind: &str, fresh: bool) -> String {
        serde_json::json!({
            "reason": "compiler-artifact",
            "package_id": format!("path+file:///w/{name}#0.1.0"),
            "manifest_path": format!("/w/{name}/Cargo.toml"),
            "target": {"kind": [kind], "crate_types": [kind], "name": name},
            "filenames": [format!("/w/target/wasm32-wasip1/release/{name}.wasm")],
            "fresh": fresh,
        })
        .to_string()
    }

    #[test]
    fn cargo_messages_name_the_recompiled_targets() {
        assert_eq!(
            recompiled_target(&artifact("presence", "cdylib", false)).as_deref(),
            Some("presence")
        );
        assert_eq!(
            recompiled_target(&artifact("presence", "cdylib", true)),
            None
        );
        assert_eq!(
            recompiled_target(&artifact("build-script-build", "custom-build", false)).as_deref(),
            Some("build-script-build (build script)")
        );
        let finished = r#"{"reason":"build-finished","success":true}"#;
        assert_eq!(recompiled_target(finished), None);
        assert_eq!(recompiled_target("not json"), None);
        assert_eq!(recompiled_target(""), None);
    }

    fn process(name: &str) -> Process {
        Process {
            dir: name.into(),
            crate_name: name.into(),
            lib_name: name.replace('-', "_"),
        }
    }

    #[test]
    fn recompiled_crates_are_described() {
        let processes = [process("presence"), process("my-sync")];
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            describe_recompiled(&[], &processes),
            "up to date, nothing recompiled"
        );
        let both = names(&["my_sync", "p2p_common", "presence"]);
        assert_eq!(
            recompiled_processes(&both, &processes),
            ["presence", "my-sync"]
        );
        assert_eq!(
            describe_recompiled(&both, &processes),
            "recompiled presence, my-sync and 1 other crate"
        );
        assert_eq!(
            describe_recompiled(&names(&["presence"]), &processes),
            "recompiled presence"
        );
        assert_eq!(
            describe_recompiled(&names(&["serde", "serde_json"]), &processes),
            "recompiled 2 other crates (no process crate)"
        );
    }
}
