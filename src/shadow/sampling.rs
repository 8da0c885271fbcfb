//! Sampling decisions: a stable hash of the request id, per route and candidate, so a retried id decides the same way.

use crate::rng;

/// A number in [0, 1) drawn from the request id, route and salt.
pub fn draw(request_id: &[u8], route: &str, salt: &str) -> f64 {
    let h = rng::fnv1a_parts(&[request_id, &[0xff], route.as_bytes(), &[0xfe], salt.as_bytes()]);
    // FNV alone is poorly mixed in its high bits for similar inputs; finish with splitmix64.
    rng::unit(rng::mix64(h))
}

/// Whether this request is in the sample of size `rate`.
pub fn sampled(request_id: &[u8], route: &str, salt: &str, rate: f64) -> bool {
    rate > 0.0 && draw(request_id, route, salt) < rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_respected_and_decisions_stable() {
        let n = 20_000;
        let hits = (0..n).filter(|i| sampled(format!("req-{i}").as_bytes(), "chat", "qwen", 0.2)).count();
        let rate = hits as f64 / n as f64;
        assert!((rate - 0.2).abs() < 0.015, "{rate}");
        assert!(!sampled(b"x", "chat", "qwen", 0.0));
        assert!(sampled(b"x", "chat", "qwen", 1.0));
        assert_eq!(sampled(b"abc", "chat", "qwen", 0.5), sampled(b"abc", "chat", "qwen", 0.5));
        // Candidates are sampled independently of each other.
        let both = (0..n).filter(|i| {
            let id = format!("req-{i}");
            sampled(id.as_bytes(), "chat", "a", 0.5) && sampled(id.as_bytes(), "chat", "b", 0.5)
        });
        let both = both.count() as f64 / n as f64;
        assert!((both - 0.25).abs() < 0.02, "{both}");
    }
}
