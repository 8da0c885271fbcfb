//! Tokenization shared by the token metrics, and the token-F1 and ROUGE-L comparators.

use unicode_normalization::UnicodeNormalization;

/// Above this many LCS cells (tokens²) ROUGE-L only looks at a prefix, bounding its time.
const MAX_LCS_CELLS: usize = 4_000_000;
/// Prefix length used once the cap applies; 2000² stays at the cell budget.
const LCS_PREFIX: usize = 2000;

/// NFKC, lowercase, split on anything not alphanumeric, empties dropped.
///
/// Han ideographs and kana also become one token each: those scripts put no spaces between
/// words, so without this a whole Chinese or Japanese sentence would be a single token and every
/// token metric would degrade to exact match (character level is the usual CER convention).
pub fn tokens(s: &str) -> Vec<String> {
    if s.is_ascii() {
        return ascii_tokens(s);
    }
    unicode_tokens(s)
}

/// `tokens` for ASCII text, which NFKC leaves unchanged and whose letters and digits are
/// exactly its alphanumeric characters: the same tokens without the Unicode passes.
fn ascii_tokens(s: &str) -> Vec<String> {
    ascii_words(s).into_iter().map(str::to_ascii_lowercase).collect()
}

/// The words of ASCII text as they are written: its tokens before lower-casing.
fn ascii_words(s: &str) -> Vec<&str> {
    // Split by bytes, not chars: every byte of ASCII text is a whole char, so each cut is on a
    // char boundary and no UTF-8 decoding is needed.
    // About one word per six bytes of English: one allocation for most answers.
    let mut words = Vec::with_capacity(s.len() / 6 + 1);
    let mut start = None;
    for (i, b) in s.bytes().enumerate() {
        match (b.is_ascii_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(from)) => {
                words.push(&s[from..i]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(from) = start {
        words.push(&s[from..]);
    }
    words
}

fn unicode_tokens(s: &str) -> Vec<String> {
    let folded = s.nfkc().collect::<String>().to_lowercase();
    let mut out = Vec::new();
    let mut word = String::new();
    for ch in folded.chars() {
        if ch.is_alphanumeric() && is_unspaced_script(ch) {
            flush(&mut word, &mut out);
            out.push(ch.to_string());
        } else if ch.is_alphanumeric() {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn flush(word: &mut String, out: &mut Vec<String>) {
    if !word.is_empty() {
        out.push(std::mem::take(word));
    }
}

/// Han (CJK unified and compatibility ideographs, all extensions) and Hiragana/Katakana.
/// Callers also require alphanumeric, which keeps the kana blocks' punctuation (`・`) out.
fn is_unspaced_script(ch: char) -> bool {
    matches!(
        ch,
        '\u{3040}'..='\u{30FF}'
            | '\u{31F0}'..='\u{31FF}'
            | '\u{3400}'..='\u{4DBF}'
            | '\u{4E00}'..='\u{9FFF}'
            | '\u{F900}'..='\u{FAFF}'
            | '\u{20000}'..='\u{323AF}'
    )
}

/// SQuAD-style bag-of-tokens F1 (multiplicities count); both empty = 1, one empty = 0.
pub fn token_f1(a: &str, b: &str) -> f64 {
    // ASCII text needs no owned tokens: its words compare as their lower case would.
    if a.is_ascii() && b.is_ascii() {
        let (mut ta, mut tb) = (ascii_words(a), ascii_words(b));
        // Any total order whose ties are exactly the case-blind equal words counts the same
        // intersection; comparing lengths first settles most pairs without reading a letter.
        return f1(&mut ta, &mut tb, |x, y| {
            x.len()
                .cmp(&y.len())
                .then_with(|| x.bytes().map(|c| c.to_ascii_lowercase()).cmp(y.bytes().map(|c| c.to_ascii_lowercase())))
        });
    }
    let (mut ta, mut tb) = (tokens(a), tokens(b));
    f1(&mut ta, &mut tb, String::cmp)
}

/// F1 of two token bags under `order`: 2 * |multiset intersection| / (|a| + |b|), which is
/// 2PR/(P+R) with P = common/|b| and R = common/|a|, and 0 when either is empty; both empty
/// is 1. The intersection is counted by sorting both and walking them together (no hashing of
/// model output, no allocation).
fn f1<T>(a: &mut [T], b: &mut [T], order: impl Fn(&T, &T) -> std::cmp::Ordering) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    a.sort_unstable_by(&order);
    b.sort_unstable_by(&order);
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match order(&a[i], &b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => (common, i, j) = (common + 1, i + 1, j + 1),
        }
    }
    2.0 * common as f64 / (a.len() + b.len()) as f64
}

/// ROUGE-L F-measure (beta = 1) over [`tokens`]: P = LCS/|b|, R = LCS/|a|; both empty = 1.
pub fn rouge_l(a: &str, b: &str) -> f64 {
    let (ta, tb) = (tokens(a), tokens(b));
    let (ta, tb) = if ta.len().saturating_mul(tb.len()) > MAX_LCS_CELLS {
        (&ta[..ta.len().min(LCS_PREFIX)], &tb[..tb.len().min(LCS_PREFIX)])
    } else {
        (&ta[..], &tb[..])
    };
    if ta.is_empty() && tb.is_empty() {
        return 1.0;
    }
    let lcs = lcs_len(ta, tb);
    if lcs == 0 {
        return 0.0;
    }
    // Lengths are of the compared (possibly truncated) prefixes so that x vs x is still 1.
    let p = lcs as f64 / tb.len() as f64;
    let r = lcs as f64 / ta.len() as f64;
    2.0 * p * r / (p + r)
}

/// Longest common subsequence length with two rows over the shorter side: O(min) memory.
fn lcs_len(a: &[String], b: &[String]) -> usize {
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    let mut prev = vec![0usize; short.len() + 1];
    let mut cur = vec![0usize; short.len() + 1];
    for x in long {
        for (j, y) in short.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[short.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(x: f64, y: f64) -> bool {
        (x - y).abs() < 1e-12
    }

    #[test]
    fn tokens_fold_and_split() {
        assert_eq!(tokens("Hello, World! It's 42"), ["hello", "world", "it", "s", "42"]);
        // "½" is "1⁄2" under NFKC and the fraction slash is not alphanumeric.
        assert_eq!(tokens("\u{bd}"), ["1", "2"]);
        // "ﬁ" ligature folds to "fi"; "É" lowercases to "é" and stays inside the word.
        assert_eq!(tokens("\u{fb01}N \u{c9}T\u{c9}"), ["fin", "\u{e9}t\u{e9}"]);
        assert_eq!(tokens("  ...!?  "), Vec::<String>::new());
        assert_eq!(tokens(""), Vec::<String>::new());
    }

    proptest::proptest! {
        #[test]
        fn ascii_tokens_match_the_unicode_path(s in "[ -~\t\n]{0,80}") {
            proptest::prop_assert_eq!(ascii_tokens(&s), unicode_tokens(&s));
        }
    }

    #[test]
    fn tokens_split_han_and_kana_per_character() {
        assert_eq!(tokens("我爱北京"), ["我", "爱", "北", "京"]);
        assert_eq!(tokens("東京タワーabc"), ["東", "京", "タ", "ワ", "ー", "abc"]);
        // The katakana middle dot is punctuation, not a token.
        assert_eq!(tokens("東・京"), ["東", "京"]);
        // Hangul uses spaces between words, so it stays word-level.
        assert_eq!(tokens("안녕 세계"), ["안녕", "세계"]);
    }

    /// The definition, counted with a map: the oracle for the sorted walk.
    fn token_f1_by_counts(a: &str, b: &str) -> f64 {
        let (ta, tb) = (tokens(a), tokens(b));
        if ta.is_empty() && tb.is_empty() {
            return 1.0;
        }
        let mut counts = std::collections::HashMap::new();
        ta.iter().for_each(|t| *counts.entry(t).or_insert(0) += 1);
        let common = tb.iter().filter(|t| counts.get_mut(t).is_some_and(|n| std::mem::replace(n, *n - 1) > 0)).count();
        2.0 * common as f64 / (ta.len() + tb.len()) as f64
    }

    proptest::proptest! {
        #[test]
        fn token_f1_counts_the_bag_intersection(
            a in "([a-cA-C]{1,2}|[ ,.]|é|É|東){0,24}",
            b in "([a-cA-C]{1,2}|[ ,.]|é|É|東){0,24}",
        ) {
            proptest::prop_assert!(close(token_f1(&a, &b), token_f1_by_counts(&a, &b)), "{a:?} {b:?}");
        }
    }

    #[test]
    fn token_f1_hand_worked() {
        // a: the cat sat on the mat (6), b: the cat is on a mat (6).
        // Common bag: the(min 2,1 = 1) cat on mat = 4. P = R = 4/6, F1 = 4/6.
        assert!(close(token_f1("the cat sat on the mat", "the cat is on a mat"), 4.0 / 6.0));
        // Multiplicities: a = {a×3, b}, b = {a, b×2}: common = 1 + 1 = 2; F1 = 2·2/(4+3) = 4/7.
        assert!(close(token_f1("a a a b", "a b b"), 4.0 / 7.0));
        // Bag metric: word order is irrelevant.
        assert_eq!(token_f1("a b c", "c b a"), 1.0);
        assert_eq!(token_f1("Hello, world", "hello world!"), 1.0);
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("...", ""), 1.0);
        assert_eq!(token_f1("word", ""), 0.0);
        assert_eq!(token_f1("", "word"), 0.0);
        assert_eq!(token_f1("x", "y"), 0.0);
    }

    #[test]
    fn rouge_l_hand_worked() {
        // LCS(the cat sat on the mat / the cat is on a mat) = the cat on mat = 4; P = R = 4/6.
        assert!(close(rouge_l("the cat sat on the mat", "the cat is on a mat"), 4.0 / 6.0));
        // |a| = 5, |b| = 3, LCS = 3: P = 1, R = 0.6, F = 2·0.6/1.6 = 0.75.
        assert!(close(rouge_l("a b c d e", "a c e"), 0.75));
        // Order matters: LCS(a b c / c b a) = 1, P = R = 1/3.
        assert!(close(rouge_l("a b c", "c b a"), 1.0 / 3.0));
        // police killed the gunman / police kill the gunman: LCS = 3 of 4 each, F = 0.75.
        assert!(close(rouge_l("police killed the gunman", "police kill the gunman"), 0.75));
        assert_eq!(rouge_l("", ""), 1.0);
        assert_eq!(rouge_l("a", ""), 0.0);
        assert_eq!(rouge_l("", "a"), 0.0);
        assert_eq!(rouge_l("a", "b"), 0.0);
    }

    #[test]
    fn rouge_l_caps_long_inputs_to_a_prefix() {
        let shared: Vec<String> = (0..2000).map(|i| format!("w{i}")).collect();
        let shared = shared.join(" ");
        // 2500 × 2500 = 6.25M cells > 4M: only the identical first 2000 tokens are compared.
        let a = format!("{shared} {}", vec!["x"; 500].join(" "));
        let b = format!("{shared} {}", vec!["y"; 500].join(" "));
        assert_eq!(rouge_l(&a, &b), 1.0);
        // 2000 × 1000 = 2M cells is under the cap: LCS = 1000, P = 1, R = 0.5, F = 2/3.
        let half: Vec<String> = (0..1000).map(|i| format!("w{i}")).collect();
        assert!(close(rouge_l(&shared, &half.join(" ")), 2.0 / 3.0));
    }
}
