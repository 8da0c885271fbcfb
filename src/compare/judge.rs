//! The pure parts of the pairwise LLM judge: prompt rendering, verdict parsing, order combining.

use serde_json::Value;

use super::json;

/// Which response the judge preferred, by its position in the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    A,
    B,
    Tie,
}

/// Fills {input}, {response_a}, {response_b} in the template (single pass; text inserted is not
/// re-scanned for placeholders).
///
/// Single pass matters: a response that itself contains `{response_b}` must not be able to pull
/// the other model's answer into its own slot.
pub fn render(template: &str, input: &str, response_a: &str, response_b: &str) -> String {
    let slots = [("{input}", input), ("{response_a}", response_a), ("{response_b}", response_b)];
    let mut out = String::with_capacity(template.len() + input.len() + response_a.len() + response_b.len());
    let mut rest = template;
    while let Some(pos) = rest.find('{') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        match slots.iter().find(|(name, _)| tail.starts_with(name)) {
            Some((name, value)) => {
                out.push_str(value);
                rest = &tail[name.len()..];
            }
            None => {
                // `{` is one byte, so this stays on a char boundary.
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The verdict in a judge's answer: exactly A, B or TIE (case-insensitive, surrounding whitespace,
/// quotes, trailing period, or markdown bold allowed), or JSON {"verdict": "A"} (also inside ```
/// fences); anything else (including answers that mention both, like "A or B") is None.
pub fn parse_verdict(answer: &str) -> Option<Verdict> {
    if let Some(Value::Object(map)) = json::parse_lenient(answer) {
        // An object without a usable verdict is a malformed answer, not free text to re-read.
        return match map.iter().find(|(k, _)| k.eq_ignore_ascii_case("verdict")) {
            Some((_, Value::String(s))) => bare_verdict(s),
            _ => None,
        };
    }
    bare_verdict(answer)
}

/// Strict: after stripping the allowed wrapping, nothing but the verdict word may remain.
fn bare_verdict(s: &str) -> Option<Verdict> {
    let core = s.trim_start_matches(is_wrapping).trim_end_matches(|c: char| is_wrapping(c) || c == '.');
    if core.eq_ignore_ascii_case("a") {
        Some(Verdict::A)
    } else if core.eq_ignore_ascii_case("b") {
        Some(Verdict::B)
    } else if core.eq_ignore_ascii_case("tie") {
        Some(Verdict::Tie)
    } else {
        None
    }
}

/// Whitespace, straight and curly quotes, backticks (inline code or a bare fence), and `*` (bold).
fn is_wrapping(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '*' | '\u{201C}' | '\u{201D}' | '\u{2018}' | '\u{2019}')
}

/// A candidate's score from one pair of judgements, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JudgeOutcome {
    Score(f64),
    Inconclusive,
}

/// Combines the two orders. `candidate_first` is the verdict when the candidate was shown as A,
/// `leader_first` when the candidate was shown as B.
///
/// Candidate wins in both orders → 1.0; loses in both → 0.0; tie in both, or a tie in one and a
/// win/loss in the other → 0.5; contradictory (position bias) or a missing verdict → Inconclusive,
/// because a judge failure must never count as a pass.
pub fn combine(candidate_first: Option<Verdict>, leader_first: Option<Verdict>) -> JudgeOutcome {
    let (Some(first), Some(second)) = (candidate_first, leader_first) else {
        return JudgeOutcome::Inconclusive;
    };
    // +1 candidate wins, −1 candidate loses, 0 tie; the candidate is A first, then B.
    let first = match first {
        Verdict::A => 1,
        Verdict::B => -1,
        Verdict::Tie => 0,
    };
    let second = match second {
        Verdict::A => -1,
        Verdict::B => 1,
        Verdict::Tie => 0,
    };
    match (first, second) {
        (1, 1) => JudgeOutcome::Score(1.0),
        (-1, -1) => JudgeOutcome::Score(0.0),
        (1, -1) | (-1, 1) => JudgeOutcome::Inconclusive,
        _ => JudgeOutcome::Score(0.5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_each_placeholder_once_per_occurrence() {
        let t = "Q: {input}\n[A] {response_a}\n[B] {response_b}\nAgain: {input}";
        assert_eq!(render(t, "2+2?", "4", "four"), "Q: 2+2?\n[A] 4\n[B] four\nAgain: 2+2?");
    }

    #[test]
    fn render_does_not_rescan_inserted_text() {
        let t = "{response_a}|{response_b}";
        assert_eq!(render(t, "x", "{response_b}", "{input}"), "{response_b}|{input}");
        assert_eq!(render("{input}", "{input}", "a", "b"), "{input}");
    }

    #[test]
    fn render_keeps_other_braces() {
        assert_eq!(render("{\"a\": {x}} {{input}} {", "I", "a", "b"), "{\"a\": {x}} {I} {");
        assert_eq!(render("{inpu", "I", "a", "b"), "{inpu");
        assert_eq!(render("", "I", "a", "b"), "");
        assert_eq!(render("é{input}ü", "日本", "a", "b"), "é日本ü");
    }

    #[test]
    fn parse_bare_verdicts() {
        for (answer, want) in [
            ("A", Verdict::A),
            ("b", Verdict::B),
            ("TIE", Verdict::Tie),
            ("tie", Verdict::Tie),
            ("  A \n", Verdict::A),
            ("\"B\"", Verdict::B),
            ("'a'", Verdict::A),
            ("\u{201C}Tie\u{201D}", Verdict::Tie),
            ("A.", Verdict::A),
            ("**B**", Verdict::B),
            ("**Tie.**", Verdict::Tie),
            ("`A`", Verdict::A),
            ("```\nB\n```", Verdict::B),
        ] {
            assert_eq!(parse_verdict(answer), Some(want), "{answer:?}");
        }
    }

    #[test]
    fn parse_json_verdicts() {
        assert_eq!(parse_verdict(r#"{"verdict": "A"}"#), Some(Verdict::A));
        assert_eq!(parse_verdict(r#"{"verdict":"tie","reason":"both fine"}"#), Some(Verdict::Tie));
        assert_eq!(parse_verdict("```json\n{\"verdict\": \"B\"}\n```"), Some(Verdict::B));
        assert_eq!(parse_verdict(r#"{"Verdict": "b"}"#), Some(Verdict::B));
        assert_eq!(parse_verdict(r#""A""#), Some(Verdict::A));
    }

    #[test]
    fn anything_else_is_none() {
        for answer in [
            "",
            "   ",
            "A or B",
            "A and B are both good",
            "The answer is A",
            "Verdict: A",
            "[[A]]",
            "AB",
            "C",
            "ties",
            ".A",
            r#"{"verdict": "A or B"}"#,
            r#"{"verdict": 1}"#,
            r#"{"winner": "A"}"#,
            r#"["A"]"#,
            "{\"verdict\": \"A\"",
        ] {
            assert_eq!(parse_verdict(answer), None, "{answer:?}");
        }
    }

    #[test]
    fn combine_both_orders() {
        use super::JudgeOutcome::{Inconclusive, Score};
        use super::Verdict::{Tie, A, B};
        // Candidate is A in the first order and B in the second.
        assert_eq!(combine(Some(A), Some(B)), Score(1.0));
        assert_eq!(combine(Some(B), Some(A)), Score(0.0));
        assert_eq!(combine(Some(Tie), Some(Tie)), Score(0.5));
        assert_eq!(combine(Some(A), Some(Tie)), Score(0.5));
        assert_eq!(combine(Some(Tie), Some(B)), Score(0.5));
        assert_eq!(combine(Some(B), Some(Tie)), Score(0.5));
        assert_eq!(combine(Some(Tie), Some(A)), Score(0.5));
        // Always "A" (or always "B") regardless of content: position bias.
        assert_eq!(combine(Some(A), Some(A)), Inconclusive);
        assert_eq!(combine(Some(B), Some(B)), Inconclusive);
        assert_eq!(combine(None, Some(B)), Inconclusive);
        assert_eq!(combine(Some(A), None), Inconclusive);
        assert_eq!(combine(None, None), Inconclusive);
    }
}
