//! Answer text generation: task answers at a given accuracy, pairwise judging, echoes, filler and noisy transcripts.

use super::config::Behavior;
use super::tasks;
use crate::rng::Rng;

/// Ordinary words with no digits or place names, so filler can never be mistaken for a task answer.
const FILLER: &[&str] = &[
    "the",
    "quick",
    "answer",
    "seems",
    "clear",
    "after",
    "careful",
    "thought",
    "and",
    "we",
    "can",
    "also",
    "note",
    "that",
    "this",
    "result",
    "follows",
    "from",
    "simple",
    "reasoning",
    "which",
    "should",
    "help",
    "you",
    "today",
    "with",
    "your",
    "question",
    "please",
    "let",
    "me",
    "know",
    "if",
    "anything",
    "else",
    "is",
    "needed",
    "here",
    "more",
    "detail",
];

/// Runtime behaviours are not validated, so the filler length is capped here as well.
const MAX_FILLER: usize = 10_000;

/// How many prompt words an echo repeats.
const ECHO_WORDS: usize = 20;

/// Whitespace word count, at least 1, standing in for tokens.
pub(crate) fn word_count(s: &str) -> usize {
    s.split_whitespace().count().max(1)
}

/// The assistant's reply to `prompt`.
pub(crate) fn compose(prompt: &str, b: &Behavior, rng: &mut Rng) -> String {
    if let Some(verdict) = judge_verdict(prompt, b.accuracy, rng) {
        return verdict.to_string();
    }
    let mut out = match tasks::answer_for(prompt) {
        Some(answer) if rng.chance(b.accuracy_for(prompt)) => format!("The answer is {answer}."),
        Some(_) => format!("The answer is {}.", tasks::wrong_answer(prompt, rng.next_u64())),
        None => echo(prompt),
    };
    for _ in 0..b.words.min(MAX_FILLER) {
        out.push(' ');
        out.push_str(FILLER[rng.below(FILLER.len())]);
    }
    out
}

fn echo(prompt: &str) -> String {
    let words: Vec<&str> = prompt.split_whitespace().take(ECHO_WORDS).collect();
    if words.is_empty() {
        "You said nothing.".to_string()
    } else {
        format!("You said: {}", words.join(" "))
    }
}

/// The text between the first `open` tag and the following `close` tag.
fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(&text[start..start + len])
}

/// Pairwise judge mode: "A", "B" or "TIE" when the prompt has input and two responses, None otherwise.
fn judge_verdict(prompt: &str, accuracy: f64, rng: &mut Rng) -> Option<&'static str> {
    let input = between(prompt, "<input>", "</input>")?;
    let a = between(prompt, "<response_a>", "</response_a>")?;
    let b = between(prompt, "<response_b>", "</response_b>")?;
    let truth = match tasks::answer_for(input) {
        Some(answer) => match (tasks::contains_answer(a, &answer), tasks::contains_answer(b, &answer)) {
            (true, false) => "A",
            (false, true) => "B",
            _ => "TIE",
        },
        None => "TIE",
    };
    if rng.chance(accuracy) {
        Some(truth)
    } else {
        const VERDICTS: [&str; 3] = ["A", "B", "TIE"];
        Some(VERDICTS[rng.below(VERDICTS.len())])
    }
}

/// Simulates word errors: each word is replaced by a different word with probability 1-accuracy.
pub(crate) fn corrupt_transcript(truth: &str, accuracy: f64, rng: &mut Rng) -> String {
    let mut out = Vec::new();
    for word in truth.split_whitespace() {
        if rng.chance(1.0 - accuracy) {
            let mut idx = rng.below(FILLER.len());
            if FILLER[idx].eq_ignore_ascii_case(word) {
                idx = (idx + 1) % FILLER.len();
            }
            out.push(FILLER[idx]);
        } else {
            out.push(word);
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behavior(accuracy: f64, words: usize) -> Behavior {
        Behavior { accuracy, words, ..Behavior::default() }
    }

    #[test]
    fn answers_follow_accuracy() {
        let t = tasks::task(3);
        let mut rng = Rng::new(1);
        let right = format!("The answer is {}.", t.answer);
        let out = compose(&t.prompt, &behavior(1.0, 5), &mut rng);
        assert!(out.starts_with(&right));
        assert_eq!(word_count(&out), word_count(&right) + 5);
        let out = compose(&t.prompt, &behavior(0.0, 0), &mut rng);
        assert!(out.starts_with("The answer is ") && out != right);
    }

    #[test]
    fn echoes_unknown_prompts() {
        let mut rng = Rng::new(2);
        let long = (0..50).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        let out = compose(&long, &behavior(0.9, 0), &mut rng);
        assert_eq!(word_count(&out), 2 + ECHO_WORDS);
        assert_eq!(compose("", &behavior(0.9, 0), &mut rng), "You said nothing.");
    }

    #[test]
    fn judge_picks_correct_response() {
        let mut rng = Rng::new(3);
        let q = "What is 17 + 25?";
        let b = behavior(1.0, 12);
        let prompt = |a: &str, b: &str| {
            format!("Compare.\n<input>{q}</input>\n<response_a>{a}</response_a>\n<response_b>{b}</response_b>")
        };
        assert_eq!(compose(&prompt("It is 42.", "It is 41."), &b, &mut rng), "A");
        assert_eq!(compose(&prompt("It is 142.", "42"), &b, &mut rng), "B");
        assert_eq!(compose(&prompt("42", "42!"), &b, &mut rng), "TIE");
        assert_eq!(compose(&prompt("1", "2"), &b, &mut rng), "TIE");
        let random = compose(&prompt("42", "1"), &behavior(0.0, 0), &mut rng);
        assert!(["A", "B", "TIE"].contains(&random.as_str()));
    }

    #[test]
    fn transcripts_degrade_with_accuracy() {
        let truth = "alpha beta gamma delta epsilon zeta eta theta iota kappa";
        let mut rng = Rng::new(4);
        assert_eq!(corrupt_transcript(truth, 1.0, &mut rng), truth);
        let noisy = corrupt_transcript(truth, 0.0, &mut rng);
        assert_eq!(noisy.split(' ').count(), 10);
        assert!(noisy.split(' ').zip(truth.split(' ')).all(|(a, b)| a != b));
    }
}
