"""Dialects and the translations between them: pure functions and classes over parsed JSON
and bytes, no I/O, no runtime. The pipeline picks one translation per attempt, by the
client's dialect and the provider's, and calls the same five things on it:

    request(body, *, stream, max_output_tokens, ...) -> dict   the body to send upstream
    answer(upstream_json, *, model) -> dict                   a non-stream 2xx answer, back
    StreamTranslator(...)                                     a stream, back, chunk by chunk:
        .feed(chunk) -> bytes     upstream bytes split anywhere in, client frames out
        .finish() -> bytes        the upstream ended cleanly
        .fail(message) -> bytes   the upstream broke: the dialect's error frame
        .ping() -> bytes          a keep-alive frame while the upstream is silent
        .usage                    (input tokens, output tokens) once known
    error(status, body) -> bytes                              an upstream error, re-shaped

Modules:
    sse                   the incremental SSE parser and frame helpers
    stream                the StreamTranslation protocol and the base of the stream translators
    tool_ids              tool call ids valid in both dialects
    errors                reading an upstream error body of either dialect
    anthropic             Anthropic Messages facts: error types by status, error frames
    anthropic_to_openai   client speaks Anthropic Messages, provider speaks OpenAI chat
    openai_to_anthropic   client speaks OpenAI chat, provider is kind anthropic
    responses_to_openai   client speaks OpenAI Responses, provider speaks OpenAI chat (with
                          responses_input, responses_tools, responses_output, responses_stream,
                          responses_sse; it needs an `answer_context(body)` per request besides)
"""
