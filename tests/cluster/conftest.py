"""The cluster test bed (bed.py) for every test here: one for all of them, as it takes a while to
build (three askr hosts, HAProxy, Redis, network namespaces), stopped after the last test that
uses it (not at the end of the whole session, so it does not idle beside the rest of the suite).
Each test starts with every host running, linked and UP in HAProxy, whatever the test before it
did to them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from bed import Cluster, missing


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report ends with HAProxy's view and every process's last lines."""
    report = yield
    bed = item.funcargs.get("cluster") if hasattr(item, "funcargs") else None
    if report.when == "call" and report.failed and bed is not None:
        try:
            view = str(bed.status())
        except OSError as e:
            view = f"no answer on the stats socket ({e})"
        report.sections.append(("cluster", f"HAProxy: {view}\n{bed.logs()}"))
    return report


_RUNNING: list[Cluster] = []


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem) -> None:
    """After the last test using the bed in a row, stop it."""
    if _RUNNING and "cluster" in getattr(item, "fixturenames", ()) and \
            (nextitem is None or "cluster" not in getattr(nextitem, "fixturenames", ())):
        _RUNNING.pop().close()


@pytest.fixture(scope="session")
def cluster_bed(tmp_path_factory) -> Iterator[Cluster]:
    reason = missing()
    if reason:
        pytest.skip(f"cluster test bed unavailable: {reason}")
    php_modules = subprocess.run(["php", "-m"], capture_output=True, text=True, check=False).stdout.split()
    assert "redis" in php_modules, "PHP's redis extension is missing: apt-get install php8.2-redis"
    with Cluster(tmp_path_factory.mktemp("cluster")) as bed:
        _RUNNING.append(bed)
        yield bed


@pytest.fixture
def cluster(cluster_bed: Cluster) -> Cluster:
    if cluster_bed not in _RUNNING:
        pytest.fail("the cluster bed was stopped after an earlier run of cluster tests; run the "
                    "tests of tests/cluster together (pytest's default order does)")
    for host in cluster_bed.hosts:
        host.ns.set_link(True)
        if host.proc is None or not host.proc.alive():
            host.kill()  # whatever is left of it
            host.start()
            host.wait_ready()
    cluster_bed.wait_all_up()
    return cluster_bed
