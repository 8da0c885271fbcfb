//! Header lines as they arrived, sharing the head's bytes: what the server hands handlers and the upstream client hands back, without a header map.

use bytes::Bytes;

/// A message's header lines in arrival order, names in the sender's case. httparse has checked
/// every name (a token) and value (no control characters), so the lines can be written out as
/// they are. Lookups compare names ASCII case-insensitively; with the handful of headers a
/// request carries, a walk over the lines is cheaper than building a map.
#[derive(Clone, Default)]
pub struct RawHeaders {
    head: Bytes,
    /// (name start, name end, value start, value end) in `head`.
    lines: Vec<(u32, u32, u32, u32)>,
}

impl RawHeaders {
    /// Lines at the given spans of `head` (the codecs' parsers find them).
    pub(crate) fn new(head: Bytes, lines: Vec<(u32, u32, u32, u32)>) -> RawHeaders {
        debug_assert!(lines.iter().all(|&(n, ne, v, ve)| n <= ne && v <= ve && ve as usize <= head.len()));
        RawHeaders { head, lines }
    }

    /// Lines from names and values, unchecked: for tests.
    #[cfg(test)]
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> RawHeaders {
        let mut head = Vec::new();
        let mut lines = Vec::new();
        for (name, value) in pairs {
            let n = head.len() as u32;
            head.extend_from_slice(name.as_bytes());
            let ne = head.len() as u32;
            head.extend_from_slice(b": ");
            let v = head.len() as u32;
            head.extend_from_slice(value.as_bytes());
            lines.push((n, ne, v, head.len() as u32));
            head.extend_from_slice(b"\r\n");
        }
        RawHeaders { head: Bytes::from(head), lines }
    }

    /// Each line's name and value, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.lines
            .iter()
            .map(|&(n, ne, v, ve)| (&self.head[n as usize..ne as usize], &self.head[v as usize..ve as usize]))
    }

    /// The value of the first line named `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let name = name.as_bytes();
        let &(_, _, v, ve) = self.lines.iter().find(|&&(n, ne, _, _)| {
            (ne - n) as usize == name.len() && self.head[n as usize..ne as usize].eq_ignore_ascii_case(name)
        })?;
        Some(&self.head[v as usize..ve as usize])
    }

    /// The value of the first line named `name` as text: None if absent or if it holds anything
    /// but visible ASCII, spaces and tabs (what `http::HeaderValue::to_str` accepts).
    pub fn get_str(&self, name: &str) -> Option<&str> {
        Self::text(self.get(name)?)
    }

    /// A value as text, as [`RawHeaders::get_str`] reads it.
    pub fn text(v: &[u8]) -> Option<&str> {
        let text = v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
        text.then(|| std::str::from_utf8(v).ok()).flatten()
    }

    /// The lines whose name `keep` accepts, sharing the same bytes.
    pub fn filtered(&self, mut keep: impl FnMut(&[u8]) -> bool) -> RawHeaders {
        let lines = self.lines.iter().filter(|&&(n, ne, _, _)| keep(&self.head[n as usize..ne as usize])).copied();
        RawHeaders { head: self.head.clone(), lines: lines.collect() }
    }
}

/// Names only: values can be credentials, and a debug print can end up in a log.
impl std::fmt::Debug for RawHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter().map(|(n, _)| String::from_utf8_lossy(n))).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_take_the_first_line() {
        let h = RawHeaders::from_pairs([("Content-Type", "a/b"), ("X-Twice", "1"), ("x-twice", "2")]);
        assert_eq!(h.get("content-type"), Some(&b"a/b"[..]));
        assert_eq!(h.get("X-TWICE"), Some(&b"1"[..]));
        assert_eq!(h.get("missing"), None);
        assert_eq!(h.iter().count(), 3);
        let all: Vec<_> = h.iter().collect();
        assert_eq!(all[2], (&b"x-twice"[..], &b"2"[..]));
    }

    #[test]
    fn text_values_and_filtered() {
        let h = RawHeaders::new(
            Bytes::from_static(b"A: ok\r\nB: \xff\r\nC: 3\r\n"),
            vec![(0, 1, 3, 5), (7, 8, 10, 11), (13, 14, 16, 17)],
        );
        assert_eq!(h.get_str("a"), Some("ok"));
        assert_eq!(h.get_str("b"), None, "not UTF-8");
        let text = RawHeaders::from_pairs([("t", "a b\tc"), ("u", "caf\u{e9}")]);
        assert_eq!(text.get_str("t"), Some("a b\tc"));
        assert_eq!(text.get_str("u"), None, "not ASCII, as HeaderValue::to_str");
        let kept = h.filtered(|n| !n.eq_ignore_ascii_case(b"b"));
        assert_eq!(kept.iter().map(|(n, _)| n).collect::<Vec<_>>(), [&b"A"[..], &b"C"[..]]);
        assert_eq!(h.iter().count(), 3);
    }

    #[test]
    fn debug_shows_names_not_values() {
        let h = RawHeaders::from_pairs([("authorization", "Bearer sk-secret")]);
        let shown = format!("{h:?}");
        assert!(shown.contains("authorization") && !shown.contains("sk-secret"), "{shown}");
    }
}
