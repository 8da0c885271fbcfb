//! Audio endpoints: transcriptions/translations (text "audio" with simulated word errors) and speech synthesis.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::body::{bad_request, bytes, channel, ok_json, Resp, STREAM_BUFFER};
use super::ctx::Ctx;
use super::multipart;
use super::respond::corrupt_transcript;
use crate::rng::{fnv1a, Rng};

/// Which audio-to-text endpoint was called; only the `task` label differs.
#[derive(Clone, Copy)]
pub(crate) enum Listen {
    Transcribe,
    Translate,
}

/// The real API's limit on speech input.
const MAX_SPEECH_CHARS: usize = 4096;
/// Bytes of "audio" per input byte, so output length is proportional to the text.
const BYTES_PER_CHAR: usize = 32;
/// How many body frames speech is streamed in.
const SPEECH_CHUNKS: usize = 4;

pub(crate) fn transcribe(mut ctx: Ctx, kind: Listen) -> Resp {
    let parts = match ctx.take_multipart() {
        Ok(p) => p,
        Err(msg) => return bad_request(msg, None),
    };
    let Some(file) = multipart::field(&parts, "file") else {
        return bad_request("Missing required parameter: 'file'.", Some("file"));
    };
    let format = multipart::field(&parts, "response_format")
        .map(|p| p.text().trim().to_string())
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| "json".to_string());
    // The sim's "audio" is the transcript itself, so accuracy maps directly onto word error rate.
    let truth = String::from_utf8_lossy(&file.data).into_owned();
    let text = corrupt_transcript(&truth, ctx.behavior.accuracy, &mut ctx.rng);
    let usage = json!({ "type": "duration", "seconds": 1 });
    match format.as_str() {
        "json" => ok_json(&json!({ "text": text, "usage": usage })),
        "text" => bytes(StatusCode::OK, "text/plain; charset=utf-8", Bytes::from(text)),
        "verbose_json" => {
            let task = match kind {
                Listen::Transcribe => "transcribe",
                Listen::Translate => "translate",
            };
            ok_json(&json!({
                "task": task,
                "language": "en",
                "duration": 1.0,
                "text": text,
                "segments": [{ "id": 0, "start": 0.0, "end": 1.0, "text": text }],
                "usage": usage,
            }))
        }
        "srt" => {
            let srt = format!("1\n00:00:00,000 --> 00:00:01,000\n{text}\n\n");
            bytes(StatusCode::OK, "text/plain; charset=utf-8", Bytes::from(srt))
        }
        "vtt" => {
            let vtt = format!("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{text}\n\n");
            bytes(StatusCode::OK, "text/vtt; charset=utf-8", Bytes::from(vtt))
        }
        other => bad_request(
            format!("'{other}' is not one of ['json', 'text', 'srt', 'verbose_json', 'vtt'] - 'response_format'"),
            Some("response_format"),
        ),
    }
}

pub(crate) fn speech(mut ctx: Ctx) -> Resp {
    let body = match ctx.take_json() {
        Ok(v) => v,
        Err(msg) => return bad_request(msg, None),
    };
    let input = match body.get("input").and_then(Value::as_str) {
        Some(s) if !s.is_empty() && s.chars().count() <= MAX_SPEECH_CHARS => s.to_string(),
        Some(s) if !s.is_empty() => {
            let msg = format!("'input' is longer than {MAX_SPEECH_CHARS} characters");
            return bad_request(msg, Some("input"));
        }
        _ => return bad_request("'input' is a required non-empty string", Some("input")),
    };
    let format = body.get("response_format").and_then(Value::as_str).unwrap_or("mp3");
    let content_type = match format {
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "opus" => "audio/opus",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "pcm" => "audio/pcm",
        other => {
            let msg =
                format!("'{other}' is not one of ['mp3', 'opus', 'aac', 'flac', 'wav', 'pcm'] - 'response_format'");
            return bad_request(msg, Some("response_format"));
        }
    };
    let audio = synthesize(&input, format);
    let (tx, rx) = mpsc::channel::<Bytes>(STREAM_BUFFER);
    let behavior = ctx.behavior;
    let mut rng = ctx.rng;
    // Streamed in a few paced frames so clients and the router see a real streaming audio response.
    tokio::spawn(async move {
        let chunk_len = audio.len().div_ceil(SPEECH_CHUNKS).max(1);
        for (i, chunk) in audio.chunks(chunk_len).enumerate() {
            if i > 0 {
                tokio::time::sleep(Ctx::token_delay(&behavior, &mut rng)).await;
            }
            if tx.send(Bytes::copy_from_slice(chunk)).await.is_err() {
                return;
            }
        }
    });
    channel(content_type, rx)
}

/// Deterministic fake audio: a format-appropriate header, then bytes derived from the text.
fn synthesize(input: &str, format: &str) -> Vec<u8> {
    let payload_len = input.len() * BYTES_PER_CHAR;
    let mut out = match format {
        "wav" => wav_header(payload_len),
        "mp3" => b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec(),
        "flac" => b"fLaC".to_vec(),
        "opus" => b"OggS".to_vec(),
        _ => Vec::new(),
    };
    let mut rng = Rng::new(fnv1a(input.as_bytes()));
    let start = out.len();
    out.reserve(payload_len);
    while out.len() < start + payload_len {
        let word = rng.next_u64().to_le_bytes();
        let take = (start + payload_len - out.len()).min(word.len());
        out.extend_from_slice(&word[..take]);
    }
    out
}

/// A 44-byte PCM WAV header: 16 kHz, mono, 16-bit.
fn wav_header(data_len: usize) -> Vec<u8> {
    let data_len = u32::try_from(data_len).unwrap_or(u32::MAX - 36);
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&data_len.saturating_add(36).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&16_000u32.to_le_bytes());
    h.extend_from_slice(&32_000u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_is_deterministic_and_proportional() {
        let a = synthesize("hello world", "mp3");
        assert_eq!(a, synthesize("hello world", "mp3"));
        assert!(a.starts_with(b"ID3"));
        assert_eq!(a.len(), 10 + 11 * BYTES_PER_CHAR);
        assert_ne!(a, synthesize("hello worle", "mp3"));
        let w = synthesize("hi", "wav");
        assert_eq!(w.len(), 44 + 2 * BYTES_PER_CHAR);
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(&w[40..44], &(2 * BYTES_PER_CHAR as u32).to_le_bytes());
    }
}
