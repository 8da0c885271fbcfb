//! Segments: the values of `segment_by` headers, bounded to the first few values per header plus "other".

use std::collections::BTreeMap;

/// Remembers which values of each segment header have their own segment.
#[derive(Debug, Default)]
pub struct Segmenter {
    admitted: BTreeMap<String, Vec<String>>,
}

/// The segment everything belongs to when no `segment_by` header is configured.
pub const ALL: &str = "all";
/// Values past the bound share this segment.
pub const OTHER: &str = "other";

impl Segmenter {
    /// The segment key of a request, e.g. `accept-language=de-ch`. A header's first
    /// `max` distinct values get their own segment; later values go to `other`, so the
    /// number of segments (and of metric series) stays bounded whatever clients send.
    pub fn key(&mut self, by: &[String], value_of: impl Fn(&str) -> Option<String>, max: usize) -> String {
        if by.is_empty() {
            return ALL.to_string();
        }
        let mut parts = Vec::with_capacity(by.len());
        for header in by {
            let value =
                value_of(header).map(|v| normalize(&v)).filter(|v| !v.is_empty()).unwrap_or_else(|| "none".into());
            let admitted = self.admitted.entry(header.clone()).or_default();
            let value = if admitted.contains(&value) {
                value
            } else if admitted.len() < max {
                admitted.push(value.clone());
                value
            } else {
                OTHER.to_string()
            };
            parts.push(format!("{header}={value}"));
        }
        parts.join(",")
    }
}

/// The first item of a header value, lowercased and bounded: `de-CH,de;q=0.9` → `de-ch`.
fn normalize(v: &str) -> String {
    let first = v.split([',', ';']).next().unwrap_or("").trim().to_ascii_lowercase();
    first.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bounded_and_normalized() {
        let mut s = Segmenter::default();
        let by = vec!["accept-language".to_string()];
        let k = |s: &mut Segmenter, v: &str| s.key(&by, |_| Some(v.to_string()), 2);
        assert_eq!(k(&mut s, "de-CH,de;q=0.9"), "accept-language=de-ch");
        assert_eq!(k(&mut s, "en-US"), "accept-language=en-us");
        assert_eq!(k(&mut s, "fr-FR"), "accept-language=other");
        assert_eq!(k(&mut s, "de-ch"), "accept-language=de-ch");
        assert_eq!(s.key(&[], |_| None, 2), "all");
        assert_eq!(s.key(&by, |_| None, 2), "accept-language=other");
    }
}
