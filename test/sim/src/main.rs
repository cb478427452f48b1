//! `cargo run --release -p p2p-sim -- <command>`: check, bench, replay, replay-trace, list, playground.

use clap::{Parser, Subcommand, ValueEnum};
use p2p_sim::scenarios::{self, replay_command};
use p2p_sim::Mode;
use std::process::ExitCode;
use std::time::Instant;

/// Largest cluster a command accepts (a simulated node costs memory and time).
const MAX_NODES: usize = 1_000;

#[derive(Parser)]
#[command(
    name = "p2p-sim",
    version,
    about = "Deterministic simulator for the p2p-patterns services",
    long_about = "Runs the real service cores on simulated Hyperware nodes, in virtual time, \
                  with seeded faults. Every run is reproducible from its seed."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// What Hyperware does: loss only through connection breaks.
    Realistic,
    /// Realistic plus independent message loss and duplication.
    Hostile,
    /// Both, one run each per seed.
    Both,
}

impl ModeArg {
    fn modes(self) -> Vec<Mode> {
        match self {
            ModeArg::Realistic => vec![Mode::Realistic],
            ModeArg::Hostile => vec![Mode::Hostile],
            ModeArg::Both => Mode::ALL.to_vec(),
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run seeded random fault scenarios with every invariant checked; prints
    /// `N passed, M failed` last. Each seed runs once per scenario and per mode.
    Check {
        /// How many seeds (at least 1).
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// First seed (seeds run from here upward).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Service scenario (see `list`); all of them when omitted.
        #[arg(long)]
        service: Option<String>,
        /// Cluster size (2..=1000); each scenario's default when omitted.
        #[arg(long)]
        nodes: Option<usize>,
        /// Network mode.
        #[arg(long, value_enum, default_value_t = ModeArg::Both)]
        mode: ModeArg,
    },
    /// Print a service's benchmark as one JSON object; with `--check`, also assert its
    /// targets (deterministic figures only) and fail if one is missed.
    Bench {
        /// Service scenario (see `list`); with `--check` and no service, every scenario
        /// that has targets.
        service: Option<String>,
        /// One line of JSON instead of pretty-printed.
        #[arg(long)]
        json: bool,
        /// Assert the scenario's targets after printing; exit 1 if one is missed.
        #[arg(long)]
        check: bool,
    },
    /// Print the full trace of one run.
    Replay {
        /// The seed to replay.
        #[arg(long)]
        seed: u64,
        /// Service scenario (see `list`).
        #[arg(long, default_value = "ping")]
        service: String,
        /// Cluster size (2..=1000); the scenario's default when omitted.
        #[arg(long)]
        nodes: Option<usize>,
        /// Network mode (realistic or hostile).
        #[arg(long, value_enum, default_value_t = ModeArg::Realistic)]
        mode: ModeArg,
    },
    /// Replay a recorded editing trace (josephg/editing-traces format, gzipped or plain
    /// JSON) through the sync service: one simulated node per author (a sequential trace:
    /// its author and a follower), each transaction one local `Edit` naming the version its
    /// author saw, sync running live. Fails unless every node ends with `endContent`.
    ReplayTrace {
        /// The trace file, e.g. ../shared/data/editing-traces/friendsforever.json.gz.
        file: std::path::PathBuf,
        /// Network mode.
        #[arg(long, value_enum, default_value_t = ModeArg::Both)]
        mode: ModeArg,
        /// Seed of the simulated network.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Virtual milliseconds between one edit's answer and the next edit.
        #[arg(long, default_value_t = 0)]
        gap_ms: u64,
    },
    /// List the scenarios.
    List,
    /// Run a simulated cluster in real time and serve the UI, each node's HTTP API and
    /// WebSocket, and fault controls on http://127.0.0.1:<port>/ until Ctrl-C.
    Playground {
        /// Nodes (alice.os, bob.os, charlie.os, ...), 1..=20.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Port on 127.0.0.1 (0: any free port; the URL is printed).
        #[arg(long, default_value_t = 8090)]
        port: u16,
        /// The built UI (default: ui/dist of this workspace).
        #[arg(long)]
        ui: Option<std::path::PathBuf>,
        /// The simulator's seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn pick(service: &Option<String>) -> Result<Vec<Box<dyn scenarios::Scenario>>, String> {
    match service {
        None => Ok(scenarios::all()),
        Some(s) => scenarios::find(s).map(|x| vec![x]).ok_or_else(|| {
            let names: Vec<_> = scenarios::all().iter().map(|s| s.name()).collect();
            format!("no scenario {s:?}; known: {}", names.join(", "))
        }),
    }
}

fn nodes_for(sc: &dyn scenarios::Scenario, nodes: Option<usize>) -> Result<usize, String> {
    let n = nodes.unwrap_or(sc.default_nodes());
    let min = sc.min_nodes();
    if n < min || n > MAX_NODES {
        return Err(format!(
            "--nodes {n} is out of range for {}: use {min}..={MAX_NODES}",
            sc.name()
        ));
    }
    Ok(n)
}

fn usage_error(msg: String) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Playground {
            nodes,
            port,
            ui,
            seed,
        } => {
            let opts = p2p_sim::playground::Options {
                nodes,
                port,
                ui_dir: ui.unwrap_or_else(p2p_sim::playground::default_ui_dir),
                seed,
            };
            match p2p_sim::playground::run(opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => usage_error(e),
            }
        }
        Cmd::List => {
            for s in scenarios::all() {
                println!(
                    "{} (default {} nodes, at least {})",
                    s.name(),
                    s.default_nodes(),
                    s.min_nodes()
                );
            }
            ExitCode::SUCCESS
        }
        Cmd::Check {
            seeds,
            from,
            service,
            nodes,
            mode,
        } => {
            if seeds == 0 {
                return usage_error("--seeds must be at least 1 (0 would check nothing)".into());
            }
            let Some(end) = from.checked_add(seeds) else {
                return usage_error(format!(
                    "--from {from} plus --seeds {seeds} runs past the last seed {}",
                    u64::MAX
                ));
            };
            let list = match pick(&service) {
                Ok(l) => l,
                Err(e) => return usage_error(e),
            };
            let mut plan = Vec::new();
            for sc in &list {
                match nodes_for(sc.as_ref(), nodes) {
                    Ok(n) => plan.push((sc, n)),
                    Err(e) => return usage_error(e),
                }
            }
            let modes = mode.modes();
            let total = seeds
                .saturating_mul(plan.len() as u64)
                .saturating_mul(modes.len() as u64);
            println!(
                "checking {total} runs: {seeds} seeds × {} scenario(s) ({}) × {} mode(s) ({})",
                plan.len(),
                plan.iter()
                    .map(|(s, _)| s.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                modes.len(),
                modes
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let started = Instant::now();
            let (mut passed, mut failed) = (0u64, 0u64);
            let mut last_progress = Instant::now();
            for (sc, n) in &plan {
                for &m in &modes {
                    for seed in from..end {
                        match sc.run(seed, *n, m, false) {
                            Ok(_) => passed += 1,
                            Err(e) => {
                                failed += 1;
                                // Re-run the seed with recording on to show how it got there.
                                let mut e = match sc.run(seed, *n, m, true) {
                                    Err(full) => full,
                                    Ok(_) => e,
                                };
                                e.replay = Some(replay_command(sc.name(), seed, *n, m));
                                eprintln!("FAIL {} ({}) {e}", sc.name(), m.name());
                            }
                        }
                        if last_progress.elapsed().as_secs() >= 10 {
                            last_progress = Instant::now();
                            eprintln!(
                                "… {}/{total} runs, {failed} failed, {:.0}s",
                                passed + failed,
                                started.elapsed().as_secs_f64()
                            );
                        }
                    }
                }
            }
            println!("{passed} passed, {failed} failed");
            if failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Cmd::Bench {
            service,
            json,
            check,
        } => {
            let list: Vec<Box<dyn scenarios::Scenario>> = match &service {
                Some(name) => match scenarios::find(name) {
                    Some(sc) => vec![sc],
                    None => return usage_error(format!("no scenario {name:?} (see `list`)")),
                },
                None if check => scenarios::all()
                    .into_iter()
                    .filter(|sc| sc.bench_targets(&serde_json::Map::new()).is_some())
                    .collect(),
                None => return usage_error(
                    "name a scenario (see `list`), or use --check to check every one with targets"
                        .into(),
                ),
            };
            if list.is_empty() {
                return usage_error("no scenario has bench targets to check".into());
            }
            let mut missed = 0usize;
            for sc in list {
                let started = Instant::now();
                let mut m = if check {
                    sc.bench_for_check()
                } else {
                    sc.bench()
                };
                m.insert("service".into(), serde_json::json!(sc.name()));
                let targets = sc.bench_targets(&m);
                let v = serde_json::Value::Object(m);
                if json {
                    println!("{v}");
                } else {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                }
                if !check {
                    continue;
                }
                match targets {
                    None => {
                        return usage_error(format!(
                            "scenario {:?} has no bench targets to check",
                            sc.name()
                        ))
                    }
                    Some(failures) => {
                        for f in &failures {
                            eprintln!("MISSED {}: {f}", sc.name());
                        }
                        missed += failures.len();
                        eprintln!(
                            "bench {}: {} target(s) missed ({:.1}s)",
                            sc.name(),
                            failures.len(),
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
            }
            if missed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Cmd::ReplayTrace {
            file,
            mode,
            seed,
            gap_ms,
        } => {
            let trace = match p2p_sim::editing::EditingTrace::load(&file) {
                Ok(t) => t,
                Err(e) => return usage_error(e),
            };
            let mut ok = true;
            for m in mode.modes() {
                let started = Instant::now();
                match p2p_sim::editing::replay(&trace, m, seed, gap_ms) {
                    Ok(r) => {
                        println!(
                            "{}: {} transactions by {} author(s) on {} nodes: {}; {:.1} s of virtual time, {} messages, {} bytes between nodes, {} edits waited for the other's changes ({:.1} s wall)",
                            m.name(),
                            r.txns,
                            trace.agents,
                            r.nodes,
                            if r.matches {
                                format!(
                                    "every node's text equals endContent ({} characters)",
                                    trace.end.chars().count()
                                )
                            } else {
                                "the texts DIFFER from endContent".to_string()
                            },
                            r.virtual_ms as f64 / 1000.0,
                            r.msgs,
                            r.bytes,
                            r.waits,
                            started.elapsed().as_secs_f64()
                        );
                        ok &= r.matches;
                    }
                    Err(e) => {
                        eprintln!("FAIL replay-trace ({}): {e}", m.name());
                        ok = false;
                    }
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Replay {
            seed,
            service,
            nodes,
            mode,
        } => {
            let Some(sc) = scenarios::find(&service) else {
                return usage_error(format!("no scenario {service:?} (see `list`)"));
            };
            let n = match nodes_for(sc.as_ref(), nodes) {
                Ok(n) => n,
                Err(e) => return usage_error(e),
            };
            let m = match mode {
                ModeArg::Both => {
                    return usage_error("replay runs one mode: realistic or hostile".into())
                }
                ModeArg::Realistic => Mode::Realistic,
                ModeArg::Hostile => Mode::Hostile,
            };
            let result = sc.run(seed, n, m, true);
            let (sim_trace, verdict) = match &result {
                Ok(sim) => (
                    sim.trace.all().map(|a| a.to_vec()).unwrap_or_default(),
                    "passed".to_string(),
                ),
                Err(e) => (
                    e.trace.clone().unwrap_or_else(|| e.trace_tail.clone()),
                    format!("FAILED: {e}"),
                ),
            };
            for l in sim_trace {
                println!("{l}");
            }
            if let Ok(sim) = &result {
                println!("trace digest {}", sim.trace_digest());
            }
            println!("seed {seed} {verdict}");
            if result.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
