"""Where the bundle's files go and who may read them (the exchange itself is tested
against a real orchestrator in tests/cloud/test_edge_enrol.py)."""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import pytest

from edge.enrol import EnrolmentUsageError, agent_group, write_bundle

FILES = {"edge.toml": "# config\n", "ca.crt": "-----BEGIN CERTIFICATE-----\n"}


def test_without_a_group_the_bundle_is_its_owners_alone(tmp_path: Path) -> None:
    config = write_bundle(tmp_path / "bundle", FILES)
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    for name in FILES:
        assert stat.S_IMODE((config.parent / name).stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another group needs root")
def test_the_agents_group_may_read_the_bundle_and_nobody_else(tmp_path: Path) -> None:
    group = grp.getgrnam("nogroup").gr_gid
    directory = tmp_path / "bundle"
    directory.mkdir(mode=0o755)
    config = write_bundle(directory, FILES, group=group)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750
    assert directory.stat().st_gid == group
    for name in FILES:
        path = directory / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, name
        assert path.stat().st_gid == group, name
    assert config.read_text() == "# config\n"
    assert sorted(path.name for path in directory.iterdir()) == ["ca.crt", "edge.toml"]


def test_a_group_is_named_or_found(monkeypatch: pytest.MonkeyPatch) -> None:
    assert agent_group("root") == 0
    with pytest.raises(EnrolmentUsageError, match="no group 'no-such-group'"):
        agent_group("no-such-group")
    monkeypatch.setattr("edge.enrol.AGENT_GROUP", "no-such-group")
    assert agent_group() is None  # no agent's group here: the bundle stays root's alone
