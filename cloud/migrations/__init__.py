"""Alembic migrations of the orchestrator schema (see cloud.db.migrate)."""
