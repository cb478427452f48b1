//! Small helpers for scenarios and benchmarks.

use p2p_common::Millis;

/// The `p`-th percentile (0..=100) of `v` (sorted in place); 0 for an empty slice.
pub fn percentile(v: &mut [Millis], p: u32) -> Millis {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let idx = ((v.len() - 1) as u64 * p as u64 / 100) as usize;
    v[idx]
}

/// CPU time used by this process so far, in milliseconds (wall-clock fallback off Linux).
pub fn cpu_ms() -> f64 {
    if let Ok(s) = std::fs::read_to_string("/proc/self/stat") {
        // utime and stime are fields 14 and 15, after the ")" that ends the command name.
        if let Some(rest) = s.rsplit(')').next() {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() > 13 {
                let ticks: f64 =
                    f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
                return ticks * 1000.0 / 100.0; // USER_HZ is 100 on Linux
            }
        }
    }
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v = vec![5, 1, 4, 2, 3];
        assert_eq!(percentile(&mut v, 0), 1);
        assert_eq!(percentile(&mut v, 50), 3);
        assert_eq!(percentile(&mut v, 100), 5);
        assert_eq!(percentile(&mut [], 50), 0);
    }
}
