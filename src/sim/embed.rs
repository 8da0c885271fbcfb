//! `POST /v1/embeddings`: deterministic character-trigram embeddings with accuracy-dependent noise.

use serde_json::{json, Value};

use super::body::{bad_request, ok_json, Resp};
use super::ctx::Ctx;
use super::respond::word_count;
use crate::rng::{fnv1a, mix64, Rng};

const DEFAULT_DIM: usize = 32;
const MAX_DIM: u64 = 4096;
/// The real API's per-request input limit.
const MAX_INPUTS: usize = 2048;

pub(crate) fn embeddings(mut ctx: Ctx) -> Resp {
    let body = match ctx.take_json() {
        Ok(v) => v,
        Err(msg) => return bad_request(msg, None),
    };
    let inputs = match inputs(body.get("input")) {
        Ok(v) => v,
        Err(msg) => return bad_request(msg, Some("input")),
    };
    let dim = match body.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIM,
        Some(v) => match v.as_u64() {
            Some(d) if (1..=MAX_DIM).contains(&d) => d as usize,
            _ => {
                let msg = format!("'dimensions' must be an integer between 1 and {MAX_DIM}");
                return bad_request(msg, Some("dimensions"));
            }
        },
    };
    let as_base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            let msg = format!("'{other}' is not one of ['float', 'base64'] - 'encoding_format'");
            return bad_request(msg, Some("encoding_format"));
        }
    };
    let model = ctx.model(&body);
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let v = embed(text, dim, ctx.behavior.accuracy, ctx.state.seed);
            let embedding = if as_base64 {
                let raw: Vec<u8> = v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
                Value::String(base64(&raw))
            } else {
                // Six decimals keep responses compact; the norm stays within 1e-5 of 1.
                Value::Array(v.iter().map(|x| Value::from((x * 1e6).round() / 1e6)).collect())
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let tokens: usize = inputs.iter().map(|t| word_count(t)).sum();
    ok_json(&json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    }))
}

/// Accepts the shapes the API does: a string, strings, a token array, or token arrays
/// (tokens are embedded as their decimal text).
fn inputs(v: Option<&Value>) -> Result<Vec<String>, String> {
    const SHAPE: &str = "'input' must be a string, an array of strings or an array of token arrays";
    let items = match v {
        Some(Value::String(s)) => return Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items,
        _ => return Err(SHAPE.to_string()),
    };
    if items.is_empty() {
        return Err("'input' must not be empty".to_string());
    }
    if items.iter().all(Value::is_number) {
        return Ok(vec![token_text(items)]);
    }
    if items.len() > MAX_INPUTS {
        return Err(format!("'input' has more than {MAX_INPUTS} items"));
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            Value::Array(tokens) if tokens.iter().all(Value::is_number) => Ok(token_text(tokens)),
            _ => Err(SHAPE.to_string()),
        })
        .collect()
}

fn token_text(tokens: &[Value]) -> String {
    tokens.iter().map(Value::to_string).collect::<Vec<_>>().join(" ")
}

/// Signed feature hashing of lowercased character trigrams (with word-boundary padding), L2-normalised.
/// Noise is seeded by (seed, text) so the same server always returns the same vector for a text, and
/// is scaled so its norm is about 1-accuracy relative to the unit signal, whatever the dimension.
pub(crate) fn embed(text: &str, dim: usize, accuracy: f64, seed: u64) -> Vec<f64> {
    let dim = dim.max(1);
    let mut v = vec![0.0; dim];
    let padded: Vec<char> =
        std::iter::once(' ').chain(text.to_lowercase().chars()).chain(std::iter::once(' ')).collect();
    let mut buf = [0u8; 12];
    for window in padded.windows(3) {
        let mut n = 0;
        for c in window {
            n += c.encode_utf8(&mut buf[n..]).len();
        }
        let h = mix64(fnv1a(&buf[..n]));
        let idx = (h % dim as u64) as usize;
        v[idx] += if h >> 63 == 0 { 1.0 } else { -1.0 };
    }
    normalise(&mut v);
    let noise = (1.0 - accuracy).clamp(0.0, 1.0);
    if noise > 0.0 {
        let mut rng = Rng::from_parts(seed, fnv1a(text.as_bytes()));
        let scale = noise / (dim as f64).sqrt();
        for x in &mut v {
            *x += scale * rng.gaussianish();
        }
        normalise(&mut v);
    }
    v
}

/// Unit length; a zero vector (empty text, cancelled hashes) becomes the first basis vector instead of NaNs.
fn normalise(v: &mut [f64]) {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter_mut().for_each(|x| *x /= norm);
    } else {
        v.iter_mut().for_each(|x| *x = 0.0);
        if let Some(first) = v.first_mut() {
            *first = 1.0;
        }
    }
}

/// Standard padded base64 (the sim has no base64 dependency).
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(chunk[0]) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn norm(v: &[f64]) -> f64 {
        v.iter().map(|x| x * x).sum::<f64>().sqrt()
    }

    #[test]
    fn deterministic_and_unit_norm() {
        for (dim, acc) in [(32, 1.0), (32, 0.9), (7, 0.5), (1, 0.0), (4096, 0.8)] {
            let a = embed("The quick brown fox", dim, acc, 3);
            assert_eq!(a, embed("The quick brown fox", dim, acc, 3));
            assert_eq!(a.len(), dim);
            assert!((norm(&a) - 1.0).abs() < 1e-9, "dim {dim} acc {acc}");
        }
        assert!((norm(&embed("", 32, 1.0, 0)) - 1.0).abs() < 1e-9);
        assert_ne!(embed("same text", 32, 0.5, 1), embed("same text", 32, 0.5, 2));
    }

    #[test]
    fn similar_texts_are_closer() {
        let base = "the quick brown fox jumps over the lazy dog";
        let near = "the quick brown fox jumped over the lazy dog";
        let far = "quantum chromodynamics explains strong interactions";
        for dim in [32, 256] {
            let (b, n, f) = (embed(base, dim, 1.0, 0), embed(near, dim, 1.0, 0), embed(far, dim, 1.0, 0));
            assert!(cosine(&b, &n) > cosine(&b, &f) + 0.2, "dim {dim}");
        }
        assert_eq!(embed("Hello World", 32, 1.0, 0), embed("hello world", 32, 1.0, 0));
    }

    #[test]
    fn noise_grows_as_accuracy_falls() {
        let text = "a moderately long sentence for the noise check";
        let clean = embed(text, 64, 1.0, 9);
        let slight = embed(text, 64, 0.95, 9);
        let heavy = embed(text, 64, 0.2, 9);
        assert!(cosine(&clean, &slight) > 0.99);
        assert!(cosine(&clean, &slight) > cosine(&clean, &heavy));
    }

    #[test]
    fn input_shapes() {
        assert_eq!(inputs(Some(&json!("x"))).unwrap(), vec!["x"]);
        assert_eq!(inputs(Some(&json!(["a", "b"]))).unwrap(), vec!["a", "b"]);
        assert_eq!(inputs(Some(&json!([1, 2]))).unwrap(), vec!["1 2"]);
        assert_eq!(inputs(Some(&json!([[1], [2, 3]]))).unwrap(), vec!["1", "2 3"]);
        assert!(inputs(Some(&json!([]))).is_err());
        assert!(inputs(Some(&json!({"a": 1}))).is_err());
        assert!(inputs(None).is_err());
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
