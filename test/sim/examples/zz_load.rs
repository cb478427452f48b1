use p2p_sim::scenarios::presence::{config, converge_with};
fn main() {
    let c = config();
    for n in [100usize, 200] {
        let (mut sim, _) = converge_with(11, n, &c, |_| {});
        sim.run_for(10 * c.probe_interval_ms).unwrap();
        let before = sim.stats.per_type.clone();
        sim.run_for(100 * c.probe_interval_ms).unwrap();
        println!("n={n}");
        for (k, v) in &sim.stats.per_type {
            let b = before.get(k).copied().unwrap_or_default();
            let (m, by) = (v.msgs - b.msgs, v.bytes - b.bytes);
            if m > 0 {
                println!(
                    "  {k:16} {:8.3} msgs/node/period  {:7} B/msg",
                    m as f64 / n as f64 / 100.0,
                    by / m.max(1)
                );
            }
        }
    }
}
