"""A real S3-compatible server on loopback: moto's server mode (in a thread), one bucket per test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from podium.blobs import S3Settings
from podium.ids import new_ulid_str


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    pytest.importorskip("obstore", reason="skip: obstore is not installed (pip install 'podium[s3]')")
    moto = pytest.importorskip("moto.server", reason="skip: moto is not installed")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = moto.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> S3Settings:
    """Settings for a new, empty bucket of this test."""
    bucket = f"t-{new_ulid_str().lower()}"
    assert httpx.put(f"{s3_endpoint}/{bucket}").status_code == 200
    return S3Settings(endpoint_url=s3_endpoint, access_key="test", secret_key="test", bucket=bucket)
