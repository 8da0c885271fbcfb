//! Word error rate between transcripts and the agreement derived from it.

use super::text;

/// (substitutions + deletions + insertions) / reference words, over [`text::tokens`].
///
/// May exceed 1 when the hypothesis inserts many words. An empty reference gives 0 for an
/// empty hypothesis and 1 otherwise (the rate is undefined there; any output is all error).
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let r = text::tokens(reference);
    let h = text::tokens(hypothesis);
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    edit_distance(&r, &h) as f64 / r.len() as f64
}

/// 1 − WER, clamped to [0, 1].
pub fn wer_agreement(reference: &str, hypothesis: &str) -> f64 {
    (1.0 - word_error_rate(reference, hypothesis)).clamp(0.0, 1.0)
}

/// Levenshtein distance over words with unit costs, two rows over the hypothesis.
fn edit_distance(r: &[String], h: &[String]) -> usize {
    // prev[j] = distance between the reference prefix so far and h[..j].
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    let mut cur = vec![0usize; h.len() + 1];
    for (i, rw) in r.iter().enumerate() {
        cur[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let substitute = prev[j] + usize::from(rw != hw);
            let delete = prev[j + 1] + 1;
            let insert = cur[j] + 1;
            cur[j + 1] = substitute.min(delete).min(insert);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[h.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(x: f64, y: f64) -> bool {
        (x - y).abs() < 1e-12
    }

    #[test]
    fn substitution_and_deletion() {
        // the cat sat on the mat → the cat sit on mat: sat→sit (S), "the" before mat deleted (D).
        // WER = 2/6 = 1/3, agreement = 2/3.
        assert!(close(word_error_rate("the cat sat on the mat", "the cat sit on mat"), 2.0 / 6.0));
        assert!(close(wer_agreement("the cat sat on the mat", "the cat sit on mat"), 4.0 / 6.0));
    }

    #[test]
    fn insertion() {
        // One inserted word over a 3-word reference: 1/3.
        assert!(close(word_error_rate("i like tea", "i really like tea"), 1.0 / 3.0));
        // "a" → "b c d": 1 S + 2 I = 3 (cheaper than 1 D + 3 I), WER = 3/1, agreement clamps to 0.
        assert!(close(word_error_rate("a", "b c d"), 3.0));
        assert_eq!(wer_agreement("a", "b c d"), 0.0);
    }

    #[test]
    fn classic_example() {
        // ref: "who is there" vs hyp "is there anyone": delete "who" (D), insert "anyone" (I).
        // Distance 2 over 3 reference words.
        assert!(close(word_error_rate("who is there", "is there anyone"), 2.0 / 3.0));
        // Reversed word order costs substitutions, not zero: a b c → c b a: 2 S over 3.
        assert!(close(word_error_rate("a b c", "c b a"), 2.0 / 3.0));
    }

    #[test]
    fn normalization_and_empties() {
        // Case and punctuation are not errors after tokenization.
        assert_eq!(word_error_rate("Hello, World.", "hello world"), 0.0);
        assert_eq!(wer_agreement("Hello, World.", "hello world"), 1.0);
        assert_eq!(word_error_rate("", ""), 0.0);
        assert_eq!(word_error_rate("...", " "), 0.0);
        assert_eq!(word_error_rate("", "words"), 1.0);
        assert_eq!(wer_agreement("", "words"), 0.0);
        // Everything deleted: 2 D over 2.
        assert_eq!(word_error_rate("two words", ""), 1.0);
        assert_eq!(wer_agreement("two words", ""), 0.0);
    }

    #[test]
    fn reference_side_matters() {
        // a b c d vs a b: 2 deletions over 4 = 0.5; swapped: 2 insertions over 2 = 1.0.
        assert!(close(word_error_rate("a b c d", "a b"), 0.5));
        assert!(close(word_error_rate("a b", "a b c d"), 1.0));
    }

    #[test]
    fn character_level_for_chinese() {
        // 我爱北京 → 我爱南京: one substituted character over 4.
        assert!(close(word_error_rate("我爱北京", "我爱南京"), 0.25));
    }
}
