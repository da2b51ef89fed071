"""Reading the cloud's answer to an enrolment: whatever JSON comes back (a proxy's error
page, another service, a tampered answer), it is a bundle for this gateway or a clear
error, and nothing outside the bundle's two files is ever written. The whole exchange
against a real orchestrator is in tests/cloud/test_edge_enrol.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.enrol import CONFIG_FILE, CloudUnreachableError, read_answer

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
