"""Fixtures shared by every test: the real peers of tests/peers.py, cleaned up after each test."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import PORTPATROL, HttpPeer, RecordingProxy, TcpListener, tls_server_context


@pytest.fixture(scope="session")
def portpatrol() -> Path:
    """The installed console script, beside the interpreter running the tests."""
    assert PORTPATROL.exists(), f"portpatrol is not installed beside {PORTPATROL.parent} (pip install -e .)"
    return PORTPATROL


@pytest.fixture(scope="session")
def tls_server() -> tuple[ssl.SSLContext, Path]:
    """A server-side TLS context with a certificate from a CA made for this run, and that CA's PEM."""
    return tls_server_context()


@pytest.fixture
def http_peer() -> Iterator[HttpPeer]:
    with HttpPeer() as peer:
        yield peer


@pytest.fixture
def https_peer(tls_server: tuple[ssl.SSLContext, Path]) -> Iterator[HttpPeer]:
    with HttpPeer(tls=tls_server[0]) as peer:
        yield peer


@pytest.fixture
def tcp_listener() -> Iterator[TcpListener]:
    with TcpListener() as listener:
        yield listener


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    with RecordingProxy() as recording:
        yield recording
