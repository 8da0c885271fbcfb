//! Deterministic pseudo-random numbers and stable hashes (no `rand` crate): the simulator, sampling, the demo and the decision harness share them.

use std::time::Duration;

/// SplitMix64: tiny, fast and good enough for simulated noise; reproducibility matters more than quality here.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// Combines two inputs so that neighbouring counters under one seed give unrelated streams.
    pub(crate) fn from_parts(a: u64, b: u64) -> Self {
        Rng::new(mix64(a ^ mix64(b.wrapping_add(0xA076_1D64_78BD_642F))))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform in [0, 1); 53 bits so every value is exactly representable.
    pub(crate) fn next_f64(&mut self) -> f64 {
        unit(self.next_u64())
    }

    /// True with probability `p`; NaN and non-positive values never fire, values >= 1 always do.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }

    /// Uniform integer in [0, n); 0 when n is 0 so callers indexing empty lists fail loudly elsewhere, not here.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// Approximately standard normal (Irwin-Hall with 4 terms, rescaled to unit variance).
    pub(crate) fn gaussianish(&mut self) -> f64 {
        let sum: f64 = (0..4).map(|_| self.next_f64()).sum();
        (sum - 2.0) * 3f64.sqrt()
    }
}

/// The SplitMix64 finaliser, also used as a stateless hash of integers.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over bytes; stable across platforms and releases, unlike `DefaultHasher`.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_parts(&[bytes])
}

/// FNV-1a over several byte strings, as if concatenated.
pub(crate) fn fnv1a_parts(parts: &[&[u8]]) -> u64 {
    let mut h = Fnv::default();
    for part in parts {
        std::hash::Hasher::write(&mut h, part);
    }
    std::hash::Hasher::finish(&h)
}

/// FNV-1a as a `HashMap` hasher, for the request path's maps keyed by configured names
/// (models, origins): a few times cheaper than SipHash on short keys, and those keys come from
/// the operator's file, not from clients, so flooding one bucket is not a concern.
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xCBF2_9CE4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` keyed by configured names, hashed with [`Fnv`].
pub type NameMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// The top 53 bits of a hash as a number in [0, 1).
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Scales `d` by a factor uniform in [1-jitter, 1+jitter]. Behaviours set at runtime are not validated,
/// so odd jitter values degrade to "no jitter" / zero instead of panicking inside `Duration` maths.
pub(crate) fn jittered(d: Duration, jitter: f64, rng: &mut Rng) -> Duration {
    if d.is_zero() || jitter.is_nan() || jitter <= 0.0 {
        return d;
    }
    let factor = (1.0 - jitter + 2.0 * jitter * rng.next_f64()).max(0.0);
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors_in_every_form() {
        // FNV-1a 64-bit test vectors (the reference implementation's test suite).
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a_parts(&[b"foo", b"", b"bar"]), fnv1a(b"foobar"));
        let mut h = Fnv::default();
        std::hash::Hasher::write(&mut h, b"foobar");
        assert_eq!(std::hash::Hasher::finish(&h), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::from_parts(7, 3);
        let mut b = Rng::from_parts(7, 3);
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::from_parts(7, 3).next_u64(), Rng::from_parts(7, 4).next_u64());
    }

    #[test]
    fn unit_interval_and_chance_edges() {
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
        assert!(!r.chance(0.0));
        assert!(r.chance(1.0));
        assert!(!r.chance(f64::NAN));
    }

    #[test]
    fn jitter_stays_in_band() {
        let mut r = Rng::new(5);
        let base = Duration::from_millis(100);
        for _ in 0..200 {
            let d = jittered(base, 0.1, &mut r);
            assert!(d >= Duration::from_millis(90) && d <= Duration::from_millis(110));
        }
        assert_eq!(jittered(base, f64::NAN, &mut r), base);
        assert!(jittered(base, 5.0, &mut r) <= Duration::from_millis(600));
    }
}
