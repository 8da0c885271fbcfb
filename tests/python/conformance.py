"""Drives shadowroute with the official openai Python SDK; exits non-zero on the first failure."""
import io
import os
import sys

import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ["SHADOWROUTE_BASE_URL"], api_key="sk-client-key-must-not-leak", max_retries=0)
results = []


def check(name, fn):
    try:
        fn()
        results.append((name, None))
    except Exception as e:  # noqa: BLE001 - report every failure by name
        results.append((name, f"{type(e).__name__}: {e}"))


def chat():
    r = client.chat.completions.create(model="any", messages=[{"role": "user", "content": "What is 12 + 30?"}])
    assert r.choices[0].message.content, r
    assert "42" in r.choices[0].message.content, r.choices[0].message.content
    assert r.usage.completion_tokens > 0


def chat_stream():
    chunks = list(client.chat.completions.create(
        model="any", messages=[{"role": "user", "content": "What is 1 + 1?"}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "2" in text, text
    assert len(chunks) > 3, len(chunks)
    assert any(c.usage for c in chunks), "no usage chunk"


def embeddings():
    r = client.embeddings.create(model="any", input=["hello world", "goodbye"])
    assert len(r.data) == 2 and len(r.data[0].embedding) > 0, r


def transcription():
    audio = io.BytesIO(b"shadowroute passes the file through untouched")
    audio.name = "speech.wav"
    r = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert r.text == "shadowroute passes the file through untouched", r.text


def speech():
    r = client.audio.speech.create(model="tts-1", voice="alloy", input="hello there")
    assert len(r.content) > 0


def images():
    r = client.images.generate(model="any", prompt="a lighthouse at dawn")
    assert r.data and (r.data[0].b64_json or r.data[0].url), r


def errors():
    try:
        client.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"x-shadowroute-modality": "telepathy"})
    except openai.BadRequestError as e:
        assert e.status_code == 400
        assert "x-shadowroute-modality" in e.message, e.message
        assert e.code == "invalid_modality", e.code
    else:
        raise AssertionError("expected a 400")
    try:
        client.post("/nowhere", cast_to=object, body={})
    except openai.NotFoundError as e:
        assert e.status_code == 404
    else:
        raise AssertionError("expected a 404")


def models():
    ids = sorted(m.id for m in client.models.list())
    assert "chat" in ids, ids


for name, fn in [("chat", chat), ("chat_stream", chat_stream), ("embeddings", embeddings),
                 ("transcription", transcription), ("speech", speech), ("images", images),
                 ("errors", errors), ("models", models)]:
    check(name, fn)

failed = [(n, e) for n, e in results if e]
for n, e in results:
    print(f"{'ok  ' if e is None else 'FAIL'} {n}{'' if e is None else ': ' + e}")
print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
