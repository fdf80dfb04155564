"""The podium server: one ASGI app (FastAPI) for the client API, the RXON worker protocol and public routes."""

from __future__ import annotations

__all__: list[str] = []
