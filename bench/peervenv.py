"""Peer packages in their own virtual environments, for benchmarks and interop tests.

``peer_python("penguiflow", ["penguiflow==2.2.5"])`` returns the path of a Python interpreter in a venv
that has exactly those requirements installed. Venvs are cached under ``$PODIUM_PEER_VENVS`` (default
``~/.cache/podium/peer-venvs``), keyed by the requirement list, and created under a file lock so that
parallel test processes build each venv once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

__all__ = [
    "AVTOMATIKA",
    "AVTOMATIKA_WORKER",
    "MADSCI_NODE",
    "MADSCI_WORKCELL",
    "PENGUIFLOW",
    "peer_python",
    "peer_venv_root",
]

# The peers as the benchmarks and interop tests pin them, one spelling each (a venv is cached per list).
PENGUIFLOW = ["penguiflow==2.2.5"]
AVTOMATIKA = ["avtomatika==1.0b30"]
AVTOMATIKA_WORKER = ["avtomatika-worker==1.0b20"]  # the release on the server's rxon 1.0b17 (interop-notes)
MADSCI_NODE = ["madsci.client==0.8.1", "madsci.node_module==0.8.1", "pydantic==2.12.5", "packaging"]
"""MADSci 0.8.1's node SDK and client: unmodified MADSci nodes."""
MADSCI_WORKCELL = [
    "madsci.client==0.8.1",
    "madsci.node_module==0.8.1",
    "madsci.workcell_manager==0.8.1",
    "madsci.data_manager==0.8.1",
    "madsci.location_manager==0.8.1",
    "pydantic==2.12.5",
    "packaging",
]
"""MADSci 0.8.1's managers (workcell, data, location), its client and node SDK."""


def peer_venv_root() -> Path:
    return Path(os.environ.get("PODIUM_PEER_VENVS", Path.home() / ".cache" / "podium" / "peer-venvs"))


def peer_python(name: str, requirements: list[str], *, timeout_s: float = 900) -> Path:
    """Return the interpreter of a venv named after ``name`` holding ``requirements`` (built if needed)."""
    key = hashlib.sha256("\n".join([sys.version, *requirements]).encode()).hexdigest()[:12]
    root = peer_venv_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}-{key}"
    python = path / "bin" / "python"
    done = path / ".complete"
    with open(root / f"{name}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(path)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
                check=True,
                timeout=timeout_s,
            )
            done.write_text("\n".join(requirements))
    return python
