"""Queue workers and the scheduler (askr/jobs) under the real master, with the Laravel fixture's
database queue on SQLite and the shipped examples/askr-queue.php and askr-scheduler.php."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest
from askrtest import REPO, admin_status, run_askr, wait_until, write_config
from laravel_fixture import SANDBOX, make_laravel_app, php_ini

QUEUE_SCRIPT = REPO / "examples" / "askr-queue.php"
SCHEDULER_SCRIPT = REPO / "examples" / "askr-scheduler.php"
QUICK_POLL = ["--sleep=0.2"]  # an idle queue worker looks for jobs 5 times a second


@pytest.fixture
def app(tmp_path) -> Path:
    return make_laravel_app(tmp_path / "app")


@pytest.fixture
def start(askr_server, tmp_path, app):
    """start(queue={...}, scheduler={...}, env={...}) -> askr serving the fixture app."""

    def go(queue: dict | None = None, scheduler: dict | None = None, env: dict | None = None, **kw):
        if queue is not None:
            queue = {"script": str(QUEUE_SCRIPT), "args": QUICK_POLL, **queue}
        if scheduler is not None:
            scheduler = {"script": str(SCHEDULER_SCRIPT), **scheduler}
        kw.setdefault("worker", {"ini": php_ini(app)})
        config = write_config(tmp_path, root=app / "public", workers=1, queue=queue, scheduler=scheduler,
                              sandbox=SANDBOX, **kw)
        return askr_server("--config", config, env=env)

    return go


def db_rows(app: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(app / "database" / "database.sqlite", timeout=30) as db:
        return db.execute(sql, params).fetchall()


def dispatch(server, key: str, seconds: float = 0.0) -> None:
    r = httpx.post(f"{server.url}/jobs", params={"key": key, "seconds": seconds}, timeout=30)
    assert r.status_code == 202, r.text


def finished(app: Path, key: str) -> list[tuple]:
    return db_rows(app, "SELECT pid, sapi, code_version FROM job_runs WHERE job_key = ? AND finished_at "
                        "IS NOT NULL", key)


def queue_pids(server) -> list[int]:
    return [q["pid"] for q in admin_status(server)["queue_workers"] if q["pid"]]


def test_a_dispatched_job_runs_in_a_cli_queue_worker(start, app):
    server = start(queue={"workers": 2})
    dispatch(server, "first")
    (pid, sapi, _), = wait_until(lambda: finished(app, "first"), what="the job's row")
    assert sapi == "cli"  # PHP's CLI SAPI, as queue:work expects (pcntl signals)
    workers = admin_status(server)["queue_workers"]
    assert [(q["name"], q["state"]) for q in workers] == [("queue#0", "running"), ("queue#1", "running")]
    assert pid in [q["pid"] for q in workers]  # in-process: the job ran in the worker askr started
    server.wait_for_log(r"\[queue#\d\] .*Processed: +App\\Jobs\\RecordRun")  # its output, tagged
    assert db_rows(app, "SELECT count(*) FROM jobs") == [(0,)]


def test_a_killed_queue_worker_is_respawned_and_no_job_is_lost(start, app):
    # retry_after 3 s: a job whose worker was killed mid-way is handed out again that soon
    server = start(queue={"workers": 2, "args": [*QUICK_POLL, "--tries=5"]}, env={"QUEUE_RETRY_AFTER": "3"})
    keys = [f"job{i}" for i in range(12)]
    for key in keys:
        dispatch(server, key, seconds=0.3)
    victim = wait_until(lambda: db_rows(app, "SELECT pid FROM job_runs LIMIT 1"), what="a job to start")[0][0]
    assert victim in queue_pids(server)
    os.kill(victim, signal.SIGKILL)
    server.wait_for_log(rf"queue#\d \(pid {victim}\) killed by signal 9 .*restarting it")
    wait_until(lambda: all(finished(app, k) for k in keys), timeout=90, what="every job to finish")
    wait_until(lambda: len(queue_pids(server)) == 2, what="two queue workers")
    assert victim not in queue_pids(server)
    assert sum(q["restarts"] for q in admin_status(server)["queue_workers"]) >= 1
    # a job's row goes only after its handler returned, a moment after its job_runs row
    wait_until(lambda: db_rows(app, "SELECT count(*) FROM jobs") == [(0,)], what="the jobs table to empty")
    assert db_rows(app, "SELECT count(*) FROM failed_jobs") == [(0,)]


def test_sigterm_lets_the_running_job_finish_once(start, app):
    server = start(queue={"workers": 1})
    dispatch(server, "long", seconds=3)
    wait_until(lambda: db_rows(app, "SELECT id FROM job_runs WHERE job_key = 'long'"),
               what="the job to start")
    assert server.stop(signal.SIGTERM, timeout=60) == 0
    rows = db_rows(app, "SELECT started_at, finished_at FROM job_runs WHERE job_key = 'long'")
    assert len(rows) == 1  # ran once
    started, ended = rows[0]
    assert ended is not None and ended - started >= 3  # not cut short by the signal
    assert db_rows(app, "SELECT count(*) FROM jobs") == [(0,)]  # done, so deleted: not run again later
    assert "queue#0 (pid" in server.log and "exited with code 0" in server.log


def test_reload_rolls_queue_workers_onto_new_code(start, app):
    server = start(queue={"workers": 1})
    dispatch(server, "before")
    (old_pid, _, version), = wait_until(lambda: finished(app, "before"), what="the first job")
    assert version == "v1"  # and the job class is now loaded in that worker
    version_file = app / "app" / "Support" / "CodeVersion.php"
    version_file.write_text(version_file.read_text().replace("'v1'", "'v2'"))
    r = httpx.post(server.admin_url + "/api/reload", timeout=10)
    assert r.status_code == 202

    def rolled():
        s = admin_status(server)
        queue = s["queue_workers"]
        done = (s["last_reload"] or {}).get("outcome") == "complete"
        return done and [(q["generation"], q["state"]) for q in queue] == [(s["generation"], "running")]

    wait_until(rolled, what="the reload to roll the queue worker")
    assert old_pid not in queue_pids(server)
    server.wait_for_log(rf"queue#0 \(pid {old_pid}\) exited with code 0 after being replaced")
    dispatch(server, "after")
    (new_pid, _, version), = wait_until(lambda: finished(app, "after"), what="the job after the reload")
    assert (version, new_pid != old_pid) == ("v2", True)


def test_scheduler_runs_on_its_interval_and_outlives_a_failing_task(start, app):
    server = start(scheduler={"interval": 2}, env={"FIXTURE_SCHEDULE_FAIL": "1"})

    def ticks(source):
        return db_rows(app, "SELECT at, pid FROM ticks WHERE source = ? ORDER BY at", source)

    sched = wait_until(lambda: (s := admin_status(server)["scheduler"])["runs"] >= 3 and s, what="three runs")
    assert len(ticks("command")) >= 3 and len(ticks("closure")) >= 3
    commands = ticks("command")
    assert len({pid for _, pid in commands}) == len(commands)  # one `artisan fixture:tick` per run
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(commands)]
    assert all(gap > 1 for gap in gaps)  # one per interval, not a burst
    # the failing task is reported each run, and runs go on after it
    server.wait_for_log(r"\[scheduler\] scheduled task failed: .*fixture:fail.*exit status 1")
    assert server.log.count("scheduler run failed: exited with code 1") >= 2
    assert sched["failed_runs"] == sched["runs"]  # every run had the failing task, and still they go on
    assert sched["last_run"]["exit_status"] == 1 and sched["last_run"]["ok"] is False
    code, out = run_askr(["status", "--admin", server.admin_url.removeprefix("http://")])
    assert code == 0
    assert "scheduler: every 2 s; last run" in out and "FAILED (exit status 1)" in out


def test_scheduler_runs_never_overlap(askr_server, tmp_path):
    """A run longer than the interval delays the next one (plain PHP script, no framework)."""
    record = tmp_path / "runs.txt"
    script = tmp_path / "slow-scheduler.php"
    script.write_text(f"""<?php
$f = {str(record)!r};
file_put_contents($f, "start " . microtime(true) . "\\n", FILE_APPEND);
usleep(1500000);
file_put_contents($f, "end " . microtime(true) . "\\n", FILE_APPEND);
""")
    (tmp_path / "public").mkdir()
    server = askr_server("--config", write_config(tmp_path, root=tmp_path / "public", workers=1,
                                                  scheduler={"script": str(script), "interval": 0.5}))

    def events():
        return [line.split() for line in record.read_text().splitlines()] if record.exists() else []

    wait_until(lambda: sum(kind == "end" for kind, _ in events()) >= 3, what="three runs")
    kinds = [kind for kind, _ in events()]
    assert kinds[: len(kinds) // 2 * 2] == ["start", "end"] * (len(kinds) // 2)  # strictly alternating
    server.wait_for_log(r"longer than \[scheduler\] interval")


def test_a_crash_looping_queue_script_backs_off_and_http_keeps_serving(askr_server, tmp_path):
    script = tmp_path / "broken-queue.php"
    script.write_text("<?php fwrite(STDERR, \"cannot connect to the queue\\n\"); exit(1);\n")
    server = askr_server("--config", write_config(tmp_path, workers=1,
                                                  queue={"script": str(script), "workers": 1}))
    server.wait_for_log(r"\[queue#0\] cannot connect to the queue")
    server.wait_for_log(r"queue#0 failed 3 times in a row; next start in 0\.4 s")
    assert httpx.get(server.url + "/hello.php", timeout=30).status_code == 200
    queue = admin_status(server)["queue_workers"][0]
    assert queue["failures"] >= 3 and queue["last_exit"] == "exited with code 1"


def test_a_queue_worker_that_ignores_sigterm_is_killed_after_stop_timeout(askr_server, tmp_path):
    script = tmp_path / "stubborn.php"
    script.write_text("<?php pcntl_signal(SIGTERM, SIG_IGN); echo \"working\\n\"; "
                      "while (true) { sleep(1); }\n")
    server = askr_server("--config", write_config(tmp_path, workers=1,
                                                  queue={"script": str(script), "stop_timeout": 1}))
    server.wait_for_log(r"\[queue#0\] working")
    assert server.stop(signal.SIGTERM, timeout=60) == 0
    assert "still busy 1 s after SIGTERM ([queue] stop_timeout); killing it" in server.log
