"""The "Testing with podium.testing" example of docs/DEVELOPING.md runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "DEVELOPING.md"


def test_the_developing_example_runs() -> None:
    section = DOC.read_text(encoding="utf-8").split("## Testing with podium.testing", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    subprocess.run([sys.executable, "-c", code.group(1)], check=True, timeout=60)
