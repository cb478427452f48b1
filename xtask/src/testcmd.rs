//! `cargo xtask test`: every check of the project, in order, stopping at the first failure,
//! after checking the prerequisites.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use crate::pkgbuild::{self, Plan};
use crate::prereq::{self, Prereq};
use crate::{component, workspace};

enum Outcome {
    Passed,
}

type Step = (&'static str, fn(&Path) -> Result<Outcome>);

const STEPS: &[Step] = &[
    ("formatting: cargo fmt --all -- --check", fmt),
    ("native tests: cargo test --workspace", native_tests),
    (
        "package build (cargo xtask build), then a no-op rebuild that must recompile nothing",
        package_build,
    ),
    ("component interface checks", component_checks),
    ("simulator: p2p-sim check --seeds 200", simulator),
];

/// Runs the steps; prints `xtask: N passed, M failed` last. Errors if a step failed.
pub fn run_all(root: &Path) -> Result<()> {
    // Before any long compile: what the steps need, each missing piece with its fix.
    prereq::require(&[Prereq::Rustfmt, Prereq::Rust, Prereq::WasmTarget])?;
    let (mut passed, mut failed) = (0, 0);
    let total = STEPS.len();
    let mut failure = None;
    for (i, (title, step)) in STEPS.iter().enumerate() {
        println!("\n==== [{}/{total}] {title} ====", i + 1);
        let started = Instant::now();
        match step(root) {
            Ok(Outcome::Passed) => {
                passed += 1;
                println!(
                    "==== PASS {title} ({:.1}s) ====",
                    started.elapsed().as_secs_f64()
                );
            }
            Err(err) => {
                failed += 1;
                println!(
                    "==== FAIL {title} ({:.1}s): {err:#} ====",
                    started.elapsed().as_secs_f64()
                );
                failure = Some(*title);
                break;
            }
        }
    }
    let not_run = total - passed - failed;
    let mut summary = format!("xtask: {passed} passed, {failed} failed");
    if not_run > 0 {
        summary.push_str(&format!(", {not_run} not run"));
    }
    println!("\n{summary}");
    match failure {
        Some(title) => bail!("step failed: {title}"),
        None => Ok(()),
    }
}

fn fmt(root: &Path) -> Result<Outcome> {
    pkgbuild::run(
        workspace::cargo_command()
            .current_dir(root)
            .args(["fmt", "--all", "--", "--check"]),
    )
    .context("the code is not formatted; `cargo fmt --all` fixes it")?;
    Ok(Outcome::Passed)
}

fn native_tests(root: &Path) -> Result<Outcome> {
    pkgbuild::run(
        workspace::cargo_command()
            .current_dir(root)
            .args(["test", "--workspace"]),
    )?;
    Ok(Outcome::Passed)
}

fn package_build(root: &Path) -> Result<Outcome> {
    let started = Instant::now();
    let plan = Plan::load(root)?;
    let recompiled = plan.compile()?;
    plan.package(recompiled, started)?;

    println!("\n==> no-op rebuild check: the same wasm build again must recompile nothing");
    let again = plan.compile()?;
    ensure!(
        again.is_empty(),
        "a second build with nothing changed {}; something in the build touches their inputs \
         (files in target/wit must only be written when their contents change)",
        pkgbuild::describe_recompiled(&again, plan.processes())
    );
    Ok(Outcome::Passed)
}

fn component_checks(root: &Path) -> Result<Outcome> {
    component::check_pkg_components(root)?;
    Ok(Outcome::Passed)
}

fn simulator(root: &Path) -> Result<Outcome> {
    pkgbuild::run(workspace::cargo_command().current_dir(root).args([
        "run",
        "--release",
        "-p",
        "p2p-sim",
        "--",
        "check",
        "--seeds",
        "200",
    ]))?;
    Ok(Outcome::Passed)
}
