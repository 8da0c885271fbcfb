//! Redaction: secrets and personal data removed from text before it is stored.

const KEY: &str = "[KEY]";
const EMAIL: &str = "[EMAIL]";
const CARD: &str = "[CARD]";
const PHONE: &str = "[PHONE]";

/// Returns `text` with secrets and personal data replaced by placeholders.
pub fn redact(text: &str) -> String {
    // Separate passes in priority order: once a card is replaced by `[CARD]` the looser
    // phone pattern can no longer see its digits. Placeholders contain no digit, `@` or
    // key prefix, so later passes (and a second `redact`) leave them alone.
    let passes: [Matcher; 4] = [key_at, email_at, card_at, phone_at];
    passes.iter().fold(text.to_owned(), |acc, m| apply(&acc, *m))
}

/// Bytes `start..keep` are copied verbatim (e.g. `Bearer `), `keep..end` become the placeholder.
struct Hit {
    keep: usize,
    end: usize,
    placeholder: &'static str,
}

type Matcher = fn(&[u8], usize) -> Option<Hit>;

fn apply(text: &str, matcher: Matcher) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match matcher(b, i) {
            Some(h) if h.keep >= i && h.end > h.keep && h.end <= b.len() => {
                out.extend_from_slice(&b[i..h.keep]);
                out.extend_from_slice(h.placeholder.as_bytes());
                i = h.end;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    // Every match starts and ends on ASCII bytes, so no UTF-8 sequence is split; the lossy
    // fallback only guards against a logic error and still keeps the secret out.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Out-of-range reads as NUL so look-ahead needs no bounds checks.
fn byte(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

fn run(b: &[u8], from: usize, pred: impl Fn(u8) -> bool) -> usize {
    let mut end = from;
    while end < b.len() && pred(b[end]) {
        end += 1;
    }
    end
}

fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn key_at(b: &[u8], i: usize) -> Option<Hit> {
    // Only whole words: "task-…" must not be read as an `sk-` key.
    if i > 0 && is_token(b[i - 1]) {
        return None;
    }
    if let Some(hit) = bearer_at(b, i) {
        return Some(hit);
    }
    let end = run(b, i, is_token);
    let w = &b[i..end];
    let tail = |prefix: usize| w.len().saturating_sub(prefix);
    let is_key = ((w.starts_with(b"sk-") || w.starts_with(b"sk_")) && tail(3) >= 16)
        || (w.starts_with(b"AIza") && tail(4) >= 30)
        || (w.starts_with(b"github_pat_") && tail(11) >= 20)
        || ((w.starts_with(b"ghp_") || w.starts_with(b"gho_")) && tail(4) >= 20)
        || (w.len() >= 15 && w.starts_with(b"xox") && b"abpr".contains(&w[3]) && w[4] == b'-')
        || (w.len() == 20
            && w.starts_with(b"AKIA")
            && w[4..].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
    if is_key {
        return Some(Hit { keep: i, end, placeholder: KEY });
    }
    jwt_at(b, i)
}

fn bearer_at(b: &[u8], i: usize) -> Option<Hit> {
    if !b.get(i..i + 6)?.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let start = run(b, i + 6, |c| c == b' ' || c == b'\t');
    if start == i + 6 {
        return None;
    }
    // RFC 6750 token68 alphabet; a trailing dot is sentence punctuation, not token.
    let mut end = run(b, start, |c| c.is_ascii_alphanumeric() || b"-._~+/=".contains(&c));
    while end > start && b[end - 1] == b'.' {
        end -= 1;
    }
    (end - start >= 16).then_some(Hit { keep: start, end, placeholder: KEY })
}

fn jwt_at(b: &[u8], i: usize) -> Option<Hit> {
    // After a dot we are inside a longer dotted chain, which is not a JWT.
    if !b[i..].starts_with(b"eyJ") || (i > 0 && b[i - 1] == b'.') {
        return None;
    }
    let mut end = i;
    for part in 0..3 {
        if part > 0 {
            if byte(b, end) != b'.' {
                return None;
            }
            end += 1;
        }
        let next = run(b, end, is_token);
        if next - end < 8 {
            return None;
        }
        end = next;
    }
    if byte(b, end) == b'.' && is_token(byte(b, end + 1)) {
        return None;
    }
    Some(Hit { keep: i, end, placeholder: KEY })
}

fn email_at(b: &[u8], i: usize) -> Option<Hit> {
    let is_local = |c: u8| c.is_ascii_alphanumeric() || b"._%+-".contains(&c);
    if !is_local(b[i]) || (i > 0 && is_local(b[i - 1])) {
        return None;
    }
    let at = run(b, i, is_local);
    if byte(b, at) != b'@' {
        return None;
    }
    // Walk every label, then stop after the last one that can be a TLD, so
    // "a@example.com." keeps its full stop.
    let (mut pos, mut labels, mut end) = (at + 1, 0, None);
    loop {
        let label_end = run(b, pos, |c| c.is_ascii_alphanumeric() || c == b'-');
        if label_end == pos {
            break;
        }
        labels += 1;
        let label = &b[pos..label_end];
        if labels >= 2 && label.len() >= 2 && label.iter().all(u8::is_ascii_alphabetic) {
            end = Some(label_end);
        }
        if byte(b, label_end) != b'.' {
            break;
        }
        pos = label_end + 1;
    }
    end.map(|end| Hit { keep: i, end, placeholder: EMAIL })
}

/// A number must not continue a word, a decimal ("3.14159") or a grouped figure ("1,234,567").
fn digit_start(b: &[u8], i: usize) -> bool {
    let prev = if i == 0 { return true } else { b[i - 1] };
    !(prev.is_ascii_alphanumeric()
        || prev == b'_'
        || (b".,-".contains(&prev) && i >= 2 && b[i - 2].is_ascii_alphanumeric()))
}

fn digit_end(b: &[u8], end: usize) -> bool {
    let next = byte(b, end);
    !(next.is_ascii_alphanumeric() || next == b'_' || (b".,-".contains(&next) && byte(b, end + 1).is_ascii_digit()))
}

struct Group {
    end: usize,
    len: usize,
    paren: bool,
    /// Separator before this group; 0 when glued to a parenthesised group.
    sep: u8,
}

fn groups(b: &[u8], mut pos: usize, seps: &[u8], parens: bool, max_digits: usize) -> Vec<Group> {
    let (mut out, mut total, mut sep) = (Vec::<Group>::new(), 0, 0u8);
    loop {
        let paren = parens && byte(b, pos) == b'(';
        let from = if paren { pos + 1 } else { pos };
        let digits_end = run(b, from, |c| c.is_ascii_digit());
        let len = digits_end - from;
        if len == 0 {
            break;
        }
        let end = if paren {
            if len > 4 || byte(b, digits_end) != b')' || out.iter().any(|g| g.paren) {
                break;
            }
            digits_end + 1
        } else {
            digits_end
        };
        total += len;
        if total > max_digits {
            break;
        }
        out.push(Group { end, len, paren, sep });
        let (next, after) = (byte(b, end), byte(b, end + 1));
        if seps.contains(&next) && (after.is_ascii_digit() || (parens && after == b'(')) {
            sep = next;
            pos = end + 1;
        } else if parens && ((paren && next.is_ascii_digit()) || next == b'(') {
            sep = 0;
            pos = end;
        } else {
            break;
        }
    }
    out
}

/// Real numbers keep one separator style; the gap after a country code or an area code
/// in parentheses may differ ("+1 (555) 123-4567"). Mixed styles usually mean two numbers.
fn consistent_seps(g: &[Group], plus: bool) -> bool {
    let mut seps = (1..g.len()).filter(|&k| (!plus || k != 1) && !g[k - 1].paren).map(|k| g[k].sep);
    match seps.next() {
        Some(first) => seps.all(|s| s == first),
        None => true,
    }
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0;
    let values = digits.iter().rev().filter(|c| c.is_ascii_digit()).map(|c| u32::from(c - b'0'));
    for (k, d) in values.enumerate() {
        sum += if k % 2 == 1 { (d * 2) % 10 + (d * 2) / 10 } else { d };
    }
    sum % 10 == 0
}

fn card_at(b: &[u8], i: usize) -> Option<Hit> {
    if !b[i].is_ascii_digit() || !digit_start(b, i) {
        return None;
    }
    let gs = groups(b, i, b" -", false, 19);
    // Longest plausible prefix wins, so a trailing "… 1111 2 items" does not spoil the card.
    (1..=gs.len()).rev().map(|n| &gs[..n]).find_map(|g| {
        let end = g[g.len() - 1].end;
        let total: usize = g.iter().map(|x| x.len).sum();
        let shaped = g.len() == 1 || g.iter().all(|x| (3..=6).contains(&x.len));
        let ok =
            (13..=19).contains(&total) && shaped && consistent_seps(g, false) && digit_end(b, end) && luhn(&b[i..end]);
        ok.then_some(Hit { keep: i, end, placeholder: CARD })
    })
}

fn phone_at(b: &[u8], i: usize) -> Option<Hit> {
    let c = b[i];
    if !(c.is_ascii_digit() || c == b'+' || c == b'(') || !digit_start(b, i) {
        return None;
    }
    let plus = c == b'+';
    let from = if plus { i + 1 } else { i };
    // "17 + 25": a plus that is not glued to digits is arithmetic.
    if plus && !(byte(b, from).is_ascii_digit() || byte(b, from) == b'(') {
        return None;
    }
    let gs = groups(b, from, b" -.", true, 15);
    (1..=gs.len()).rev().map(|n| &gs[..n]).find_map(|g| {
        let end = g[g.len() - 1].end;
        (digit_end(b, end) && plausible_phone(g, plus)).then_some(Hit { keep: i, end, placeholder: PHONE })
    })
}

fn plausible_phone(g: &[Group], plus: bool) -> bool {
    let n = g.len();
    let total: usize = g.iter().map(|x| x.len).sum();
    if !(7..=15).contains(&total) || !consistent_seps(g, plus) || g[1..].iter().any(|x| x.len < 2) {
        return false;
    }
    if plus || g.iter().any(|x| x.paren) {
        // "+3.14159265" is still a decimal.
        return !(n == 2 && g[1].sep == b'.');
    }
    // Without a '+' or area code the digits alone are weak evidence, so demand a phone's
    // shape and reject the common look-alikes: ranges, lists, dates and IP addresses.
    if n == 2 {
        return g[0].len == 3 && g[1].len == 4 && g[1].sep == b'-';
    }
    let lens = |a: usize, c: usize, d: usize| g[0].len == a && g[1].len == c && g[2].len == d;
    let date = n == 3 && (lens(4, 2, 2) || (g[0].len <= 2 && g[1].len <= 2 && g[2].len == 4));
    let ip = n == 4 && g[1].sep == b'.' && g.iter().all(|x| x.len <= 3);
    n >= 3 && g[0].len <= 4 && g[1..].iter().all(|x| x.len <= 4) && g.iter().any(|x| x.len != g[0].len) && !date && !ip
}

#[cfg(test)]
mod tests {
    use super::redact;

    fn same(s: &str) {
        assert_eq!(redact(s), s, "should be unchanged: {s}");
    }

    fn check(input: &str, want: &str) {
        assert_eq!(redact(input), want, "input: {input}");
        assert_eq!(redact(want), want, "not idempotent: {want}");
    }

    #[test]
    fn keys() {
        check(&format!("use sk-proj-{} now", "a1B2_c-".repeat(4)), "use [KEY] now");
        check(&format!("k=sk_live_{}", "x9".repeat(10)), "k=[KEY]");
        check(&format!("sk-ant-api03-{}.", "Zz".repeat(12)), "[KEY].");
        check(&format!("(AIza{})", "Sy-_9".repeat(7)), "([KEY])");
        let (ghp, pat) = ("A1".repeat(18), "b".repeat(30));
        check(&format!("ghp_{ghp} and github_pat_{pat}"), "[KEY] and [KEY]");
        check(&format!("gho_{}", "q".repeat(20)), "[KEY]");
        check("slack xoxb-1234567890-abcdefghij ok", "slack [KEY] ok");
        check("aws AKIAIOSFODNN7EXAMPLE,", "aws [KEY],");
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        check(&format!("token {jwt}."), "token [KEY].");
        check(&format!("Authorization: Bearer {jwt}"), "Authorization: Bearer [KEY]");
        check("bearer abcdefghijklmnop+/==.", "bearer [KEY].");
        for s in [
            "sk-short1234",
            "task-abcdefghijklmnopqrstuvwx",
            "risk_assessment_framework_doc",
            "AIzaShort",
            "ghp_short",
            "xoxb-12",
            "AKIAshortlowercase12",
            "AKIAIOSFODNN7EXAMPLE2",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIx",
            "eyJhbGciOiJI.eyJzdWIiOiIx.abc",
            "eyJhbGciOiJI.eyJzdWIiOiIx.c2lnbmF0dXJl.ZXh0cmEwMDA",
            "Bearer short",
            "the bearer of bad news",
            "Bearer [KEY]",
        ] {
            same(s);
        }
    }

    #[test]
    fn emails() {
        check("mail me at a.b@example.com.", "mail me at [EMAIL].");
        check("<first.last+tag@sub.example.co.uk>", "<[EMAIL]>");
        check("x%y-z@mail-server.io, 9@b.de", "[EMAIL], [EMAIL]");
        for s in ["user@localhost", "a@b.c", "@example.com", "x@y.c0m", "no at sign here."] {
            same(s);
        }
    }

    #[test]
    fn cards() {
        check("card 4111 1111 1111 1111, thanks", "card [CARD], thanks");
        check("5500-0000-0000-0004", "[CARD]");
        check("amex 378282246310005 / 3782 822463 10005", "amex [CARD] / [CARD]");
        check("visa13 4222222222222.", "visa13 [CARD].");
        check("4111 1111 1111 1111 2 items", "[CARD] 2 items");
        // Card wins over phone: this also has a valid phone shape.
        check("3782-8224-6310-005", "[CARD]");
        // Chosen: a non-Luhn 16-digit number is neither card nor phone (> 15 digits).
        same("4111111111111112");
        same("4111 1111 1111 1112");
        same("id 41111111111111111111111");
    }

    #[test]
    fn phones() {
        check("call +41 44 668 18 00 today", "call [PHONE] today");
        check("(555) 123-4567", "[PHONE]");
        check("555-123-4567.", "[PHONE].");
        check("+1.555.123.4567", "[PHONE]");
        check("+1 (555) 123-4567, or +14155552671", "[PHONE], or [PHONE]");
        check("+44 7700 900123", "[PHONE]");
        check("ring 555-1234 now", "ring [PHONE] now");
        check("555-123-4567 555-987-6543", "[PHONE] [PHONE]");
        check("(555-123-4567)", "([PHONE])");
        for s in [
            "What is 17 + 25?",
            "in 2026 we sold 1,234 units",
            "pi is 3.14159 or 3.14159265358",
            "+3.14159265",
            "call 12345",
            "order 1234567",
            "big 1,234,567,890",
            "serial abc5551234567 and 555-123-4567abc",
            "ID-555-123-4567",
            "on 2026-01-15 10:30 and 15.01.2026",
            "host 192.168.10.100",
            "years 2019 2020 2021, pages 1200-1450",
            "ISBN 978-3-16-148410-0",
            "scores 10 20 30 40",
        ] {
            same(s);
        }
    }

    #[test]
    fn mixed_and_multibyte() {
        check(
            "Contact jane.doe@example.org or +1 (555) 123-4567, card 4111 1111 1111 1111, key sk-proj-abcdefghijklmnop1234.",
            "Contact [EMAIL] or [PHONE], card [CARD], key [KEY].",
        );
        check("Grüße 👋 a.b@example.com — ☎ +41 44 668 18 00 ✓", "Grüße 👋 [EMAIL] — ☎ [PHONE] ✓");
        check("電話番号は03-1234-5678です。", "電話番号は[PHONE]です。");
        same("Ünïcödé text — nothing secret here… 日本語 🚀");
        same("");
    }

    #[test]
    fn generated_inputs_do_not_panic() {
        let frags = [
            "sk-", "sk_", "AIza", "eyJ", "ghp_", "xoxb-", "AKIA", "Bearer ", "@", ".", "+", "(", ")", "-", " ", ",",
            "_", "1", "4111", "555", "0", "9", "12", "a", "Z", "com", "ü", "日本", "👋", "\t", "=", "/",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        for _ in 0..3000 {
            let len = next() % 48;
            let s: String = (0..len).map(|_| frags[next() % frags.len()]).collect();
            let once = redact(&s);
            let _ = redact(&once);
            // Matches are pure ASCII, so every non-ASCII character must survive in order.
            assert!(s.chars().filter(|c| !c.is_ascii()).eq(once.chars().filter(|c| !c.is_ascii())));
        }
        let long = "1".repeat(10_000) + " " + &"2 ".repeat(5_000);
        assert_eq!(redact(&long), long);
    }
}
