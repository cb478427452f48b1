//! `cargo xtask docs`: the generated tables of docs/performance.md (and the benchmark table
//! of docs/sync.md, from `p2p-sim bench sync --check --json`), and the `docs-check`
//! step of `cargo xtask test` that fails when one of their deterministic figures differs from
//! what `cargo xtask build` and the simulator benches print now.
//!
//! A generated block is the text between a `<!-- generated: <name> -->` line and the next
//! `<!-- end -->` line. `cargo xtask docs` rewrites every block from
//! `p2p-sim bench ping --json`, `p2p-sim bench presence --json`, `p2p-sim bench notify
//! --json` (release build) and the
//! package build; the text around the blocks is left alone.
//!
//! What is checked: every line of a block except those starting with [`MEASURED`], which hold
//! wall-clock times (never deterministic). Message counts, virtual-time latencies, detection
//! periods and false positives repeat exactly for the same p2p-sim binary. Component and zip
//! sizes repeat for the same toolchain and cargo home (panic messages embed the paths of
//! registry crates), so the package block is compared only when its "Exact for" line, which
//! names both, matches this machine.
//!
//! The benches run once per p2p-sim binary: their JSON is kept in `target/xtask-docs/` with
//! the binary's sha256, and reused while the binary is the same (the presence bench costs
//! about 70 s of CPU).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::{fsutil, pkgbuild, pkgzip, workspace};

/// The generated document, relative to the workspace root.
pub const DOC: &str = "docs/performance.md";
/// The sync design document, whose live-wire figures are a generated block too (from
/// `p2p-sim bench sync --check --json`, the run the `bench` step asserts).
pub const SYNC_DOC: &str = "docs/sync.md";
/// Lines of a block starting with this are wall-clock measurements: rewritten, never checked.
pub const MEASURED: &str = "Measured on ";
/// The `check` whose wall-clock time the docs state (what the `sim` step of
/// `cargo xtask test` runs).
pub const CHECK_ARGS: &[&str] = &["check", "--seeds", "200"];
const END: &str = "<!-- end -->";
const EXACT_FOR: &str = "Exact for ";

fn start_marker(name: &str) -> String {
    format!("<!-- generated: {name} -->")
}

/// One generated block: its name and its lines (without the markers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub name: &'static str,
    pub text: String,
    /// A line the document's block must hold exactly for the rest to be compared (the
    /// package block's toolchain and cargo home); None = always compared.
    pub only_if: Option<String>,
}

/// What the package build printed.
#[derive(Debug, Clone)]
pub struct Package {
    /// (file name, bytes, interface summary), in build order.
    pub components: Vec<(String, u64, String)>,
    pub zip_name: String,
    pub zip_size: u64,
    pub zip_sha256: String,
    /// `rustc --version`.
    pub toolchain: String,
    pub cargo_home: String,
}

/// Wall-clock figures of this run (only for `Measured on` lines).
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// e.g. `2026-11-28 (linux x86_64, 2 cores)`.
    pub machine: String,
    /// `cargo xtask build`: seconds and what it recompiled.
    pub build: Option<(f64, String)>,
    pub check_secs: Option<f64>,
}

/// Everything the blocks are made from.
pub struct Inputs {
    pub ping: Value,
    pub presence: Value,
    pub notify: Value,
    /// `p2p-sim bench sync --check --json` (the trace prefix the `bench` step runs).
    pub sync: Value,
    pub package: Package,
    pub measured: Measured,
}

// ----- reading the bench JSON -----

fn get<'a>(bench: &'a Value, key: &str) -> Result<&'a Value> {
    let service = bench.get("service").and_then(Value::as_str).unwrap_or("?");
    bench.get(key).filter(|v| !v.is_null()).with_context(|| {
        format!(
            "`p2p-sim bench {service} --json` printed no `{key}`; the generator in \
             xtask/src/perfdocs.rs and the bench in test/sim/src/scenarios/{service}.rs must \
             agree"
        )
    })
}

fn num(bench: &Value, key: &str) -> Result<f64> {
    get(bench, key)?
        .as_f64()
        .with_context(|| format!("`{key}` is not a number: {}", bench[key]))
}

fn int(bench: &Value, key: &str) -> Result<u64> {
    let v = num(bench, key)?;
    ensure!(
        v >= 0.0 && v.fract() == 0.0,
        "`{key}` is not a whole number: {v}"
    );
    Ok(v as u64)
}

fn num_at(bench: &Value, key: &str, sub: &str) -> Result<f64> {
    get(bench, key)?
        .get(sub)
        .and_then(Value::as_f64)
        .with_context(|| format!("`{key}` has no number `{sub}`: {}", bench[key]))
}

// ----- formatting -----

/// 1234567 → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Two decimals: periods and per-period rates.
fn dec2(x: f64) -> String {
    format!("{x:.2}")
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

fn percent(p: f64) -> String {
    let pct = p * 100.0;
    if (pct - pct.round()).abs() < 1e-9 {
        format!("{pct:.0}%")
    } else {
        format!("{pct:.1}%")
    }
}

/// The simulator mode of a run with this loss and duplication (docs/simulator.md):
/// realistic, or hostile with its rates.
pub fn mode(loss: f64, duplicate: f64) -> String {
    match (loss > 0.0, duplicate > 0.0) {
        (false, false) => "realistic".to_string(),
        (true, false) => format!("hostile ({} loss)", percent(loss)),
        (false, true) => format!("hostile ({} duplication)", percent(duplicate)),
        (true, true) => format!(
            "hostile ({} loss, {} duplication)",
            percent(loss),
            percent(duplicate)
        ),
    }
}

fn secs(ms: f64) -> String {
    format!("{:.1} s", ms / 1000.0)
}

/// A setting in milliseconds as people say it: `500 ms`, `6 s`, `1.5 s`.
fn duration(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms % 1000.0 == 0.0 {
        format!("{:.0} s", ms / 1000.0)
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

fn by_n(bench: &Value, key: &str, sizes: &[u64], fmt: fn(f64) -> String) -> Result<String> {
    let values: Result<Vec<String>> = sizes
        .iter()
        .map(|n| num_at(bench, key, &n.to_string()).map(fmt))
        .collect();
    Ok(values?.join(" / "))
}

/// A table row; an empty cell is `| |`.
fn row(cells: &[&str]) -> String {
    let mut line = "|".to_string();
    for c in cells {
        if c.is_empty() {
            line.push_str(" |");
        } else {
            line.push_str(&format!(" {c} |"));
        }
    }
    line
}

/// A ratio: `2,375` when whole, else two decimals.
fn ratio(x: f64) -> String {
    if x.fract() == 0.0 && x >= 0.0 {
        thousands(x as u64)
    } else {
        dec2(x)
    }
}

// ----- the blocks -----

/// Every block, in document order.
pub fn render(inputs: &Inputs) -> Result<Vec<Block>> {
    Ok(vec![
        render_package(&inputs.package, &inputs.measured),
        render_ping(&inputs.ping, &inputs.measured)?,
        render_presence(&inputs.presence, &inputs.measured)?,
        render_notify(&inputs.notify)?,
    ])
}

/// The blocks of docs/performance.md: every block of [`render`], then sync's benchmark
/// table, which docs/sync.md holds as well (the issue asks for the numbers here).
pub fn render_performance(inputs: &Inputs) -> Result<Vec<Block>> {
    let mut blocks = render(inputs)?;
    blocks.push(render_sync_live(&inputs.sync)?);
    Ok(blocks)
}

/// The blocks of docs/sync.md.
pub fn render_sync_doc(inputs: &Inputs) -> Result<Vec<Block>> {
    Ok(vec![render_sync_live(&inputs.sync)?])
}

/// `a / b = r` with the ratio to `digits` decimals.
fn over(a: u64, b: u64, digits: usize) -> String {
    let r = if b == 0 { 0.0 } else { a as f64 / b as f64 };
    format!("{} / {} = {r:.digits$}", thousands(a), thousands(b))
}

/// docs/sync.md's benchmark table, from `p2p-sim bench sync --check --json`: every figure
/// there is virtual time, bytes or messages, the same for the same binary.
fn render_sync_live(b: &Value) -> Result<Block> {
    let ops = int(b, "trace_ops")?;
    let link = int(b, "link_ms")?;
    let wire = int(b, "live_wire_bytes")?;
    let lib = int(b, "library_batch_bytes")?;
    let full = int(b, "baseline_full_state_bytes")?;
    let lines = [
        format!(
            "The first {} transactions of the trace (`bench sync --check`, {link} ms links):",
            thousands(ops)
        ),
        String::new(),
        "| figure | target | measured |".into(),
        "|---|---|---|".into(),
        row(&[
            "`edit_to_peer_p99_ms` (app's request to bob holding it)",
            &format!("≤ one round trip + 100 ms ({})", 2 * link + 100),
            &format!(
                "{} (p50 {})",
                thousands(int(b, "edit_to_peer_p99_ms")?),
                thousands(int(b, "edit_to_peer_p50_ms")?)
            ),
        ]),
        row(&[
            "`live_wire_bytes` / `library_batch_bytes` (opening Deltas and Acks, live frames and their answers, both ways / the library's updates at the same flush points)",
            "≤ 1.1",
            &format!(
                "{} ({} messages: {} bytes of opening `Delta`s and `Ack`s, {} of frames, {} of `LiveAck`s; {} batches)",
                over(wire, lib, 2),
                thousands(int(b, "live_msgs")?),
                thousands(int(b, "live_delta_bytes")?),
                thousands(int(b, "live_frame_bytes")?),
                thousands(int(b, "live_frame_answer_bytes")?),
                thousands(int(b, "live_batches")?),
            ),
        ]),
        row(&[
            "`live_wire_bytes` / `baseline_full_state_bytes` (the guide's pattern 3: the whole text and a hash at each flush point)",
            "≤ 0.1",
            &over(wire, full, 3),
        ]),
        row(&[
            "`catchup_bytes` / `library_update_bytes` (every byte to and from charlie until level / the library's raw export of all updates)",
            "≤ 0.6",
            &over(int(b, "catchup_bytes")?, int(b, "library_update_bytes")?, 2),
        ]),
        row(&[
            "`heal_round_trips`",
            "≤ 2",
            &format!(
                "{} ({} messages; Automerge: {} messages)",
                int(b, "heal_round_trips")?,
                int(b, "heal_msgs")?,
                int(b, "automerge_heal_msgs")?
            ),
        ]),
        row(&[
            "`heal_bytes` against `automerge_heal_bytes`",
            "fewer",
            &format!(
                "{} against {}",
                thousands(int(b, "heal_bytes")?),
                thousands(int(b, "automerge_heal_bytes")?)
            ),
        ]),
        row(&[
            "`converged` (three-node edits, live, catch-up, heal, the 30 MB join)",
            "true",
            &get(b, "converged")?.to_string(),
        ]),
    ];
    Ok(Block {
        name: "sync-live",
        text: lines.join("\n"),
        only_if: None,
    })
}

fn exact_for(p: &Package) -> String {
    format!(
        "{EXACT_FOR}`{}` with the cargo home at `{}`: panic messages embed the paths of \
         registry crates, so another toolchain or cargo home gives other sizes; `docs-check` \
         compares this table only where both match.",
        p.toolchain, p.cargo_home
    )
}

fn render_package(p: &Package, m: &Measured) -> Block {
    let mut lines = vec!["| file | bytes |".to_string(), "|---|---|".to_string()];
    for (name, size, _) in &p.components {
        lines.push(row(&[
            &format!("`{name}`"),
            &format!("{} ({})", thousands(*size), kib(*size)),
        ]));
    }
    lines.push(row(&[
        &format!("`{}`", p.zip_name),
        &format!(
            "{} ({}), sha256 `{}`",
            thousands(p.zip_size),
            kib(p.zip_size),
            p.zip_sha256
        ),
    ]));
    lines.push(String::new());
    let mut reports: Vec<&str> = p.components.iter().map(|c| c.2.as_str()).collect();
    reports.dedup();
    if let [one] = reports[..] {
        lines.push(format!("Every component {one}."));
    } else {
        for (name, _, report) in &p.components {
            lines.push(format!("`{name}` {report}."));
        }
    }
    lines.push(String::new());
    let exact = exact_for(p);
    lines.push(exact.clone());
    lines.push(String::new());
    let build = m
        .build
        .as_ref()
        .map_or("not measured".to_string(), |(s, what)| {
            format!("{s:.1} s (wasm build: {what})")
        });
    lines.push(format!(
        "{MEASURED}{}: `cargo xtask build` took {build}.",
        m.machine
    ));
    Block {
        name: "package",
        text: lines.join("\n"),
        only_if: Some(exact),
    }
}

fn render_ping(b: &Value, m: &Measured) -> Result<Block> {
    let links = get(b, "link_latency_ms")?;
    let (lo, hi) = (links[0].as_u64(), links[1].as_u64());
    let (Some(lo), Some(hi)) = (lo, hi) else {
        bail!("`link_latency_ms` is not [min, max]: {links}");
    };
    let realistic = mode(0.0, 0.0);
    let max_req = int(b, "max_request_bytes")?;
    let lines = vec![
        format!(
            "`cargo run --release -p p2p-sim -- bench ping --json`: {} nodes (`ping_nodes`) \
             hosting the four processes and the test echo core, links {lo}–{hi} ms \
             (`link_latency_ms`), no faults.",
            int(b, "ping_nodes")?
        ),
        String::new(),
        "| key | what | mode | value |".to_string(),
        "|---|---|---|---|".to_string(),
        row(&[
            "`ping_rtt_ms_p50` / `ping_rtt_ms_p99`",
            &format!(
                "remote Ping round trip, virtual time ({} of {} answered)",
                thousands(int(b, "ping_answered")?),
                thousands(int(b, "ping_requests")?)
            ),
            &realistic,
            &format!(
                "{} ms / {} ms",
                int(b, "ping_rtt_ms_p50")?,
                int(b, "ping_rtt_ms_p99")?
            ),
        ]),
        row(&[
            "`bytes_per_ping_exchange`",
            "bytes on the wire per Ping (request + response)",
            &realistic,
            &thousands(int(b, "bytes_per_ping_exchange")?),
        ]),
        row(&[
            "`sim_hour_3_nodes_msgs`",
            "messages in a simulated hour of 3 nodes (all four processes, echo every second)",
            &realistic,
            &thousands(int(b, "sim_hour_3_nodes_msgs")?),
        ]),
        row(&[
            "`sim_minute_1000_nodes_msgs`",
            "messages in a simulated minute of 1,000 nodes (echo every 5 s)",
            &realistic,
            &thousands(int(b, "sim_minute_1000_nodes_msgs")?),
        ]),
        row(&[
            "`max_request_bytes`",
            "largest request body the Ping/Info cores (sync, notify) accept",
            "a constant",
            &format!("{} ({} MiB)", thousands(max_req), max_req >> 20),
        ]),
        String::new(),
        format!(
            "{MEASURED}{}: the 1,000 pings took {} ms wall (`ping_wall_ms`), the simulated \
             hour {} ms (`sim_hour_3_nodes_wall_ms`), the simulated minute of 1,000 nodes \
             {} ms (`sim_minute_1000_nodes_wall_ms`); `p2p-sim {}` (every scenario in both \
             modes, invariants after every event) took {}.",
            m.machine,
            thousands(num(b, "ping_wall_ms")?.round() as u64),
            thousands(num(b, "sim_hour_3_nodes_wall_ms")?.round() as u64),
            thousands(num(b, "sim_minute_1000_nodes_wall_ms")?.round() as u64),
            CHECK_ARGS.join(" "),
            m.check_secs
                .map_or("not measured".to_string(), |s| format!("{s:.1} s"))
        ),
    ];
    Ok(Block {
        name: "ping",
        text: lines.join("\n"),
        only_if: None,
    })
}

/// The cluster sizes of a `{"25": x, "100": y, ...}` figure, in numeric order.
fn sizes(bench: &Value, key: &str) -> Result<Vec<u64>> {
    let obj = get(bench, key)?
        .as_object()
        .with_context(|| format!("`{key}` is not an object of sizes"))?;
    let mut n: Vec<u64> = obj
        .keys()
        .map(|k| {
            k.parse()
                .with_context(|| format!("`{key}` has a size `{k}`"))
        })
        .collect::<Result<_>>()?;
    n.sort_unstable();
    Ok(n)
}

fn thousands_f(x: f64) -> String {
    thousands(x.round() as u64)
}

fn sizes_label(n: &[u64]) -> String {
    let n: Vec<String> = n.iter().map(|x| thousands(*x)).collect();
    format!("{} nodes", n.join(" / "))
}

/// Periods, or `—` when the bench printed none (fewer than half the crashes detected).
fn periods_or_dash(v: &Value) -> String {
    v.as_f64().map_or("—".to_string(), dec2)
}

fn render_presence(b: &Value, m: &Measured) -> Result<Block> {
    let period = int(b, "period_ms")?;
    let cfg = get(b, "config")?;
    let cfg_ms = |k: &str| -> Result<String> {
        let v = cfg
            .get(k)
            .and_then(Value::as_f64)
            .with_context(|| format!("`config` has no `{k}`"))?;
        Ok(duration(v))
    };
    let k = cfg
        .get("indirect_probes")
        .and_then(Value::as_u64)
        .context("`config` has no `indirect_probes`")?;
    let links = get(b, "link_latency_ms")?;
    let realistic = mode(0.0, 0.0);
    let hostile = mode(
        num(b, "detect_hostile_loss")?,
        num(b, "detect_hostile_duplicate")?,
    );
    let load_hostile = mode(
        num(b, "load_hostile_loss")?,
        num(b, "load_hostile_duplicate")?,
    );
    let fp_mode = mode(num(b, "fp_loss")?, 0.0);
    let nodes = int(b, "detect_nodes")?;
    let periods = |key: &str| -> Result<String> { Ok(format!("{} periods", dec2(num(b, key)?))) };
    let fp = int(b, "false_positives")?;
    let base_fp = int(b, "baseline_false_positives")?;
    let fixed = num(b, "baseline_fixed_timeout_periods")?;
    let fp_nodes = int(b, "fp_nodes")?;
    let max_body = int(b, "max_body_bytes")?;
    let series = |key: &str, fmt: fn(f64) -> String| -> Result<(String, String)> {
        let n = sizes(b, key)?;
        Ok((sizes_label(&n), by_n(b, key, &n, fmt)?))
    };
    let (conv_n, conv) = series("converge_periods_by_n", dec2)?;
    let (_, join_one) = series("join_one_periods_by_n", dec2)?;
    let (load_n, msgs) = series("msgs_per_node_per_period_by_n", dec2)?;
    let (load_nh, msgs_h) = series("msgs_per_node_per_period_by_n_hostile", dec2)?;
    let (_, bytes) = series("bytes_per_node_per_period_by_n", thousands_f)?;
    let (_, bytes_h) = series("bytes_per_node_per_period_by_n_hostile", thousands_f)?;
    let (_, digest) = series("digest_bytes_per_node_per_period_by_n", thousands_f)?;
    let (pre_n, pre_msgs) = series("preloaded_msgs_per_node_per_period_by_n", dec2)?;
    let (_, pre_bytes) = series("preloaded_bytes_per_node_per_period_by_n", thousands_f)?;
    let (_, pre_digest) = series(
        "preloaded_digest_bytes_per_node_per_period_by_n",
        thousands_f,
    )?;
    let checked = "✓";
    let mut lines = vec![
        format!(
            "`cargo run --release -p p2p-sim -- bench presence --json`, default settings \
             (`config`: period {}, probe timeout {}, k = {k}, gossip every {}), links {}–{} ms \
             (`link_latency_ms`). The mode column comes from `detect_hostile_loss`, \
             `detect_hostile_duplicate`, `load_hostile_loss`, `load_hostile_duplicate` and \
             `fp_loss`; the node, crash and period counts from `detect_nodes`, \
             `detect_trials`, `detect_hostile_trials`, `load_periods`, `fp_nodes` and \
             `fp_periods`. Targets marked {checked} are asserted by `p2p-sim bench presence \
             --check` (the `bench` step of `cargo xtask test`).",
            duration(period as f64),
            cfg_ms("probe_timeout_ms")?,
            cfg_ms("gossip_interval_ms")?,
            links[0],
            links[1]
        ),
        String::new(),
        "| key | what | mode | value | target |".to_string(),
        "|---|---|---|---|---|".to_string(),
        row(&[
            "`detect_periods_median`",
            &format!(
                "crash → first Dead verdict, {nodes} nodes, {} crashes (3 clusters)",
                int(b, "detect_trials")?
            ),
            &realistic,
            &format!(
                "**{}** ({})",
                periods("detect_periods_median")?,
                secs(num(b, "detect_seconds_median")? * 1000.0)
            ),
            &format!("≤ 2 {checked}"),
        ]),
        row(&[
            "`detect_periods_p99`",
            "the same, 99th percentile",
            &realistic,
            &periods("detect_periods_p99")?,
            "",
        ]),
        row(&[
            "`detect_all_periods_median`",
            "crash → every other node's Dead verdict",
            &realistic,
            &periods("detect_all_periods_median")?,
            "",
        ]),
        row(&[
            "`clustered_crash_detect_periods_median`",
            &format!(
                "{} of {} nodes crash at once (`clustered_crash_crashed`, `clustered_crash_nodes`; \
                 {} victims in all): crash → first Dead verdict about each",
                int(b, "clustered_crash_crashed")?,
                int(b, "clustered_crash_nodes")?,
                int(b, "clustered_crash_victims")?
            ),
            &realistic,
            &format!(
                "**{}** (every live node's verdict: median {}, last {})",
                periods_or_dash(get(b, "clustered_crash_detect_periods_median")?),
                periods_or_dash(get(b, "clustered_crash_all_periods_median")?),
                periods_or_dash(get(b, "clustered_crash_all_periods_max")?)
            ),
            &format!("≤ 1.5 × 2 = 3 {checked}"),
        ]),
        row(&[
            "`detect_hostile_periods_median`",
            &format!(
                "crash → first Dead verdict, {nodes} nodes, {} crashes (1 cluster)",
                int(b, "detect_hostile_trials")?
            ),
            &hostile,
            &format!("**{}**", periods("detect_hostile_periods_median")?),
            "",
        ]),
        row(&[
            "`detect_hostile_periods_p99`",
            "the same, 99th percentile",
            &hostile,
            &periods("detect_hostile_periods_p99")?,
            "",
        ]),
        row(&[
            "`detect_hostile_all_periods_median`",
            "crash → every other node's Dead verdict",
            &hostile,
            &periods("detect_hostile_all_periods_median")?,
            "",
        ]),
        row(&[
            "`false_positives`",
            &format!(
                "NodeDead events about live nodes at every node's subscriber, {fp_nodes} nodes, \
                 {} periods, one node {} slow, nobody crashes",
                thousands(int(b, "fp_periods")?),
                duration(num(b, "fp_slow_node_delay_ms")?)
            ),
            &fp_mode,
            &format!(
                "**{}** ({} suspicions started, `suspicions_during_fp_run`)",
                thousands(fp),
                thousands(int(b, "suspicions_during_fp_run")?)
            ),
            "",
        ]),
        row(&[
            "`baseline_false_positives`",
            &format!(
                "Dead verdicts of the all-to-all heartbeat at a fixed {} timeout \
                 (`baseline_fixed_timeout_periods`), same run",
                n_period(fixed)
            ),
            &fp_mode,
            &format!("**{}**", thousands(base_fp)),
            "",
        ]),
        row(&[
            "`fp_ratio_baseline_over_ours`",
            "baseline / max(ours, 1)",
            &fp_mode,
            &format!("**{}×**", ratio(num(b, "fp_ratio_baseline_over_ours")?)),
            &format!("≥ 50 {checked}"),
        ]),
        row(&[
            "`converge_periods_by_n`",
            &format!("{conv_n} joining through one bootstrap at once, until all see all"),
            &realistic,
            &conv,
            "",
        ]),
        row(&[
            "`join_one_periods_by_n`",
            "one more node joining the converged cluster, until it sees all and all see it \
             (same runs)",
            &realistic,
            &join_one,
            "",
        ]),
        row(&[
            "`msgs_per_node_per_period_by_n`",
            &format!(
                "messages per node and period in steady state over {} periods, {load_n}",
                int(b, "load_periods")?
            ),
            &realistic,
            &format!("**{msgs}**"),
            &format!("flat: largest / smallest ≤ 1.10 {checked}"),
        ]),
        row(&[
            "`msgs_per_node_per_period_by_n_hostile`",
            &format!("the same, {load_nh}"),
            &load_hostile,
            &format!("**{msgs_h}**"),
            &format!("flat: largest / smallest ≤ 1.10 {checked}"),
        ]),
        row(&[
            "`bytes_per_node_per_period_by_n`",
            &format!("bytes per node and period, same runs, {load_n}"),
            &realistic,
            &bytes,
            "",
        ]),
        row(&[
            "`bytes_per_node_per_period_by_n_hostile`",
            &format!("the same, {load_nh}"),
            &load_hostile,
            &bytes_h,
            "",
        ]),
        row(&[
            "`digest_bytes_per_node_per_period_by_n`",
            "of which digest requests (`PushPull`, one line per member, every minute ± 25%)",
            &realistic,
            &digest,
            "",
        ]),
        row(&[
            "`preloaded_msgs_per_node_per_period_by_n`",
            &format!(
                "messages per node and period, cluster started converged from records, \
                 {} periods, {pre_n}",
                int(b, "preloaded_periods")?
            ),
            &realistic,
            &pre_msgs,
            "",
        ]),
        row(&[
            "`preloaded_bytes_per_node_per_period_by_n`",
            &format!("bytes per node and period, same runs, {pre_n}"),
            &realistic,
            &pre_bytes,
            "",
        ]),
        row(&[
            "`preloaded_digest_bytes_per_node_per_period_by_n`",
            "of which digest requests",
            &realistic,
            &pre_digest,
            "",
        ]),
        row(&[
            "`bytes_per_msg`",
            "steady state, 100 nodes",
            &realistic,
            &thousands(num(b, "bytes_per_msg")?.round() as u64),
            "",
        ]),
        row(&[
            "`max_body_bytes`",
            "largest request body presence accepts",
            "a constant",
            &format!("{} ({} MiB)", thousands(max_body), max_body >> 20),
            "",
        ]),
    ];
    // Presence against the baseline at equal false positives, per mode.
    let modes = [
        ("compare_realistic", get(b, "compare_realistic")?),
        ("compare_hostile", get(b, "compare_hostile")?),
    ];
    let c0 = modes[1].1;
    let field = |c: &Value, k: &str| -> Result<f64> {
        c.get(k)
            .and_then(Value::as_f64)
            .with_context(|| format!("a `compare_*` object has no number `{k}`"))
    };
    lines.extend([
        String::new(),
        format!(
            "Presence against the baseline at equal false positives (`compare_realistic`, \
             `compare_hostile`): {} nodes, {} periods without crashes for the false positives \
             (one node {} slow throughout), then {} crashes one at a time for detection, in \
             the same network. The baseline is an all-to-all fixed-timeout heartbeat; its \
             timeout is swept ({}), and *tuned* is the smallest timeout whose false positives \
             are no more than presence's. Detection is crash → the first Dead verdict given \
             after the crash. Target {checked}: in hostile mode presence detects faster than \
             the tuned baseline.",
            field(c0, "nodes")?,
            thousands(field(c0, "periods")? as u64),
            duration(field(c0, "slow_ms")?),
            field(c0, "trials")?,
            sweep_label(c0)?,
        ),
        String::new(),
        "| mode | system | false positives | detection median | messages per node and period |"
            .to_string(),
        "|---|---|---|---|---|".to_string(),
    ]);
    for (key, c) in &modes {
        let md = mode(field(c, "loss")?, 0.0);
        let p = c
            .get("presence")
            .with_context(|| format!("`{key}` has no `presence`"))?;
        let base_msgs = dec2(field(c, "baseline_msgs_per_node_per_period")?);
        lines.push(row(&[
            &md,
            "presence",
            &format!("**{}**", thousands(field(p, "false_positives")? as u64)),
            &format!("**{}**", periods_or_dash(&p["detect_periods_median"])),
            &dec2(field(p, "msgs_per_node_per_period")?),
        ]));
        match c.get("tuned").filter(|t| !t.is_null()) {
            Some(t) => lines.push(row(&[
                &md,
                &format!(
                    "heartbeat, tuned: {} timeout",
                    n_period(field(t, "timeout_periods")?)
                ),
                &thousands(field(t, "false_positives")? as u64),
                &format!("**{}**", periods_or_dash(&t["detect_periods_median"])),
                &base_msgs,
            ])),
            None => lines.push(row(&[
                &md,
                "heartbeat, tuned: no swept timeout gets down to presence's false positives",
                "",
                "",
                &base_msgs,
            ])),
        }
        let sweep = c
            .get("baseline_sweep")
            .and_then(Value::as_array)
            .with_context(|| format!("`{key}` has no `baseline_sweep`"))?;
        if let Some(f) = sweep
            .iter()
            .find(|r| r["timeout_periods"].as_f64() == Some(fixed))
        {
            lines.push(row(&[
                &md,
                &format!("heartbeat, fixed {} timeout", n_period(fixed)),
                &thousands(field(f, "false_positives")? as u64),
                &periods_or_dash(&f["detect_periods_median"]),
                &base_msgs,
            ]));
        }
    }
    // The whole sweep.
    let sweeps: Vec<&Vec<Value>> = modes
        .iter()
        .map(|(key, c)| {
            c.get("baseline_sweep")
                .and_then(Value::as_array)
                .with_context(|| format!("`{key}` has no `baseline_sweep`"))
        })
        .collect::<Result<_>>()?;
    let (mr, mh) = (
        mode(field(modes[0].1, "loss")?, 0.0),
        mode(field(modes[1].1, "loss")?, 0.0),
    );
    lines.extend([
        String::new(),
        "The baseline's whole sweep (`baseline_sweep`), same runs:".to_string(),
        String::new(),
        format!(
            "| timeout (periods) | {mr}: false positives | {mr}: detection median | {mh}: \
             false positives | {mh}: detection median |"
        ),
        "|---|---|---|---|---|".to_string(),
    ]);
    for (i, r) in sweeps[0].iter().enumerate() {
        let h = sweeps[1]
            .get(i)
            .filter(|h| h["timeout_periods"] == r["timeout_periods"])
            .context("the two sweeps have different timeouts")?;
        lines.push(row(&[
            &format!("{}", field(r, "timeout_periods")?),
            &thousands(field(r, "false_positives")? as u64),
            &periods_or_dash(&r["detect_periods_median"]),
            &thousands(field(h, "false_positives")? as u64),
            &periods_or_dash(&h["detect_periods_median"]),
        ]));
    }
    lines.extend([
        String::new(),
        format!(
            "{MEASURED}{}: one run took {} of CPU (`cpu_ms`), {} wall (`wall_ms`); of that, \
             the sections `bench presence --check` runs took {} of CPU, {} wall \
             (`targets_cpu_ms`, `targets_wall_ms`).",
            m.machine,
            secs(num(b, "cpu_ms")?),
            secs(num(b, "wall_ms")?),
            secs(num(b, "targets_cpu_ms")?),
            secs(num(b, "targets_wall_ms")?),
        ),
    ]);
    Ok(Block {
        name: "presence",
        text: lines.join("\n"),
        only_if: None,
    })
}

fn render_notify(b: &Value) -> Result<Block> {
    let hostile = mode(num(b, "lossy_loss")?, 0.05);
    let realistic = mode(0.0, 0.0);
    let lossy_nodes = int(b, "lossy_nodes")?;
    let topic_nodes = int(b, "topic_nodes")?;
    let lines = vec![
        format!(
            "`cargo run --release -p p2p-sim -- bench notify --json`: alice's app publishes \
             {} notifications, one a second, to a topic every other node's app subscribes to, \
             on {lossy_nodes} nodes (`lossy_nodes`) with a subscriber crashing or restarting \
             every 5 s, the guide's fire-and-forget loop alongside in the same run; then {} \
             notifications on a {topic_nodes}-node topic (`topic_nodes`) without faults. \
             A topic with {} or more subscriber nodes relays through a tree of fan-out {} \
             (the 200-node topic); the 20-node one is direct fan-out.",
            int(b, "lossy_published")?,
            int(b, "topic_published")?,
            int(b, "tree_threshold")?,
            int(b, "tree_fanout")?
        ),
        String::new(),
        "| key | what | mode | value | target |".to_string(),
        "|---|---|---|---|---|".to_string(),
        row(&[
            "`delivery_ratio`",
            "notifications the subscribers' apps received, of published × subscribers",
            &hostile,
            &percent(num(b, "delivery_ratio")?),
            "≥ 99.9% (asserted)",
        ]),
        row(&[
            "`baseline_delivery_ratio`",
            "the same for the guide's loop",
            &hostile,
            &percent(num(b, "baseline_delivery_ratio")?),
            "",
        ]),
        row(&[
            "`p50_delivery_ms` / `p99_delivery_ms`",
            "publish to app, virtual time (a crashed subscriber gets it when it is back)",
            &hostile,
            &format!(
                "{} / {}",
                duration(num(b, "p50_delivery_ms")?),
                duration(num(b, "p99_delivery_ms")?)
            ),
            "",
        ]),
        row(&[
            "`duplicates_at_apps`",
            "notifications an app received twice",
            &hostile,
            &thousands(int(b, "duplicates_at_apps")?),
            "0 (asserted)",
        ]),
        row(&[
            "`topic_delivery_ratio`",
            "delivery on the large topic",
            &realistic,
            &percent(num(b, "topic_delivery_ratio")?),
            "≥ 99.9% (asserted)",
        ]),
        row(&[
            "`payloads_per_receiver`",
            "payload copies sent per notification and receiver, by the publisher and every relay",
            &realistic,
            &dec2(num(b, "payloads_per_receiver")?),
            "≤ 1.5 (asserted)",
        ]),
        row(&[
            "`publisher_sends`",
            "payload copies the publisher sends per notification",
            &realistic,
            &dec2(num(b, "publisher_sends")?),
            "< 10 (asserted)",
        ]),
        row(&[
            "`publisher_messages`",
            "messages the publisher sends or receives per notification, acks included",
            &realistic,
            &dec2(num(b, "publisher_messages")?),
            "< 20 (asserted)",
        ]),
        row(&[
            "`repaired_publisher_sends` / `repaired_publisher_messages`",
            &format!(
                "the same two after a repair: {} of the publisher's tree children crash while \
                 6 notifications are published, and come back; measured from {} later",
                int(b, "repaired_relays")?,
                duration(num(b, "repair_wait_ms")?)
            ),
            &realistic,
            &format!(
                "{} / {}",
                dec2(num(b, "repaired_publisher_sends")?),
                dec2(num(b, "repaired_publisher_messages")?)
            ),
            "< 10 / < 20 (asserted)",
        ]),
        row(&[
            "`repaired_delivery_ratio`",
            "delivery on the large topic in that run (every notification, crashed relays included)",
            &realistic,
            &percent(num(b, "repaired_delivery_ratio")?),
            "≥ 99.9% (asserted)",
        ]),
        row(&[
            "`topic_p50_delivery_ms` / `topic_p99_delivery_ms`",
            "publish to app on the large topic, virtual time",
            &realistic,
            &format!(
                "{} / {}",
                duration(num(b, "topic_p50_delivery_ms")?),
                duration(num(b, "topic_p99_delivery_ms")?)
            ),
            "",
        ]),
    ];
    Ok(Block {
        name: "notify",
        text: lines.join("\n"),
        only_if: None,
    })
}

/// `3-period`, `1.5-period` (as in "a 3-period timeout").
fn n_period(p: f64) -> String {
    if p == 1.0 {
        "1-period".to_string()
    } else {
        format!("{p}-period")
    }
}

fn sweep_label(c: &Value) -> Result<String> {
    let t: Vec<String> = c
        .get("baseline_sweep")
        .and_then(Value::as_array)
        .context("a `compare_*` object has no `baseline_sweep`")?
        .iter()
        .map(|r| {
            r["timeout_periods"]
                .as_f64()
                .map_or("?".into(), |t| t.to_string())
        })
        .collect();
    Ok(format!("{} periods", t.join(", ")))
}

// ----- the document -----

/// Where a block sits in the document: the lines strictly between its markers.
struct Span {
    name: String,
    /// Line index of the start marker and of the end marker.
    start: usize,
    end: usize,
}

fn spans(doc: &str) -> Result<Vec<Span>> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut spans: Vec<Span> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(name) = line
            .strip_prefix("<!-- generated: ")
            .and_then(|r| r.strip_suffix(" -->"))
        {
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].trim() == END || lines[j].trim().starts_with("<!-- generated:"))
                .filter(|&j| lines[j].trim() == END)
                .with_context(|| format!("{DOC}:{}: `{line}` has no `{END}` after it", i + 1))?;
            ensure!(
                !spans.iter().any(|s| s.name == name),
                "{DOC}:{}: a second `{line}`",
                i + 1
            );
            spans.push(Span {
                name: name.to_string(),
                start: i,
                end,
            });
            i = end + 1;
        } else {
            ensure!(
                line != END,
                "{DOC}:{}: `{END}` without a `<!-- generated: ... -->` before it",
                i + 1
            );
            i += 1;
        }
    }
    Ok(spans)
}

/// Checks that the document has exactly the blocks in `blocks`.
fn matching_spans(doc: &str, blocks: &[Block]) -> Result<Vec<Span>> {
    let spans = spans(doc)?;
    for s in &spans {
        ensure!(
            blocks.iter().any(|b| b.name == s.name),
            "{DOC} has a block `{}` that nothing generates (known: {})",
            s.name,
            names(blocks)
        );
    }
    for b in blocks {
        ensure!(
            spans.iter().any(|s| s.name == b.name),
            "{DOC} has no `{}` ... `{END}` block; add the markers where the `{}` table goes",
            start_marker(b.name),
            b.name
        );
    }
    Ok(spans)
}

fn names(blocks: &[Block]) -> String {
    blocks.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
}

/// The document with every block replaced by its new text.
pub fn rewrite(doc: &str, blocks: &[Block]) -> Result<String> {
    let spans = matching_spans(doc, blocks)?;
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    let mut next = 0;
    for s in &spans {
        out.extend(lines[next..=s.start].iter().map(|l| l.to_string()));
        let block = blocks.iter().find(|b| b.name == s.name).expect("matched");
        out.extend(block.text.lines().map(str::to_string));
        next = s.end;
    }
    out.extend(lines[next..].iter().map(|l| l.to_string()));
    let mut text = out.join("\n");
    if doc.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// What comparing the document with fresh blocks found.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Lines compared (measured lines and blank lines excluded).
    pub compared: usize,
    /// Blocks not compared, with the reason.
    pub skipped: Vec<String>,
    /// One entry per differing line: what the document says and what it should say.
    pub differences: Vec<String>,
}

fn checked_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with(MEASURED))
        .collect()
}

/// Compares every block of `doc` with `blocks`, ignoring measured lines.
pub fn compare(doc: &str, blocks: &[Block]) -> Result<Comparison> {
    let spans = matching_spans(doc, blocks)?;
    let lines: Vec<&str> = doc.lines().collect();
    let mut result = Comparison::default();
    for s in &spans {
        let block = blocks.iter().find(|b| b.name == s.name).expect("matched");
        let ours = lines[s.start + 1..s.end].join("\n");
        if let Some(line) = &block.only_if {
            if !ours.lines().any(|l| l.trim_end() == line) {
                let theirs = ours
                    .lines()
                    .find(|l| l.starts_with(EXACT_FOR))
                    .unwrap_or("(no such line)");
                result.skipped.push(format!(
                    "`{}` not compared: the docs were made under other conditions.\n  docs: \
                     {theirs}\n  here: {line}",
                    s.name
                ));
                continue;
            }
        }
        let have = checked_lines(&ours);
        let want = checked_lines(&block.text);
        result.compared += want.len();
        for i in 0..have.len().max(want.len()) {
            let (h, w) = (have.get(i), want.get(i));
            if h != w {
                result.differences.push(format!(
                    "block `{}`, line {}:\n  docs:  {}\n  bench: {}",
                    s.name,
                    i + 1,
                    h.unwrap_or(&"(missing)"),
                    w.unwrap_or(&"(missing)")
                ));
            }
        }
    }
    Ok(result)
}

// ----- running things -----

/// `cargo build --release -p p2p-sim`; the binary's path, from cargo's own report.
pub fn build_sim(root: &Path) -> Result<PathBuf> {
    let mut cmd = workspace::cargo_command();
    cmd.current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "p2p-sim",
            "--bin",
            "p2p-sim",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit());
    println!("$ cargo build --release -p p2p-sim --bin p2p-sim");
    let out = cmd.output().context("starting cargo build -p p2p-sim")?;
    ensure!(
        out.status.success(),
        "cargo build --release -p p2p-sim failed ({})",
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(executable)
        .map(PathBuf::from)
        .context("cargo reported no p2p-sim executable")
}

/// The executable a `compiler-artifact` line of cargo's JSON reports, if any.
pub fn executable(line: &str) -> Option<String> {
    let msg: Value = serde_json::from_str(line).ok()?;
    if msg.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    Some(msg.get("executable")?.as_str()?.to_string())
}

fn cache_path(root: &Path, service: &str) -> PathBuf {
    root.join("target")
        .join("xtask-docs")
        .join(format!("bench-{service}.json"))
}

/// Runs `p2p-sim bench <service> --json`; with `reuse`, returns the kept output of the same
/// binary instead if there is one. Keeps what it ran.
fn bench(root: &Path, sim: &Path, sim_sha: &str, service: &str, reuse: bool) -> Result<Value> {
    bench_run(root, sim, sim_sha, service, false, reuse)
}

/// [`bench`], or with `check` the cheaper run `--check` asserts (kept apart).
fn bench_run(
    root: &Path,
    sim: &Path,
    sim_sha: &str,
    service: &str,
    check: bool,
    reuse: bool,
) -> Result<Value> {
    let name = if check {
        format!("{service}-check")
    } else {
        service.to_string()
    };
    let cache = cache_path(root, &name);
    if reuse {
        if let Ok(text) = std::fs::read_to_string(&cache) {
            if let Ok(kept) = serde_json::from_str::<Value>(&text) {
                if kept["p2p_sim_sha256"] == sim_sha {
                    println!(
                        "bench {service}: reusing {} (same p2p-sim binary, sha256 {})",
                        cache.display(),
                        &sim_sha[..12]
                    );
                    return Ok(kept["bench"].clone());
                }
            }
        }
    }
    let hint = if service == "presence" {
        " (about 70 s of CPU)"
    } else {
        ""
    };
    let flags = if check { " --check" } else { "" };
    println!("$ p2p-sim bench {service}{flags} --json{hint}");
    let started = Instant::now();
    let mut args = vec!["bench", service, "--json"];
    if check {
        args.push("--check");
    }
    let out = Command::new(sim)
        .args(&args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {}", sim.display()))?;
    ensure!(
        out.status.success(),
        "p2p-sim bench {service} failed ({})",
        out.status
    );
    let value: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("p2p-sim bench {service} --json printed no JSON"))?;
    ensure!(
        value["service"] == service,
        "p2p-sim bench {service} printed the bench of {}",
        value["service"]
    );
    println!("bench {service}: {:.1}s", started.elapsed().as_secs_f64());
    keep(root, sim_sha, &name, &value)?;
    Ok(value)
}

/// Keeps a bench's JSON for `docs-check` to reuse with the same p2p-sim binary (`name`:
/// the service, `-check` appended for a `--check` run; the `bench` step keeps its sync run).
pub fn keep(root: &Path, sim_sha: &str, name: &str, value: &Value) -> Result<()> {
    let kept = json!({"p2p_sim_sha256": sim_sha, "bench": value});
    fsutil::write_if_changed(&cache_path(root, name), format!("{kept}\n").as_bytes())?;
    Ok(())
}

fn rustc_version() -> Result<String> {
    let out = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("--version")
        .output()
        .context("running rustc --version")?;
    ensure!(out.status.success(), "rustc --version failed");
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn cargo_home() -> String {
    std::env::var("CARGO_HOME").unwrap_or_else(|_| {
        std::env::var("HOME").map_or("~/.cargo".to_string(), |h| format!("{h}/.cargo"))
    })
}

/// The package build, as [`Package`], how long it took and what it recompiled.
fn package(root: &Path) -> Result<(Package, (f64, String))> {
    let out = pkgbuild::build(root)?;
    let package = Package {
        components: out
            .components
            .iter()
            .map(|c| (c.file_name.clone(), c.size, c.report.to_string()))
            .collect(),
        zip_name: out
            .zip_path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        zip_size: out.zip_size,
        zip_sha256: out.zip_sha256.clone(),
        toolchain: rustc_version()?,
        cargo_home: cargo_home(),
    };
    Ok((package, (out.elapsed.as_secs_f64(), out.wasm_build.clone())))
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's civil_from_days).
pub fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn machine() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    let (y, m, d) = civil_date(days);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    // The load says how much the machine's other work slowed the run.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(|x| format!(", load {x}")))
        .unwrap_or_default();
    format!(
        "{y}-{m:02}-{d:02} ({} {}, {cores} cores{load})",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// Builds the package and p2p-sim, runs (or with `reuse`, reuses) the benches; with
/// `time_check`, also times `p2p-sim check --seeds 200`.
fn inputs(root: &Path, reuse: bool, time_check: bool) -> Result<Inputs> {
    let (package, build) = package(root)?;
    let sim = build_sim(root)?;
    let bytes = std::fs::read(&sim).with_context(|| format!("reading {}", sim.display()))?;
    let sha = pkgzip::sha256_hex(&bytes);
    let ping = bench(root, &sim, &sha, "ping", reuse)?;
    let presence = bench(root, &sim, &sha, "presence", reuse)?;
    let notify = bench(root, &sim, &sha, "notify", reuse)?;
    let sync = bench_run(root, &sim, &sha, "sync", true, reuse)?;
    let check_secs = if time_check {
        println!("$ p2p-sim {} (timed for the docs)", CHECK_ARGS.join(" "));
        let started = Instant::now();
        let status = Command::new(&sim)
            .args(CHECK_ARGS)
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("starting {}", sim.display()))?;
        ensure!(status.success(), "p2p-sim check failed ({status})");
        Some(started.elapsed().as_secs_f64())
    } else {
        None
    };
    Ok(Inputs {
        ping,
        presence,
        notify,
        sync,
        package,
        measured: Measured {
            machine: machine(),
            build: Some(build),
            check_secs,
        },
    })
}

fn read_doc(root: &Path) -> Result<String> {
    let path = root.join(DOC);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// `cargo xtask docs`: rewrites the generated blocks of docs/performance.md from a fresh
/// build and fresh benches.
pub fn generate(root: &Path) -> Result<()> {
    let inputs = inputs(root, false, true)?;
    for (name, blocks) in [
        (DOC, render_performance(&inputs)?),
        (SYNC_DOC, render_sync_doc(&inputs)?),
    ] {
        let path = root.join(name);
        let doc = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let new = rewrite(&doc, &blocks)?;
        let written = fsutil::write_if_changed(&path, new.as_bytes())?;
        let changed = compare(&doc, &blocks)?.differences.len();
        println!(
            "xtask docs: {name} {} ({} blocks: {}; {changed} checked lines changed)",
            if written { "rewritten" } else { "unchanged" },
            blocks.len(),
            names(&blocks)
        );
    }
    Ok(())
}

/// `cargo xtask docs --check` and the `docs-check` step: fails when a checked line of a
/// generated block differs from what the build and the benches print now.
pub fn check(root: &Path) -> Result<()> {
    let inputs = inputs(root, true, false)?;
    let blocks = render_performance(&inputs)?;
    let mut result = compare(&read_doc(root)?, &blocks)?;
    let path = root.join(SYNC_DOC);
    let sync_doc =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let sync = compare(&sync_doc, &render_sync_doc(&inputs)?)?;
    result.compared += sync.compared;
    result.skipped.extend(sync.skipped);
    result.differences.extend(
        sync.differences
            .into_iter()
            .map(|d| format!("{SYNC_DOC}: {d}")),
    );
    report(&result)
}

fn report(result: &Comparison) -> Result<()> {
    for s in &result.skipped {
        println!("note: {s}");
    }
    if !result.differences.is_empty() {
        for d in &result.differences {
            println!("{d}");
        }
        let n = result.differences.len();
        bail!(
            "{n} line{} of the generated tables in {DOC} and {SYNC_DOC} differ{} from what the \
             build and the benches print now; `cargo xtask docs` rewrites them",
            if n == 1 { "" } else { "s" },
            if n == 1 { "s" } else { "" }
        );
    }
    ensure!(
        result.compared > 0,
        "nothing in {DOC} was compared (every block skipped)"
    );
    println!(
        "docs-check: {DOC} matches the build and the benches ({} lines compared, {} block(s) \
         skipped, measured lines ignored)",
        result.compared,
        result.skipped.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping() -> Value {
        json!({
            "service": "ping", "ping_nodes": 10, "link_latency_ms": [20, 200],
            "ping_answered": 1000, "ping_requests": 1000, "ping_rtt_ms_p50": 217,
            "ping_rtt_ms_p99": 384, "bytes_per_ping_exchange": 61,
            "sim_hour_3_nodes_msgs": 21597, "sim_minute_1000_nodes_msgs": 23000,
            "max_request_bytes": 1048576, "ping_wall_ms": 6.7,
            "sim_hour_3_nodes_wall_ms": 77.1, "sim_minute_1000_nodes_wall_ms": 641.5
        })
    }

    fn sweep(fp: &[u64], det: &[Option<f64>]) -> Value {
        let t = [1.0, 2.0, 3.0, 7.0];
        Value::Array(
            (0..4)
                .map(|i| {
                    json!({"timeout_periods": t[i], "false_positives": fp[i],
                           "detect_periods_median": det[i]})
                })
                .collect(),
        )
    }

    fn presence() -> Value {
        let mut b = json!({
            "service": "presence", "period_ms": 6000,
            "config": {"probe_timeout_ms": 1000, "indirect_probes": 3, "gossip_interval_ms": 500},
            "link_latency_ms": [20, 200], "detect_nodes": 100, "detect_trials": 120,
            "detect_periods_median": 1.82, "detect_seconds_median": 10.9,
            "detect_periods_p99": 4.72, "detect_all_periods_median": 2.2,
            "detect_hostile_loss": 0.05, "detect_hostile_duplicate": 0.02,
            "detect_hostile_trials": 40, "detect_hostile_periods_median": 2.0,
            "detect_hostile_periods_p99": 5.47, "detect_hostile_all_periods_median": 2.33,
            "clustered_crash_nodes": 30, "clustered_crash_crashed": 10,
            "clustered_crash_victims": 20, "clustered_crash_detect_periods_median": 1.9,
            "clustered_crash_all_periods_median": 2.5, "clustered_crash_all_periods_max": 3.6,
            "fp_loss": 0.1, "fp_nodes": 50, "fp_periods": 1000, "fp_slow_node_delay_ms": 1500,
            "false_positives": 0, "suspicions_during_fp_run": 75,
            "baseline_false_positives": 2375, "fp_ratio_baseline_over_ours": 2375.0,
            "baseline_fixed_timeout_periods": 3.0,
            "converge_periods": 0.92,
            "converge_periods_by_n": {"25": 0.38, "50": 0.54, "100": 0.92, "200": 1.67,
                                      "1000": 8.5},
            "join_one_periods_by_n": {"25": 0.3, "100": 0.4, "200": 0.45, "1000": 0.6},
            "load_periods": 100, "load_hostile_loss": 0.05, "load_hostile_duplicate": 0.02,
            "msgs_per_node_per_period_by_n": {"25": 2.29, "100": 2.3, "200": 2.3, "1000": 2.31},
            "msgs_per_node_per_period_by_n_hostile": {"25": 2.5, "100": 2.52, "200": 2.53,
                                                      "1000": 2.55},
            "bytes_per_node_per_period_by_n": {"25": 900.0, "100": 1400.0, "200": 2100.0,
                                               "1000": 7900.0},
            "bytes_per_node_per_period_by_n_hostile": {"25": 950.0, "100": 1500.0,
                                                       "200": 2200.0, "1000": 8100.0},
            "digest_bytes_per_node_per_period_by_n": {"25": 150.0, "100": 620.0,
                                                      "200": 1240.0, "1000": 6200.0},
            "preloaded_periods": 50,
            "preloaded_msgs_per_node_per_period_by_n": {"200": 2.28, "1000": 2.28},
            "preloaded_bytes_per_node_per_period_by_n": {"200": 1794.0, "1000": 7338.0},
            "preloaded_digest_bytes_per_node_per_period_by_n": {"200": 1349.0, "1000": 6720.0},
            "bytes_per_msg": 432.0, "max_body_bytes": 4194304,
            "cpu_ms": 67900.0, "wall_ms": 69612
        });
        b["targets_cpu_ms"] = json!(61000.0);
        b["targets_wall_ms"] = json!(64500.0);
        let (realistic, hostile) = compare_fixtures();
        b["compare_realistic"] = realistic;
        b["compare_hostile"] = hostile;
        b
    }

    fn compare_fixtures() -> (Value, Value) {
        let realistic = json!({
            "nodes": 50, "periods": 1000, "loss": 0.0, "slow_ms": 1500, "trials": 30,
            "presence": {"false_positives": 0, "suspicions": 3,
                         "detect_periods_median": 1.9, "msgs_per_node_per_period": 2.3},
            "baseline_msgs_per_node_per_period": 50.96,
            "baseline_sweep": sweep(&[12, 0, 0, 0], &[Some(1.2), Some(2.1), Some(3.1), Some(7.0)]),
            "tuned": {"timeout_periods": 2.0, "false_positives": 0,
                      "detect_periods_median": 2.1}
        });
        let hostile = json!({
            "nodes": 50, "periods": 1000, "loss": 0.1, "slow_ms": 1500, "trials": 30,
            "presence": {"false_positives": 0, "suspicions": 75,
                         "detect_periods_median": 1.7, "msgs_per_node_per_period": 2.6},
            "baseline_msgs_per_node_per_period": 50.96,
            "baseline_sweep": sweep(&[90000, 24000, 2375, 0], &[None, Some(2.2), Some(3.1), Some(7.2)]),
            "tuned": {"timeout_periods": 7.0, "false_positives": 0,
                      "detect_periods_median": 7.2}
        });
        (realistic, hostile)
    }

    fn notify() -> Value {
        json!({
            "service": "notify", "lossy_loss": 0.2, "lossy_nodes": 20, "lossy_published": 100,
            "delivery_ratio": 1.0, "baseline_delivery_ratio": 0.47, "p50_delivery_ms": 2511,
            "p99_delivery_ms": 134551, "duplicates_at_apps": 0, "topic_nodes": 200,
            "topic_delivery_ratio": 1.0, "payloads_per_receiver": 1.0, "publisher_sends": 199.0,
            "publisher_messages": 398.0, "topic_p50_delivery_ms": 115, "topic_p99_delivery_ms": 203,
            "topic_published": 10, "tree_threshold": 32, "tree_fanout": 8,
            "repaired_relays": 3, "repair_wait_ms": 90000, "repaired_publisher_sends": 8.0,
            "repaired_publisher_messages": 16.0, "repaired_delivery_ratio": 1.0
        })
    }

    fn package() -> Package {
        Package {
            components: vec![
                (
                    "presence.wasm".into(),
                    1_202_993,
                    "imports a + 12 wasi:*".into(),
                ),
                ("sync.wasm".into(), 592_507, "imports a + 12 wasi:*".into()),
            ],
            zip_name: "p:q.os.zip".into(),
            zip_size: 921_870,
            zip_sha256: "ab".repeat(32),
            toolchain: "rustc 1.95.0 (59807616e 2026-04-14)".into(),
            cargo_home: "/root/.cargo".into(),
        }
    }

    fn sync() -> Value {
        json!({
            "service": "sync", "trace_ops": 24000, "link_ms": 50,
            "edit_to_peer_p99_ms": 151, "edit_to_peer_p50_ms": 103,
            "live_wire_bytes": 309610, "library_batch_bytes": 286626,
            "baseline_full_state_bytes": 24372627, "live_msgs": 3253,
            "live_delta_bytes": 300, "live_frame_bytes": 305069,
            "live_frame_answer_bytes": 4241, "live_batches": 3000,
            "catchup_bytes": 12337, "library_update_bytes": 26400,
            "heal_round_trips": 2, "heal_msgs": 4, "automerge_heal_msgs": 3,
            "heal_bytes": 2272, "automerge_heal_bytes": 224101, "converged": true,
            "trace_apply_ms_service": 5049.2
        })
    }

    #[test]
    fn the_sync_block_states_the_bench_figures_and_fails_when_one_drifts() {
        let inputs = inputs("day 1 (2 cores)");
        let blocks = render_sync_doc(&inputs).unwrap();
        let text = &blocks[0].text;
        for want in [
            "The first 24,000 transactions",
            "309,610 / 286,626 = 1.08 (3,253 messages",
            "309,610 / 24,372,627 = 0.013",
            "12,337 / 26,400 = 0.47",
            "| 151 (p50 103) |",
            "(200)",
            "2 (4 messages; Automerge: 3 messages)",
            "2,272 against 224,101",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        assert!(
            !text.contains("5049"),
            "wall-clock time is not in the block"
        );
        let doc = format!("# sync\n\n<!-- generated: sync-live -->\nold\n<!-- end -->\nafter\n");
        let written = rewrite(&doc, &blocks).unwrap();
        assert!(compare(&written, &blocks).unwrap().differences.is_empty());
        // One figure drifts: the check names it.
        let drifted = written.replace("309,610 / 286,626", "309,611 / 286,626");
        let diff = compare(&drifted, &blocks).unwrap().differences;
        assert_eq!(diff.len(), 1, "{diff:?}");
        assert!(diff[0].contains("309,611"), "{diff:?}");
        // A bench without a figure is an error, not a blank.
        let mut b = sync();
        b.as_object_mut().unwrap().remove("heal_bytes");
        let err = render_sync_live(&b).unwrap_err().to_string();
        assert!(err.contains("heal_bytes"), "{err}");
    }

    fn inputs(machine: &str) -> Inputs {
        Inputs {
            ping: ping(),
            presence: presence(),
            notify: notify(),
            sync: sync(),
            package: package(),
            measured: Measured {
                machine: machine.into(),
                build: Some((9.5, "up to date, nothing recompiled".into())),
                check_secs: Some(18.2),
            },
        }
    }

    const SKELETON: &str = "# Numbers\n\nintro 1.68\n\n<!-- generated: package -->\nold\n\
                            <!-- end -->\n\nprose\n\n<!-- generated: ping -->\n<!-- end -->\n\
                            <!-- generated: presence -->\n| stale | 1 |\n<!-- end -->\n\
                            <!-- generated: notify -->\n<!-- end -->\n\
                            \n## History\n| 3.28 | 1 |\n";

    fn generated() -> String {
        rewrite(SKELETON, &render(&inputs("day 1 (2 cores)")).unwrap()).unwrap()
    }

    #[test]
    fn blocks_are_written_between_their_markers_and_nothing_else_changes() {
        let doc = generated();
        assert!(doc.starts_with("# Numbers\n\nintro 1.68\n\n<!-- generated: package -->\n"));
        assert!(
            doc.ends_with("<!-- end -->\n\n## History\n| 3.28 | 1 |\n"),
            "{doc}"
        );
        assert!(
            !doc.contains("old\n") && !doc.contains("| stale |"),
            "{doc}"
        );
        assert!(
            doc.contains("| `presence.wasm` | 1,202,993 (1174.8 KiB) |"),
            "{doc}"
        );
        assert!(
            doc.contains("Every component imports a + 12 wasi:*."),
            "{doc}"
        );
        assert!(
            doc.contains(
                "| `detect_hostile_periods_median` | crash → first Dead verdict, 100 nodes, 40 \
             crashes (1 cluster) | hostile (5% loss, 2% duplication) | **2.00 periods** | |"
            ),
            "{doc}"
        );
        assert!(doc.contains("| `false_positives` |"), "{doc}");
        assert!(
            doc.contains("| hostile (10% loss) | **0** (75 suspicions"),
            "{doc}"
        );
        assert!(
            doc.contains(
                "| `detect_periods_median` | crash → first Dead verdict, 100 \
             nodes, 120 crashes (3 clusters) | realistic | **1.82 periods** (10.9 s) | ≤ 2 ✓ |"
            ),
            "{doc}"
        );
        assert!(
            doc.contains("(`config`: period 6 s, probe timeout 1 s, k = 3, gossip every 500 ms)"),
            "{doc}"
        );
        assert!(doc.contains("one node 1.5 s slow"), "{doc}");
        assert!(doc.contains("Measured on day 1 (2 cores): one run took 67.9 s of CPU"));
        assert!(doc.contains("`bench presence --check` runs took 61.0 s of CPU, 64.5 s wall"));
        // The comparison at equal false positives, and the sweep.
        assert!(
            doc.contains(
                "| hostile (10% loss) | heartbeat, tuned: 7-period timeout | 0 | **7.20** | 50.96 |"
            ),
            "{doc}"
        );
        assert!(
            doc.contains("| hostile (10% loss) | presence | **0** | **1.70** | 2.60 |"),
            "{doc}"
        );
        assert!(
            doc.contains("| realistic | heartbeat, fixed 3-period timeout | 0 | 3.10 | 50.96 |"),
            "{doc}"
        );
        assert!(doc.contains("| 1 | 12 | 1.20 | 90,000 | — |"), "{doc}");
        assert!(
            doc.contains("timeout is swept (1, 2, 3, 7 periods)"),
            "{doc}"
        );
        assert!(
            doc.contains("| **2.29 / 2.30 / 2.30 / 2.31** |")
                && doc.contains("25 / 100 / 200 / 1,000 nodes"),
            "{doc}"
        );
        assert!(doc.contains("| 150 / 620 / 1,240 / 6,200 |"), "{doc}");
        // Rewriting is idempotent.
        assert_eq!(
            rewrite(&doc, &render(&inputs("day 1 (2 cores)")).unwrap()).unwrap(),
            doc
        );
    }

    #[test]
    fn the_check_passes_on_generated_docs_whatever_the_wall_clock_says() {
        let doc = generated();
        let mut other = inputs("day 2 (64 cores)");
        other.ping["sim_hour_3_nodes_wall_ms"] = json!(5.0);
        other.presence["cpu_ms"] = json!(1.0);
        other.measured.check_secs = None;
        let result = compare(&doc, &render(&other).unwrap()).unwrap();
        assert!(result.differences.is_empty(), "{:?}", result.differences);
        assert!(result.skipped.is_empty());
        assert!(result.compared > 25, "{}", result.compared);
        report(&result).unwrap();
    }

    #[test]
    fn the_check_fails_on_any_deterministic_figure() {
        let doc = generated();
        for (service, key, value, rows) in [
            ("presence", "detect_hostile_periods_median", json!(2.01), 1),
            ("presence", "false_positives", json!(1), 1),
            // The mode of the three false-positive rows.
            ("presence", "fp_loss", json!(0.2), 3),
            ("presence", "detect_hostile_duplicate", json!(0.0), 3),
            ("ping", "ping_rtt_ms_p99", json!(385), 1),
            ("ping", "sim_minute_1000_nodes_msgs", json!(23001), 1),
        ] {
            let mut changed = inputs("day 1 (2 cores)");
            let bench = if service == "ping" {
                &mut changed.ping
            } else {
                &mut changed.presence
            };
            bench[key] = value;
            let result = compare(&doc, &render(&changed).unwrap()).unwrap();
            assert_eq!(
                result.differences.len(),
                rows,
                "{key}: {:?}",
                result.differences
            );
            let err = report(&result).unwrap_err().to_string();
            assert!(err.contains("cargo xtask docs"), "{err}");
        }
        // So is a figure of the comparison (nested objects).
        let mut changed = inputs("day 1 (2 cores)");
        changed.presence["compare_hostile"]["tuned"]["detect_periods_median"] = json!(7.3);
        let result = compare(&doc, &render(&changed).unwrap()).unwrap();
        assert_eq!(result.differences.len(), 1, "{:?}", result.differences);
        // A figure edited by hand in the docs is caught the same way.
        let edited = doc.replace("| 61 |", "| 66 |");
        assert_ne!(edited, doc);
        let result = compare(&edited, &render(&inputs("x")).unwrap()).unwrap();
        assert_eq!(result.differences.len(), 1, "{:?}", result.differences);
        assert!(result.differences[0].contains("| 66 |"));
        // So is a deleted row.
        let lines: Vec<&str> = doc
            .lines()
            .filter(|l| !l.contains("`bytes_per_msg`"))
            .collect();
        let result = compare(&lines.join("\n"), &render(&inputs("x")).unwrap()).unwrap();
        assert!(!result.differences.is_empty());
    }

    #[test]
    fn sizes_are_compared_only_under_the_same_toolchain_and_cargo_home() {
        let doc = generated();
        let mut bigger = inputs("x");
        bigger.package.components[0].1 += 1;
        assert_eq!(
            compare(&doc, &render(&bigger).unwrap())
                .unwrap()
                .differences
                .len(),
            1
        );

        bigger.package.cargo_home = "/home/runner/.cargo".into();
        let result = compare(&doc, &render(&bigger).unwrap()).unwrap();
        assert!(result.differences.is_empty(), "{:?}", result.differences);
        assert_eq!(result.skipped.len(), 1);
        assert!(
            result.skipped[0].contains("/home/runner/.cargo"),
            "{:?}",
            result.skipped
        );
        assert!(result.compared > 0);
    }

    #[test]
    fn markers_must_be_complete_and_known() {
        let blocks = render(&inputs("x")).unwrap();
        let no_presence = SKELETON.replace("<!-- generated: presence -->", "");
        let err = rewrite(&no_presence, &blocks).unwrap_err().to_string();
        assert!(err.contains("`<!-- end -->` without"), "{err}");
        let no_end = "<!-- generated: ping -->\nx\n";
        assert!(rewrite(no_end, &blocks)
            .unwrap_err()
            .to_string()
            .contains("has no `<!-- end -->`"));
        let missing = "<!-- generated: ping -->\n<!-- end -->\n";
        let err = compare(missing, &blocks).unwrap_err().to_string();
        assert!(err.contains("no `<!-- generated: package -->`"), "{err}");
        let unknown = format!("{SKELETON}<!-- generated: sync -->\n<!-- end -->\n");
        let err = rewrite(&unknown, &blocks).unwrap_err().to_string();
        assert!(err.contains("block `sync` that nothing generates"), "{err}");
        let twice = format!("{SKELETON}<!-- generated: ping -->\n<!-- end -->\n");
        assert!(rewrite(&twice, &blocks)
            .unwrap_err()
            .to_string()
            .contains("a second"));
        // A docs file without any markers (the old docs/performance.md) fails the check.
        assert!(compare("# Measured numbers\n| 1.68 |\n", &blocks).is_err());
    }

    #[test]
    fn a_missing_bench_key_names_the_key_and_both_files() {
        let mut i = inputs("x");
        i.presence
            .as_object_mut()
            .unwrap()
            .remove("detect_hostile_periods_median");
        let err = render(&i).unwrap_err().to_string();
        assert!(err.contains("no `detect_hostile_periods_median`"), "{err}");
        assert!(err.contains("test/sim/src/scenarios/presence.rs"), "{err}");
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_202_993), "1,202,993");
        assert_eq!(ratio(2375.0), "2,375");
        assert_eq!(ratio(2.5), "2.50");
        assert_eq!(row(&["a", "", "b"]), "| a | | b |");
        assert_eq!(mode(0.0, 0.0), "realistic");
        assert_eq!(mode(0.1, 0.0), "hostile (10% loss)");
        assert_eq!(mode(0.05, 0.02), "hostile (5% loss, 2% duplication)");
        assert_eq!(mode(0.025, 0.0), "hostile (2.5% loss)");
        assert_eq!(duration(500.0), "500 ms");
        assert_eq!(duration(6000.0), "6 s");
        assert_eq!(duration(1500.0), "1.5 s");
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(20_454), (2026, 1, 1));
        assert_eq!(civil_date(19_782), (2024, 2, 29));
        let line =
            r#"{"reason":"compiler-artifact","executable":"/t/release/p2p-sim","fresh":true}"#;
        assert_eq!(executable(line).as_deref(), Some("/t/release/p2p-sim"));
        assert_eq!(
            executable(r#"{"reason":"compiler-artifact","executable":null}"#),
            None
        );
        assert_eq!(executable("garbage"), None);
    }
}
