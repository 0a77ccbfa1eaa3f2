"""A run is alive while its search process keeps a heartbeat, on any host."""

from __future__ import annotations

import os
import socket
import time

from automodel.config import Config
from automodel.evolution.loop import Search
from automodel.process import jobs
from automodel.store import Store

HERE = socket.gethostname()


def test_a_stale_heartbeat_means_interrupted_on_any_host():
    now = 1_000_000.0
    fresh = {"pid": os.getpid(), "host": "another-container", "heartbeat_at": now - 5}
    assert jobs.is_alive(fresh, now=now)
    assert not jobs.is_alive({**fresh, "heartbeat_at": now - jobs.HEARTBEAT_LIMIT_S - 1}, now=now)
    # on its own host a missing process is noticed at once, heartbeat or not
    assert not jobs.is_alive({"pid": 2**22 + 12345, "host": HERE, "heartbeat_at": now}, now=now)


def test_a_run_from_a_vanished_container_can_be_resumed_here(tmp_path):
    """Before heartbeats, a run recorded on another host stayed 'running' for ever and blocked Start."""
    store = Store(tmp_path / "db.json")
    store.create_run(
        "elsewhere",
        Config().to_dict(),
        status="running",
        pid=4242,
        host="old-container",
        heartbeat_at=time.time() - 600,
    )
    (run,) = jobs.reconcile(store)
    assert run["status"] == "interrupted"
    assert jobs.claim_resume(store, "elsewhere")["status"] == "running"


def test_the_search_keeps_its_heartbeat_while_it_runs(tmp_path, monkeypatch):
    beats: list[float] = []

    class Watch(Search):
        def _final_training(self, evaluator):
            beats.append(self.store.get_run(self.run_id)["heartbeat_at"])
            time.sleep(0.3)
            beats.append(self.store.get_run(self.run_id)["heartbeat_at"])
            return "completed"

    config = Config.from_dict({"population": 2, "generations": 1, "epochs": 1, "workers": 1, "device": "cpu"})
    store = Store(tmp_path / "db.json")
    store.create_run("h", config.to_dict())
    search = Watch(config, store, "h")
    search_heartbeat = jobs.Heartbeat
    monkeypatch.setattr(
        "automodel.evolution.loop.Heartbeat", lambda store, run_id: search_heartbeat(store, run_id, every_s=0.05)
    )
    assert search.run() == "completed"
    assert beats[1] > beats[0]
