"""The on-disk spool: oldest first, survives a restart, capped, crash leftovers cleaned up."""

from __future__ import annotations

import errno
import json
import logging
import os
from datetime import UTC, datetime, timedelta

import pytest

from trainwatch_agent.spool import Spool, SpoolError, sample_key

T0 = datetime(2026, 2, 26, 2, 37, 49, 120000, tzinfo=UTC)


def sample(i: int) -> dict:
    return {"collected_at": (T0 + timedelta(seconds=2 * i)).isoformat(), "cpu_usage_percent": float(i)}


def opened(directory, max_samples: int = 100) -> Spool:
    spool = Spool(directory, max_samples)
    spool.open()
    return spool


def drain(spool: Spool) -> list[int]:
    seen = []
    while (item := spool.oldest()) is not None:
        name, s = item
        seen.append(int(s["cpu_usage_percent"]))
        spool.remove(name)
    return seen


def test_it_gives_samples_back_oldest_first_whatever_the_order_they_came_in(tmp_path):
    spool = opened(tmp_path)
    for i in (3, 1, 2, 0):
        assert spool.put(sample(i))
    assert len(spool) == 4
    assert drain(spool) == [0, 1, 2, 3]
    assert len(spool) == 0
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]


def test_spooled_samples_survive_a_restart(tmp_path):
    spool = opened(tmp_path)
    for i in range(5):
        spool.put(sample(i))
    spool.close()
    again = opened(tmp_path)
    assert len(again) == 5
    assert drain(again) == [0, 1, 2, 3, 4]


def test_a_full_spool_drops_the_oldest_and_says_how_many(tmp_path, caplog):
    spool = opened(tmp_path, max_samples=3)
    with caplog.at_level(logging.WARNING):
        for i in range(5):
            spool.put(sample(i))
    assert len(spool) == 3
    assert spool.dropped == 2
    assert drain(spool) == [2, 3, 4]
    assert "spool full (3 samples): dropped the 1 oldest samples" in caplog.text
    # Once a minute at most: the second drop is counted in the next message, not logged now.
    assert caplog.text.count("spool full") == 1


def test_a_smaller_cap_applies_to_what_was_spooled_before(tmp_path):
    spool = opened(tmp_path)
    for i in range(10):
        spool.put(sample(i))
    spool.close()
    smaller = opened(tmp_path, max_samples=4)
    assert smaller.dropped == 6
    assert drain(smaller) == [6, 7, 8, 9]


def test_a_resent_sample_is_kept_once(tmp_path):
    spool = opened(tmp_path)
    spool.put(sample(1))
    spool.put(sample(1))
    assert len(spool) == 1


def test_it_removes_half_written_and_unreadable_files(tmp_path, caplog):
    spool = opened(tmp_path)
    spool.put(sample(1))
    spool.put(sample(2))
    spool.close()
    (tmp_path / f".tmp-{sample_key(sample(3))}").write_text('{"collected_at": "2026-')  # a crash mid-write
    (tmp_path / sample_key(sample(1))).write_text("garbage")  # a disk error
    again = opened(tmp_path)
    assert len(again) == 2
    assert drain(again) == [2]
    assert "is unreadable" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def test_files_are_whole_json_samples_readable_by_the_owner_only(tmp_path):
    spool = opened(tmp_path)
    spool.put(sample(7))
    (path,) = [p for p in tmp_path.iterdir() if p.suffix == ".json"]
    assert json.loads(path.read_text()) == sample(7)
    assert path.stat().st_mode & 0o077 == 0
    assert path.name == "00001772073483120000.json"  # collected_at in epoch microseconds


def test_a_second_agent_cannot_use_the_same_spool(tmp_path):
    first = opened(tmp_path)
    with pytest.raises(SpoolError, match="another trainwatch-agent is using"):
        opened(tmp_path)
    first.close()
    opened(tmp_path)  # free again once the first one is gone


def test_it_refuses_a_spool_directory_it_cannot_create(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SpoolError, match="cannot use spool directory"):
        opened(tmp_path / "file" / "spool")


def test_a_sample_the_disk_refuses_is_reported_lost_and_leaves_nothing_behind(tmp_path, monkeypatch, caplog):
    spool = opened(tmp_path)
    spool.put(sample(1))

    def disk_full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    assert spool.put(sample(2)) is False
    monkeypatch.undo()
    assert "cannot write to the spool" in caplog.text and "No space left" in caplog.text
    assert len(spool) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", sample_key(sample(1))]


def test_the_oldest_samples_come_as_a_batch_skipping_unreadable_files(tmp_path, caplog):
    spool = opened(tmp_path)
    for i in range(10):
        spool.put(sample(i))
    (tmp_path / sample_key(sample(1))).write_text("{not json")
    os.unlink(tmp_path / sample_key(sample(2)))  # gone behind the spool's back
    batch = spool.oldest_batch(4)
    assert [int(s["cpu_usage_percent"]) for _, s in batch] == [0, 3, 4, 5]
    assert "is unreadable" in caplog.text
    assert len(spool) == 8
    spool.remove_many([name for name, _ in batch])
    assert len(spool) == 4
    assert drain(spool) == [6, 7, 8, 9]
    assert spool.oldest_batch(5) == []
