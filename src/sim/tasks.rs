//! Built-in task set: enumerable questions with known answers, and recognition of them inside longer text.

use crate::rng::mix64;

/// One question with its single correct answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub prompt: String,
    pub answer: String,
}

/// Countries whose names are not prefixes of each other's capitals or names, so lookups stay unambiguous.
const CAPITALS: &[(&str, &str)] = &[
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"),
    ("China", "Beijing"),
    ("India", "New Delhi"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("Brazil", "Brasilia"),
    ("Argentina", "Buenos Aires"),
    ("Mexico", "Mexico City"),
    ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"),
    ("Nigeria", "Abuja"),
    ("Russia", "Moscow"),
    ("Poland", "Warsaw"),
    ("Sweden", "Stockholm"),
    ("Norway", "Oslo"),
    ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"),
    ("Ireland", "Dublin"),
    ("Greece", "Athens"),
    ("Turkey", "Ankara"),
    ("Austria", "Vienna"),
    ("Hungary", "Budapest"),
    ("Czechia", "Prague"),
    ("Netherlands", "Amsterdam"),
    ("Belgium", "Brussels"),
    ("Switzerland", "Bern"),
    ("Chile", "Santiago"),
    ("Peru", "Lima"),
    ("Colombia", "Bogota"),
    ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"),
    ("Indonesia", "Jakarta"),
    ("South Korea", "Seoul"),
    ("Morocco", "Rabat"),
    ("Cuba", "Havana"),
    ("New Zealand", "Wellington"),
];

/// No palindromes: the unreversed word must always be a wrong answer.
const WORDS: &[&str] = &[
    "house", "garden", "window", "planet", "river", "candle", "mirror", "forest", "bridge", "pencil", "rocket",
    "castle", "butter", "marble", "silver", "winter", "summer", "jacket", "basket", "ladder", "lemon", "tiger",
    "cloud", "stone", "piano", "orange", "yellow", "shadow", "market", "island", "dragon", "violin", "carpet",
    "engine", "falcon", "harbor", "meadow", "puzzle", "tunnel", "wizard",
];

/// Task `i` of the infinite, deterministic task sequence (kinds rotate: arithmetic, capital, reversal).
pub fn task(i: u64) -> Task {
    let h = mix64(i ^ 0x5EED_7A5C_0DE5_1A7E);
    match i % 3 {
        0 => arithmetic(h),
        1 => {
            let (country, capital) = CAPITALS[(h % CAPITALS.len() as u64) as usize];
            Task { prompt: format!("What is the capital of {country}?"), answer: capital.to_string() }
        }
        _ => {
            let word = WORDS[(h % WORDS.len() as u64) as usize];
            Task { prompt: format!("Spell '{word}' backwards."), answer: reverse(word) }
        }
    }
}

fn arithmetic(h: u64) -> Task {
    let x = 2 + h % 98;
    let y = 2 + (h >> 20) % 98;
    // Subtraction keeps the larger operand first so answers are never negative (a leading '-' would
    // make answer matching in free text ambiguous); products use small factors to stay "mental maths".
    let (a, op, b, answer) = match (h >> 40) % 3 {
        0 => (x, '+', y, x + y),
        1 => (x.max(y), '-', x.min(y), x.max(y) - x.min(y)),
        _ => (x % 13 + 2, '*', y % 13 + 2, (x % 13 + 2) * (y % 13 + 2)),
    };
    Task { prompt: format!("What is {a} {op} {b}?"), answer: answer.to_string() }
}

fn reverse(word: &str) -> String {
    word.chars().rev().collect()
}

/// What a recognised task is, so a wrong answer can be made plausible for its kind.
enum Found {
    Arith(i128),
    Capital(usize),
    Reverse(String),
}

impl Found {
    fn answer(&self) -> String {
        match self {
            Found::Arith(v) => v.to_string(),
            Found::Capital(idx) => CAPITALS[*idx].1.to_string(),
            Found::Reverse(word) => reverse(word),
        }
    }
}

/// The earliest task pattern in `text`, whatever its kind, so judge prompts and chat transcripts that
/// quote several questions resolve to the first one asked.
fn find_first(text: &str) -> Option<Found> {
    // ASCII lowercasing keeps byte offsets identical, so positions found in `lower` index `text` too.
    let lower = text.to_ascii_lowercase();
    [find_arithmetic(&lower), find_capital(&lower), find_reversal(text, &lower)]
        .into_iter()
        .flatten()
        .min_by_key(|(pos, _)| *pos)
        .map(|(_, found)| found)
}

fn find_arithmetic(lower: &str) -> Option<(usize, Found)> {
    lower
        .match_indices("what is ")
        .find_map(|(pos, m)| parse_expression(&lower[pos + m.len()..]).map(|v| (pos, Found::Arith(v))))
}

/// Parses "<int> <op> <int>?" with flexible spacing; operands are capped at 18 digits so i128 cannot overflow.
fn parse_expression(s: &str) -> Option<i128> {
    let (a, rest) = take_number(s)?;
    let rest = rest.trim_start_matches(' ');
    let mut chars = rest.chars();
    let op = chars.next()?;
    let rest = chars.as_str().trim_start_matches(' ');
    let (b, rest) = take_number(rest)?;
    if !rest.trim_start_matches(' ').starts_with('?') {
        return None;
    }
    match op {
        '+' => a.checked_add(b),
        '-' => a.checked_sub(b),
        '*' | 'x' | '×' => a.checked_mul(b),
        _ => None,
    }
}

fn take_number(s: &str) -> Option<(i128, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 18 {
        return None;
    }
    let value = s[..digits].parse::<i128>().ok()?;
    Some((value, &s[digits..]))
}

fn find_capital(lower: &str) -> Option<(usize, Found)> {
    CAPITALS
        .iter()
        .enumerate()
        .filter_map(|(idx, (country, _))| {
            let needle = format!("capital of {}", country.to_ascii_lowercase());
            lower
                .match_indices(needle.as_str())
                .find(|(pos, m)| !starts_with_alnum(&lower[pos + m.len()..]))
                .map(|(pos, _)| (pos, Found::Capital(idx)))
        })
        .min_by_key(|(pos, _)| *pos)
}

fn find_reversal(text: &str, lower: &str) -> Option<(usize, Found)> {
    lower.match_indices("spell '").find_map(|(pos, m)| {
        let start = pos + m.len();
        let len = text[start..].find('\'')?;
        let word = &text[start..start + len];
        let valid = !word.is_empty() && word.chars().count() <= 64 && word.chars().all(char::is_alphabetic);
        let tail = &lower[start + len + 1..];
        (valid && tail.starts_with(" backwards")).then(|| (pos, Found::Reverse(word.to_string())))
    })
}

fn starts_with_alnum(s: &str) -> bool {
    s.chars().next().is_some_and(char::is_alphanumeric)
}

/// The correct answer for any prompt produced by [`task`], also when it is embedded in longer text.
pub fn answer_for(prompt: &str) -> Option<String> {
    find_first(prompt).map(|found| found.answer())
}

/// A plausible wrong answer of the same kind; always differs from `answer_for(prompt)`.
pub fn wrong_answer(prompt: &str, salt: u64) -> String {
    let h = mix64(salt ^ 0x0BAD_A115_3E11_0000);
    match find_first(prompt) {
        Some(Found::Arith(v)) => {
            let delta = 1 + (h % 9) as i128;
            if h >> 63 == 1 && v - delta >= 0 {
                (v - delta).to_string()
            } else {
                (v + delta).to_string()
            }
        }
        Some(Found::Capital(idx)) => {
            let offset = 1 + (h % (CAPITALS.len() as u64 - 1)) as usize;
            CAPITALS[(idx + offset) % CAPITALS.len()].1.to_string()
        }
        Some(Found::Reverse(word)) => {
            let right = reverse(&word);
            let mut wrong = if h & 1 == 0 {
                word.clone()
            } else {
                let mut chars: Vec<char> = right.chars().collect();
                if chars.len() >= 2 {
                    let i = (h >> 8) as usize % (chars.len() - 1);
                    chars.swap(i, i + 1);
                }
                chars.into_iter().collect()
            };
            // Swapping equal letters (or a palindrome) would reproduce the right answer.
            if wrong == right {
                wrong.push('e');
            }
            wrong
        }
        None => "I am not sure".to_string(),
    }
}

/// Whether `text` contains `answer` as a whole token (case-insensitive), so "42" is not found in "142".
pub fn contains_answer(text: &str, answer: &str) -> bool {
    let answer = answer.trim().to_lowercase();
    if answer.is_empty() {
        return false;
    }
    let text = text.to_lowercase();
    text.match_indices(answer.as_str()).any(|(pos, m)| {
        let before_ok = !text[..pos].chars().next_back().is_some_and(char::is_alphanumeric);
        before_ok && !starts_with_alnum(&text[pos + m.len()..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_is_recognised() {
        for i in 0..3000 {
            let t = task(i);
            assert_eq!(answer_for(&t.prompt).as_deref(), Some(t.answer.as_str()), "task {i}: {}", t.prompt);
            let embedded = format!("Please answer briefly.\n<input>{}</input> thanks", t.prompt);
            assert_eq!(answer_for(&embedded), Some(t.answer.clone()), "embedded task {i}");
        }
    }

    #[test]
    fn tasks_are_deterministic_and_varied() {
        assert_eq!(task(17), task(17));
        let distinct: std::collections::HashSet<String> = (0..300).map(|i| task(i).prompt).collect();
        assert!(distinct.len() > 120);
        assert!(task(0).prompt.starts_with("What is "));
        assert!(task(1).prompt.starts_with("What is the capital of "));
        assert!(task(2).prompt.starts_with("Spell '"));
    }

    #[test]
    fn wrong_answer_always_differs() {
        for i in 0..1500 {
            let t = task(i);
            for salt in 0..8 {
                let w = wrong_answer(&t.prompt, salt);
                assert_ne!(w, t.answer, "task {i} salt {salt}");
                assert!(!w.is_empty());
            }
        }
        assert_eq!(wrong_answer("hello there", 1), "I am not sure");
    }

    #[test]
    fn capitals() {
        assert_eq!(answer_for("What is the capital of France?").as_deref(), Some("Paris"));
        assert_eq!(answer_for("what is the CAPITAL OF new zealand?").as_deref(), Some("Wellington"));
        assert_eq!(answer_for("What is the capital of Atlantis?"), None);
        assert_eq!(answer_for("the capital of Franceland"), None);
        let wrong = wrong_answer("What is the capital of France?", 3);
        assert!(CAPITALS.iter().any(|(_, c)| *c == wrong) && wrong != "Paris");
    }

    #[test]
    fn arithmetic() {
        assert_eq!(answer_for("What is 17 + 25?").as_deref(), Some("42"));
        assert_eq!(answer_for("Q: what is 50 - 8 ?").as_deref(), Some("42"));
        assert_eq!(answer_for("What is 6 * 7?").as_deref(), Some("42"));
        assert_eq!(answer_for("What is 6 / 7?"), None);
        assert_eq!(answer_for("What is 17 + 25"), None);
        let w: i64 = wrong_answer("What is 17 + 25?", 9).parse().unwrap();
        assert!(w != 42 && (32..=52).contains(&w));
    }

    #[test]
    fn reversal_and_earliest_pattern() {
        assert_eq!(answer_for("Spell 'house' backwards.").as_deref(), Some("esuoh"));
        assert_eq!(answer_for("spell 'two words' backwards."), None);
        let both = "Spell 'tiger' backwards. Then: What is 1 + 1?";
        assert_eq!(answer_for(both).as_deref(), Some("regit"));
    }

    #[test]
    fn answer_matching_respects_token_boundaries() {
        assert!(contains_answer("The answer is 42.", "42"));
        assert!(!contains_answer("The answer is 142.", "42"));
        assert!(contains_answer("it is mexico city, I think", "Mexico City"));
        assert!(!contains_answer("Parisian", "Paris"));
        assert!(!contains_answer("anything", ""));
    }
}
