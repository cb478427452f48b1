//! Exponential backoff with jitter, and a retry policy (attempt cap + overall deadline).
//!
//! The un-jittered delay before retry number `attempt` is
//! `d = min(max_ms, base_ms * factor^attempt)`, computed with saturating arithmetic so any
//! `attempt` up to `u32::MAX` is fine. Jitter spreads retries of many callers apart.

use crate::service::Millis;
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

/// How a delay is randomised around its ceiling `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Jitter {
    /// Exactly `d`.
    None,
    /// Uniform in `[0, d]`.
    Full,
    /// `d/2` plus uniform in `[0, d - d/2]`: never less than half the ceiling.
    Equal,
}

/// Exponential backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Ceiling of the first retry's delay (`attempt == 0`).
    pub base_ms: Millis,
    /// Upper bound of every delay.
    pub max_ms: Millis,
    /// Growth per attempt; `0` acts as `1` (constant delay).
    pub factor: u32,
    pub jitter: Jitter,
}

impl Default for Backoff {
    /// 500 ms, doubling, up to 60 s, full jitter.
    fn default() -> Self {
        Backoff {
            base_ms: 500,
            max_ms: 60_000,
            factor: 2,
            jitter: Jitter::Full,
        }
    }
}

impl Backoff {
    /// The un-jittered delay for `attempt`: `min(max_ms, base_ms * factor^attempt)`.
    /// Non-decreasing in `attempt`; equals `max_ms` for large `attempt` when
    /// `factor >= 2` and `base_ms >= 1`.
    pub fn ceiling(&self, attempt: u32) -> Millis {
        if self.base_ms == 0 {
            return 0;
        }
        let factor = u64::from(self.factor.max(1));
        let grown = match factor.checked_pow(attempt) {
            Some(mult) => self.base_ms.saturating_mul(mult),
            None => Millis::MAX,
        };
        grown.min(self.max_ms)
    }

    /// The jittered delay for `attempt`; always `<= ceiling(attempt) <= max_ms`.
    pub fn delay<R: RngCore + ?Sized>(&self, attempt: u32, rng: &mut R) -> Millis {
        let d = self.ceiling(attempt);
        match self.jitter {
            Jitter::None => d,
            Jitter::Full => rng.gen_range(0..=d),
            Jitter::Equal => {
                let half = d / 2;
                half + rng.gen_range(0..=d - half)
            }
        }
    }
}

/// When to retry and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// Total attempts allowed, the first try included (`1` = never retry).
    pub max_attempts: u32,
    /// Give up rather than wait past this much time since the first attempt.
    pub deadline_ms: Option<Millis>,
}

impl Default for RetryPolicy {
    /// Default backoff, 5 attempts, no deadline.
    fn default() -> Self {
        RetryPolicy {
            backoff: Backoff::default(),
            max_attempts: 5,
            deadline_ms: None,
        }
    }
}

impl RetryPolicy {
    /// How long to wait before the next attempt, or `None` to give up.
    ///
    /// `attempt` is how many attempts were already made (the first try counts), `elapsed`
    /// the time since the first one. The wait before attempt `n + 1` uses
    /// `backoff.delay(n - 1)`, so the first retry waits about `base_ms`. Gives up when
    /// `attempt >= max_attempts` or when `elapsed + delay` would pass `deadline_ms`.
    pub fn next_delay<R: RngCore + ?Sized>(
        &self,
        attempt: u32,
        elapsed: Millis,
        rng: &mut R,
    ) -> Option<Millis> {
        if attempt >= self.max_attempts {
            return None;
        }
        let delay = self.backoff.delay(attempt.saturating_sub(1), rng);
        match self.deadline_ms {
            Some(deadline) if elapsed.saturating_add(delay) > deadline => None,
            _ => Some(delay),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)]
    }

    fn backoff() -> impl Strategy<Value = Backoff> {
        (
            prop_oneof![0..2_000u64, any::<u64>()],
            prop_oneof![0..200_000u64, any::<u64>()],
            0..12u32,
            jitter(),
        )
            .prop_map(|(base_ms, max_ms, factor, jitter)| Backoff {
                base_ms,
                max_ms,
                factor,
                jitter,
            })
    }

    fn attempt() -> impl Strategy<Value = u32> {
        prop_oneof![0..80u32, any::<u32>()]
    }

    #[test]
    fn default_doubles_then_caps() {
        let b = Backoff::default();
        let c: Vec<Millis> = (0..9).map(|a| b.ceiling(a)).collect();
        assert_eq!(c, [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
        assert_eq!(b.ceiling(u32::MAX), 60_000);
    }

    #[test]
    fn factor_zero_or_one_is_constant() {
        for factor in [0, 1] {
            let b = Backoff {
                factor,
                ..Backoff::default()
            };
            assert_eq!(b.ceiling(0), 500);
            assert_eq!(b.ceiling(1_000_000), 500);
        }
    }

    #[test]
    fn full_jitter_spreads_over_the_range() {
        let b = Backoff::default();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let samples: Vec<Millis> = (0..1000).map(|_| b.delay(3, &mut rng)).collect();
        assert!(samples.iter().any(|&d| d < 1000));
        assert!(samples.iter().any(|&d| d > 3000));
        assert!(samples.iter().all(|&d| d <= 4000));
    }

    #[test]
    fn policy_gives_up_after_max_attempts_and_at_deadline() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let p = RetryPolicy {
            backoff: Backoff {
                jitter: Jitter::None,
                ..Backoff::default()
            },
            max_attempts: 3,
            deadline_ms: Some(2_000),
        };
        assert_eq!(p.next_delay(1, 0, &mut rng), Some(500));
        assert_eq!(p.next_delay(2, 500, &mut rng), Some(1000));
        assert_eq!(p.next_delay(3, 1500, &mut rng), None);
        // 1500 + 1000 > 2000: waiting would pass the deadline.
        assert_eq!(p.next_delay(2, 1500, &mut rng), None);
        assert_eq!(p.next_delay(2, 1000, &mut rng), Some(1000));
    }

    proptest! {
        #[test]
        fn delay_is_bounded_by_ceiling_and_max(b in backoff(), a in attempt(), seed: u64) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let c = b.ceiling(a);
            let d = b.delay(a, &mut rng);
            prop_assert!(c <= b.max_ms);
            prop_assert!(d <= c);
            match b.jitter {
                Jitter::None => prop_assert_eq!(d, c),
                Jitter::Equal => prop_assert!(d >= c / 2),
                Jitter::Full => {}
            }
        }

        #[test]
        fn ceiling_is_monotone(b in backoff(), a in attempt()) {
            prop_assert!(b.ceiling(a) <= b.ceiling(a.saturating_add(1)));
        }

        #[test]
        fn ceiling_matches_the_formula(base in 0..10_000u64, max in 0..10_000_000u64,
                                       factor in 0..6u32, a in 0..20u32) {
            let b = Backoff { base_ms: base, max_ms: max, factor, jitter: Jitter::None };
            let exact = u128::from(base) * u128::from(factor.max(1)).pow(a);
            prop_assert_eq!(u128::from(b.ceiling(a)), exact.min(u128::from(max)));
        }

        #[test]
        fn ceiling_reaches_max(b in backoff(), a in 64..=u32::MAX) {
            prop_assume!(b.factor >= 2 && b.base_ms >= 1);
            prop_assert_eq!(b.ceiling(a), b.max_ms);
        }

        #[test]
        fn next_delay_respects_attempts_and_deadline(
            b in backoff(), max_attempts in 0..10u32, a in attempt(),
            deadline in proptest::option::of(any::<u64>()), elapsed: u64, seed: u64,
        ) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let p = RetryPolicy { backoff: b, max_attempts, deadline_ms: deadline };
            let next = p.next_delay(a, elapsed, &mut rng);
            if a >= max_attempts {
                prop_assert_eq!(next, None);
            } else if deadline.is_none() {
                prop_assert!(next.is_some());
            }
            if let Some(d) = next {
                prop_assert!(d <= b.max_ms);
                if let Some(dl) = deadline {
                    prop_assert!(u128::from(elapsed) + u128::from(d) <= u128::from(dl));
                }
            }
        }
    }
}
