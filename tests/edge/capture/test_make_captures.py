"""The shipped captures are exactly what the script regenerates (fixed seeds, no clock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.captures import (
    BUSY_STORE_CAPTURE,
    CAPTURES_DIR,
    DEMO_CAPTURE,
    DEMO_NRF_CAPTURE,
    GARBAGE_FRAMES_CAPTURE,
    NOT_A_CAPTURE,
    TRUNCATED_CAPTURE,
)
from edge.captures.make_captures import main

SHIPPED = [DEMO_CAPTURE, DEMO_NRF_CAPTURE, BUSY_STORE_CAPTURE, TRUNCATED_CAPTURE,
           GARBAGE_FRAMES_CAPTURE, NOT_A_CAPTURE]
#: The captures ship inside the package: they must stay small.
MAX_TOTAL_BYTES = 5 * 1024 * 1024


@pytest.mark.slow
def test_regenerating_reproduces_every_shipped_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["--out", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in SHIPPED)
    for shipped in SHIPPED:
        assert (tmp_path / shipped.name).read_bytes() == shipped.read_bytes(), shipped.name
    out = capsys.readouterr().out
    assert "demo.pcapng: 1041 frames" in out
    assert "demo-nrf-sniffer.pcap: 889 frames" in out


def test_shipped_captures_stay_small() -> None:
    shipped = [p for p in CAPTURES_DIR.iterdir() if p.suffix in {".pcap", ".pcapng"}]
    assert sorted(shipped) == sorted(SHIPPED)
    assert sum(p.stat().st_size for p in shipped) < MAX_TOTAL_BYTES
