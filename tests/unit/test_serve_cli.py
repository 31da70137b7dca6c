"""`contender serve`'s shared metrics directory for `--workers N`."""

from __future__ import annotations

from pathlib import Path

import pytest

from contender.cli.serve import metrics_directory


def test_a_directory_it_makes_is_removed_at_exit() -> None:
    with metrics_directory(None) as made:
        assert made.is_dir()
        (made / "counter_123.db").write_bytes(b"x")
    assert not made.exists()


def test_a_given_directory_is_emptied_at_start_and_exit(tmp_path: Path) -> None:
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_1.db").write_bytes(b"an earlier run")
    (given / "keep.txt").write_text("not ours")
    with metrics_directory(str(given)) as directory:
        assert directory == given
        assert not list(given.glob("*.db"))
        (given / "counter_2.db").write_bytes(b"x")
    assert not list(given.glob("*.db"))
    assert (given / "keep.txt").exists()


def test_it_is_removed_even_when_the_server_fails() -> None:
    with pytest.raises(RuntimeError), metrics_directory(None) as made:
        raise RuntimeError("bind failed")
    assert not made.exists()
