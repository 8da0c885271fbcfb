//! JSON walked structurally (strings and nesting only, no value parsing): top-level fields and array elements as raw text, so metering, captures and the modality scan read only what they need.

/// Whether `raw` holds a backslash followed by `u` (a `\u` escape, or an escaped backslash
/// before a `u`): where an escape could spell a key or a word differently. The same answer as a
/// substring search for the two bytes, without building a searcher for each short body.
pub fn has_unicode_escape(raw: &[u8]) -> bool {
    memchr::memchr_iter(b'\\', raw).any(|i| raw.get(i + 1) == Some(&b'u'))
}

/// The raw JSON text of the top-level fields named by `keys` (the last one wins if a key
/// repeats), or None when `body` is not an object this scan can walk; the caller then parses
/// the body properly. Keys are compared as written, so an escaped spelling of a key is not found.
pub fn top_level_fields<'a, const N: usize>(body: &'a [u8], keys: [&[u8]; N]) -> Option<[Option<&'a [u8]>; N]> {
    let (found, end) = object_at(body, skip_ws(body, 0), keys)?;
    (skip_ws(body, end) == body.len()).then_some(found)
}

/// The fields named by `keys` of the object that opens at `i`, and the index just past it.
fn object_at<'a, const N: usize>(
    body: &'a [u8],
    mut i: usize,
    keys: [&[u8]; N],
) -> Option<([Option<&'a [u8]>; N], usize)> {
    let mut found = [None; N];
    if body.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(body, i + 1);
    if body.get(i) == Some(&b'}') {
        return Some((found, i + 1));
    }
    loop {
        if body.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(body, i)?;
        let key = &body[i + 1..key_end - 1];
        i = skip_ws(body, key_end);
        if body.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(body, i + 1);
        let value_end = value_end(body, i)?;
        if let Some(slot) = keys.iter().position(|k| *k == key) {
            found[slot] = Some(&body[i..value_end]);
        }
        i = skip_ws(body, value_end);
        match body.get(i) {
            Some(b',') => i = skip_ws(body, i + 1),
            Some(b'}') => return Some((found, i + 1)),
            _ => return None,
        }
    }
}

/// The raw JSON text of the top-level field `key` of the object `body` (the last one if it
/// repeats), found by walking the fields backwards from the closing brace, so a field near the
/// end (where APIs put `usage`) is found without reading the ones before it. `Some(None)`: the
/// whole object was walked without finding it. None when the walk meets something it cannot
/// read; the caller then scans forwards. Only the fields walked are checked, and keys are
/// compared as written.
pub fn field_from_end<'a>(body: &'a [u8], key: &[u8]) -> Option<Option<&'a [u8]>> {
    let open = skip_ws(body, 0);
    if body.get(open) != Some(&b'{') {
        return None;
    }
    walk_back(body, key, Some(open))
}

/// As [`field_from_end`], on the last bytes of an object's text (`tail`, cut anywhere before
/// them): the value of `key` when the walk finds it with a comma before it, inside `tail`, so that
/// every byte the walk read is read as in the whole text, and the whole text's walk finds the
/// same; None for anything else (the whole text's walk then decides).
pub fn field_from_end_of_tail<'a>(tail: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    walk_back(tail, key, None).flatten()
}

/// The walk of [`field_from_end`] over `b`, whose opening brace is at `open`; with no `open`
/// (a tail), a key must have a comma before it.
fn walk_back<'a>(b: &'a [u8], key: &[u8], open: Option<usize>) -> Option<Option<&'a [u8]>> {
    let mut end = rskip_ws(b, b.len());
    if end <= open.map_or(0, |o| o + 1) || b[end - 1] != b'}' {
        return None;
    }
    end = rskip_ws(b, end - 1);
    if open.is_some_and(|o| end == o + 1) {
        return Some(None);
    }
    loop {
        let start = rvalue_start(b, end)?;
        let colon = rskip_ws(b, start);
        if colon == 0 || b[colon - 1] != b':' {
            return None;
        }
        let key_end = rskip_ws(b, colon - 1);
        if key_end == 0 || b[key_end - 1] != b'"' {
            return None;
        }
        let key_start = rstring_start(b, key_end)?;
        let before = rskip_ws(b, key_start);
        let separator = before.checked_sub(1).map(|i| b[i]);
        if open.is_none() && separator != Some(b',') {
            return None;
        }
        if &b[key_start + 1..key_end - 1] == key {
            return Some(Some(&b[start..end]));
        }
        match separator {
            Some(b',') => end = rskip_ws(b, before - 1),
            Some(b'{') if Some(before - 1) == open => return Some(None),
            _ => return None,
        }
    }
}

/// The index just after the last non-whitespace byte before `end`.
fn rskip_ws(b: &[u8], mut end: usize) -> usize {
    while end > 0 && matches!(b[end - 1], b' ' | b'\t' | b'\n' | b'\r') {
        end -= 1;
    }
    end
}

/// The index of the opening quote of the string whose closing quote is at `end - 1`: the
/// nearest quote before it that is not escaped (preceded by an even number of backslashes),
/// since a string cannot hold an unescaped quote.
fn rstring_start(b: &[u8], end: usize) -> Option<usize> {
    let mut j = end.checked_sub(1)?;
    loop {
        let q = memchr::memrchr(b'"', &b[..j])?;
        let backslashes = b[..q].iter().rev().take_while(|c| **c == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(q);
        }
        j = q;
    }
}

/// The index where the value that ends at `end` (exclusive) starts.
fn rvalue_start(b: &[u8], end: usize) -> Option<usize> {
    match b[..end].last()? {
        b'"' => rstring_start(b, end),
        b'}' | b']' => {
            let mut depth = 0usize;
            let mut j = end;
            loop {
                j -= 1;
                while !STRUCTURAL[b[j] as usize] {
                    j = j.checked_sub(1)?;
                }
                match b[j] {
                    b'"' => j = rstring_start(b, j + 1)?,
                    b'}' | b']' => depth += 1,
                    _ => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j);
                        }
                    }
                }
                if j == 0 {
                    return None;
                }
            }
        }
        _ => {
            let len = b[..end]
                .iter()
                .rev()
                .position(|c| matches!(c, b',' | b':' | b'[' | b'{' | b' ' | b'\t' | b'\n' | b'\r'));
            match len {
                Some(0) | None => None,
                Some(n) => Some(end - n),
            }
        }
    }
}

/// For each element of the JSON array `raw`, in order: the fields named by `keys` when the
/// element is an object (found in the same walk that finds its end), None for any other element;
/// nothing if `raw` is not an array, and the walk stops where it meets something it cannot read.
pub fn element_fields<'a, const N: usize>(
    raw: &'a [u8],
    keys: [&'a [u8]; N],
) -> impl Iterator<Item = Option<[Option<&'a [u8]>; N]>> + 'a {
    let start = skip_ws(raw, 0);
    let mut i = if raw.get(start) == Some(&b'[') { Some(skip_ws(raw, start + 1)) } else { None };
    if i.is_some_and(|i| raw.get(i) == Some(&b']')) {
        i = None;
    }
    std::iter::from_fn(move || {
        let at = i?;
        let (fields, end) = match raw.get(at) {
            Some(b'{') => object_at(raw, at, keys).map(|(found, end)| (Some(found), end))?,
            _ => (None, value_end(raw, at)?),
        };
        let next = skip_ws(raw, end);
        i = (raw.get(next) == Some(&b',')).then(|| skip_ws(raw, next + 1));
        Some(fields)
    })
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index just past the string that opens at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let k = j + memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[k] == b'"' {
            return Some(k + 1);
        }
        j = k + 2;
    }
}

/// Bytes that matter inside an array or object: quotes and brackets; the rest is skipped.
const STRUCTURAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'{' as usize] = true;
    t[b'[' as usize] = true;
    t[b'}' as usize] = true;
    t[b']' as usize] = true;
    t
};

/// The index just past the value that starts at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                while !STRUCTURAL[*b.get(j)? as usize] {
                    j += 1;
                }
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    _ => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                }
                j += 1;
            }
        }
        _ => {
            let len = b[i..].iter().position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'));
            match len {
                Some(0) => None,
                Some(n) => Some(i + n),
                None => Some(b.len()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn usage_and_error(body: &str) -> Option<[Option<&str>; 2]> {
        let found = top_level_fields(body.as_bytes(), [b"usage", b"error"])?;
        Some(found.map(|f| f.map(|v| std::str::from_utf8(v).unwrap())))
    }

    #[test]
    fn unicode_escapes_are_found_as_a_substring_search_finds_them() {
        for raw in ["", "\\", "u\\", "\\u", "a\\\\u", "\\n\\u00e9", "\\\\", "\\x\\y", "plain text u"] {
            let want = memchr::memmem::find(raw.as_bytes(), b"\\u").is_some();
            assert_eq!(has_unicode_escape(raw.as_bytes()), want, "{raw:?}");
        }
    }

    #[test]
    fn finds_top_level_fields_and_skips_nested_ones() {
        let body = r#" {"id": "x", "choices": [{"message": {"content": "a \"usage\": {} }", "usage": 1}}],
            "data": [[0.1, -2e-3, 3], {"x": "]"}], "usage" : {"prompt_tokens": 3}, "n": null} "#;
        assert_eq!(usage_and_error(body), Some([Some(r#"{"prompt_tokens": 3}"#), None]));
        assert_eq!(usage_and_error(r#"{"error": {"message": "boom"}}"#), Some([None, Some(r#"{"message": "boom"}"#)]));
        assert_eq!(usage_and_error(r#"{"usage": 5, "usage": true}"#), Some([Some("true"), None]));
        assert_eq!(usage_and_error("{}"), Some([None, None]));
        assert_eq!(usage_and_error(r#"{"a\\": "\\", "usage": "u"}"#), Some([Some(r#""u""#), None]));
    }

    #[test]
    fn what_it_cannot_walk_is_left_to_the_parser() {
        for body in [
            "",
            "[1]",
            "{",
            r#"{"a": }"#,
            r#"{"a" 1}"#,
            r#"{"a": 1 "b": 2}"#,
            r#"{"a": 1} x"#,
            r#"{"a": "open}"#,
            "{a: 1}",
        ] {
            assert_eq!(usage_and_error(body), None, "{body}");
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            ".{0,40}".prop_map(Value::String),
            Just(Value::String("usage".into())),
        ];
        leaf.prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(prop_oneof![Just("usage".to_string()), ".{0,6}"], inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn walks_back_from_the_end() {
        fn usage(b: &str) -> Option<Option<&str>> {
            field_from_end(b.as_bytes(), b"usage").map(|f| f.map(|v| std::str::from_utf8(v).unwrap()))
        }
        let body = r#" {"id": "x\"", "choices": [{"message": {"content": "a \\\"usage\": {} }\\", "usage": 1}}],
            "usage" : {"prompt_tokens": 3, "d": [1, "]"]} , "fingerprint": null, "n": -1.5e3, "s": "\\"} "#;
        assert_eq!(usage(body), Some(Some(r#"{"prompt_tokens": 3, "d": [1, "]"]}"#)));
        assert_eq!(usage(r#"{"usage": 5, "usage": true}"#), Some(Some("true")));
        assert_eq!(usage(r#"{"a": [1, {"usage": 2}]}"#), Some(None));
        assert_eq!(usage("{ }"), Some(None));
        assert_eq!(usage(r#"{"usage": "x"}"#), Some(Some(r#""x""#)));
        for bad in [
            "",
            "}",
            "{",
            "[1]",
            r#"{"a" 1}"#,
            r#"{"a": 1,}"#,
            r#"x{"a": 1}"#,
            r#"{"a": }"#,
            r#"{"a": 1} x"#,
            r#""usage": 1}"#,
            r#"{"a":1]"#,
        ] {
            assert_eq!(usage(bad), None, "{bad}");
        }
    }

    proptest! {
        /// On any object serde_json writes (compact or pretty), the scan agrees with the parser.
        #[test]
        fn agrees_with_serde(fields in prop::collection::btree_map(prop_oneof![Just("usage".to_string()), Just("error".to_string()), ".{0,6}"], arb_json(), 0..6), pretty in any::<bool>()) {
            let obj = Value::Object(fields.into_iter().collect());
            let text = if pretty { serde_json::to_string_pretty(&obj).unwrap() } else { obj.to_string() };
            let found = top_level_fields(text.as_bytes(), [b"usage", b"error"]).expect("a serialized object is walkable");
            // Compared with the parser reading the same text (float text does not always round-trip).
            let parsed: Value = serde_json::from_str(&text).unwrap();
            for (slot, key) in ["usage", "error"].iter().enumerate() {
                let scanned: Option<Value> = found[slot].map(|raw| serde_json::from_slice(raw).unwrap());
                prop_assert_eq!(scanned.as_ref(), parsed.get(*key));
            }
            // Walking back from the end finds the same text.
            prop_assert_eq!(field_from_end(text.as_bytes(), b"usage"), Some(found[0]));
            // So does a walk of any tail that finds it at all, and the tail that holds the
            // field with the comma before it finds it.
            for cut in 0..text.len() {
                if let Some(v) = field_from_end_of_tail(&text.as_bytes()[cut..], b"usage") {
                    prop_assert_eq!(Some(v), found[0]);
                }
            }
            if let Some(usage) = found[0] {
                let at = usage.as_ptr() as usize - text.as_ptr() as usize;
                // Unless it is the first field, the last comma before its value is the one before its key.
                if let Some(comma) = text[..at].rfind(',') {
                    prop_assert_eq!(field_from_end_of_tail(&text.as_bytes()[comma..], b"usage"), Some(usage));
                }
            }
        }

        /// On any text at all, the backward walk (of the whole text or of a tail) never panics,
        /// and whatever it finds is what the forward scan finds when that scan can read the body.
        #[test]
        fn backward_walk_is_safe_anywhere(text in "[{}\\[\\]\",:\\\\ a-z0-9.-]{0,40}") {
            let back = field_from_end(text.as_bytes(), b"usage");
            // A tail's walk finds only what the whole text's walk finds.
            for cut in 0..text.len() {
                if let Some(v) = field_from_end_of_tail(&text.as_bytes()[cut..], b"usage") {
                    if text.trim_start().starts_with('{') {
                        prop_assert_eq!(back, Some(Some(v)), "cut at {}", cut);
                    }
                }
            }
            if let (Some(back), Some([fwd])) = (back, top_level_fields(text.as_bytes(), [b"usage"])) {
                prop_assert_eq!(back, fwd);
            }
        }
    }
}
