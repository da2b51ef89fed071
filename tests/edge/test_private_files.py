"""Secret-bearing files are written owner-only and atomically."""

from pathlib import Path

import pytest

from edge.private_files import write_private


def test_a_new_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "bundle" / "edge.toml"
    write_private(path, "secret = 1\n")
    assert path.read_text() == "secret = 1\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["edge.toml"]


def test_a_refused_file_leaves_the_old_one_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    write_private(path, "old\n", mode=0o640)

    def refuse(candidate: Path) -> None:
        assert candidate.read_text() == "new\n"
        raise ValueError("not a valid config")

    with pytest.raises(ValueError, match="not a valid config"):
        write_private(path, "new\n", check=refuse)
    assert path.read_text() == "old\n"
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["edge.toml"]
