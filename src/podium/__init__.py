"""podium: orchestrate long-running work on one durable engine.

Three front doors, each importable on its own:

- :mod:`podium.workcell` -- YAML workflows of steps on lab instrument nodes (MADSci-compatible);
- :mod:`podium.engine` -- durable Python state-machine blueprints and pull workers (Avtomatika-compatible);
- :mod:`podium.flow` -- in-process typed async flows (PenguiFlow-compatible; needs only pydantic).

Importing :mod:`podium` itself is cheap: it pulls in nothing but this docstring and the version.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
