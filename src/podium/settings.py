"""One settings base for every podium component, on pydantic-settings.

A component subclasses :class:`PodiumSettings`, sets its environment prefix in ``model_config`` and its
file stem in ``component``::

    class WorkcellManagerSettings(PodiumSettings):
        model_config = SettingsConfigDict(env_prefix="WORKCELL_")
        component: ClassVar[str] = "workcell"

Sources, highest priority first: keyword arguments, environment variables (with the prefix), then files
in the settings directory (the working directory unless ``settings_dir`` is given), each component file
beating the shared one: ``<component>.env``, ``.env``, ``<component>.settings.toml``, ``settings.toml``,
``<component>.settings.yaml``, ``settings.yaml``, ``<component>.settings.json``, ``settings.json``. A file
named with ``settings_file`` comes before all of them. As in MADSci 0.8's shared ``settings.yaml``, a key
in a file may carry the component's prefix (``workcell_nodes`` for ``nodes``); the bare key wins.

:meth:`PodiumSettings.load` is the one way to build settings at start-up: a malformed file or an invalid
value raises :class:`~podium.errors.ConfigError` naming the file (or environment variable) and the field,
so a server never half-starts on bad settings.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import yaml
from dotenv import dotenv_values
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from podium.errors import ConfigError

__all__ = ["CoreSettings", "PodiumSettings", "SettingsConfigDict", "settings_files"]


def settings_files(component: str, settings_dir: Path) -> list[Path]:
    """The files a component reads, highest priority first."""
    names = [
        f"{component}.env",
        ".env",
        f"{component}.settings.toml",
        "settings.toml",
        f"{component}.settings.yaml",
        "settings.yaml",
        f"{component}.settings.json",
        "settings.json",
    ]
    return [settings_dir / n for n in dict.fromkeys(names)]


def _read_file(path: Path, prefix: str) -> dict[str, Any]:
    """Parse one settings file into a mapping; raise ConfigError naming the file (and line) if malformed."""
    text = path.read_text(encoding="utf-8")
    try:
        if path.name.endswith(".env"):
            raw: Any = {
                k[len(prefix) :].lower() if prefix and k.upper().startswith(prefix.upper()) else k.lower(): v
                for k, v in dotenv_values(path).items()
                if v is not None
            }
        elif path.suffix == ".toml":
            raw = tomllib.loads(text)
        elif path.suffix == ".yaml":
            raw = yaml.safe_load(text)
        else:
            raw = json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of settings at the top level, got {type(raw).__name__}"
        )
    return raw


class _FileSource(PydanticBaseSettingsSource):
    """One settings file as a pydantic-settings source (parsed once, keys matched case-insensitively)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path, data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.path = path
        fields = {}
        for name, info in settings_cls.model_fields.items():
            fields[name.lower()] = name
            if isinstance(info.alias, str):
                fields[info.alias.lower()] = info.alias
        prefix = str(settings_cls.model_config.get("env_prefix") or "").lower()
        self.data: dict[str, Any] = {}
        for key, value in data.items():
            low = key.lower()
            if prefix and low.startswith(prefix) and low[len(prefix) :] in fields:
                self.data.setdefault(fields[low[len(prefix) :]], value)  # a bare key beats it (below)
            elif low in fields:
                self.data[fields[low]] = value

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


class PodiumSettings(BaseSettings):
    """Base of every component's settings (see the module docstring for the sources and their order)."""

    model_config = SettingsConfigDict(env_prefix="PODIUM_", extra="ignore", validate_default=True)
    component: ClassVar[str] = "podium"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = getattr(cls, "_podium_file_sources", ())
        return (init_settings, env_settings, *files)

    @classmethod
    def load(
        cls,
        *,
        settings_dir: str | Path | None = None,
        settings_file: str | Path | None = None,
        **overrides: Any,
    ) -> Self:
        """Build the settings from every source; raise ConfigError naming the source and field on error.

        ``settings_file`` names one more file (YAML, TOML, JSON or .env), read before the directory's.
        """
        directory = Path(settings_dir) if settings_dir is not None else Path.cwd()
        prefix = str(cls.model_config.get("env_prefix") or "")
        paths = settings_files(cls.component, directory)
        if settings_file is not None:
            first = Path(settings_file).expanduser()
            if not first.is_file():
                raise ConfigError(f"{first}: no such settings file")
            paths = [first, *(p for p in paths if p.resolve() != first.resolve())]
        sources = [_FileSource(cls, path, _read_file(path, prefix)) for path in paths if path.is_file()]
        cls._podium_file_sources = tuple(sources)  # type: ignore[attr-defined]
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise ConfigError(cls._explain(exc, overrides, sources, prefix)) from None
        finally:
            cls._podium_file_sources = ()  # type: ignore[attr-defined]

    @classmethod
    def _explain(
        cls,
        exc: ValidationError,
        overrides: Mapping[str, Any],
        sources: list[_FileSource],
        prefix: str,
    ) -> str:
        env = EnvSettingsSource(cls)
        lines = [f"invalid {cls.component} settings:"]
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            path = ".".join(str(p) for p in err["loc"])
            origin = "default"
            if field in overrides:
                origin = "argument"
            elif (
                field in cls.model_fields
                and env.get_field_value(cls.model_fields[field], field)[0] is not None
            ):
                origin = f"environment variable {(prefix + field).upper()}"
            else:
                for src in sources:
                    if field in src.data:
                        origin = str(src.path)
                        break
            value = err.get("input")
            lines.append(f"  {origin}: field '{path}': {err['msg']} (got {value!r})")
        return "\n".join(lines)


class CoreSettings(PodiumSettings):
    """Settings every podium process shares (``PODIUM_*``; files ``podium.settings.yaml`` ...)."""

    store_url: str = "sqlite:///podium-data/podium.db"
    """Where durable state lives: ``sqlite:///path`` (the default) or ``memory://``."""
    data_dir: Path = Path("podium-data")
    """Folder for the SQLite file, datapoint files and uploads."""
