//! The `p2p-sim` command line, run as a user runs it: argument checks (exit 2 with the
//! reason), `--version`, help texts, the plan and summary lines of `check`, and the replay
//! command a failing check prints, which must replay exactly the failing run.

use p2p_sim::scenarios::{self, replay_command};
use p2p_sim::Mode;
use std::process::{Command, Output};

fn p2p_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_p2p-sim"))
        .args(args)
        .output()
        .expect("p2p-sim runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `args`, expects exit status 2 with `message` on stderr and nothing run.
fn refused(args: &[&str], message: &str) {
    let o = p2p_sim(args);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{args:?} must be refused with status 2\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        stderr(&o).contains(message),
        "{args:?}: stderr should say {message:?}, got: {}",
        stderr(&o)
    );
    assert!(
        !stdout(&o).contains("passed"),
        "{args:?} ran something: {}",
        stdout(&o)
    );
}

#[test]
fn version_prints_the_crate_version() {
    let o = p2p_sim(&["--version"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        format!("p2p-sim {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_texts_describe_every_command_and_option() {
    let o = p2p_sim(&["--help"]);
    assert!(o.status.success());
    let main = stdout(&o);
    for cmd in ["check", "bench", "replay", "list"] {
        assert!(main.contains(cmd), "--help lists {cmd}: {main}");
    }
    let o = p2p_sim(&["check", "--help"]);
    assert!(o.status.success());
    let check = stdout(&o);
    for text in [
        "How many seeds (at least 1)",
        "First seed",
        "Cluster size (2..=1000)",
        "--mode <MODE>",
        "realistic",
        "hostile",
        "both",
        "N passed, M failed",
    ] {
        assert!(check.contains(text), "check --help says {text:?}: {check}");
    }
    let o = p2p_sim(&["replay", "--help"]);
    let replay = stdout(&o);
    assert!(
        replay.contains("--seed <SEED>") && replay.contains("Network mode"),
        "{replay}"
    );
}

#[test]
fn zero_seeds_are_refused() {
    refused(
        &["check", "--seeds", "0"],
        "--seeds must be at least 1 (0 would check nothing)",
    );
}

#[test]
fn seeds_past_the_last_one_are_refused_not_overflowed() {
    let max = u64::MAX.to_string();
    refused(
        &["check", "--from", &max, "--seeds", "1"],
        &format!("--from {max} plus --seeds 1 runs past the last seed {max}"),
    );
    refused(
        &["check", "--from", "2", "--seeds", &max],
        "runs past the last seed",
    );
    // The last seed itself is a valid run: the check is on the sum, not on --from.
    let last = (u64::MAX - 1).to_string();
    let o = p2p_sim(&[
        "check",
        "--from",
        &last,
        "--seeds",
        "1",
        "--service",
        "ping",
        "--mode",
        "realistic",
    ]);
    assert_ne!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("checking 1 runs: 1 seeds × 1 scenario(s) (ping)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn node_counts_are_range_checked_per_scenario() {
    for n in ["0", "1"] {
        refused(
            &["check", "--service", "ping", "--nodes", n],
            &format!("--nodes {n} is out of range for ping: use 2..=1000"),
        );
    }
    refused(
        &["check", "--service", "ping", "--nodes", "1001"],
        "--nodes 1001 is out of range for ping: use 2..=1000",
    );
    // presence needs 3; without --service every scenario's minimum applies.
    refused(
        &["check", "--service", "presence", "--nodes", "2"],
        "--nodes 2 is out of range for presence: use 3..=1000",
    );
    refused(
        &["check", "--nodes", "2"],
        "--nodes 2 is out of range for presence",
    );
    refused(
        &[
            "replay",
            "--seed",
            "1",
            "--service",
            "presence",
            "--nodes",
            "2",
        ],
        "--nodes 2 is out of range for presence: use 3..=1000",
    );
    refused(
        &["replay", "--seed", "1", "--nodes", "100000"],
        "--nodes 100000 is out of range for ping: use 2..=1000",
    );
    // Not a number at all: clap's usage error, also status 2.
    refused(
        &["check", "--nodes=-3"],
        "invalid value '-3' for '--nodes <NODES>'",
    );
}

#[test]
fn modes_and_scenarios_are_checked() {
    refused(&["check", "--mode", "nice"], "invalid value 'nice'");
    refused(
        &["replay", "--seed", "1", "--mode", "both"],
        "replay runs one mode: realistic or hostile",
    );
    refused(
        &["check", "--service", "nope"],
        "no scenario \"nope\"; known: ping, presence",
    );
    refused(&["bench", "nope"], "no scenario \"nope\"");
    refused(
        &["replay", "--seed", "1", "--service", "nope"],
        "no scenario",
    );
    refused(&["frobnicate"], "unrecognized subcommand");
}

#[test]
fn list_names_each_scenario_with_its_sizes() {
    let o = p2p_sim(&["list"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("ping (default 5 nodes, at least 2)"), "{out}");
    assert!(
        out.contains("presence (default 6 nodes, at least 3)"),
        "{out}"
    );
}

#[test]
fn one_seed_of_ping_prints_the_plan_and_the_summary() {
    let o = p2p_sim(&["check", "--seeds", "1", "--service", "ping"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("checking 2 runs: 1 seeds × 1 scenario(s) (ping) × 2 mode(s) (realistic, hostile)"),
        "{out}"
    );
    assert_eq!(lines.last().copied(), Some("2 passed, 0 failed"), "{out}");

    let o = p2p_sim(&[
        "check",
        "--seeds",
        "2",
        "--from",
        "5",
        "--service",
        "ping",
        "--mode",
        "hostile",
        "--nodes",
        "3",
    ]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(
        out.starts_with("checking 2 runs: 2 seeds × 1 scenario(s) (ping) × 1 mode(s) (hostile)\n"),
        "{out}"
    );
    assert!(out.ends_with("2 passed, 0 failed\n"), "{out}");
}

/// The arguments of a printed replay command, after `cargo run ... --`.
fn replay_args(command: &str) -> Vec<String> {
    let (cargo, args) = command
        .split_once(" -- ")
        .unwrap_or_else(|| panic!("no ` -- ` in {command:?}"));
    assert_eq!(cargo, "cargo run --release -p p2p-sim");
    args.split_whitespace().map(String::from).collect()
}

/// The trace digest `replay` prints for `args`, which must pass.
fn replayed_digest(args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = p2p_sim(&args);
    let out = stdout(&o);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    let seed = &args[args.iter().position(|a| *a == "--seed").unwrap() + 1];
    assert!(
        out.ends_with(&format!("seed {seed} passed\n")),
        "{}",
        &out[out.len().saturating_sub(300)..]
    );
    out.lines()
        .rev()
        .find_map(|l| l.strip_prefix("trace digest "))
        .unwrap_or_else(|| panic!("no trace digest in {args:?}'s output"))
        .to_string()
}

/// The digest of the same run, in this process.
fn digest(service: &str, seed: u64, nodes: usize, mode: Mode) -> String {
    scenarios::find(service)
        .unwrap()
        .run(seed, nodes, mode, false)
        .unwrap_or_else(|e| panic!("{service} seed {seed} {} fails: {e}", mode.name()))
        .trace_digest()
}

#[test]
fn the_printed_replay_command_replays_exactly_that_run() {
    // Non-default service, nodes and mode, so a command that dropped any of them would run
    // something else (replay's defaults are ping, the scenario's size, realistic).
    for (service, seed, nodes, mode) in [
        ("ping", 3, 4, Mode::Hostile),
        ("ping", 3, 4, Mode::Realistic),
        ("presence", 2, 4, Mode::Realistic),
    ] {
        let cmd = replay_command(service, seed, nodes, mode);
        let args = replay_args(&cmd);
        assert_eq!(args[0], "replay", "{cmd}");
        let replayed = replayed_digest(&args);
        assert_eq!(
            replayed,
            digest(service, seed, nodes, mode),
            "`{cmd}` replays another run"
        );
        // The digest tells runs apart: another size or mode is another trace.
        assert_ne!(replayed, digest(service, seed, nodes + 1, mode), "{cmd}");
        let other = match mode {
            Mode::Realistic => Mode::Hostile,
            Mode::Hostile => Mode::Realistic,
        };
        assert_ne!(replayed, digest(service, seed, nodes, other), "{cmd}");
    }
}

#[test]
fn a_failure_shows_its_replay_command() {
    // What `check` prints for a failing run (the error with the replay command set).
    let mut sim = scenarios::find("ping")
        .unwrap()
        .run(1, 3, Mode::Realistic, false)
        .unwrap();
    sim.run_for(1).unwrap();
    let mut e = sim.fail("an invariant broke");
    e.replay = Some(replay_command("ping", 1, 3, Mode::Realistic));
    let shown = e.to_string();
    assert!(
        shown.contains(
            "replay with: cargo run --release -p p2p-sim -- replay --service ping --seed 1 \
             --nodes 3 --mode realistic"
        ),
        "{shown}"
    );
}

#[test]
fn bench_check_asserts_targets_and_needs_a_scenario_without_it() {
    refused(&["bench"], "name a scenario");
    let o = p2p_sim(&["bench", "ping", "--check", "--json"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(v["service"], "ping", "{out}");
    assert!(err.contains("bench ping: 0 target(s) missed"), "{err}");
}

#[test]
fn replay_trace_passes_a_matching_trace_and_fails_a_wrong_end_text() {
    let dir = std::env::temp_dir().join(format!("p2p-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.json");
    std::fs::write(
        &good,
        r#"{"startContent":"","endContent":"hey","txns":[{"patches":[[0,0,"hy"]]},{"patches":[[1,0,"e"]]}]}"#,
    )
    .unwrap();
    let o = p2p_sim(&[
        "replay-trace",
        good.to_str().unwrap(),
        "--mode",
        "realistic",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("every node's text equals endContent (3 characters)"),
        "{}",
        stdout(&o)
    );
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"startContent":"","endContent":"hex","txns":[{"patches":[[0,0,"hy"]]},{"patches":[[1,0,"e"]]}]}"#,
    )
    .unwrap();
    let o = p2p_sim(&["replay-trace", bad.to_str().unwrap(), "--mode", "realistic"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("DIFFER"), "{}", stdout(&o));
    refused(
        &["replay-trace", dir.join("missing.json").to_str().unwrap()],
        "missing.json",
    );
    std::fs::remove_dir_all(&dir).ok();
}
