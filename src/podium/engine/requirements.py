"""A task's ``resource_requirements`` against what a worker registered: Avtomatika's hardware, software,
artifact and extra checks (rxon's ``Resources.matches``, ``InstalledArtifact.matches``), as pure functions.

Numbers required are minimums (the worker's must be at least as large), a list required is a set of
acceptable values (the worker's value, or one of its list, must be among them), a list the worker has must
include a required plain value, anything else must be equal. :func:`requirements_mismatch` returns
Avtomatika's reason string (``resource_mismatch``, ``missing_artifact: cuda``, ...) or ``None``. Nothing here
does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["REQUIREMENT_KEYS", "artifact_matches", "requirements_mismatch", "resources_match"]

REQUIREMENT_KEYS = ("resources", "installed_software", "installed_artifacts", "extra_requirements", "skill")
"""The keys of ``resource_requirements`` checked here (Avtomatika reads ``params``/``transitions`` from it too:
those are the task's own, checked by :func:`podium.engine.strategy.skill_mismatch`)."""


def _value_matches(mine: Any, req: Any) -> bool:
    if mine is None:
        return False
    number = (int, float)
    if isinstance(req, number) and not isinstance(req, bool) and isinstance(mine, number):
        return bool(mine >= req)
    if isinstance(req, list | tuple | set | frozenset):
        if isinstance(mine, list | tuple | set | frozenset):
            return bool(set(mine) & set(req))
        return mine in req
    if isinstance(mine, list | tuple | set | frozenset):
        return req in mine
    return bool(mine == req)


def _props_match(mine: Mapping[str, Any] | None, req: Mapping[str, Any] | None) -> bool:
    have = mine or {}
    return all(_value_matches(have.get(k), v) for k, v in (req or {}).items())


def _device_matches(mine: Mapping[str, Any], req: Mapping[str, Any]) -> bool:
    if req.get("type") and mine.get("type") != req["type"]:
        return False
    model = req.get("model")
    if model and (not mine.get("model") or str(model).lower() not in str(mine["model"]).lower()):
        return False
    if req.get("id") and mine.get("id") != req["id"]:
        return False
    return _props_match(mine.get("properties"), req.get("properties"))


def resources_match(mine: Mapping[str, Any], req: Mapping[str, Any]) -> bool:
    """The worker's ``resources`` meet the required ones: each required device matched by a distinct device
    of the worker's, and the properties (``cpu_cores``, ``ram_gb``, ...) met. A flat requirement
    (``{"cpu_cores": 4}``) reads as ``{"properties": {...}}``, as Avtomatika reads it."""
    if "properties" not in req and "devices" not in req:
        req = {"properties": req}
    free: list[Mapping[str, Any]] = list(mine.get("devices") or ())
    for wanted in req.get("devices") or ():
        i = next((i for i, dev in enumerate(free) if _device_matches(dev, wanted)), None)
        if i is None:
            return False
        free.pop(i)
    return _props_match(mine.get("properties"), req.get("properties"))


def artifact_matches(mine: Mapping[str, Any], req: Mapping[str, Any]) -> bool:
    """An installed artifact (model, dataset) is the required one: same name, the version unless the
    requirement's is ``unknown`` (or absent), and the required properties met."""
    if mine.get("name") != req.get("name"):
        return False
    version = req.get("version", "unknown")
    if version != "unknown" and version != mine.get("version", "unknown"):
        return False
    return _props_match(mine.get("properties"), req.get("properties"))


def requirements_mismatch(
    worker: Mapping[str, Any], skill: Mapping[str, Any], requirements: Mapping[str, Any]
) -> str | None:
    """Why a worker does not meet a task's ``resource_requirements``, or ``None`` if it does.

    ``worker`` holds what it registered: ``resources``, ``installed_software`` (name -> version),
    ``installed_artifacts`` and ``extra`` (its ``capabilities.extra``); ``skill`` is its declared skill for
    the task (``requirements["skill"]`` fields are compared with the skill's own, then its ``properties``).
    """
    if req_res := requirements.get("resources"):
        mine = worker.get("resources")
        if not mine:
            return "missing_worker_resources"
        if not resources_match(mine, req_res):
            return "resource_mismatch"
    artifacts: Sequence[Mapping[str, Any]] = worker.get("installed_artifacts") or ()
    for raw in requirements.get("installed_artifacts") or ():
        wanted = {"name": raw} if isinstance(raw, str) else raw
        if not any(artifact_matches(a, wanted) for a in artifacts):
            return f"missing_artifact: {wanted.get('name')}"
    software = worker.get("installed_software") or {}
    for name, version in (requirements.get("installed_software") or {}).items():
        if name not in software:
            return f"missing_software: {name}"
        if version != "any" and software[name] != version:
            return f"software_version_mismatch: {name} ({software[name]} != {version})"
    props = skill.get("properties") or {}
    for field, expected in (requirements.get("skill") or {}).items():
        actual = skill.get(field)
        if actual is None:
            actual = props.get(field)
        if actual != expected:
            return f"skill_param_mismatch: {field} (expected {expected}, got {actual})"
    extra = worker.get("extra") or {}
    for key, expected in (requirements.get("extra_requirements") or {}).items():
        if extra.get(key) != expected:
            return f"extra_mismatch: {key}"
    return None
