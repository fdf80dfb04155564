"""Run ``schemathesis run`` against a served OpenAPI and count what it found (shared by the fuzz scripts).

The checks are ``not_a_server_error``, ``status_code_conformance`` and ``response_schema_conformance``: no
5xx, no status the schema does not document, no body outside the documented schema. The figures come from
schemathesis's NDJSON report: requests sent, server errors, schema violations, failures by check and
operation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"


def _schemathesis() -> str:
    exe = Path(sys.executable).with_name("schemathesis")
    if exe.exists():
        return str(exe)
    found = shutil.which("schemathesis") or shutil.which("st")
    if found is None:
        raise SystemExit("schemathesis is not installed: pip install -e '.[dev]'")
    return found


async def run_schemathesis(
    openapi_url: str,
    config: str,
    headers: list[str],
    work: Path,
    *,
    max_examples: int,
    seed: int,
    workers: int = 1,
    max_time_s: float | None = None,
    phases: str = "examples,coverage,fuzzing",
    exclude_paths: str | None = None,
    echo: bool = True,
) -> dict[str, Any]:
    """Fuzz ``openapi_url`` (``config``: a schemathesis TOML config; ``headers``: ``Name: value`` lines sent
    with every request; ``work``: a scratch folder; ``exclude_paths``: a regex of paths left out) and return
    the figures."""
    config_file = work / "schemathesis.toml"
    config_file.write_text(config, encoding="utf-8")
    report = work / "report"
    cmd = [
        _schemathesis(),
        "--config-file",
        str(config_file),
        "run",
        openapi_url,
        "--checks",
        CHECKS,
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--phases",
        phases,
        "--workers",
        str(workers),
        "--report",
        "ndjson",
        "--report-dir",
        str(report),
        "--no-color",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "70",
        "--continue-on-failure",
    ]
    for header in headers:
        cmd += ["-H", header]
    if max_time_s is not None:
        cmd += ["--max-time", str(int(max_time_s))]
    if exclude_paths is not None:
        cmd += ["--exclude-path-regex", exclude_paths]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=work
    )  # in the scratch folder: schemathesis keeps its cache (.schemathesis/) in the working folder
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if echo:
        print(text)
    figures = _figures(report, text)
    if os.environ.get("FUZZ_KEEP_REPORT"):
        shutil.copytree(report, os.environ["FUZZ_KEEP_REPORT"], dirs_exist_ok=True)
    figures["exit_code"] = proc.returncode
    return figures


def _figures(report_dir: Path, text: str) -> dict[str, Any]:
    """Requests, 5xx and schema violations from the NDJSON event stream (one recorder per scenario)."""
    requests = server_errors = 0
    failures: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for path in report_dir.glob("*.ndjson"):
        for line in path.read_text(encoding="utf-8").splitlines():
            recorder = (json.loads(line).get("ScenarioFinished") or {}).get("recorder") or {}
            for interaction in (recorder.get("interactions") or {}).values():
                response = interaction.get("response")
                if response is None:
                    continue
                requests += 1
                code = int(response.get("status_code", 0))
                statuses[f"{code // 100}xx"] += 1
                server_errors += code >= 500
            for results in (recorder.get("checks") or {}).values():
                for check in results:
                    if check.get("status") == "failure":
                        failures[f"{check.get('name')}: {recorder.get('label')}"] += 1
    violations = sum(n for k, n in failures.items() if not k.startswith("not_a_server_error"))
    return {
        "requests": requests,
        "server_errors": server_errors,
        "schema_violations": violations,
        "statuses": dict(sorted(statuses.items())),
        "failures": dict(failures.most_common(20)),
        "summary_tail": text.strip().splitlines()[-12:],
    }


def dictionary_config(
    values: dict[str, list[str]], path_parameters: dict[str, str], fixed: dict[str, Any] | None = None
) -> str:
    """A schemathesis config: each path parameter of ``path_parameters`` (parameter -> dictionary) drawn half of
    the time from ``values`` (names and ids that exist); ``fixed``: parameters given one value
    (``{"query.timeout": 0}``)."""
    lines = []
    for name, entries in values.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(entries)}", ""]
    lines.append("[parameters]")
    lines += [f'"{param}" = {json.dumps(value)}' for param, value in (fixed or {}).items()]
    for param, dictionary in path_parameters.items():
        lines.append(f'"path.{param}" = {{ dictionary = "{dictionary}", probability = 0.5 }}')
    return "\n".join(lines) + "\n"


def fuzz_main(name: str, doc: str | None, fuzz: Callable[..., Awaitable[dict[str, Any]]]) -> None:
    """The command line of a fuzz script: run ``fuzz`` with its options, print one JSON line of figures."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--max-time", type=float, default=None, help="seconds for fuzzing and stateful phases"
    )
    parser.add_argument("--phases", default="examples,coverage,fuzzing")
    args = parser.parse_args()
    figures = asyncio.run(
        fuzz(
            max_examples=args.max_examples,
            seed=args.seed,
            workers=args.workers,
            max_time_s=args.max_time,
            phases=args.phases,
        )
    )
    print(json.dumps({"bench": name, **{k: v for k, v in figures.items() if k != "summary_tail"}}))
