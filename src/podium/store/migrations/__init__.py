"""Alembic migrations of podium's SQL schema (run them with ``podium db upgrade``)."""
