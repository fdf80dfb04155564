"""The workcell file: :func:`load_workcell`, and the workcell's models (from :mod:`podium.wire.workcell`).

A workcell file, in the shape MADSci users keep::

    name: my_workcell
    nodes: {liquidhandler_1: http://localhost:2000, ...}
    locations:
      - location_name: deck_1
        representations: {liquidhandler_1: 1, robotarm_1: [0, 0, 0]}   # or `reference` (0.7)
        resource_definition: {resource_name: deck_1_slot, base_type: slot}
    resources: [...]             # free-standing resources (podium extension)
    settings: {scheduler_update_interval: 1.0, ...}
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from podium.errors import ConfigError
from podium.wire.workcell import (
    NodeRecord,
    WorkcellDefinition,
    WorkcellInfo,
    WorkcellState,
    WorkcellStatus,
)

__all__ = [
    "NodeRecord",
    "WorkcellDefinition",
    "WorkcellInfo",
    "WorkcellState",
    "WorkcellStatus",
    "load_workcell",
]


def load_workcell(path: str | Path) -> WorkcellDefinition:
    """Read a workcell file; :class:`ConfigError` naming the file and field when it is wrong."""
    p = Path(path).expanduser()
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the workcell file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping with name, nodes and locations")
    try:
        wc = WorkcellDefinition.model_validate(data)
    except ValidationError as exc:
        msgs = "; ".join(f"field '{'.'.join(str(x) for x in e['loc'])}': {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{p}: {msgs}") from None
    names = [loc.location_name for loc in wc.locations]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"{p}: field 'locations': location names must be unique ({sorted(dupes)})")
    return wc
