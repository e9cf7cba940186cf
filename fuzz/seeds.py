#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/ from tests/fixtures (run from anywhere).

Each seed is `[a] [b] [n] [n x u16 LE cut] payload`, the layout `Input::parse` in
fuzz/checks.rs reads; `a` and `b` pick the mode a target checks (see each check_* doc).
"""
import gzip
import os
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(ROOT, "fuzz", "corpus")


def fixture(rel):
    with open(os.path.join(FIX, rel), "rb") as f:
        return f.read()


def seed(target, name, payload, a=0, b=0, cuts=()):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    head = bytes([a, b, len(cuts)]) + b"".join(struct.pack("<H", c) for c in cuts)
    with open(os.path.join(d, name), "wb") as f:
        f.write(head + payload)


SSE = [
    "openai/chat_stream_include_usage.sse",
    "openai/responses_stream.sse",
    "anthropic/messages_stream.sse",
    "anthropic/messages_stream_error.sse",
    "gemini/stream_generate_content_crlf.sse",
]
for rel in SSE:
    name = rel.replace("/", "_")
    seed("sse_decoder", name, fixture(rel), cuts=(100, 101, 700))
    seed("sse_decoder", "small_" + name, fixture(rel), a=2, b=40, cuts=(9,))

# usage_parsers: `a` is the provider x endpoint x streamed combination (see `combo`).
PARSERS = [
    ("openai/chat_completion.json", 0),
    ("openai/chat_stream_include_usage.sse", 88),
    ("openai/responses.json", 11),
    ("openai/responses_stream.sse", 99),
    ("anthropic/messages.json", 1 + 4 * 11),
    ("anthropic/messages_stream.sse", 1 + 4 * 11 + 88),
    ("gemini/generate_content.json", 2 + 5 * 11),
    ("gemini/stream_generate_content.sse", 2 + 6 * 11 + 88),
    ("openrouter/chat_completion.json", 7),
    ("xai/chat_completion.json", 8),
]
for rel, combo in PARSERS:
    name = rel.replace("/", "_")
    seed("usage_parsers", name, fixture(rel), a=combo, cuts=(50, 400))
    # Small limits: the bounded head/tail capture and the SSE skip paths.
    seed("usage_parsers", "small_" + name, fixture(rel), a=combo, b=0x80 | 40, cuts=(50,))

for rel in ["openai/chat_stream_include_usage.sse", "azure/chat_stream_include_usage.sse",
            "openai/chat_stream_no_usage.sse"]:
    seed("chunk_filter", rel.replace("/", "_"), fixture(rel), cuts=(3000, 3001))

body = fixture("openai/chat_stream_include_usage.sse")
seed("content_decoder", "gzip", gzip.compress(body), a=1, cuts=(10, 500))
seed("content_decoder", "zlib", zlib.compress(body), a=2, cuts=(1,))
raw = zlib.compressobj(wbits=-15)
seed("content_decoder", "raw_deflate", raw.compress(body) + raw.flush(), a=2)
seed("content_decoder", "identity", body, a=0)
seed("content_decoder", "roundtrip_gzip", fixture("openai/chat_completion.json"), a=0x80 | 24)
seed("content_decoder", "roundtrip_members", fixture("openai/responses.json"), a=0x80 | 27)
seed("content_decoder", "gzip_capped", gzip.compress(body), a=1, b=0x80 | 9)

seed("api_key", "valid", b"llmo_sk_" + b"A1b2" * 10)
seed("api_key", "slots", b"$K\nBearer $K\n$K\nsk-x\n$K\nalt=sse&key=$K", a=0x3E)
seed("api_key", "passthrough", b"  $K ", a=0x01)

seed("request", "chat", b'{"model":"gpt-4o","stream":true,"user":"alice","messages":[]}')
seed("request", "opts", b'{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1}}')
seed("request", "anthropic", b'{"model":"claude","metadata":{"user_id":"bob"},"stream":true}')
seed("request", "customer", b"customer-42")
seed("request", "empty", b" { } ")

for i, path in enumerate([
    b"/v1/chat/completions",
    b"/anthropic/v1/messages",
    b"/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent",
    b"/azure/openai/deployments/d/chat/completions",
    b"/openai/v1/%2e%2E/x",
]):
    seed("route", f"path{i}", path)

# json_reader: response bodies and requests, plain and odd.
for rel in ["openai/chat_completion.json", "openai/responses.json", "openai/embeddings.json",
            "deepseek/chat_completion.json", "openrouter/chat_completion.json",
            "xai/chat_completion.json", "azure/chat_completion.json"]:
    seed("json_reader", rel.replace("/", "_"), fixture(rel))
seed("json_reader", "request", b'{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"user":"a","metadata":{"user_id":"b"},"messages":[{"role":"user","content":"hi \\"x\\" \\u00e9"}]}')
seed("json_reader", "anthropic_messages.json", fixture("anthropic/messages.json"))
seed("json_reader", "gemini_generate_content_search_grounding.json",
     fixture("gemini/generate_content_search_grounding.json"))
# The Responses stream's terminal event (the one that carries usage).
completed = [l for l in fixture("openai/responses_stream.sse").splitlines()
             if l.startswith(b"data:") and b'"response.completed"' in l]
seed("json_reader", "responses_completed_event", completed[-1][len(b"data:"):].strip())
seed("json_reader", "odd_counts", b'{"usage":{"prompt_tokens":45.0,"completion_tokens":"7","total_tokens":-1,"cost":0.5,"prompt_tokens_details":null}}')
