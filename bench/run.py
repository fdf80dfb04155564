"""Run every benchmark (or the ones named): ``python bench/run.py [store flow engine ...] [--quick]``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    flags = [a for a in argv if a.startswith("-")]
    names = [a for a in argv if not a.startswith("-")] or sorted(p.stem[6:] for p in HERE.glob("bench_*.py"))
    failed = 0
    for name in names:
        result = subprocess.run([sys.executable, str(HERE / f"bench_{name}.py"), *flags], cwd=HERE.parent)
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
