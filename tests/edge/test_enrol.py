"""Where the bundle's files go and who may read them, and reading the cloud's answer:
whatever JSON comes back (a proxy's error page, another service, a tampered answer), it
is a bundle for this gateway or a clear error, and nothing outside the bundle's two files
is ever written. The exchange itself is tested against a real orchestrator in
tests/cloud/test_edge_enrol.py."""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.enrol import (
    CONFIG_FILE,
    CloudUnreachableError,
    EnrolmentUsageError,
    agent_group,
    read_answer,
    write_bundle,
)

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

GOOD = {"tenant": "acme", "store": "s1", "gateway": "g1",
        "files": {CONFIG_FILE: "[identity]\n", "ca.crt": "-----BEGIN CERTIFICATE-----\n"}}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=10,
)


def test_a_bundle_is_read_with_its_identity() -> None:
    assert read_answer(GOOD) == (("acme", "s1", "g1"), GOOD["files"])


@pytest.mark.parametrize("answer", [
    [], "bundle", None,
    {**GOOD, "files": {**GOOD["files"], "../../etc/passwd": "x"}},  # type: ignore[dict-item]
    {**GOOD, "files": {"ca.crt": "x"}},
    {**GOOD, "store": "../s1"},
    {**GOOD, "tenant": None},
])
def test_anything_else_is_not_a_bundle(answer: object) -> None:
    with pytest.raises(CloudUnreachableError, match="not a gateway bundle"):
        read_answer(answer)


@settings(max_examples=200, deadline=None)
@given(json_values | st.sampled_from(sorted(GOOD)).flatmap(
    lambda key: json_values.map(lambda value: {**GOOD, key: value})))
def test_any_answer_is_a_bundle_of_its_two_files_or_a_clear_error(answer: object) -> None:
    try:
        (tenant, store, gateway), files = read_answer(answer)
    except CloudUnreachableError:
        return
    assert set(files) <= {CONFIG_FILE, "ca.crt"}
    assert all("/" not in part for part in (tenant, store, gateway, *files))


def test_the_answer_is_read_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(CloudUnreachableError):
        read_answer({**GOOD, "files": {CONFIG_FILE: 1}})
    assert list(tmp_path.iterdir()) == []
