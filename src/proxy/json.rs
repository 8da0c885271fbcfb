//! A strict one-pass JSON reader: checks a body is a JSON object and finds its top-level fields (request bodies; captured answers, checked as a value tree would read them), or checks one value whole, leaving whatever it does not handle to serde_json.

use std::ops::Range;

/// Nesting deeper than this is left to serde_json (whose own limit then applies).
const MAX_DEPTH: usize = 100;

/// Calls `field(key, value)` for each top-level field of `body` in order (the key's range
/// without its quotes, the value's raw JSON) and returns true when `body` is a JSON object
/// this reader accepts; serde_json accepts every such body and finds the same fields. False
/// for invalid JSON and for what is left to serde_json: a top-level key with escapes, or
/// nesting deeper than [`MAX_DEPTH`]. After false, `field` may have been called for a prefix.
pub fn object_fields(body: &[u8], field: impl FnMut(Range<usize>, Range<usize>)) -> bool {
    fields(body, false, field)
}

/// [`object_fields`] for a body that must also read into a value tree: numbers past f64's
/// range are refused too (see [`valid`]).
pub fn tree_fields(body: &[u8], field: impl FnMut(Range<usize>, Range<usize>)) -> bool {
    fields(body, true, field)
}

fn fields(body: &[u8], finite: bool, mut field: impl FnMut(Range<usize>, Range<usize>)) -> bool {
    if !body.is_ascii() && std::str::from_utf8(body).is_err() {
        return false;
    }
    let mut r = Reader { b: body, i: 0, finite };
    r.ws();
    if r.peek() != Some(b'{') {
        return false;
    }
    // The top level is read like any object, with each member handed to `field`.
    let read = r.container(b'}', 0, |r| {
        let key_start = r.i + 1;
        if r.string()? {
            return None;
        }
        let key = key_start..r.i - 1;
        r.ws();
        r.expect(b':')?;
        r.ws();
        let value_start = r.i;
        r.value(1)?;
        field(key, value_start..r.i);
        Some(())
    });
    r.ws();
    read.is_some() && r.i == body.len()
}

/// Whether `raw` is one JSON value (with surrounding whitespace) that serde_json reads into a
/// value tree. False for invalid JSON, bytes that are not UTF-8, nesting deeper than
/// [`MAX_DEPTH`], and numbers past f64's range (which a value tree refuses, where skipping over
/// a field does not).
pub fn valid(raw: &[u8]) -> bool {
    if !raw.is_ascii() && std::str::from_utf8(raw).is_err() {
        return false;
    }
    let mut r = Reader { b: raw, i: 0, finite: true };
    r.ws();
    let read = r.value(0);
    r.ws();
    read.is_some() && r.i == raw.len()
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
    /// Refuse numbers past f64's range, as serde_json's value tree does.
    finite: bool,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let found = self.peek() == Some(c);
        self.i += usize::from(found);
        found
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.container(b'}', depth, |r| {
                r.string()?;
                r.ws();
                r.expect(b':')?;
                r.ws();
                r.value(depth + 1)
            }),
            b'[' => self.container(b']', depth, |r| r.value(depth + 1)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    /// An object or array opening at the current byte: `member` read for each member, comma
    /// separated, up to `close`.
    fn container(&mut self, close: u8, depth: usize, mut member: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.i += 1;
        self.ws();
        if self.eat(close) {
            return Some(());
        }
        if depth >= MAX_DEPTH {
            return None;
        }
        loop {
            member(self)?;
            self.ws();
            if self.eat(close) {
                return Some(());
            }
            self.expect(b',')?;
            self.ws();
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..].starts_with(word).then(|| self.i += word.len())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        let start = self.i;
        self.eat(b'-');
        let whole = self.i;
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        // Fewer whole digits than this, and no exponent, cannot reach f64's largest (~1.8e308).
        let long = self.i - whole > 300;
        if self.eat(b'.') {
            self.some_digits()?;
        }
        let exponent = matches!(self.peek(), Some(b'e' | b'E'));
        if exponent {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.some_digits()?;
        }
        if self.finite && (long || exponent) {
            let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
            return text.parse::<f64>().ok().filter(|n| n.is_finite()).map(drop);
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }

    /// A string opening at the current quote; whether it had escapes.
    fn string(&mut self) -> Option<bool> {
        self.expect(b'"')?;
        let mut escaped = false;
        loop {
            self.i = plain_run_end(self.b, self.i);
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    match self.b.get(self.i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'u' if self.b.get(self.i + 2..self.i + 6)?.iter().all(u8::is_ascii_hexdigit) => self.i += 6,
                        _ => return None,
                    }
                }
                // A control character, which JSON strings may not hold unescaped.
                _ => return None,
            }
        }
    }
}

/// The index of the first quote, backslash or control character at or after `i` (or the
/// end), eight bytes at a time: a byte is flagged when it is below 0x20 or equal to `"` or
/// `\`, by the zero-byte test on words; the lowest flagged byte is always a true match.
fn plain_run_end(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    while let Some(chunk) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(*chunk);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        let hits = ((x.wrapping_sub(ONES * 0x20) & !x)
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash))
            & HIGH;
        if hits != 0 {
            return i + hits.trailing_zeros() as usize / 8;
        }
        i += 8;
    }
    while b.get(i).is_some_and(|&c| c >= 0x20 && c != b'"' && c != b'\\') {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(body: &str) -> Option<Vec<(&str, &str)>> {
        let mut out = Vec::new();
        object_fields(body.as_bytes(), |k, v| out.push((&body[k], &body[v]))).then_some(out)
    }

    #[test]
    fn reads_objects_and_refuses_what_json_does_not_allow() {
        assert_eq!(
            fields(" {\"a\" : [1, -2.5e+3, {\"x\": null}], \"b\":\"q\\\"\\u00e9\", \"a\": true} "),
            Some(vec![("a", "[1, -2.5e+3, {\"x\": null}]"), ("b", "\"q\\\"\\u00e9\""), ("a", "true")])
        );
        assert_eq!(fields("{}"), Some(vec![]));
        assert_eq!(fields("{\"s\": \"é and a long run of plain text past eight bytes\"}").map(|f| f.len()), Some(1));
        for bad in [
            "",
            "[]",
            "{",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":1e}",
            "{\"a\":tru}",
            "{\"a\":\"x\ny\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12g4\"}",
            "{\"a\":[1 2]}",
            "{\"a\":1} x",
            "{a:1}",
            "{\"a\":\"open}",
            "{\"a\":[1,]}",
            "\u{feff}{}",
            "{\"a\":NaN}",
        ] {
            assert_eq!(fields(bad), None, "{bad:?}");
        }
        // Left to serde_json: an escaped top-level key, deep nesting, bytes that are not UTF-8.
        assert_eq!(fields("{\"mo\\u0064el\": 1}"), None);
        let deep = format!("{{\"a\": {}1{}}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(fields(&deep), None);
        let ok = format!("{{\"a\": {}1{}}}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(fields(&ok).is_some());
        assert!(!object_fields(b"{\"a\": \"\xff\"}", |_, _| {}));
    }

    #[test]
    fn single_values_are_checked_whole() {
        for good in ["0", " -1.5e3 ", "\"a\\\"b\"", "null", "[1, {\"a\": [true]}]", "{}", "[]"] {
            assert!(valid(good.as_bytes()), "{good:?}");
        }
        for bad in ["", " ", "01", "[1,]", "{\"a\"}", "\"open", "1 2", "nul", "[1]]", "\"\x01\""] {
            assert!(!valid(bad.as_bytes()), "{bad:?}");
        }
        assert!(!valid(b"\"\xff\""));
        // Past f64's range: refused, as by a value tree; tiny magnitudes are zero, not errors.
        for (n, ok) in [("1e400", false), ("-2E+309", false), ("1.7e308", true), ("1e-400", true), ("0.5e-9", true)] {
            assert_eq!(valid(n.as_bytes()), ok, "{n}");
            assert_eq!(serde_json::from_str::<serde_json::Value>(n).is_ok(), ok, "serde on {n}");
        }
        let digits = |n: usize| format!("1{}", "0".repeat(n));
        assert!(valid(digits(300).as_bytes()) && !valid(digits(400).as_bytes()));
        assert!(serde_json::from_str::<serde_json::Value>(&digits(400)).is_err());
        let deep = format!("{}1{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(!valid(deep.as_bytes()));
    }

    #[test]
    fn the_word_scan_stops_at_the_first_special_byte() {
        for s in [
            "",
            "abc",
            "abcdefgh\"",
            "abcdefghij\\",
            "ab\x1fcdefghijk",
            "\u{7f}\u{80}é\"",
            "éééé\u{80}\u{7f}ÿ\u{7ff}x\"",
            "0123456789abcdef",
        ] {
            let want = s.bytes().position(|c| c < 0x20 || c == b'"' || c == b'\\').unwrap_or(s.len());
            for start in 0..=s.len().min(3) {
                if start <= want {
                    assert_eq!(plain_run_end(s.as_bytes(), start), want, "{s:?} from {start}");
                }
            }
        }
    }
}
