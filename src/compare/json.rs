//! Structural JSON agreement (key order ignored) and tool-call agreement by name and arguments.

use serde_json::{Number, Value};

use super::exact;
use super::ToolCall;

/// Structural similarity of two JSON documents (```json fences accepted); falls back to
/// [`exact::normalized`] when either side does not parse.
pub fn json(a: &str, b: &str) -> f64 {
    match (parse_lenient(a), parse_lenient(b)) {
        (Some(x), Some(y)) => structural(&x, &y),
        _ => exact::normalized(a, b),
    }
}

/// Agreement of two lists of proposed tool calls, matched by position.
///
/// A pair with different names scores 0, otherwise the [`json`] score of the arguments; the
/// mean is over the longer list so a missing or extra call counts as 0. Both empty = 1.
pub fn tool_calls(a: &[ToolCall], b: &[ToolCall]) -> f64 {
    let n = a.len().max(b.len());
    if n == 0 {
        return 1.0;
    }
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| if x.name == y.name { json(arguments(&x.arguments), arguments(&y.arguments)) } else { 0.0 })
        .sum();
    sum / n as f64
}

/// Providers send either `""` or `"{}"` for a call without arguments; both mean no arguments.
fn arguments(s: &str) -> &str {
    if s.trim().is_empty() {
        "{}"
    } else {
        s
    }
}

/// Parses a JSON document, also when the whole text is one Markdown code fence
/// (```` ```json … ``` ````, with or without a language tag).
pub(crate) fn parse_lenient(s: &str) -> Option<Value> {
    let t = s.trim();
    if let Ok(v) = serde_json::from_str::<Value>(t) {
        return Some(v);
    }
    let inner = t.strip_prefix("```")?.strip_suffix("```")?;
    if let Ok(v) = serde_json::from_str::<Value>(inner) {
        return Some(v);
    }
    // Only retried without the tag: a fenced bare value such as ```42``` has none to strip.
    let untagged = inner.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+'));
    serde_json::from_str::<Value>(untagged).ok()
}

/// Recursion depth is bounded by serde_json's parser limit (128), so this cannot overflow.
fn structural(a: &Value, b: &Value) -> f64 {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let union = x.len() + y.keys().filter(|k| !x.contains_key(k.as_str())).count();
            if union == 0 {
                return 1.0;
            }
            let shared: f64 = x.iter().filter_map(|(k, va)| y.get(k).map(|vb| structural(va, vb))).sum();
            shared / union as f64
        }
        (Value::Array(x), Value::Array(y)) => {
            let n = x.len().max(y.len());
            if n == 0 {
                return 1.0;
            }
            let sum: f64 = x.iter().zip(y).map(|(p, q)| structural(p, q)).sum();
            sum / n as f64
        }
        (Value::Number(x), Value::Number(y)) => score(numbers_equal(x, y)),
        (Value::String(x), Value::String(y)) => score(x == y),
        (Value::Bool(x), Value::Bool(y)) => score(x == y),
        (Value::Null, Value::Null) => 1.0,
        _ => 0.0,
    }
}

fn score(equal: bool) -> f64 {
    if equal {
        1.0
    } else {
        0.0
    }
}

fn numbers_equal(x: &Number, y: &Number) -> bool {
    // Two integers compare exactly: they carry no float-formatting noise, and ids above 2^53
    // would otherwise collapse under the relative tolerance.
    if let (Some(p), Some(q)) = (x.as_i64(), y.as_i64()) {
        return p == q;
    }
    if let (Some(p), Some(q)) = (x.as_u64(), y.as_u64()) {
        return p == q;
    }
    match (x.as_f64(), y.as_f64()) {
        // Relative to the larger magnitude so that the relation is symmetric.
        (Some(p), Some(q)) => p == q || (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(x: f64, y: f64) -> bool {
        (x - y).abs() < 1e-12
    }

    fn call(name: &str, arguments: &str) -> ToolCall {
        ToolCall { name: name.to_string(), arguments: arguments.to_string() }
    }

    #[test]
    fn objects_ignore_key_order_and_average_over_the_key_union() {
        assert_eq!(json(r#"{"a":1,"b":2}"#, r#"{ "b": 2, "a": 1 }"#), 1.0);
        // Keys {a, b}: a equal (1), b differs (0) → 1/2.
        assert!(close(json(r#"{"a":1,"b":2}"#, r#"{"a":1,"b":3}"#), 0.5));
        // Union {a, b}; b missing on the left scores 0 → 1/2, in either direction.
        assert!(close(json(r#"{"a":1}"#, r#"{"a":1,"b":2}"#), 0.5));
        assert!(close(json(r#"{"a":1,"b":2}"#, r#"{"a":1}"#), 0.5));
        // a: {x equal, y differs} = 1/2; b: [1,2,3] vs [1,2] = (1+1+0)/3 = 2/3;
        // mean over {a, b} = (1/2 + 2/3)/2 = 7/12.
        let l = r#"{"a":{"x":1,"y":2},"b":[1,2,3]}"#;
        let r = r#"{"b":[1,2],"a":{"y":5,"x":1}}"#;
        assert!(close(json(l, r), 7.0 / 12.0));
    }

    #[test]
    fn arrays_are_positional() {
        // Positions: 1=1, 2≠3, 3≠2 → 1/3.
        assert!(close(json("[1,2,3]", "[1,3,2]"), 1.0 / 3.0));
        assert_eq!(json("[]", "[]"), 1.0);
        assert_eq!(json("[]", "[1]"), 0.0);
    }

    #[test]
    fn scalars_and_types() {
        assert_eq!(json("1", "1.0"), 1.0);
        assert_eq!(json("0.30000000000000004", "0.3"), 1.0);
        // |1e-12 - 0| = 1e-12 ≤ 1e-9·max(1, …).
        assert_eq!(json("1e-12", "0"), 1.0);
        assert_eq!(json("1.0", "1.001"), 0.0);
        assert_eq!(json("1e3", "1000"), 1.0);
        // 2^53 + 1 vs 2^53: integers compare exactly.
        assert_eq!(json("9007199254740993", "9007199254740992"), 0.0);
        assert_eq!(json("-1", "18446744073709551615"), 0.0);
        assert_eq!(json(r#""1""#, "1"), 0.0);
        assert_eq!(json("true", "true"), 1.0);
        assert_eq!(json("true", "false"), 0.0);
        assert_eq!(json("null", "null"), 1.0);
        assert_eq!(json("null", "0"), 0.0);
        assert_eq!(json("{}", "{}"), 1.0);
        assert_eq!(json("{}", "[]"), 0.0);
        assert_eq!(json(r#"{"a":null}"#, r#"{"a":[]}"#), 0.0);
    }

    #[test]
    fn fences_are_accepted() {
        assert_eq!(json("```json\n{\"a\": 1}\n```", r#"{"a":1}"#), 1.0);
        assert_eq!(json("  ```\n[1, 2]\n```\n", "[1,2]"), 1.0);
        assert_eq!(json("```json {\"a\":1}```", r#"{"a":1}"#), 1.0);
        assert_eq!(json("```42```", "42"), 1.0);
        // An unclosed fence is not JSON; the normalized fallback then sees different text.
        assert_eq!(json("```json\n{\"a\":1}", r#"{"a":1}"#), 0.0);
    }

    #[test]
    fn unparseable_falls_back_to_normalized_text() {
        assert_eq!(json("not json", "Not   JSON"), 1.0);
        assert_eq!(json("{broken", "{broken"), 1.0);
        assert_eq!(json("{broken", "{}"), 0.0);
        assert_eq!(json("", ""), 1.0);
        assert_eq!(json("", "{}"), 0.0);
    }

    #[test]
    fn tool_calls_by_position_name_and_arguments() {
        let a = [call("get_weather", r#"{"city":"Paris","unit":"c"}"#)];
        let b = [call("get_weather", r#"{"unit":"c","city":"Paris"}"#)];
        assert_eq!(tool_calls(&a, &b), 1.0);
        assert_eq!(tool_calls(&a, &[call("get_time", r#"{"city":"Paris","unit":"c"}"#)]), 0.0);
        // Pair 1: keys {x, y}, x equal → 1/2; pair 2 missing → 0; mean over 2 calls = 1/4.
        let two = [call("f", r#"{"x":1,"y":2}"#), call("g", "{}")];
        let one = [call("f", r#"{"x":1,"y":3}"#)];
        assert!(close(tool_calls(&two, &one), 0.25));
        assert!(close(tool_calls(&one, &two), 0.25));
        // Same calls in a different order: both positions have mismatched names.
        let swapped = [call("g", "{}"), call("f", r#"{"x":1,"y":2}"#)];
        assert_eq!(tool_calls(&two, &swapped), 0.0);
        assert_eq!(tool_calls(&[call("f", "")], &[call("f", "{}")]), 1.0);
        assert_eq!(tool_calls(&[], &[]), 1.0);
        assert_eq!(tool_calls(&[], &one), 0.0);
    }
}
