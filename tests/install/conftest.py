"""The orchestrator's fixtures, for an enrolment server the installed gateway reaches."""

from tests.cloud.conftest import engine, migrated_url, schema_templates, tenant

__all__ = ["engine", "migrated_url", "schema_templates", "tenant"]
