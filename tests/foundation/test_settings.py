"""The settings base: sources in order, and one clear error naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from podium.errors import ConfigError
from podium.settings import PodiumSettings, SettingsConfigDict


class DemoSettings(PodiumSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")
    component: ClassVar[str] = "demo"

    port: int = 8000
    name: str = "default"
    interval_s: float = 1.0


def test_defaults(tmp_path: Path) -> None:
    s = DemoSettings.load(settings_dir=tmp_path)
    assert (s.port, s.name, s.interval_s) == (8000, "default", 1.0)


def test_source_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "settings.json").write_text('{"port": 1, "name": "json", "interval_s": 9}')
    (tmp_path / "settings.yaml").write_text("port: 2\nname: yaml\n")
    (tmp_path / "demo.settings.yaml").write_text("port: 3\n")
    (tmp_path / "settings.toml").write_text("port = 4\n")
    assert DemoSettings.load(settings_dir=tmp_path).port == 4
    (tmp_path / ".env").write_text("DEMO_PORT=5\n")
    assert DemoSettings.load(settings_dir=tmp_path).port == 5
    (tmp_path / "demo.env").write_text("DEMO_PORT=6\n")
    s = DemoSettings.load(settings_dir=tmp_path)
    assert (s.port, s.name, s.interval_s) == (6, "yaml", 9.0)
    monkeypatch.setenv("DEMO_PORT", "7")
    assert DemoSettings.load(settings_dir=tmp_path).port == 7
    assert DemoSettings.load(settings_dir=tmp_path, port=8).port == 8


def test_component_file_beats_shared_file(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text("name: shared\n")
    (tmp_path / "demo.settings.yaml").write_text("name: mine\n")
    (tmp_path / "other.settings.yaml").write_text("name: not mine\n")
    assert DemoSettings.load(settings_dir=tmp_path).name == "mine"


def test_invalid_value_in_file_names_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text("port: 8000\n")
    (tmp_path / "demo.settings.yaml").write_text("port: not-a-number\n")
    with pytest.raises(ConfigError) as info:
        DemoSettings.load(settings_dir=tmp_path)
    message = str(info.value)
    assert (
        str(tmp_path / "demo.settings.yaml") in message and "'port'" in message and "not-a-number" in message
    )


def test_invalid_env_value_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_INTERVAL_S", "soon")
    with pytest.raises(ConfigError) as info:
        DemoSettings.load(settings_dir=tmp_path)
    assert "DEMO_INTERVAL_S" in str(info.value) and "interval_s" in str(info.value)


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("settings.yaml", "port: 1\n  bad: [\n", "line"),
        ("settings.toml", "port = = 1\n", "invalid TOML"),
        ("settings.json", '{"port": 1,,}', "line 1"),
        ("settings.yaml", "- just\n- a list\n", "mapping"),
    ],
)
def test_malformed_file_names_the_file(tmp_path: Path, name: str, text: str, needle: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as info:
        DemoSettings.load(settings_dir=tmp_path)
    assert str(tmp_path / name) in str(info.value) and needle in str(info.value)
