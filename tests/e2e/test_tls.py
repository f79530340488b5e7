"""An https upstream with a self-signed certificate: refused with ssl_verify (the default),
served with ssl_verify: false."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.gateway import Gateway
from support.http import post_json
from support.upstream import Upstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder: Path = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = Upstream("tls", ssl_context=context).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(tls_upstream: Upstream) -> Iterator[Gateway]:
    base = f"{tls_upstream.url}/v1"
    config = {
        "providers": [
            {"name": "verified", "kind": "vllm", "base_url": base},
            {"name": "unverified", "kind": "vllm", "base_url": base, "ssl_verify": False},
        ],
        "models": [
            {"name": "verified", "deployments": [{"provider": "verified"}]},
            {"name": "unverified", "deployments": [{"provider": "unverified"}]},
        ],
    }
    with Gateway(config) as gw:
        yield gw


def test_self_signed_certificate_is_refused_by_default(gateway: Gateway, tls_upstream: Upstream) -> None:
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "verified", **CHAT})
    assert reply.status == 502
    assert "TLS" in reply.json()["error"]["message"] or "connect_error" in reply.json()["error"]["message"]
    assert tls_upstream.received == []


def test_ssl_verify_false_accepts_it(gateway: Gateway, tls_upstream: Upstream) -> None:
    for _ in range(3):  # over one kept-alive TLS connection
        reply = post_json(gateway.url, "/v1/chat/completions", {"model": "unverified", **CHAT})
        assert reply.status == 200
        assert reply.json()["choices"][0]["message"]["content"] == "hello from tls"
    assert len({r.peer for r in tls_upstream.received}) == 1
