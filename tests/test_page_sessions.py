"""Page sessions come and go; the search does not: server restarts and two sessions at once."""

from __future__ import annotations

import threading

import pytest
from streamlit.testing.v1 import AppTest

from automodel.page import views
from automodel.process import jobs
from automodel.store import ACTIVE_STATUSES, Store

pytestmark = pytest.mark.slow  # real processes, servers or a browser


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def test_two_sessions_pressing_start_together_start_exactly_one_run(db, launched, new_page):
    first, second = new_page(), new_page()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def press(at: AppTest) -> None:
        try:
            barrier.wait(timeout=10)
            at.sidebar.button(key="start").click().run()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=press, args=(at,)) for at in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(Store(db).list_runs()) == 1 and len(launched) == 1
    refusals = [text for at in (first, second) for text in texts(at.sidebar.error) if "is still running" in text]
    assert len(refusals) == 1


def test_a_page_server_restart_leaves_the_search_running_and_the_new_page_shows_it(db, monkeypatch, new_page, wait_for):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    at = new_page()
    at.sidebar.selectbox(key="budget_choice").set_value(views.budget_choice_for(None)).run()  # exactly these
    for key, value in (("cfg_population", 3), ("cfg_generations", 2), ("cfg_epochs", 2), ("cfg_final_epochs", 1)):
        at.sidebar.number_input(key=key).set_value(value).run()
    at.sidebar.button(key="start").click().run()
    store = Store(db)
    (run,) = store.list_runs()
    del at  # the page's server goes away; the search runs in its own session
    wait_for(lambda: store.individuals(run["run_id"]), 60, "the search's first candidate")
    fresh = new_page()  # a new server and a new browser tab
    assert run["run_id"] in fresh.markdown[0].value and "running" in fresh.markdown[0].value
    pid = store.get_run(run["run_id"])["pid"]
    assert pid and jobs.pid_is_search(pid)
    wait_for(lambda: store.get_run(run["run_id"])["status"] not in ACTIVE_STATUSES, 120, "the search to end")
    assert store.get_run(run["run_id"])["status"] == "completed"
    fresh.run()
    assert "completed" in fresh.markdown[0].value
