"""Clients of a podium server: jobs (:class:`JobClient`, :class:`AsyncJobClient`) and, beside them, the
workcell. Exports load lazily, so importing one client does not import the others."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from podium.client.jobs import (
        AsyncJobClient as AsyncJobClient,
    )
    from podium.client.jobs import (
        JobClient as JobClient,
    )
    from podium.client.jobs import (
        JobClientError as JobClientError,
    )
    from podium.client.jobs import (
        JobNotFoundError as JobNotFoundError,
    )
    from podium.client.jobs import (
        JobWaitTimeout as JobWaitTimeout,
    )
    from podium.client.jobs import (
        QuotaExceededError as QuotaExceededError,
    )
    from podium.client.workcell import WorkcellClient as WorkcellClient

# name -> module that defines it; one line per export.
_EXPORTS = {
    "AsyncJobClient": "podium.client.jobs",
    "JobClient": "podium.client.jobs",
    "JobClientError": "podium.client.jobs",
    "JobNotFoundError": "podium.client.jobs",
    "JobWaitTimeout": "podium.client.jobs",
    "QuotaExceededError": "podium.client.jobs",
    "WorkcellClient": "podium.client.workcell",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'podium.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
