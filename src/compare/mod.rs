//! Agreement between two models' outputs: pure comparators scoring in [0, 1] (1 = same).

pub mod exact;
pub mod json;
pub mod judge;
pub mod text;
pub mod vectors;
pub mod wer;

/// What a response looked like once reassembled, as the comparators read it: borrowed from the
/// proxy's capture, so comparing copies nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Output<'a> {
    pub text: &'a str,
    pub tool_calls: &'a [ToolCall],
    pub embeddings: &'a [Vec<f32>],
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCall {
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparator {
    Exact,
    Normalized,
    TokenF1,
    RougeL,
    Json,
    Wer,
    Neighbourhood,
}

impl Comparator {
    /// Those a route may name in `evaluate.agreement` (neighbourhood is implied for embeddings).
    pub const CONFIGURABLE: [Comparator; 6] = [
        Comparator::Exact,
        Comparator::Normalized,
        Comparator::TokenF1,
        Comparator::RougeL,
        Comparator::Json,
        Comparator::Wer,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Comparator::Exact => "exact",
            Comparator::Normalized => "normalized",
            Comparator::TokenF1 => "token_f1",
            Comparator::RougeL => "rouge_l",
            Comparator::Json => "json",
            Comparator::Wer => "wer",
            Comparator::Neighbourhood => "neighbourhood",
        }
    }
}

/// Agreement of two outputs under a comparator; None when the comparator cannot judge them
/// (e.g. Neighbourhood with fewer than 3 vectors in either, or different batch sizes).
///
/// When either side proposed tool calls, those are what the response is about: the score is the
/// tool-call score, averaged with the text score only when both sides also said something.
/// Wer treats `a` as the reference.
pub fn agreement(c: &Comparator, a: &Output, b: &Output) -> Option<f64> {
    if *c == Comparator::Neighbourhood {
        return vectors::neighbourhood(a.embeddings, b.embeddings);
    }
    if a.tool_calls.is_empty() && b.tool_calls.is_empty() {
        return text_agreement(c, a.text, b.text);
    }
    let tools = json::tool_calls(a.tool_calls, b.tool_calls);
    // Whitespace-only text (a stray newline before a streamed tool call) is not an answer.
    if a.text.trim().is_empty() || b.text.trim().is_empty() {
        return Some(tools);
    }
    text_agreement(c, a.text, b.text).map(|t| (tools + t) / 2.0)
}

/// None only for Neighbourhood, which has nothing to say about text.
fn text_agreement(c: &Comparator, a: &str, b: &str) -> Option<f64> {
    let score = match c {
        Comparator::Exact => exact::exact(a, b),
        Comparator::Normalized => exact::normalized(a, b),
        Comparator::TokenF1 => text::token_f1(a, b),
        Comparator::RougeL => text::rouge_l(a, b),
        Comparator::Json => json::json(a, b),
        Comparator::Wer => wer::wer_agreement(a, b),
        Comparator::Neighbourhood => return None,
    };
    Some(score)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT_COMPARATORS: [Comparator; 6] = Comparator::CONFIGURABLE;

    /// Empty, whitespace-only, compatibility forms, combining marks, case-expanding letters,
    /// control and zero-width characters, emoji, unspaced scripts, RTL, JSON-ish fragments.
    const ODD: [&str; 34] = [
        "",
        " ",
        "\n\t\u{a0}",
        "a",
        "A",
        "The cat sat.",
        "the  CAT sat",
        "\u{fb01}",
        "\u{e9}",
        "e\u{301}",
        "a\u{300}\u{301}\u{302}",
        "\u{130}",
        "\u{df}",
        "\u{1c5}",
        "\u{fdfa}",
        "\u{0}",
        "\u{200b}",
        "\u{feff}x",
        "\u{1F642}\u{1F44D}\u{1F3FD}",
        "\u{10FFFF}",
        "日本語のテキスト",
        "我爱北京",
        "한국어 문장",
        "\u{627}\u{644}\u{639}\u{631}\u{628}\u{64a}\u{629}",
        "{",
        "}",
        "{}",
        "[]",
        "{\"a\":[1,2,{\"b\":null}]}",
        "```json\n{\"a\":1}\n```",
        "```",
        "1e999",
        "-0",
        "**TIE**",
    ];

    fn generated() -> Vec<String> {
        let mut out: Vec<String> = ODD.iter().map(|s| s.to_string()).collect();
        for x in ODD {
            for y in ODD {
                out.push(format!("{x}{y}"));
                out.push(format!("{x} {y}"));
            }
        }
        out
    }

    fn text(s: &str) -> Output<'_> {
        Output { text: s, ..Output::default() }
    }

    fn call(name: &str, arguments: &str) -> ToolCall {
        ToolCall { name: name.to_string(), arguments: arguments.to_string() }
    }

    /// Small deterministic generator so the property loops need no extra crate.
    struct Lcg(u64);

    impl Lcg {
        fn step(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0 >> 33
        }

        fn unit(&mut self) -> f32 {
            (self.step() % 2001) as f32 / 1000.0 - 1.0
        }

        fn batch(&mut self, items: usize, dim: usize) -> Vec<Vec<f32>> {
            (0..items).map(|_| (0..dim).map(|_| self.unit()).collect()).collect()
        }
    }

    #[test]
    fn text_comparators_hand_worked() {
        let (a, b) = (text("a b c"), text("c b a"));
        assert_eq!(agreement(&Comparator::Exact, &a, &b), Some(0.0));
        assert_eq!(agreement(&Comparator::TokenF1, &a, &b), Some(1.0));
        // LCS 1 of 3 each side.
        let r = agreement(&Comparator::RougeL, &a, &b).unwrap_or(f64::NAN);
        assert!((r - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(agreement(&Comparator::Normalized, &text("Hi  there"), &text("hi there\n")), Some(1.0));
        assert_eq!(agreement(&Comparator::Json, &text(r#"{"a":1,"b":2}"#), &text(r#"{"b":2,"a":1}"#)), Some(1.0));
        // Text comparators ignore embeddings entirely.
        let with_vectors = Output { embeddings: &[vec![1.0]], ..text("a b c") };
        assert_eq!(agreement(&Comparator::Exact, &a, &with_vectors), Some(1.0));
    }

    #[test]
    fn wer_uses_a_as_reference() {
        // a b c d → a b: 2 deletions / 4 = 0.5 → 0.5; reversed: 2 insertions / 2 = 1 → 0.
        assert_eq!(agreement(&Comparator::Wer, &text("a b c d"), &text("a b")), Some(0.5));
        assert_eq!(agreement(&Comparator::Wer, &text("a b"), &text("a b c d")), Some(0.0));
    }

    #[test]
    fn tool_calls_dominate_and_average_with_text() {
        let a = Output { tool_calls: &[call("f", r#"{"x":1,"y":2}"#)], ..text("Calling the tool") };
        let b = Output { tool_calls: &[call("f", r#"{"x":1,"y":3}"#)], ..text("calling the  tool") };
        // Tools: keys {x, y}, x equal → 0.5. Normalized text: equal → 1. Mean = 0.75.
        assert_eq!(agreement(&Comparator::Normalized, &a, &b), Some(0.75));
        // Exact text differs → (0.5 + 0) / 2.
        assert_eq!(agreement(&Comparator::Exact, &a, &b), Some(0.25));
        // One side without text: tool score alone.
        let quiet = Output { text: " \n", ..b };
        assert_eq!(agreement(&Comparator::Exact, &a, &quiet), Some(0.5));
        // Only one side called a tool: tools 0/1 = 0, texts equal → (0 + 1) / 2.
        let plain = text("Calling the tool");
        assert_eq!(agreement(&Comparator::Exact, &a, &plain), Some(0.5));
        let silent_call = Output { tool_calls: &[call("f", "")], ..Output::default() };
        assert_eq!(agreement(&Comparator::Exact, &text(""), &silent_call), Some(0.0));
    }

    #[test]
    fn neighbourhood_uses_embeddings_only() {
        let mut rng = Lcg(7);
        let batch = rng.batch(4, 3);
        let a = Output { embeddings: &batch, tool_calls: &[call("f", "{}")], ..text("x") };
        let b = Output { embeddings: &batch, ..text("completely different") };
        assert_eq!(agreement(&Comparator::Neighbourhood, &a, &b), Some(1.0));
        assert_eq!(agreement(&Comparator::Neighbourhood, &text("x"), &text("x")), None);
        let two = Output { embeddings: &rng.batch(2, 3), ..Output::default() };
        assert_eq!(agreement(&Comparator::Neighbourhood, &two, &two), None);
    }

    #[test]
    fn property_self_agreement_is_one() {
        for s in generated() {
            let out = text(&s);
            for c in &TEXT_COMPARATORS {
                assert_eq!(agreement(c, &out, &out), Some(1.0), "{c:?} on {s:?}");
            }
            let calls = Output { tool_calls: &[call("f", &s), call(&s, "{}")], ..out };
            for c in &TEXT_COMPARATORS {
                assert_eq!(agreement(c, &calls, &calls), Some(1.0), "{c:?} with tools on {s:?}");
            }
        }
    }

    #[test]
    fn property_scores_stay_in_unit_interval() {
        let all = generated();
        // Every pair of the odd strings, plus each generated string against a scattered partner:
        // broad coverage without the quadratic blow-up of all generated × all generated.
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for x in ODD {
            for y in ODD {
                pairs.push((x, y));
            }
        }
        for (i, x) in all.iter().enumerate() {
            pairs.push((x.as_str(), all[(i * 7 + 3) % all.len()].as_str()));
        }
        for (x, y) in pairs {
            let (a, b) = (text(x), text(y));
            for c in &TEXT_COMPARATORS {
                for (p, q) in [(&a, &b), (&b, &a)] {
                    let s = agreement(c, p, q);
                    assert!(s.is_some_and(|s| (0.0..=1.0).contains(&s)), "{c:?} {x:?} {y:?}: {s:?}");
                }
            }
            let calls = (vec![call(x, y)], vec![call(x, x), call(y, y)]);
            let t = json::tool_calls(&calls.0, &calls.1);
            assert!((0.0..=1.0).contains(&t), "{x:?} {y:?}: {t}");
            assert!(wer::word_error_rate(x, y) >= 0.0);
            let _ = judge::parse_verdict(y);
            let _ = judge::render(y, x, y, x);
        }
    }

    #[test]
    fn property_vectors_never_leave_the_unit_interval() {
        let mut rng = Lcg(42);
        let mut judged = 0;
        for round in 0..300 {
            let items = (round % 7) as usize;
            let (dim_a, dim_b) = (1 + (rng.step() % 5) as usize, 1 + (rng.step() % 9) as usize);
            let a = rng.batch(items, dim_a);
            let b = rng.batch(items, dim_b);
            let own = vectors::neighbourhood(&a, &a);
            assert!(own.is_none_or(|s| s == 1.0), "{own:?}");
            let s = vectors::neighbourhood(&a, &b);
            assert!(s.is_none_or(|s| (0.0..=1.0).contains(&s)), "{s:?}");
            judged += usize::from(own.is_some());
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                let c = vectors::cosine(x, y);
                assert!(c.is_none_or(|c| (-1.0..=1.0).contains(&c)), "{c:?}");
            }
            let xs: Vec<f64> = (0..items).map(|_| f64::from(rng.unit())).collect();
            let ys: Vec<f64> = (0..items).map(|_| f64::from(rng.unit())).collect();
            let rho = vectors::spearman(&xs, &ys);
            assert!(rho.is_none_or(|r| (-1.0..=1.0).contains(&r)), "{rho:?}");
        }
        // Most batches of 3+ random vectors are judgeable; the loop must not pass vacuously.
        assert!(judged > 100, "{judged}");
    }
}
