"""askr/front/health.py: what a front answers on [server] health_path."""

from __future__ import annotations

import json

from askr.front import health


def test_ready_is_200_with_the_health_json():
    resp = health.answer("ready", workers_connected=2, front_draining=False, head_only=False)
    assert resp.status == 200 and json.loads(resp.body) == {"status": "ready"}
    headers = dict(resp.headers)
    assert headers[b"content-type"] == b"application/json" and headers[b"cache-control"] == b"no-store"
    assert int(headers[b"content-length"]) == len(resp.body) and resp.file_path is None


def test_the_masters_reason_is_passed_on():
    for state in ("booting", "draining", "stopping", "no ready workers"):
        resp = health.answer(state, workers_connected=2, front_draining=False, head_only=False)
        assert resp.status == 503 and json.loads(resp.body) == {"status": "not ready", "reason": state}


def test_the_fronts_own_view_only_lowers_the_answer():
    no_workers = health.answer("ready", workers_connected=0, front_draining=False, head_only=False)
    assert (no_workers.status, json.loads(no_workers.body)["reason"]) == (503, "no ready workers")
    stopping = health.answer("draining", workers_connected=2, front_draining=True, head_only=False)
    assert (stopping.status, json.loads(stopping.body)["reason"]) == (503, "stopping")
    booting = health.answer("booting", workers_connected=2, front_draining=False, head_only=False)
    assert json.loads(booting.body)["reason"] == "booting"  # connected workers do not make it ready


def test_head_keeps_the_length_and_drops_the_body():
    get = health.answer("ready", workers_connected=1, front_draining=False, head_only=False)
    head = health.answer("ready", workers_connected=1, front_draining=False, head_only=True)
    assert head.body == b"" and dict(head.headers)[b"content-length"] == b"%d" % len(get.body)
