from __future__ import annotations

import orjson

from modelway.proxy.rewrite import SSEModelRewriter, rewrite_json_model


def test_json_model_rewritten_and_rest_kept() -> None:
    body = orjson.dumps({"id": "x", "model": "upstream-name", "choices": []})
    assert orjson.loads(rewrite_json_model(body, "asked")) == {"id": "x", "model": "asked", "choices": []}


def test_json_without_model_or_not_json_is_untouched() -> None:
    assert rewrite_json_model(b'{"a": 1}', "m") == b'{"a": 1}'
    assert rewrite_json_model(b"not json", "m") == b"not json"


def test_sse_rewrites_across_chunk_boundaries() -> None:
    events = b'data: {"model":"up","n":1}\n\ndata: {"model":"up","n":2}\n\ndata: [DONE]\n\n'
    rewriter = SSEModelRewriter("asked")
    out = b""
    for i in range(0, len(events), 7):  # split mid-line on purpose
        out += rewriter.feed(events[i : i + 7])
    out += rewriter.flush()
    lines = [line for line in out.split(b"\n") if line]
    assert lines[0] == b'data: {"model":"asked","n":1}'
    assert lines[1] == b'data: {"model":"asked","n":2}'
    assert lines[2] == b"data: [DONE]"
    assert out.count(b"\n\n") == 3


def test_sse_keeps_crlf_and_other_fields() -> None:
    rewriter = SSEModelRewriter("asked")
    out = rewriter.feed(b'event: x\r\ndata: {"model":"up"}\r\n\r\n')
    assert out == b'event: x\r\ndata: {"model":"asked"}\r\n\r\n'


def test_sse_whole_lines_go_out_with_their_chunk() -> None:
    rewriter = SSEModelRewriter("asked")
    assert rewriter.feed(b'data: {"model":"up"}\n\ndata: {"mo') == b'data: {"model":"asked"}\n\n'
    assert rewriter.feed(b'del":"up"}\n\n') == b'data: {"model":"asked"}\n\n'


def test_usage_read_from_the_end_of_an_answer() -> None:
    from modelway.proxy.usage import StreamUsage, usage_from_body

    body = orjson.dumps({
        "choices": [{"message": {"content": 'say "usage": "prompt_tokens": 999'}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46,
                  "completion_tokens_details": {"reasoning_tokens": 5}},
    })
    assert usage_from_body(body) == (12, 34)
    assert usage_from_body(b'{"usage": {"input_tokens": 3, "output_tokens": 4}}') == (3, 4)
    assert usage_from_body(b'{"choices": []}') is None
    stream = StreamUsage()
    stream.feed(b'data: {"choices": []}\n\ndata: {"choices": [], "us')
    stream.feed(b'age": {"prompt_tokens": 5, "completion_tokens": 6}}\n\n')
    assert stream.found == (5, 6)


def test_the_rest_of_an_answer_is_relayed_as_it_came() -> None:
    body = b'{"id": "x", "model": "up", "seed": 123456789012345678901234567890, "p": 0.10}'
    assert rewrite_json_model(body, "asked") == body.replace(b'"up"', b'"asked"')
    rewriter = SSEModelRewriter("asked")
    line = b'data:{"model" : "up", "logprob": -1.50E-3, "n": 18446744073709551616}\r\n'
    assert rewriter.feed(line) == line.replace(b'"up"', b'"asked"')
