"""clients.toml / workers.toml loading, hashed tokens and quotas."""

from __future__ import annotations

from pathlib import Path

import pytest

from podium.clock import ManualClock
from podium.errors import ConfigError
from podium.server.quotas import QuotaExceeded, QuotaTracker
from podium.server.security import (
    ClientRegistry,
    WorkerTokens,
    hash_token,
    load_clients_file,
    load_workers_file,
)
from podium.store import MemoryStore

CLIENTS = """\
[plans.free]
requests_per_minute = 2
monthly_attempts = 3

[client_premium]
token = "secret-token-123"
plan = "premium"
languages = ["en", "ru"]

[client_free]
token = "free-token"
plan = "free"
monthly_attempts = 1
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_clients_file_loads_plans_quotas_and_params(tmp_path: Path) -> None:
    clients = {c.name: c for c in load_clients_file(write(tmp_path, "clients.toml", CLIENTS))}
    assert clients["client_premium"].plan == "premium"
    assert clients["client_premium"].params == {"languages": ["en", "ru"]}
    assert clients["client_premium"].quotas.requests_per_minute is None
    free = clients["client_free"].quotas
    assert (free.requests_per_minute, free.monthly_attempts) == (2, 1)  # own value beats the plan's
    assert clients["client_free"].token_hash == hash_token("free-token")
    assert "free-token" not in repr(clients["client_free"])


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[a]\ntoken = "x"\n[b\n', 3, "invalid TOML"),
        ('[a]\ntoken = "x"\n\n[b]\nplan = "p"\n', 4, "field 'token' is required"),
        ("[a]\ntoken = 5\n", 2, "field 'token'"),
        ('[a]\ntoken = "x"\nmonthly_attempts = "many"\n', 3, "monthly_attempts"),
        ('[a]\ntoken = "x"\n[b]\ntoken = "x"\n', 4, "same token"),
        ("[plans.p]\nbogus = 1\n", 2, "unknown field 'bogus'"),
        ('[a]\ntoken = "x"\nadmin = "yes"\n', 3, "'admin'"),
        ("a = 1\n", 1, "must be a table"),
    ],
)
def test_malformed_clients_file_names_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = write(tmp_path, "clients.toml", text)
    with pytest.raises(ConfigError) as info:
        load_clients_file(path)
    assert f"{path}:{line}" in str(info.value)
    assert words in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_workers_file(tmp_path / "nope.toml")


def test_workers_file_and_global_token(tmp_path: Path) -> None:
    path = write(tmp_path, "workers.toml", '[gpu-1]\ntoken = "w-secret"\n')
    assert load_workers_file(path) == {"gpu-1": hash_token("w-secret")}
    tokens = WorkerTokens(global_token="global", path=path)
    assert tokens.verify("gpu-1", "w-secret")
    assert not tokens.verify("gpu-1", "global")  # a listed worker must use its own token
    assert tokens.verify("other", "global")
    assert not tokens.verify("other", "w-secret")
    assert not tokens.verify("other", None)
    assert not WorkerTokens().verify("x", "anything")


def test_reload_swaps_tokens_and_keeps_old_on_error(tmp_path: Path) -> None:
    path = write(tmp_path, "workers.toml", '[w]\ntoken = "one"\n')
    tokens = WorkerTokens(path=path)
    path.write_text('[w]\ntoken = "two"\n[v]\ntoken = "three"\n')
    assert tokens.reload() == 2
    assert tokens.verify("w", "two") and not tokens.verify("w", "one")
    path.write_text("[w]\ntoken = \n")
    with pytest.raises(ConfigError, match=f"{path}:2"):
        tokens.reload()
    assert tokens.verify("w", "two")


def test_client_registry_authenticates_by_token(tmp_path: Path) -> None:
    registry = ClientRegistry.from_settings(
        client_token="single", clients_config_path=write(tmp_path, "c.toml", CLIENTS)
    )
    assert len(registry) == 3
    assert registry.authenticate("single").name == "default"  # type: ignore[union-attr]
    assert registry.authenticate("free-token").name == "client_free"  # type: ignore[union-attr]
    assert registry.authenticate("wrong") is None
    assert registry.authenticate(None) is None


async def test_quotas_per_minute_and_per_month(tmp_path: Path) -> None:
    clock = ManualClock(start=1_700_000_020.0)  # 2023-11-14T22:13:40Z
    clients = {c.name: c for c in load_clients_file(write(tmp_path, "c.toml", CLIENTS))}
    free = clients["client_free"]
    tracker = QuotaTracker(MemoryStore(clock=clock), clock=clock)
    await tracker.count(free)
    await tracker.count(free)
    with pytest.raises(QuotaExceeded) as info:
        await tracker.count(free)
    assert info.value.quota == "requests_per_minute" and info.value.retry_after_s == 60 - 40
    assert "client 'client_free' (plan 'free')" in info.value.body()["error"]
    assert info.value.body()["detail"]["resets_at"] == "2023-11-14T22:14:00Z"
    await clock.advance(60)
    await tracker.count(free, request=False, submission=True)  # a new minute
    with pytest.raises(QuotaExceeded, match="monthly_attempts limit of 1; resets at 2023-12-01T00:00:00Z"):
        await tracker.count(free, request=False, submission=True)
    assert await tracker.usage(free) == {"requests_per_minute": 0, "monthly_attempts": 1}
    await clock.advance(31 * 86400)
    await tracker.count(free, submission=True)  # a new month
    for _ in range(100):
        await tracker.count(clients["client_premium"])  # unlimited
    assert await tracker.store.get("quota", "client_premium") is None  # and never written
