"""askr/jobs: the scheduler's clock and the queue worker's command line (pure parts)."""

from __future__ import annotations

from pathlib import Path

from askr import config
from askr.jobs.queue import QueueWorkers
from askr.jobs.scheduler import next_tick


def test_next_tick_is_the_next_wall_clock_multiple() -> None:
    assert next_tick(1000.0, 60) == 1020.0  # 1020 = 17 * 60
    assert next_tick(1020.0, 60) == 1080.0  # strictly after: a run at :00 is not repeated
    assert next_tick(1020.5, 2) == 1022.0
    assert next_tick(7.2, 0.5) == 7.5


def test_queue_arguments(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    (tmp_path / "q.php").write_text("<?php")
    base = '[server]\nroot = "public"\n[queue]\nscript = "q.php"\n'
    path = tmp_path / "askr.toml"
    path.write_text(base + 'args = ["--tries=3"]\n')
    assert QueueWorkers(config.load(path), print).arguments() == ["--max-jobs=1000", "--max-time=3600",
                                                                  "--tries=3"]
    path.write_text(base + "max_jobs = 0\nmax_time = 0\nworkers = 0\n")
    workers = QueueWorkers(config.load(path), print)
    assert (workers.arguments(), workers.slots) == ([], [])  # no limits; 0 workers: none started
