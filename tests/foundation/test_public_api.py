"""The public surfaces of the foundation: explicit export lists that fail when they drift."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "podium.store": [
        "SCHEMA_VERSION", "Ack", "Append", "Delete", "Dequeue", "Enqueue", "FencedOwnership", "HistoryEntry", "Lease",
        "MemoryStore", "Op", "Put", "Record", "SQLiteStore", "Store", "open_store",
    ],
    "podium.clock": ["Clock", "ManualClock", "SystemClock", "system_clock"],
    "podium.ids": ["is_ulid", "new_ulid_str", "ulid_timestamp_ms"],
    "podium.settings": ["CoreSettings", "PodiumSettings", "SettingsConfigDict", "settings_files"],
    "podium.log": ["ID_FIELDS", "JsonFormatter", "TextFormatter", "bind_ids", "configure_logging", "get_logger"],
    "podium.errors": [
        "ConfigError", "ConflictError", "InvalidInputError", "LeaseLostError", "LockLostError",
        "MissingDependencyError", "NotFoundError", "PodiumError", "SchemaMismatchError", "StoreError",
    ],
}  # fmt: skip


@pytest.mark.parametrize("module_name", sorted(EXPECTED))
def test_exports_are_explicit_and_resolve(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(EXPECTED[module_name])
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_open_store_by_url(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from podium.store import MemoryStore, SQLiteStore, open_store

    assert isinstance(open_store("memory://"), MemoryStore)
    store = open_store(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(store, SQLiteStore) and str(store.path) == f"{tmp_path}/x.db"
    with pytest.raises(ValueError, match="unknown store URL scheme 'mongo'"):
        open_store("mongo://x")


def test_importing_podium_is_cheap() -> None:
    import subprocess
    import sys

    code = "import sys, podium; print(sorted(m for m in sys.modules if m.startswith(('pydantic','fastapi','sqlalchemy'))))"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "[]"
    )
