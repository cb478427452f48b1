//! `cargo xtask build`: the installable package, built offline without kit.
//!
//! 1. `target/wit/` = process_lib's `hyperware.wit` + `api/*.wit`
//! 2. `cargo build --release --target wasm32-wasip1` of every process crate
//! 3. core module → component (`pkg/<process>.wasm`), validated
//! 4. interface check of each component
//! 5. optional `ui/` → `pkg/ui/`
//! 6. `api/` → `pkg/api.zip`, contents of `pkg/` → `target/<package>:<publisher>.zip`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::component;
use crate::pkgzip;
use crate::wit_check::{self, InterfaceReport};
use crate::workspace::{self, Metadata, Process, WASM_TARGET};

pub struct BuiltComponent {
    pub file_name: String,
    pub size: u64,
    pub report: InterfaceReport,
}

pub struct BuildOutput {
    pub components: Vec<BuiltComponent>,
    pub zip_path: PathBuf,
    pub zip_sha256: String,
    pub zip_size: u64,
    pub elapsed: Duration,
}

pub fn build(root: &Path) -> Result<BuildOutput> {
    let started = Instant::now();
    let package = workspace::read_package_id(root)?;
    let metadata = Metadata::load(root)?;
    let processes = workspace::discover_processes(root, &metadata)?;
    ensure!(
        !processes.is_empty(),
        "no process crates: no top-level directory of {} has src/lib.rs",
        root.display()
    );
    let pkg = root.join("pkg");
    let manifest = workspace::read_json(&pkg.join("manifest.json"))?;
    let not_started =
        workspace::check_manifest_against(&workspace::manifest_wasm_files(&manifest)?, &processes)?;
    println!(
        "xtask build: package {}:{} with processes {}",
        package.package_name,
        package.publisher,
        processes
            .iter()
            .map(|p| p.crate_name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for name in &not_started {
        println!("note: {name} is built but not started by pkg/manifest.json (child process?)");
    }

    step("assembling target/wit");
    let target = root.join("target");
    assemble_wit(root, &target.join("wit"), &metadata.process_lib_wit()?)?;

    step("compiling process crates for wasm32-wasip1");
    cargo_build_processes(root, &target, &processes)?;

    step("building components");
    let mut built = Vec::new();
    for process in &processes {
        let core_path = process.core_wasm(&target);
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
        std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
        println!(
            "component {file_name}: {} bytes ({:.1} KiB; core module {} bytes)",
            bytes.len(),
            bytes.len() as f64 / 1024.0,
            core.len()
        );
        built.push((file_name, bytes));
    }
    warn_stale_components(&pkg, &processes)?;

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
    build_ui(root, &pkg)?;

    step("zipping the package");
    let api = root.join("api");
    if api.is_dir() {
        pkgzip::zip_dir(&api, &pkg.join("api.zip"))?;
        println!("wrote pkg/api.zip");
    } else {
        println!("no api/ directory; pkg/api.zip not written");
    }
    let zip_path = target.join(package.zip_file_name());
    pkgzip::zip_dir(&pkg, &zip_path)?;
    let zip_bytes =
        std::fs::read(&zip_path).with_context(|| format!("reading {}", zip_path.display()))?;
    let output = BuildOutput {
        components,
        zip_sha256: pkgzip::sha256_hex(&zip_bytes),
        zip_size: zip_bytes.len() as u64,
        zip_path,
        elapsed: started.elapsed(),
    };
    output.print_summary();
    Ok(output)
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
        println!(
            "package {}: {} bytes ({:.1} KiB)",
            self.zip_path.display(),
            self.zip_size,
            self.zip_size as f64 / 1024.0
        );
        println!("package sha256: {}", self.zip_sha256);
        println!("xtask build: done in {:.1}s", self.elapsed.as_secs_f64());
    }
}

fn step(title: &str) {
    println!("==> {title}");
}

/// Recreates `wit_dir` with `hyperware.wit` and the package's `api/*.wit`, then parses it so
/// WIT mistakes surface here rather than inside a `wit_bindgen::generate!` expansion.
pub fn assemble_wit(root: &Path, wit_dir: &Path, hyperware_wit: &Path) -> Result<()> {
    if wit_dir.exists() {
        std::fs::remove_dir_all(wit_dir)
            .with_context(|| format!("removing {}", wit_dir.display()))?;
    }
    std::fs::create_dir_all(wit_dir).with_context(|| format!("creating {}", wit_dir.display()))?;
    copy_file(hyperware_wit, &wit_dir.join("hyperware.wit"))?;
    let mut copied = vec!["hyperware.wit".to_string()];

    let api = root.join("api");
    if api.is_dir() {
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
            copy_file(&path, &wit_dir.join(&name))?;
            copied.push(name.to_string_lossy().into_owned());
        }
    }
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve
        .push_dir(wit_dir)
        .with_context(|| format!("the assembled WIT in {} does not parse", wit_dir.display()))?;
    let worlds: Vec<&str> = resolve.packages[pkg]
        .worlds
        .keys()
        .map(String::as_str)
        .collect();
    println!(
        "target/wit: {} (package {}, worlds {})",
        copied.join(", "),
        resolve.packages[pkg].name,
        worlds.join(", ")
    );
    Ok(())
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn cargo_build_processes(root: &Path, target: &Path, processes: &[Process]) -> Result<()> {
    let mut cmd = workspace::cargo_command();
    cmd.current_dir(root)
        .args(["build", "--release", "--no-default-features", "--target"])
        .arg(WASM_TARGET)
        .arg("--target-dir")
        .arg(target);
    for p in processes {
        cmd.arg("-p").arg(&p.crate_name);
    }
    run(&mut cmd)
}

/// Runs `cmd` with inherited output; errors if it cannot start or exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
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
    let dest = pkg.join("ui");
    if dest.exists() {
        std::fs::remove_dir_all(&dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    copy_dir(&dist, &dest)?;
    println!("copied ui/dist to pkg/ui");
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry.with_context(|| format!("listing {}", from.display()))?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &dest)?;
        } else {
            copy_file(&path, &dest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembled_wit_parses_and_bad_api_wit_is_reported() {
        let root = crate::workspace::workspace_root();
        let hyperware = Metadata::load(&root).unwrap().process_lib_wit().unwrap();
        let scratch = std::env::temp_dir().join(format!("xtask-wit-{}", std::process::id()));
        let fake_root = scratch.join("root");
        std::fs::create_dir_all(fake_root.join("api")).unwrap();
        std::fs::write(
            fake_root.join("api/x:y.os-v0.wit"),
            "interface x { variant request { ping } }\n\
             world x-y-dot-os-v0 { import x; include process-v1; }\n",
        )
        .unwrap();
        let wit_dir = scratch.join("wit");
        std::fs::create_dir_all(&wit_dir).unwrap();
        std::fs::write(wit_dir.join("stale.wit"), "garbage").unwrap();
        assemble_wit(&fake_root, &wit_dir, &hyperware).unwrap();
        assert!(
            !wit_dir.join("stale.wit").exists(),
            "target/wit is recreated"
        );
        assert!(wit_dir.join("hyperware.wit").is_file());
        assert!(wit_dir.join("x:y.os-v0.wit").is_file());

        std::fs::write(fake_root.join("api/x:y.os-v0.wit"), "world broken {").unwrap();
        let err = assemble_wit(&fake_root, &wit_dir, &hyperware).unwrap_err();
        assert!(format!("{err:#}").contains("does not parse"), "{err:#}");
        std::fs::remove_dir_all(&scratch).unwrap();
    }
}
