//! Byte-exact and normalized (NFKC, case, whitespace) string agreement.

use unicode_normalization::UnicodeNormalization;

/// 1.0 iff the two strings are byte-equal.
pub fn exact(a: &str, b: &str) -> f64 {
    if a == b {
        1.0
    } else {
        0.0
    }
}

/// NFKC, lowercase, whitespace runs collapsed to one space, trimmed.
///
/// NFKC runs first so compatibility forms (ligatures, full-width letters) are folded before
/// lowercasing sees them.
pub fn normalize(s: &str) -> String {
    let lowered = s.nfkc().collect::<String>().to_lowercase();
    let mut out = String::with_capacity(lowered.len());
    for word in lowered.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// 1.0 iff the strings are equal after [`normalize`].
pub fn normalized(a: &str, b: &str) -> f64 {
    // Byte-equal strings normalize identically; skip the allocation for the common case.
    if a == b {
        return 1.0;
    }
    exact(&normalize(a), &normalize(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_is_byte_equality() {
        assert_eq!(exact("abc", "abc"), 1.0);
        assert_eq!(exact("abc", "abc "), 0.0);
        assert_eq!(exact("Abc", "abc"), 0.0);
        assert_eq!(exact("", ""), 1.0);
        // Composed é (U+00E9) vs e + combining acute: different bytes, same text.
        assert_eq!(exact("\u{e9}", "e\u{301}"), 0.0);
    }

    #[test]
    fn normalize_folds_case_compat_forms_and_whitespace() {
        assert_eq!(normalize("  Hello \t\n  World  "), "hello world");
        // The "ﬁ" ligature (U+FB01) is "fi" under NFKC; full-width "Ａ" is "A", then lowercased.
        assert_eq!(normalize("\u{fb01}ne \u{ff21}"), "fine a");
        assert_eq!(normalize("e\u{301}"), "\u{e9}");
        // A no-break space is whitespace and collapses like any other.
        assert_eq!(normalize("a\u{a0}\u{a0}b"), "a b");
        assert_eq!(normalize(" \n\t "), "");
    }

    #[test]
    fn normalized_agreement() {
        assert_eq!(normalized("The  Cat\n", "the cat"), 1.0);
        assert_eq!(normalized("\u{fb01}", "FI"), 1.0);
        assert_eq!(normalized("\u{e9}t\u{e9}", "E\u{301}T\u{c9}"), 1.0);
        assert_eq!(normalized("the cat", "the cats"), 0.0);
        // Whitespace inside a word is not removed, only collapsed.
        assert_eq!(normalized("thecat", "the cat"), 0.0);
        assert_eq!(normalized("", "   "), 1.0);
    }
}
