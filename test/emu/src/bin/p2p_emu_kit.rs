//! `kit run-tests` on emulated nodes: `p2p-emu-kit [test/tests.toml]` (run after
//! `cargo xtask build`, which builds our package and the test package). Prints kit's
//! `PASS` / `FAIL: <test> <file>:<line>:<column>`, every crash with its message, and how
//! long the emulated run took; exits non-zero on any failure.

use p2p_emu::kit;
use p2p_emu::EmuConfig;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("test/emu is inside the workspace")
        .to_path_buf();
    let toml = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("test/tests.toml"));
    let tests = match kit::load(&toml, &workspace) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("p2p-emu-kit: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    for (i, t) in tests.iter().enumerate() {
        println!(
            "p2p-emu-kit: test entry {} of {}: nodes {}, test packages {}",
            i + 1,
            tests.len(),
            t.nodes.join(", "),
            t.tests
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let cfg = EmuConfig {
            echo_verbosity: EmuConfig::default().echo_verbosity,
            ..EmuConfig::default()
        };
        let report = match kit::run(t, cfg, Some(workspace.join("target").join("emu-cache"))) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("p2p-emu-kit: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        for l in &report.test_lines {
            println!("  [{:>7} ms] {} {}: {}", l.at, l.node, l.process, l.message);
        }
        println!("{}", report.summary());
        println!(
            "p2p-emu-kit: emulated run took {:.1} s real for {:.1} s virtual on {} nodes",
            report.real.as_secs_f64(),
            report.virtual_ms as f64 / 1000.0,
            report.nodes.len()
        );
        failed |= report.verdict != kit::Verdict::Pass || !report.crashes.is_empty();
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
