//! `cargo xtask test`: every check of the project, in order, stopping at the first failure.
//!
//! The checks are the rows of [`STEPS`]; to add one, append a row (a name for `--step`, a
//! title, what it needs from the machine, and the function that runs it).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use crate::pkgbuild::{self, Plan};
use crate::prereq::{self, Prereq};
use crate::{component, perfdocs, pkgzip, workspace};

/// One check of `cargo xtask test`.
#[derive(Debug)]
pub struct Step {
    /// For `--step <name>`: short, lowercase.
    pub name: &'static str,
    /// What it does, printed when it runs and by `--list`.
    pub title: &'static str,
    /// Checked (for all selected steps together) before any step runs.
    pub needs: &'static [Prereq],
    pub run: fn(&Path) -> Result<()>,
}

pub const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        title: "formatting: cargo fmt --all -- --check",
        needs: &[Prereq::Rustfmt],
        run: fmt,
    },
    Step {
        name: "native",
        title: "native tests: cargo test --workspace --exclude p2p-emu",
        needs: &[Prereq::Rust],
        run: native_tests,
    },
    Step {
        name: "doc",
        title: "API docs: cargo doc -p p2p-common --no-deps, ProcessTransport included",
        needs: &[Prereq::Rust],
        run: api_docs,
    },
    Step {
        name: "build",
        title: "package build (cargo xtask build) and a no-op rebuild check",
        needs: pkgbuild::NEEDS,
        run: package_build,
    },
    Step {
        name: "components",
        title: "component interface checks of pkg/*.wasm",
        needs: &[],
        run: component_checks,
    },
    Step {
        name: "emu",
        title: "emulated nodes running the built package: cargo test -p p2p-emu",
        needs: &[Prereq::Rust],
        run: emulator,
    },
    Step {
        name: "kit",
        title: "kit run-tests on emulated nodes: test/tests.toml, the test package, the tester protocol",
        needs: &[Prereq::Rust],
        run: kit_tests,
    },
    Step {
        name: "sim",
        title: "simulator: p2p-sim check --seeds 200",
        needs: &[Prereq::Rust],
        run: simulator,
    },
    Step {
        name: "bench",
        title: "benchmark targets: p2p-sim bench --check (every scenario that has targets)",
        needs: &[Prereq::Rust],
        run: bench_targets,
    },
    Step {
        name: "ui",
        title: "browser tests of the page against the playground (Playwright driving chromium)",
        needs: &[Prereq::Rust],
        run: ui_tests,
    },
    Step {
        name: "docs-check",
        title: "docs/performance.md's figures match the build and the benches (cargo xtask docs --check)",
        needs: pkgbuild::NEEDS,
        run: docs_check,
    },
];

pub fn step_names(steps: &[Step]) -> Vec<&'static str> {
    steps.iter().map(|s| s.name).collect()
}

/// The steps named in `names` (all if `names` is empty), in table order. Names are checked
/// by the argument parser, so an unknown one here is a bug.
pub fn select<'a>(steps: &'a [Step], names: &[String]) -> Result<Vec<&'a Step>> {
    for name in names {
        ensure!(
            steps.iter().any(|s| s.name == name),
            "unknown step `{name}`"
        );
    }
    Ok(steps
        .iter()
        .filter(|s| names.is_empty() || names.iter().any(|n| n == s.name))
        .collect())
}

/// `--list`: one line per step, `name  title (needs ...)`.
pub fn list(steps: &[Step]) -> String {
    let width = steps.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for s in steps {
        let needs = if s.needs.is_empty() {
            String::new()
        } else {
            let needs: Vec<String> = s.needs.iter().map(|n| n.describe()).collect();
            format!(" [needs {}]", needs.join(", "))
        };
        out.push_str(&format!("  {:width$}  {}{needs}\n", s.name, s.title));
    }
    out
}

/// The last line of every run, which CI reads.
pub fn summary_line(passed: usize, failed: usize, not_run: usize) -> String {
    let mut line = format!("xtask: {passed} passed, {failed} failed");
    if not_run > 0 {
        line.push_str(&format!(", {not_run} not run"));
    }
    line
}

/// Checks the prerequisites of the selected steps, then runs them.
pub fn run(root: &Path, names: &[String]) -> Result<()> {
    let selected = select(STEPS, names)?;
    let mut needs: Vec<Prereq> = selected.iter().flat_map(|s| s.needs).copied().collect();
    needs.sort();
    needs.dedup();
    prereq::require(&needs)?;
    run_steps(root, &selected)
}

/// Runs `steps` in order, each with its time, stopping at the first failure; prints
/// `xtask: N passed, M failed` last. Errors if a step failed.
pub fn run_steps(root: &Path, steps: &[&Step]) -> Result<()> {
    let (mut passed, mut failed) = (0, 0);
    let total = steps.len();
    let mut failure = None;
    for (i, step) in steps.iter().enumerate() {
        println!(
            "\n==== [{}/{total}] {}: {} ====",
            i + 1,
            step.name,
            step.title
        );
        let started = Instant::now();
        let result = (step.run)(root);
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                passed += 1;
                println!("==== PASS {} ({secs:.1}s) ====", step.name);
            }
            Err(err) => {
                failed += 1;
                println!("==== FAIL {} ({secs:.1}s): {err:#} ====", step.name);
                failure = Some(step.name);
                break;
            }
        }
    }
    println!(
        "\n{}",
        summary_line(passed, failed, total - passed - failed)
    );
    match failure {
        Some(name) => bail!("step failed: {name} (rerun it alone: cargo xtask test --step {name})"),
        None => Ok(()),
    }
}

fn fmt(root: &Path) -> Result<()> {
    pkgbuild::run(
        workspace::cargo_command()
            .current_dir(root)
            .args(["fmt", "--all", "--", "--check"]),
    )
    .context("the code is not formatted; `cargo fmt --all` fixes it")?;
    // The kit test package is a workspace of its own.
    let test = root.join(pkgbuild::TEST_PACKAGE_DIR);
    if test.join("Cargo.toml").is_file() {
        pkgbuild::run(
            workspace::cargo_command()
                .current_dir(&test)
                .args(["fmt", "--all", "--", "--check"]),
        )
        .with_context(|| {
            format!(
                "{} is not formatted; `cargo fmt --all` in that folder fixes it",
                pkgbuild::TEST_PACKAGE_DIR
            )
        })?;
    }
    Ok(())
}

/// `kit run-tests` with test/tests.toml on emulated nodes (p2p-emu-kit): our package and
/// the test package from the zips the build step wrote, the tester protocol, kit's verdict.
fn kit_tests(root: &Path) -> Result<()> {
    let started = Instant::now();
    let result = pkgbuild::run(workspace::cargo_command().current_dir(root).args([
        "run",
        "-q",
        "-p",
        "p2p-emu",
        "--bin",
        "p2p-emu-kit",
        "--",
        "test/tests.toml",
    ]));
    println!(
        "kit: emulated kit run-tests took {:.1}s (build included)",
        started.elapsed().as_secs_f64()
    );
    result
}

/// Everything but the emulator, whose tests need the built package (the `emu` step, after
/// `build`).
fn native_tests(root: &Path) -> Result<()> {
    pkgbuild::run(workspace::cargo_command().current_dir(root).args([
        "test",
        "--workspace",
        "--exclude",
        "p2p-emu",
    ]))
}

/// The emulator's tests boot nodes from target/<package>.zip; built first so that the
/// emulated run's own time can be printed. Debug build: wasmtime under the release profile
/// (fat LTO) takes far longer to build than the tests take to run.
fn emulator(root: &Path) -> Result<()> {
    let started = Instant::now();
    pkgbuild::run(
        workspace::cargo_command()
            .current_dir(root)
            .args(["test", "-p", "p2p-emu", "--no-run"]),
    )?;
    let built = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let result = pkgbuild::run(
        workspace::cargo_command()
            .current_dir(root)
            .args(["test", "-p", "p2p-emu"]),
    );
    println!(
        "emu: build {built:.1}s, emulated run {:.1}s",
        started.elapsed().as_secs_f64()
    );
    result
}

/// The pages an app developer needs, which a native `cargo doc` once left out
/// (`ProcessTransport` exists only on wasm32; `cfg(doc)` documents it everywhere).
pub const API_DOC_PAGES: &[&str] = &[
    "p2p_common/client/struct.ProcessTransport.html",
    "p2p_common/client/struct.PresenceClient.html",
    "p2p_common/client/struct.BaseClient.html",
    "p2p_common/client/enum.ClientError.html",
];

fn api_docs(root: &Path) -> Result<()> {
    pkgbuild::run(workspace::cargo_command().current_dir(root).args([
        "doc",
        "-p",
        "p2p-common",
        "--no-deps",
    ]))?;
    // cargo writes the docs where its target directory is (CARGO_TARGET_DIR, relative to the
    // workspace root cargo ran in, or <root>/target).
    let doc = target_dir(root).join("doc");
    let missing: Vec<&str> = API_DOC_PAGES
        .iter()
        .copied()
        .filter(|page| !doc.join(page).is_file())
        .collect();
    ensure!(
        missing.is_empty(),
        "`cargo doc` did not document {} (in {})",
        missing.join(", "),
        doc.display()
    );
    println!(
        "API docs: {} (all {} pages checked)",
        doc.join("p2p_common/index.html").display(),
        API_DOC_PAGES.len()
    );
    Ok(())
}

fn package_build(root: &Path) -> Result<()> {
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
        pkgbuild::describe_recompiled(&again, &plan.wasm_crates())
    );
    Ok(())
}

fn component_checks(root: &Path) -> Result<()> {
    component::check_pkg_components(root)
}

fn simulator(root: &Path) -> Result<()> {
    pkgbuild::run(workspace::cargo_command().current_dir(root).args([
        "run",
        "--release",
        "-p",
        "p2p-sim",
        "--",
        "check",
        "--seeds",
        "200",
    ]))
}

fn bench_targets(root: &Path) -> Result<()> {
    let sim = perfdocs::build_sim(root)?;
    println!("$ p2p-sim bench --check --json");
    let out = std::process::Command::new(&sim)
        .args(["bench", "--check", "--json"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("starting {}", sim.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    // The sync run is what docs/sync.md's generated block states: kept for `docs-check`,
    // which then need not run it again with the same binary.
    let bytes = std::fs::read(&sim).with_context(|| format!("reading {}", sim.display()))?;
    let sha = pkgzip::sha256_hex(&bytes);
    for line in stdout.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if v["service"] == "sync" {
                perfdocs::keep(root, &sha, "sync-check", &v)?;
            }
        }
    }
    ensure!(
        out.status.success(),
        "p2p-sim bench --check failed ({})",
        out.status
    );
    Ok(())
}

/// cargo's target directory (CARGO_TARGET_DIR, relative to the workspace root cargo ran
/// in, or <root>/target).
fn target_dir(root: &Path) -> std::path::PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if Path::new(&t).is_absolute() => std::path::PathBuf::from(t),
        Some(t) => root.join(t),
        None => root.join("target"),
    }
}

/// Where Debian's chromium is (`.ci/run` installs it with apt if missing).
const CHROMIUM: &str = "/usr/bin/chromium";

/// Build the page and the playground, then run ui/tests/playground.test.mjs (Playwright
/// driving chromium against `p2p-sim playground`); screenshots land in
/// <target>/ui-artifacts.
fn ui_tests(root: &Path) -> Result<()> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_string());
    ensure!(
        Path::new(&chromium).is_file(),
        "no chromium at {chromium}: install it with `apt-get install chromium` (.ci/run does), or set CHROMIUM"
    );
    let ui = root.join("ui");
    let install = if ui.join("node_modules/playwright-core").is_dir() {
        None
    } else {
        Some("ci")
    };
    if let Some(i) = install {
        pkgbuild::run(std::process::Command::new("npm").current_dir(&ui).arg(i))?;
    }
    pkgbuild::run(
        std::process::Command::new("npm")
            .current_dir(&ui)
            .args(["run", "build"]),
    )?;
    pkgbuild::run(workspace::cargo_command().current_dir(root).args([
        "build",
        "--release",
        "-p",
        "p2p-sim",
    ]))?;
    let target = target_dir(root);
    pkgbuild::run(
        std::process::Command::new("node")
            .current_dir(&ui)
            .arg("tests/playground.test.mjs")
            .env("P2P_SIM", target.join("release/p2p-sim"))
            .env("CHROMIUM", &chromium)
            .env("UI_DIR", ui.join("dist"))
            .env("UI_ARTIFACTS", target.join("ui-artifacts")),
    )
}

fn docs_check(root: &Path) -> Result<()> {
    perfdocs::check(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static RUNS: AtomicUsize = AtomicUsize::new(0);

    fn ok(_: &Path) -> Result<()> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn broken(_: &Path) -> Result<()> {
        RUNS.fetch_add(100, Ordering::SeqCst);
        bail!("broken on purpose")
    }

    const FAKE: &[Step] = &[
        Step {
            name: "a",
            title: "first",
            needs: &[],
            run: ok,
        },
        Step {
            name: "b",
            title: "second",
            needs: &[Prereq::WasmTarget],
            run: broken,
        },
        Step {
            name: "c",
            title: "third",
            needs: &[],
            run: ok,
        },
    ];

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn selection_runs_named_steps_in_table_order() {
        let all = select(FAKE, &[]).unwrap();
        assert_eq!(
            all.iter().map(|s| s.name).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let some = select(FAKE, &names(&["c", "a", "c"])).unwrap();
        assert_eq!(some.iter().map(|s| s.name).collect::<Vec<_>>(), ["a", "c"]);
        let err = select(FAKE, &names(&["a", "zz"])).unwrap_err();
        assert!(err.to_string().contains("`zz`"), "{err}");
    }

    #[test]
    fn runner_counts_stops_at_the_first_failure_and_names_it() {
        // One test drives the shared RUNS counter, so the counts are exact.
        RUNS.store(0, Ordering::SeqCst);
        let root = Path::new(".");
        run_steps(root, &select(FAKE, &names(&["a", "c"])).unwrap()).unwrap();
        assert_eq!(RUNS.load(Ordering::SeqCst), 2);

        RUNS.store(0, Ordering::SeqCst);
        let err = run_steps(root, &select(FAKE, &[]).unwrap()).unwrap_err();
        assert_eq!(
            RUNS.load(Ordering::SeqCst),
            101,
            "c must not run after b failed"
        );
        assert!(err.to_string().contains("--step b"), "{err}");
    }

    #[test]
    fn summary_line_is_what_ci_reads() {
        assert_eq!(summary_line(4, 0, 0), "xtask: 4 passed, 0 failed");
        assert_eq!(
            summary_line(1, 1, 3),
            "xtask: 1 passed, 1 failed, 3 not run"
        );
    }

    #[test]
    fn list_shows_every_step_with_its_needs() {
        let text = list(FAKE);
        assert_eq!(text.lines().count(), 3);
        assert!(text.contains("  a  first\n"), "{text}");
        assert!(
            text.contains("  b  second [needs the wasm32-wasip1 target]"),
            "{text}"
        );
    }

    #[test]
    fn the_readme_names_real_steps_and_the_checked_minimum_rust() {
        let readme =
            std::fs::read_to_string(workspace::workspace_root().join("README.md")).unwrap();
        let names = step_names(STEPS);
        let mut mentioned = 0;
        for rest in readme.split("--step ").skip(1) {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '<' || *c == '>')
                .collect();
            if name != "<name>" {
                assert!(names.contains(&name.as_str()), "README: no step `{name}`");
                mentioned += 1;
            }
        }
        assert!(mentioned > 0, "README shows a real `--step` example");
        // README lists the steps: all of them, in table order.
        let listed = format!(
            "the steps are {}",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(readme.contains(&listed), "README says: {listed}");
        assert!(readme.contains(&format!("Rust ≥ {}", crate::prereq::MIN_RUST)));
    }

    #[test]
    fn the_real_table_is_well_formed() {
        let names = step_names(STEPS);
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            names.len(),
            "step names must be unique: {names:?}"
        );
        for name in names {
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "step name {name:?} must be short lowercase"
            );
        }
        // The emulator runs the zip the build step writes.
        let pos = |n: &str| STEPS.iter().position(|s| s.name == n).unwrap();
        assert!(pos("emu") > pos("build"));
        assert!(pos("kit") > pos("build"));
        // The build step needs what `cargo xtask build` needs.
        let build = STEPS.iter().find(|s| s.name == "build").unwrap();
        assert!(build.needs.contains(&Prereq::WasmTarget));
        assert!(build.needs.contains(&Prereq::Rust));
        // docs-check builds the package too, and runs after the simulator step, whose
        // release build of p2p-sim it reuses.
        let docs = STEPS.iter().position(|s| s.name == "docs-check").unwrap();
        assert!(STEPS[docs].needs.contains(&Prereq::WasmTarget));
        assert!(docs > STEPS.iter().position(|s| s.name == "sim").unwrap());
    }
}
