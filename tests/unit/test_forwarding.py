from __future__ import annotations

from modelway.proxy import forwarding
from modelway.proxy.forwarding import forwardable


def test_credential_names_by_word_and_the_rest_pass() -> None:
    raw = [(b"x-custom-api-key", b"1"), (b"x-amz-security-token", b"2"), (b"x-my-auth", b"3"),
           (b"anthropic-beta", b"4"), (b"x-modelway-debug", b"5"), (b"traceparent", b"6")]
    assert forwardable(raw, dict(raw)) == [(b"anthropic-beta", b"4"), (b"traceparent", b"6")]


def test_the_memo_of_verdicts_stays_bounded() -> None:
    for batch in range(40):
        raw = [(b"x-h-%d-%d" % (batch, i), b"v") for i in range(100)]
        assert forwardable(raw, dict(raw)) == raw
        assert len(forwarding.VERDICTS) <= forwarding.VERDICTS_MAX + 100
