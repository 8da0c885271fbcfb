//! A strict one-pass JSON reader: checks a body is a JSON object and finds its top-level fields (request bodies), or records its first levels on a tape (captured answers, checked as a value tree would read them), or checks one value whole, leaving whatever it does not handle to serde_json.

use std::ops::Range;

use super::scan;

/// Nesting deeper than this is left to serde_json (whose own limit then applies).
const MAX_DEPTH: usize = 100;

/// Calls `field(key, value)` for each top-level field of `body` in order (the key's range
/// without its quotes, the value's raw JSON) and returns true when `body` is a JSON object
/// this reader accepts; serde_json accepts every such body and finds the same fields. False
/// for invalid JSON and for what is left to serde_json: a top-level key with escapes, or
/// nesting deeper than [`MAX_DEPTH`]. After false, `field` may have been called for a prefix.
pub fn object_fields(body: &[u8], field: impl FnMut(Range<usize>, Range<usize>)) -> bool {
    Reader::<false>::new(body, false).object_body(field)
}

/// The [`Tape`] of `body` when it is a JSON object this reader accepts (as for
/// [`object_fields`]) that also reads into a value tree: numbers past f64's range are refused
/// too (see [`valid`]).
pub fn tape(body: &[u8]) -> Option<Tape<'_>> {
    let mut r = Reader::<true>::new(body, true);
    r.object_body(|_, _| {}).then_some(Tape { body, entries: r.tape, numbers: r.numbers, lists: r.lists })
}

/// Object members are recorded down to this level (a top-level member is level 1; a chat
/// answer's `choices[i].message.content` is level 4)...
const MEMBER_LEVELS: usize = 4;
/// ...and list items down to this one (the items of a top-level list, such as `choices` or
/// `data`; not the numbers of an embedding).
const ITEM_LEVELS: usize = 2;
/// The parent of a top-level member.
const TOP: usize = usize::MAX - 1;
/// The parent of what is not recorded: nothing inside an unrecorded value is recorded either.
const OFF: usize = usize::MAX;

/// One recorded value: an object's member (with its key) or a list's item (without).
#[derive(Debug, Clone)]
struct Entry {
    /// The entry of the value holding this one, or [`TOP`].
    parent: usize,
    /// 1 for a top-level member, 2 for what is inside one, and so on.
    level: usize,
    key: Option<Range<usize>>,
    value: Range<usize>,
    /// Just past the last entry recorded inside this value.
    end: usize,
}

/// A checked body's first levels, recorded in the one pass that checked it, so its nested
/// fields (a choice's, a message's, a usage's) are found without walking it again. Lookups
/// name a value by its raw text (a slice of the body); one that is not on the tape is walked
/// by the structural scan instead. Keys are compared as written, and a repeated key counts
/// its last value, as in a value tree's maps. A recorded list of numbers (an embedding) has
/// its numbers read too, in the same pass, as the f32s its comparisons use.
pub struct Tape<'a> {
    body: &'a [u8],
    entries: Vec<Entry>,
    /// The numbers of the recorded lists of numbers, one list after another...
    numbers: Vec<f32>,
    /// ...and, for each such list, its entry and its numbers' place in `numbers`.
    lists: Vec<(usize, Range<usize>)>,
}

impl<'a> Tape<'a> {
    /// The raw values of the top-level fields named by `keys`.
    pub fn top_fields<const N: usize>(&self, keys: [&[u8]; N]) -> [Option<&'a [u8]>; N] {
        self.members(TOP, 0..self.entries.len(), keys)
    }

    /// The raw values of the fields named by `keys` of the object `raw`, or None if `raw` is not
    /// an object (see [`scan::top_level_fields`]).
    pub fn fields<const N: usize>(&self, raw: &'a [u8], keys: [&[u8]; N]) -> Option<[Option<&'a [u8]>; N]> {
        if !raw.starts_with(b"{") {
            return None;
        }
        match self.find(raw).filter(|at| self.entries[*at].level < MEMBER_LEVELS) {
            Some(at) => Some(self.members(at, at + 1..self.entries[at].end, keys)),
            None => scan::top_level_fields(raw, keys),
        }
    }

    /// For each item of the list `raw`, the raw values of its fields named by `keys`, or None
    /// for an item that is not an object (as [`scan::element_fields`] finds them); None when
    /// `raw` is not a list whose items are on the tape.
    pub fn items<const N: usize>(
        &self,
        raw: &'a [u8],
        keys: [&'a [u8]; N],
    ) -> Option<impl Iterator<Item = Option<[Option<&'a [u8]>; N]>> + '_> {
        let at = self.find(raw).filter(|at| raw.starts_with(b"[") && self.entries[*at].level < ITEM_LEVELS)?;
        let inside = &self.entries[at + 1..self.entries[at].end];
        Some(inside.iter().enumerate().filter(move |(_, e)| e.parent == at).map(move |(j, e)| {
            let item = at + 1 + j;
            let value = &self.body[e.value.clone()];
            value.starts_with(b"{").then(|| self.members(item, item + 1..self.entries[item].end, keys))
        }))
    }

    /// The numbers of the list `raw`, each the nearest f64 (as a value tree reads them with
    /// serde_json's `float_roundtrip`) made an f32; None when `raw` is not a recorded list of
    /// numbers only.
    pub fn numbers(&self, raw: &[u8]) -> Option<&[f32]> {
        let at = self.find(raw)?;
        // In order of their entries: lists of numbers hold no recorded lists, so they end in the
        // order they start.
        let found = self.lists.binary_search_by_key(&at, |(list, _)| *list).ok()?;
        self.numbers.get(self.lists[found].1.clone())
    }

    /// The entry whose value is `raw`.
    fn find(&self, raw: &[u8]) -> Option<usize> {
        let start = (raw.as_ptr() as usize).wrapping_sub(self.body.as_ptr() as usize);
        let range = start..start.wrapping_add(raw.len());
        // Entries are recorded as their values start, so in order of where they start.
        let at = self.entries.binary_search_by_key(&range.start, |e| e.value.start).ok()?;
        (self.entries[at].value == range).then_some(at)
    }

    /// The values of the members of `parent` (recorded in `within`) named by `keys`.
    fn members<const N: usize>(&self, parent: usize, within: Range<usize>, keys: [&[u8]; N]) -> [Option<&'a [u8]>; N] {
        let mut found = [None; N];
        for e in self.entries[within].iter().filter(|e| e.parent == parent) {
            let Some(key) = &e.key else { continue };
            if let Some(slot) = keys.iter().position(|k| *k == &self.body[key.clone()]) {
                found[slot] = Some(&self.body[e.value.clone()]);
            }
        }
        found
    }
}

/// Whether `raw` is one JSON value (with surrounding whitespace) that serde_json reads into a
/// value tree. False for invalid JSON, bytes that are not UTF-8, nesting deeper than
/// [`MAX_DEPTH`], and numbers past f64's range (which a value tree refuses, where skipping over
/// a field does not).
pub fn valid(raw: &[u8]) -> bool {
    if !raw.is_ascii() && std::str::from_utf8(raw).is_err() {
        return false;
    }
    let mut r = Reader::<false>::new(raw, true);
    r.ws();
    let read = r.value(0, OFF);
    r.ws();
    read.is_some() && r.i == raw.len()
}

/// `RECORD`: whether it keeps a [`Tape`] (a reader that does not pays nothing for it).
struct Reader<'a, const RECORD: bool> {
    b: &'a [u8],
    i: usize,
    /// Refuse numbers past f64's range, as serde_json's value tree does.
    finite: bool,
    /// What is recorded (see [`Tape`]).
    tape: Vec<Entry>,
    numbers: Vec<f32>,
    lists: Vec<(usize, Range<usize>)>,
}

impl<'a, const RECORD: bool> Reader<'a, RECORD> {
    fn new(b: &'a [u8], finite: bool) -> Self {
        let tape = Vec::with_capacity(if RECORD { 32 } else { 0 });
        Reader { b, i: 0, finite, tape, numbers: Vec::new(), lists: Vec::new() }
    }

    /// Reads the whole input as one object (with surrounding whitespace), handing each
    /// top-level member's key and value to `field`. False where [`object_fields`] says so.
    fn object_body(&mut self, mut field: impl FnMut(Range<usize>, Range<usize>)) -> bool {
        if !self.b.is_ascii() && std::str::from_utf8(self.b).is_err() {
            return false;
        }
        self.ws();
        if self.peek() != Some(b'{') {
            return false;
        }
        let read = self.container(b'}', 0, |r| {
            let key_start = r.i + 1;
            if r.string()? {
                return None;
            }
            let key = key_start..r.i - 1;
            r.ws();
            r.expect(b':')?;
            r.ws();
            let value_start = r.i;
            let at = r.open(TOP, 1, Some(key.clone()));
            r.value(1, at)?;
            r.close(at);
            field(key, value_start..r.i);
            Some(())
        });
        self.ws();
        read.is_some() && self.i == self.b.len()
    }

    /// Records the value starting here, at `level` inside `parent` (a member when it has a
    /// `key`, an item when not), when `parent` is recorded and the level is among those
    /// recorded for its kind; its entry, or [`OFF`].
    fn open(&mut self, parent: usize, level: usize, key: Option<Range<usize>>) -> usize {
        let within = if key.is_some() { level <= MEMBER_LEVELS } else { level <= ITEM_LEVELS };
        if !RECORD || parent == OFF || !within {
            return OFF;
        }
        self.tape.push(Entry { parent, level, key, value: self.i..self.i, end: 0 });
        self.tape.len() - 1
    }

    /// Ends the recorded value `at` here.
    fn close(&mut self, at: usize) {
        if !RECORD {
            return;
        }
        let end = self.tape.len();
        if let Some(e) = self.tape.get_mut(at) {
            e.value.end = self.i;
            e.end = end;
        }
    }

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

    /// The value starting here, at `depth`, inside the recorded value `at` (or [`OFF`]).
    fn value(&mut self, depth: usize, at: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.container(b'}', depth, |r| {
                let key_start = r.i + 1;
                r.string()?;
                let key = key_start..r.i - 1;
                r.ws();
                r.expect(b':')?;
                r.ws();
                let member = r.open(at, depth + 1, Some(key));
                r.value(depth + 1, member)?;
                r.close(member);
                Some(())
            }),
            b'[' => {
                // A recorded list's numbers are read as long as every item so far is one.
                let first = self.numbers.len();
                let mut numeric = RECORD && at != OFF;
                self.container(b']', depth, |r| {
                    let start = r.i;
                    if numeric && depth + 1 > ITEM_LEVELS && matches!(r.peek(), Some(b'-' | b'0'..=b'9')) {
                        // An item of a list of numbers whose items are not recorded (an
                        // embedding's): checked and read in one pass where it can be, else
                        // without the general value's steps.
                        if let Some((end, x)) = quick_number(r.b, start) {
                            r.i = end;
                            r.numbers.push(x);
                        } else {
                            r.number()?;
                            numeric = r.parse_number(start);
                        }
                        return Some(());
                    }
                    let item = r.open(at, depth + 1, None);
                    r.value(depth + 1, item)?;
                    r.close(item);
                    numeric = numeric && r.read_number(start);
                    Some(())
                })?;
                if numeric {
                    self.lists.push((at, first..self.numbers.len()));
                }
                Some(())
            }
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

    /// Keeps the value read from `start` to here when it is a number: false when it is not.
    fn read_number(&mut self, start: usize) -> bool {
        match quick_number(self.b, start).filter(|(end, _)| *end == self.i) {
            Some((_, x)) => {
                self.numbers.push(x);
                true
            }
            None => self.parse_number(start),
        }
    }

    /// As [`Self::read_number`], by the general parse alone: for where the quick reading has
    /// already not answered.
    fn parse_number(&mut self, start: usize) -> bool {
        let raw = &self.b[start..self.i];
        if !raw.first().is_some_and(|c| *c == b'-' || c.is_ascii_digit()) {
            return false;
        }
        match std::str::from_utf8(raw).ok().and_then(|text| text.parse::<f64>().ok()) {
            Some(x) => {
                self.numbers.push(x as f32);
                true
            }
            None => false,
        }
    }

    /// Past a run of digits, eight bytes at a time while all eight are digits.
    fn digits(&mut self) {
        while let Some(chunk) = self.b.get(self.i..).and_then(<[u8]>::first_chunk::<8>) {
            let n = leading_digits(u64::from_le_bytes(*chunk));
            self.i += n;
            if n < 8 {
                return;
            }
        }
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

/// Powers of ten that an f64 holds exactly.
const EXACT_TENS: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// The JSON number starting at `b[start]`, checked and read in one pass: where it ends, and
/// the nearest f64 made an f32. None where the quick reading does not answer: the number is
/// not one JSON allows, or its value needs the general parse to be sure.
///
/// Its digits, read as one integer that fits a u64 (19 digits, some of 20), times or over a
/// power of ten an f64 holds exactly, give an f64 within three units in the last place of the
/// nearest f64: each of the two roundings (the integer made an f64, then the product or
/// quotient) is within half a unit of its own result, at most a unit of the final one's, and
/// the nearest f64 is within half a unit of the exact value. Both then round to the same f32
/// unless a point halfway between two f32s lies within those three units: an f64 in f32's
/// normal range is such a point when its 29 lowest bits are exactly 1 << 28, so the reading is
/// refused within eight units of one. An embedding's numbers, written with up to 17 significant
/// digits, take this path unless below about 1e-6 (their digits then need a power of ten past
/// 1e22); the general parse handles the rest.
fn quick_number(b: &[u8], start: usize) -> Option<(usize, f32)> {
    let negative = b.get(start) == Some(&b'-');
    let (mut i, mut digits) = (start + usize::from(negative), 0u64);
    match b.get(i)? {
        // A digit after a leading zero is left for the caller to refuse, as `number` does.
        b'0' => i += 1,
        b'1'..=b'9' => _ = digit_run(b, &mut i, &mut digits)?,
        _ => return None,
    }
    let mut scale = 0i32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        match digit_run(b, &mut i, &mut digits)? {
            0 => return None,
            n => scale = -i32::try_from(n).ok()?,
        }
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        let negative_exponent = b.get(i) == Some(&b'-');
        i += usize::from(matches!(b.get(i), Some(b'-' | b'+')));
        let (from, mut exponent) = (i, 0i32);
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            exponent = exponent * 10 + i32::from(c - b'0');
            if exponent > 999 {
                return None;
            }
            i += 1;
        }
        if i == from {
            return None;
        }
        scale += if negative_exponent { -exponent } else { exponent };
    }
    let magnitude = if digits == 0 {
        0.0
    } else {
        let ten = *EXACT_TENS.get(scale.unsigned_abs() as usize)?;
        let x = if scale < 0 { digits as f64 / ten } else { digits as f64 * ten };
        let normal = (f64::from(f32::MIN_POSITIVE)..=f64::from(f32::MAX)).contains(&x);
        if !normal || (x.to_bits() & ((1 << 29) - 1)).abs_diff(1 << 28) <= 8 {
            return None;
        }
        x as f32
    };
    Some((i, if negative { -magnitude } else { magnitude }))
}

/// Adds the run of digits at `text[*i..]` to `digits`, eight at a time while eight are there,
/// and moves `*i` past it: the run's length, or None when `digits` would pass u64's range.
fn digit_run(text: &[u8], i: &mut usize, digits: &mut u64) -> Option<usize> {
    let start = *i;
    while let Some(chunk) = text.get(*i..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(*chunk);
        if leading_digits(x) < 8 {
            break;
        }
        *digits = digits.checked_mul(100_000_000)?.checked_add(value_of_eight(x))?;
        *i += 8;
    }
    while let Some(c) = text.get(*i).filter(|c| c.is_ascii_digit()) {
        *digits = digits.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        *i += 1;
    }
    Some(*i - start)
}

const ONES: u64 = u64::MAX / 255;

/// How many of the bytes of `x`, from the lowest, are digits before the first that is not. A
/// byte is flagged when it is below `0` (subtracting `0` sets its high bit), above `9` (adding
/// 0x46 does), or past ASCII; borrows and carries only leave flagged bytes, so the lowest flag
/// is always a true one.
fn leading_digits(x: u64) -> usize {
    let flags = (x.wrapping_sub(ONES * 0x30) | x.wrapping_add(ONES * 0x46) | x) & (ONES * 0x80);
    flags.trailing_zeros() as usize / 8
}

/// The number eight digits make, the first in the lowest byte of `x`: pairs, then fours, then
/// the eight are joined, each step a multiply and a shift over all lanes at once.
fn value_of_eight(x: u64) -> u64 {
    let x = x - ONES * u64::from(b'0');
    let x = (x * 10 + (x >> 8)) & 0x00FF_00FF_00FF_00FF;
    let x = (x * 100 + (x >> 16)) & 0x0000_FFFF_0000_FFFF;
    (x * 10_000 + (x >> 32)) & 0xFFFF_FFFF
}

/// The index of the first quote, backslash or control character at or after `i` (or the
/// end), eight bytes at a time: a byte is flagged when it is below 0x20 or equal to `"` or
/// `\`, by the zero-byte test on words; the lowest flagged byte is always a true match.
fn plain_run_end(b: &[u8], mut i: usize) -> usize {
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

    #[test]
    fn the_tape_records_the_first_levels_and_the_scan_finds_the_rest() {
        let count = |body: &str| tape(body.as_bytes()).map(|t| t.entries.len());
        // Members down to the fourth level, items down to the second.
        assert_eq!(count(r#"{"c":[{"m":{"x":{"y":1}}}]}"#), Some(4));
        assert_eq!(count(r#"{"a":[[{"b":1}]], "d":[1,2]}"#), Some(5));
        assert_eq!(count("{\"a\": 1e400}"), None);
        let body = r#"{"a":[[{"b":1}]], "a":{"b":2,"b":{"c":3}}}"#;
        let t = tape(body.as_bytes()).unwrap();
        // A repeated key counts its last value, on the tape as in the scan.
        let [a] = t.top_fields([b"a"]);
        assert_eq!(a, Some(&br#"{"b":2,"b":{"c":3}}"#[..]));
        assert_eq!(t.fields(a.unwrap(), [b"b"]), Some([Some(&br#"{"c":3}"#[..])]));
        // An object below the recorded levels is found by the scan.
        let first = &body.as_bytes()[5..16];
        assert_eq!(first, br#"[[{"b":1}]]"#);
        let inner: Vec<_> = t.items(first, [b"b"]).unwrap().collect();
        assert_eq!(inner, vec![None]);
        assert_eq!(t.fields(&first[2..9], [b"b"]), Some([Some(&b"1"[..])]));
        assert!(t.items(&first[2..9], [b"b"]).is_none());
    }

    #[test]
    fn a_recorded_list_of_numbers_has_its_numbers_read_as_a_value_tree_reads_them() {
        let hard = "[0.30000000000000004,123456789012345678901234567890,2.2250738585072011e-308,1e-400,-0,\
                    4.9406564584124654e-324,1.7976931348623157e308,-1.5E+3,0.1e1,9007199254740993]";
        let body = format!(r#"{{"a":{hard},"b":[1,"x",2],"c":[],"d":{{"e":[[1],[2]]}},"f":[1,2]}}"#);
        let t = tape(body.as_bytes()).unwrap();
        let [a, b, c, d, f] = t.top_fields([b"a", b"b", b"c", b"d", b"f"]);
        let by_value: Vec<f64> = serde_json::from_str(hard).unwrap();
        let by_value: Vec<f32> = by_value.iter().map(|x| *x as f32).collect();
        assert_eq!(t.numbers(a.unwrap()), Some(&by_value[..]));
        assert_eq!(by_value[3], 0.0);
        assert_eq!(t.numbers(b.unwrap()), None);
        assert_eq!(t.numbers(c.unwrap()), Some(&[][..]));
        // A list holding lists is not a list of numbers, and lists below the recorded levels
        // are not read.
        let [e] = t.fields(d.unwrap(), [b"e"]).unwrap();
        assert_eq!(t.numbers(e.unwrap()), None);
        assert_eq!(t.numbers(&e.unwrap()[1..4]), None);
        assert_eq!(t.numbers(f.unwrap()), Some(&[1.0, 2.0][..]));
        // A slice that is not a recorded value has no numbers.
        assert_eq!(t.numbers(&f.unwrap()[..4]), None);
        assert_eq!(t.numbers(b"[1,2]"), None);
    }

    use proptest::strategy::Strategy as _;

    /// The quick reading of all of `text`.
    fn quick_f32(text: &[u8]) -> Option<f32> {
        quick_number(text, 0).filter(|(end, _)| *end == text.len()).map(|(_, x)| x)
    }

    /// The general parse's reading, made an f32.
    fn parsed(text: &str) -> f32 {
        text.parse::<f64>().unwrap() as f32
    }

    #[test]
    fn eight_digits_are_read_at_once() {
        for text in [b"00000000", b"12345678", b"99999999", b"10000001", b"00000907"] {
            let x = u64::from_le_bytes(*text);
            assert_eq!(leading_digits(x), 8);
            assert_eq!(value_of_eight(x), std::str::from_utf8(text).unwrap().parse::<u64>().unwrap());
        }
        // Every byte that ends a run, at every place, after digits and after bytes that borrow
        // or carry into it.
        for end in (0..=255u8).filter(|c| !c.is_ascii_digit()) {
            for at in 0..8 {
                for before in [b'0', b'9'] {
                    let mut text = [before; 8];
                    text[at] = end;
                    text[(at + 1) % 8] = b'/';
                    let found = leading_digits(u64::from_le_bytes(text));
                    assert_eq!(found, text.iter().position(|c| !c.is_ascii_digit()).unwrap(), "{text:?}");
                }
            }
        }
        let mut digits = 0;
        let mut i = 0;
        assert_eq!(digit_run(b"1234567890123,", &mut i, &mut digits), Some(13));
        assert_eq!((i, digits), (13, 1_234_567_890_123));
        assert_eq!(digit_run(b"123456789012345678901", &mut 0, &mut 0), None);
    }

    #[test]
    fn numbers_near_a_point_halfway_between_two_f32s_are_left_to_the_general_parse() {
        // Embeddings as written by OpenAI (an f32 printed as the f64 it is) take the quick path.
        for text in ["-0.006929283495992422", "0.012345678918063641", "1", "-3", "2.5e-3", "0", "-0.0"] {
            assert_eq!(quick_f32(text.as_bytes()), Some(parsed(text)), "{text}");
        }
        // A point halfway between neighbouring f32s, written as the f64 it is, is refused.
        for a in [0.1_f32, 1.0, 3.0e-5, 0.0069292834, 7.0e10] {
            let mid = (f64::from(a) + f64::from(f32::from_bits(a.to_bits() + 1))) / 2.0;
            assert_eq!(quick_f32(format!("{mid}").as_bytes()), None, "{mid}");
        }
        // Past what the quick reading handles: more than 19 digits, powers of ten an f64 does not
        // hold, and numbers outside f32's normal range.
        for text in ["123456789012345678901234567890", "1e23", "1e-30", "4e38", "1e-39", "1e400"] {
            assert_eq!(quick_f32(text.as_bytes()), None, "{text}");
        }
    }

    fn arb_object() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            proptest::num::f64::NORMAL.prop_map(Value::from),
            proptest::num::f64::SUBNORMAL.prop_map(Value::from),
            "[a-z\"\\\\ é]{0,6}".prop_map(Value::from),
        ];
        let tree = leaf.prop_recursive(6, 64, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[abc]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        proptest::collection::btree_map("[abc]", tree, 0..4).prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest::proptest! {
        // Readings that go wrong only near rare points need many cases to meet one.
        #![proptest_config(proptest::test_runner::Config::with_cases(50_000))]

        /// The quick reading of a number is the general parse's, made an f32, whenever it gives one.
        #[test]
        fn quick_numbers_are_the_general_parses(
            text in proptest::prop_oneof![
                "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,2})?",
                proptest::num::f32::NORMAL.prop_map(|x| format!("{}", f64::from(x))),
                proptest::num::f64::NORMAL.prop_map(|x| format!("{x:e}")),
            ]
        ) {
            if let Some(q) = quick_f32(text.as_bytes()) {
                proptest::prop_assert_eq!(q.to_bits(), parsed(&text).to_bits(), "{}", text);
            }
            // Followed by more of a list, where its digits are read eight bytes at a time.
            let list = format!("{text},12345678]");
            if let Some((end, q)) = quick_number(list.as_bytes(), 0) {
                proptest::prop_assert_eq!((end, q.to_bits()), (text.len(), parsed(&text).to_bits()), "{}", text);
            }
        }

        /// The quick reading takes only what JSON allows, and ends where the number does.
        #[test]
        fn quick_numbers_are_json_numbers(text in "[0-9/:.eE+-]{1,30}") {
            if let Some((end, _)) = quick_number(text.as_bytes(), 0) {
                proptest::prop_assert!(valid(&text.as_bytes()[..end]), "{}", text);
                proptest::prop_assert!(end == text.len() || !valid(&text.as_bytes()[..=end]), "{}", text);
            }
        }

        /// Near a point halfway between two f32s, the quick reading refuses or agrees.
        #[test]
        fn quick_numbers_near_halfway_points_are_the_general_parses(
            // About 5e-10 to 4e22: products (a positive power of ten) as well as quotients.
            a in (0x3000_0000u32..0x6500_0000).prop_map(f32::from_bits),
            units in -12i64..=12,
            digits in 15usize..=19,
        ) {
            let mid = (f64::from(a) + f64::from(f32::from_bits(a.to_bits() + 1))) / 2.0;
            let x = f64::from_bits(mid.to_bits().wrapping_add_signed(units));
            let text = format!("{x:.digits$e}", digits = digits - 1);
            if let Some(q) = quick_f32(text.as_bytes()) {
                proptest::prop_assert_eq!(q.to_bits(), parsed(&text).to_bits(), "{}", text);
            }
        }
    }

    proptest::proptest! {
        /// A number is accepted exactly when serde_json reads it into a value (digit runs of
        /// every length around the eight-byte steps, and every byte that can end or spoil one).
        #[test]
        fn numbers_are_checked_as_a_value_tree_reads_them(
            text in proptest::prop_oneof![
                "[0-9/:.eE+-]{1,30}",
                "-?[0-9]{1,20}(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?[/:0a]?",
            ]
        ) {
            proptest::prop_assert_eq!(valid(text.as_bytes()), serde_json::from_str::<serde_json::Value>(&text).is_ok(), "{}", text);
        }

        /// What the tape finds inside each value it recorded, the structural scan finds too, and
        /// the numbers it read are a value tree's.
        #[test]
        fn the_tape_agrees_with_the_scan(v in arb_object(), pretty in proptest::bool::ANY) {
            const KEYS: [&[u8]; 3] = [b"a", b"b", b"c"];
            let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
            let body = text.as_bytes();
            let t = tape(body).unwrap();
            proptest::prop_assert_eq!(Some(t.top_fields(KEYS)), scan::top_level_fields(body, KEYS));
            for e in &t.entries {
                let raw = &body[e.value.clone()];
                proptest::prop_assert_eq!(t.fields(raw, KEYS), scan::top_level_fields(raw, KEYS), "{}", text);
                // A recorded list of numbers only has the numbers a value tree reads.
                let by_value = raw.starts_with(b"[").then(|| serde_json::from_slice::<Vec<f64>>(raw).ok()).flatten();
                let by_value: Option<Vec<f32>> = by_value.map(|v| v.iter().map(|x| *x as f32).collect());
                proptest::prop_assert_eq!(t.numbers(raw), by_value.as_deref(), "{}", text);
                // A list whose items are not recorded is left to the scan (None).
                if let Some(items) = t.items(raw, KEYS) {
                    let scanned: Vec<_> = scan::element_fields(raw, KEYS).collect();
                    proptest::prop_assert_eq!(items.collect::<Vec<_>>(), scanned, "{}", text);
                }
            }
        }
    }
}
