"""resource_requirements against what a worker registered (Avtomatika's hardware, software, artifact, skill and
extra checks), table-driven; and in the dispatch decision."""

from __future__ import annotations

from typing import Any

import pytest

from podium.engine.requirements import artifact_matches, requirements_mismatch, resources_match
from podium.engine.strategy import NoWorker, TaskNeeds, WorkerState, decide

GPU = {"type": "gpu", "model": "NVIDIA RTX 4090", "properties": {"vram_gb": 24, "arch": ["ada", "sm89"]}}
RESOURCES = {
    "devices": [GPU, {"type": "gpu", "model": "A10", "properties": {"vram_gb": 24}}],
    "properties": {"cpu_cores": 16, "ram_gb": 64, "os": "linux"},
}


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        ({"cpu_cores": 8}, True),  # flat form: properties; numbers are minimums
        ({"cpu_cores": 32}, False),
        ({"properties": {"ram_gb": 64, "os": "linux"}}, True),
        ({"properties": {"os": ["linux", "darwin"]}}, True),  # a list: acceptable values
        ({"properties": {"os": ["windows"]}}, False),
        ({"properties": {"tpu": 1}}, False),  # missing
        ({"devices": [{"type": "gpu", "model": "rtx 4090"}]}, True),  # model: case-insensitive substring
        ({"devices": [{"type": "gpu", "properties": {"vram_gb": 48}}]}, False),
        ({"devices": [{"type": "gpu", "properties": {"arch": "sm89"}}]}, True),  # the worker's list has it
        ({"devices": [{"type": "gpu"}, {"type": "gpu"}]}, True),  # two devices, two distinct GPUs
        ({"devices": [{"type": "gpu"}, {"type": "gpu"}, {"type": "gpu"}]}, False),  # not three
        ({"devices": [{"type": "gpu", "id": "x"}]}, False),
    ],
)
def test_resources_match(req: dict[str, Any], expected: bool) -> None:
    assert resources_match(RESOURCES, req) is expected


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        ({"name": "llama"}, True),  # any version
        ({"name": "llama", "version": "3"}, True),
        ({"name": "llama", "version": "2"}, False),
        ({"name": "llama", "properties": {"quant": ["q4", "q8"]}}, True),
        ({"name": "llama", "properties": {"ctx": 8192}}, True),
        ({"name": "llama", "properties": {"ctx": 32768}}, False),
        ({"name": "mistral"}, False),
    ],
)
def test_artifact_matches(req: dict[str, Any], expected: bool) -> None:
    mine = {"name": "llama", "version": "3", "properties": {"quant": "q4", "ctx": 8192}}
    assert artifact_matches(mine, req) is expected


WORKER = {
    "resources": RESOURCES,
    "installed_software": {"ffmpeg": "6.1", "cuda": "12.4"},
    "installed_artifacts": [{"name": "llama", "version": "3"}],
    "extra": {"region": "eu"},
}
SKILL = {"name": "render", "version": "2", "properties": {"precision": "fp16"}}


@pytest.mark.parametrize(
    ("worker", "requirements", "expected"),
    [
        (WORKER, {}, None),
        (WORKER, {"resources": {"ram_gb": 32}, "installed_software": {"ffmpeg": "any"}}, None),
        ({}, {"resources": {"ram_gb": 32}}, "missing_worker_resources"),
        (WORKER, {"resources": {"ram_gb": 128}}, "resource_mismatch"),
        (WORKER, {"installed_artifacts": ["llama"]}, None),
        (WORKER, {"installed_artifacts": [{"name": "llama", "version": "2"}]}, "missing_artifact: llama"),
        (WORKER, {"installed_software": {"blender": "any"}}, "missing_software: blender"),
        (
            WORKER,
            {"installed_software": {"cuda": "11.8"}},
            "software_version_mismatch: cuda (12.4 != 11.8)",
        ),
        (WORKER, {"skill": {"version": "2", "precision": "fp16"}}, None),  # a field, then a property
        (
            WORKER,
            {"skill": {"precision": "fp32"}},
            "skill_param_mismatch: precision (expected fp32, got fp16)",
        ),
        (WORKER, {"extra_requirements": {"region": "eu"}}, None),
        (WORKER, {"extra_requirements": {"region": "us"}}, "extra_mismatch: region"),
    ],
)
def test_requirements_mismatch(
    worker: dict[str, Any], requirements: dict[str, Any], expected: str | None
) -> None:
    assert requirements_mismatch(worker, SKILL, requirements) == expected


def test_the_decision_passes_over_workers_short_of_the_requirements() -> None:
    skills = {"render": SKILL}
    big = WorkerState("big", skills, {"render": 5.0}, last_seen=100.0, extras=WORKER)
    small = WorkerState(
        "small", skills, {"render": 1.0}, last_seen=100.0, extras={"resources": {"properties": {"ram_gb": 8}}}
    )
    needs = TaskNeeds("render", requirements={"resources": {"ram_gb": 32}})
    assert decide(needs, "cheapest", [big, small], 100.0, ttl_s=60) == "big"
    assert decide(needs, "cheapest", [small], 100.0, ttl_s=60) == NoWorker(
        "No worker satisfies the requirements for task 'render'. Reasons: {'resource_mismatch': 1}"
    )


def test_a_constrained_task_never_goes_to_the_shared_queue() -> None:
    skills = {"render": SKILL}
    big = WorkerState("big", skills, last_seen=100.0, extras=WORKER)
    needs = TaskNeeds("render", requirements={"installed_artifacts": ["llama"]})
    assert decide(needs, "default", [big], 100.0, ttl_s=60) == "big"  # default picks, as with a max_cost
    assert decide(TaskNeeds("render"), "default", [big], 100.0, ttl_s=60) is None  # unconstrained: shared
    assert decide(needs, "default", [], 100.0, ttl_s=60) == NoWorker(
        "No suitable workers for task type 'render'"
    )
    assert decide(TaskNeeds("render", version="2"), "default", [big], 100.0, ttl_s=60) == "big"
