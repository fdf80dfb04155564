"""One rooted error hierarchy for podium.

::

    PodiumError
    ├── ConfigError                 bad settings or configuration files (names the file and the field)
    ├── StoreError                  storage backend failures
    │   ├── ConflictError           a write with a stale version (optimistic concurrency)
    │   ├── LeaseLostError          ack/extend/nack with a lease that expired or was taken over
    │   ├── LockLostError           a lock that is no longer held by that owner/fencing token
    │   └── SchemaMismatchError     the store's schema version is not the one this code expects
    ├── NotFoundError               a record, job, workflow or node that does not exist
    ├── InvalidInputError           input that fails validation (names the field)
    └── MissingDependencyError      an optional extra is not installed (says which ``pip install``)

Packages add their own subclasses (``podium.engine`` and ``podium.workcell`` errors derive from these).
``podium.flow`` keeps its own tree rooted at ``FlowError`` because it imports nothing of podium.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConflictError",
    "InvalidInputError",
    "LeaseLostError",
    "LockLostError",
    "MissingDependencyError",
    "NotFoundError",
    "PodiumError",
    "SchemaMismatchError",
    "StoreError",
]


class PodiumError(Exception):
    """Base class of every error podium raises on purpose."""


class ConfigError(PodiumError):
    """Settings or a configuration file are invalid; the message names the file and the field."""


class StoreError(PodiumError):
    """A storage backend failed."""


class ConflictError(StoreError):
    """A write carried a stale version: somebody else changed the record first."""

    def __init__(self, kind: str, id: str, expected: int | None, actual: int | None) -> None:
        self.kind, self.id, self.expected, self.actual = kind, id, expected, actual
        super().__init__(f"{kind}/{id}: expected version {expected}, store has {actual}")


class LeaseLostError(StoreError):
    """The lease on a queued task expired or was taken by another consumer."""


class LockLostError(StoreError):
    """The lock is not held by this owner with this fencing token any more."""


class SchemaMismatchError(StoreError):
    """The store's schema version does not match this code; the message says which command migrates."""

    def __init__(self, found: str | None, expected: str, command: str) -> None:
        self.found, self.expected, self.command = found, expected, command
        super().__init__(
            f"store schema is at {found or 'an unknown version'}, this podium needs {expected}; "
            f"migrate with: {command}"
        )


class NotFoundError(PodiumError):
    """The thing asked for does not exist."""


class InvalidInputError(PodiumError):
    """Input failed validation; ``field`` names where."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class UnstorableValueError(InvalidInputError, TypeError):
    """A value no store can hold as JSON (an integer beyond 64 bits, an object JSON has no form for); ``field``
    is its path in the record's data (``initial_data.x.0``). A ``TypeError`` too, as JSON encoders raise."""


class MissingDependencyError(PodiumError, ImportError):
    """An optional dependency is missing; the message gives the install command."""

    def __init__(self, package: str, extra: str) -> None:
        self.package, self.extra = package, extra
        super().__init__(f"{package} is not installed: pip install 'podium[{extra}]'")
