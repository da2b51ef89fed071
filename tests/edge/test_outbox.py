from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge import outbox as outbox_module
from edge.outbox import Outbox, read_stats
from shared.presence import PresenceEvent
from tests.edge.support import make_event

ROOT = Path(__file__).resolve().parents[2]


def test_events_leave_in_order_and_only_when_acknowledged(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_events=100)
    events = [make_event(i) for i in range(10)]
    assert outbox.put_many(events) == 0
    assert outbox.depth == 10
    first = outbox.claim(4, 1_000_000)
    second = outbox.claim(4, 1_000_000)
    assert [row.event_id for row in first + second] == [e.event_id for e in events[:8]]
    assert PresenceEvent.model_validate_json(first[0].body) == events[0]
    assert outbox.depth == 10  # claimed is not gone
    assert outbox.ack(first[0].seq, first[-1].seq) == 4
    assert outbox.depth == 6
    assert outbox.published == 4
    assert outbox.event_ids() == [e.event_id for e in events[4:]]
    outbox.close()


def test_unacknowledged_rows_come_back_after_a_restart(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_events=100)
    outbox.put_many([make_event(i) for i in range(5)])
    claimed = outbox.claim(5, 1_000_000)
    outbox.ack(claimed[0].seq, claimed[1].seq)
    outbox.close()
    reopened = Outbox(tmp_path / "o.db", max_events=100)
    again = reopened.claim(10, 1_000_000)
    assert [row.event_id for row in again] == [row.event_id for row in claimed[2:]]
    assert reopened.published == 2
    reopened.close()


def test_unclaim_hands_rows_out_again(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_events=100)
    outbox.put_many([make_event(i) for i in range(6)])
    first = outbox.claim(3, 1_000_000)
    outbox.claim(3, 1_000_000)
    outbox.unclaim_from(first[1].seq)
    assert [row.seq for row in outbox.claim(10, 1_000_000)] == [r.seq for r in first[1:]] + [
        first[-1].seq + 1, first[-1].seq + 2, first[-1].seq + 3]
    outbox.release_all()
    assert len(outbox.claim(10, 1_000_000)) == 6
    outbox.close()


def test_the_same_event_is_stored_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_events=100)
    outbox.put_many([make_event(1), make_event(2)])
    outbox.put_many([make_event(2), make_event(3)])
    assert outbox.depth == 3
    outbox.close()


def test_claim_respects_the_byte_budget(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_events=100)
    outbox.put_many([make_event(i) for i in range(10)])
    size = len(make_event(0).model_dump_json()) + 1
    assert len(outbox.claim(10, size * 3)) == 3
    assert len(outbox.claim(10, 1)) == 1  # one oversized row still goes, alone
    outbox.close()


def test_when_full_anonymous_events_go_first_then_the_oldest(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_events=10)
    stable = [make_event(i) for i in range(6)]
    daily = [make_event(100 + i, daily=True) for i in range(4)]
    outbox.put_many(stable[:3] + daily + stable[3:])
    assert outbox.depth == 10
    assert outbox.put_many([make_event(200 + i) for i in range(3)]) == 3
    remaining = set(outbox.event_ids())
    assert {e.event_id for e in daily[:3]}.isdisjoint(remaining)
    assert daily[3].event_id in remaining
    assert outbox.put_many([make_event(300 + i) for i in range(3)]) == 3
    remaining = set(outbox.event_ids())
    assert daily[3].event_id not in remaining  # the last anonymous one went first
    assert stable[0].event_id not in remaining
    assert stable[1].event_id not in remaining
    assert stable[2].event_id in remaining
    assert outbox.depth == 10
    assert outbox.dropped == 6
    outbox.close()
    stats, _ = read_stats(tmp_path / "o.db")
    assert (stats.depth, stats.dropped) == (10, 6)


def test_claimed_rows_are_dropped_only_last(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_events=4)
    outbox.put_many([make_event(i, daily=True) for i in range(4)])
    in_flight = outbox.claim(2, 1_000_000)
    outbox.put_many([make_event(10), make_event(11)])
    remaining = outbox.event_ids()
    assert [row.event_id for row in in_flight] == remaining[:2]
    outbox.close()


def test_status_and_stats_can_be_read_while_the_agent_writes(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_events=100)
    outbox.put_many([make_event(i) for i in range(3)])
    outbox.record_status('{"online": true}')
    stats, status = read_stats(tmp_path / "o.db")
    assert stats.depth == 3
    assert stats.oldest_created is not None
    assert status == '{"online": true}'
    outbox.close()


WRITER = textwrap.dedent(
    """
    import sys
    from edge.outbox import Outbox
    from tests.edge.support import make_event
    outbox = Outbox(sys.argv[1], max_events=1_000_000)
    index = 0
    while True:
        outbox.put_many([make_event(index + i) for i in range(50)])
        index += 50
        claimed = outbox.claim(20, 1_000_000)
        outbox.ack(claimed[0].seq, claimed[-1].seq)
        print(index, flush=True)
    """
)


def test_committed_events_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    committed = 0
    for line in writer.stdout:
        committed = int(line)
        if committed >= 3000:
            break
    writer.kill()  # SIGKILL: no cleanup, possibly mid-transaction
    writer.wait()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    outbox = Outbox(path, max_events=1_000_000)
    present = set(outbox.event_ids())
    acknowledged = outbox.published
    order = [make_event(i).event_id for i in range(committed + 50)]
    # Acknowledged rows are the oldest ones; every committed row after them is still there.
    assert acknowledged >= committed // 50 * 20 - 20
    assert set(order[acknowledged:committed]) <= present
    assert present.isdisjoint(order[:acknowledged])
    outbox.close()


def test_occupancy_reports_wait_apart_leave_in_order_and_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "MAX_REPORTS", 5)
    outbox = Outbox(tmp_path / "o.db", max_events=100)
    assert outbox.put_reports(f'{{"minute": {i}}}' for i in range(4)) == 0
    first = outbox.claim_reports(3)
    assert [row.body for row in first] == [f'{{"minute": {i}}}' for i in range(3)]
    assert outbox.claim_reports(3)[0].body == '{"minute": 3}'
    outbox.unclaim_reports_from(first[1].seq)
    assert [row.body for row in outbox.claim_reports(10)] == [
        '{"minute": 1}', '{"minute": 2}', '{"minute": 3}']
    assert outbox.ack_reports([first[0].seq, first[1].seq]) == 2
    assert (outbox.report_depth, outbox.depth) == (2, 0)
    assert outbox.put_reports(f'{{"minute": {i}}}' for i in range(4, 8)) == 1
    outbox.close()
    reopened = Outbox(tmp_path / "o.db", max_events=100)  # a restart hands them out again
    assert reopened.report_depth == 5
    assert reopened.reports_dropped == 1
    assert reopened.claim_reports(10)[0].body == '{"minute": 3}'
    reopened.close()
