"""PenguiFlow 2.2.5's sdist (its tests and examples), downloaded once and cached beside the peer venvs."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from bench.peervenv import peer_venv_root

VERSION = "2.2.5"


def penguiflow_source(*, timeout_s: float = 300) -> Path:
    """The unpacked sdist of penguiflow==2.2.5 (``tests/``, ``examples/``), fetched with pip on first use."""
    root = peer_venv_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"penguiflow-{VERSION}-src"
    done = target / ".complete"
    with open(root / f"penguiflow-{VERSION}-src.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run(
                    [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                     "--no-binary", ":all:", f"penguiflow=={VERSION}", "-d", tmp],
                    check=True,
                    timeout=timeout_s,
                )  # fmt: skip
                (archive,) = Path(tmp).glob("penguiflow-*.tar.gz")
                with tarfile.open(archive) as tar:
                    tar.extractall(tmp, filter="data")
                extracted = Path(tmp) / f"penguiflow-{VERSION}"
                target.mkdir(exist_ok=True)
                for name in ("tests", "examples", "pyproject.toml"):
                    (extracted / name).rename(target / name)
            done.write_text(VERSION)
        policy = target / "examples" / "routing_policy" / "policy.json"
        if not policy.exists():  # the example reads it, the sdist does not ship it: tenant -> route
            policy.write_text('{"marketing": "marketing", "support": "support"}\n')
    return target
