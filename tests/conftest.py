"""Shared fixtures.

Services: tests that need a real Redis or PostgreSQL ask for the ``redis_url`` / ``postgres_dsn``
fixtures. Locally, when the service is not reachable they skip with a message naming it; with
``PODIUM_REQUIRE_SERVICES=1`` (set by ``.ci/run``) they fail instead.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from podium.blobs import S3Settings

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # so tests can import bench.peervenv and examples
    sys.path.insert(0, str(ROOT))

REDIS_URL = os.environ.get("PODIUM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get("PODIUM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def services_required() -> bool:
    return os.environ.get("PODIUM_REQUIRE_SERVICES", "").lower() in {"1", "true", "yes"}


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or fail, when services are required) unless ``host:port`` accepts a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        message = f"{name} is not reachable at {host}:{port} ({exc})"
    if services_required():
        pytest.fail(f"{message}; PODIUM_REQUIRE_SERVICES=1 makes this a failure")
    pytest.skip(f"skip: no {name}: {message}")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the peers' venvs that the collected tests name in their module's ``PEER_VENVS`` before any test
    runs: on a fresh machine a build takes minutes, which must not count against one test's timeout. A build
    that fails here is left for the test itself to repeat and report."""
    wanted: dict[tuple[str, tuple[str, ...]], None] = {}
    for item in session.items:
        for name, requirements in getattr(getattr(item, "module", None), "PEER_VENVS", ()):
            wanted[(name, tuple(requirements))] = None
    if not wanted:
        return
    from concurrent.futures import ThreadPoolExecutor

    from bench.peervenv import peer_python

    def build(key: tuple[str, tuple[str, ...]]) -> None:
        try:
            peer_python(key[0], list(key[1]))
        except Exception as exc:  # reported by the test that needs it
            print(f"\nbuilding the peer venv {key[0]} failed: {exc}", file=sys.stderr)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(build, wanted))


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", int(REDIS_URL.rsplit(":", 1)[1].split("/")[0]))
    return REDIS_URL


@pytest.fixture
def postgres_dsn() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_DSN


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "podium-data"
    path.mkdir()
    yield path


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server on loopback: moto's server mode (in a thread), for the session."""
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
    """Settings for a new, empty bucket of this test (on :func:`s3_endpoint`)."""
    import httpx

    from podium.blobs import S3Settings
    from podium.ids import new_ulid_str

    bucket = f"t-{new_ulid_str().lower()}"
    assert httpx.put(f"{s3_endpoint}/{bucket}").status_code == 200
    return S3Settings(endpoint_url=s3_endpoint, access_key="test", secret_key="test", bucket=bucket)
