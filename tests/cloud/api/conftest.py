"""The HTTP API's tests run on PostgreSQL, as production does, unless a test asks for a
kind (`parametrize("migrated_url", ["sqlite"], indirect=True)`). What the routes store
and read is written in the domains' modules and tested on both kinds there; the routes
add only a few plain lookups of their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cloud.conftest import migrated_copy


@pytest.fixture
def migrated_url(
    request: pytest.FixtureRequest, tmp_path: Path, schema_templates: dict[str, str]
) -> Iterator[str]:
    with migrated_copy(getattr(request, "param", "postgresql"), tmp_path,
                       schema_templates) as url:
        yield url
