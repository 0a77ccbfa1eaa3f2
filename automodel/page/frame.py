"""The page's frame: database, run picker, live status, the run's panel and all runs.

``streamlit run app.py`` calls :func:`main` on every rerun. The page never trains: Start launches
``python -m automodel run --run-id ...`` as its own process and the page redraws itself from
the store about once a second (``st.fragment(run_every=1)``) while the run is active. The run's
pid lives in the store, so closing the tab does not stop it and any browser sees it live.
Data shaping lives in :mod:`automodel.page.views`; the settings form in :mod:`automodel.page.form`,
the run's sections in :mod:`automodel.page.sections`, access in :mod:`automodel.page.access`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import streamlit as st

from automodel.page import access as page_access
from automodel.page import form as page_form
from automodel.page import sections as page_sections
from automodel.page import views
from automodel.process import jobs
from automodel.store import ACTIVE_STATUSES, Store, StoreError, default_db_path
from automodel.store.records import RunRecord

ROOT = Path.cwd()  # where search processes start; set by main() from app.py's folder
DATA_DIR = ROOT / "data"  # where built-in datasets are read or downloaded
LAUNCH_GRACE_S = 90.0  # how long a launched search may take to show up in the store


def _flash(kind: str, text: str) -> None:
    """A message to show once on the next full redraw."""
    st.session_state.setdefault("_flash", []).append((kind, text))


def _show_flash() -> None:
    for kind, text in st.session_state.pop("_flash", []):
        getattr(st, kind)(text)


@st.cache_resource(show_spinner=False)
def _store_for(path: str) -> Store:
    # One Store per file and server: it keeps the parsed tables while the bytes are unchanged.
    return Store(path)


def _db_path() -> Path:
    return Path(st.session_state.get("db_path") or default_db_path()).expanduser().resolve()


@st.cache_resource(show_spinner=False)
def _warm_imports() -> threading.Thread:
    """Import torch (2-3 s) in the background once per server, so the first layer table is quick."""

    def work() -> None:
        try:
            import automodel.training.model  # noqa: F401
        except Exception:  # noqa: BLE001 - only a warm-up; the real import reports any problem
            pass

    thread = threading.Thread(target=work, name="automodel-warm-imports", daemon=True)
    thread.start()
    return thread


def sidebar_database() -> Store | None:
    """The database picker; None (with the error shown) when the file cannot be used."""
    st.divider()
    st.text_input(
        "Database file",
        key="db_path",
        help="TinyDB file of runs (the command line's --db). A damaged file is never overwritten.",
    )
    try:
        store = _store_for(str(_db_path()))
        store.list_runs()
    except StoreError as exc:
        st.session_state["_db_error"] = str(exc)
        return None
    st.session_state.pop("_db_error", None)
    return store


def _launching_for(run_id: str) -> jobs.Launch | None:
    pending = st.session_state.get("launching")
    return pending if pending is not None and pending.run_id == run_id else None


def _settle_launch(store: Store, run: RunRecord) -> bool:
    """Whether a search this session launched for ``run`` is still on its way to the store."""
    pending = _launching_for(run["run_id"])
    if pending is None:
        return False
    waiting, message = jobs.settle_launch(store, run, pending, LAUNCH_GRACE_S)
    if not waiting:
        st.session_state.pop("launching", None)
    if message:
        _flash("error", message)
    return waiting


def run_panel(db_path: str, run_id: str, live: bool) -> None:
    """Status, buttons, chart, tables and downloads of one run (the live fragment's body).

    Every part that is drawn only sometimes sits in a container of its own, so the parts after it
    keep their places from one redraw to the next (see the note in ``main``).
    """
    store = _store_for(db_path)
    jobs.reap_children()
    problem_slot = st.container()
    try:
        runs = jobs.reconcile(store)
        run = next((r for r in runs if r["run_id"] == run_id), None)
        if run is None:
            problem_slot.warning(f"Run {run_id} is no longer in {store.path}.")
            return
        starting = _settle_launch(store, run)
        if live and not starting and not _busy(run):
            st.rerun()  # the run (or a finalization) has ended: redraw the whole page once, without the timer
        progress = store.progress(run_id) if run.get("status") in ACTIVE_STATUSES else []
        generations = store.generations(run_id)
        records = store.individuals(run_id)
    except StoreError as exc:
        problem_slot.error(str(exc))
        return
    view = views.status_view(run, progress, generations, now=time.time(), starting=starting)
    frame = views.individuals_frame(records)
    config = run.get("config") or {}

    _status_block(store, run, view, others=runs)
    with st.container():
        caption = views.dataset_caption(run)
        if caption:
            st.caption(f"Dataset **{views.dataset_name(config.get('dataset'))}** — {caption}")
    with st.container():
        plan = views.plan_caption(run)
        if plan:
            st.caption(plan)

    st.subheader("Fitness per generation")
    with st.container():
        if frame.empty and not generations:
            st.info("The first candidates are training; their validation accuracy appears here as each one finishes.")
        else:
            chart = views.fitness_chart(
                generations,
                frame,
                total_generations=run.get("total_generations") or config.get("generations"),
                population=config.get("population"),
            )
            st.altair_chart(chart, key=f"fitness_chart_{run_id}")
            st.caption(views.chart_caption(frame))
    page_sections.run_tabs(store, run, records, frame, generations, ROOT)


def _status_block(store: Store, run: RunRecord, view: views.StatusView, others: list[RunRecord]) -> None:
    run_id = run["run_id"]
    with st.container(border=True, key="status"):
        st.markdown(view.headline)
        with st.container():
            for fraction, text in view.bars:
                st.progress(fraction, text=text)
        with st.container():
            if view.note:
                getattr(st, view.note_kind)(view.note)
        a, b, c = st.columns([1, 1, 4])
        stop = a.button(
            "Stop",
            key="stop",
            disabled=run.get("status") != "running" and not view.state == "starting",
            width="stretch",
            help="Stop the search (within a few seconds); Resume continues it.",
        )
        resume = b.button(
            "Resume",
            key="resume",
            disabled=run.get("status") not in views.RESUMABLE or view.active,
            width="stretch",
            help="Continue from the last recorded candidate.",
        )
        c.caption(f"Command line: `python -m automodel show {run_id} --db {store.path}`")
    if stop:
        _stop(store, run_id)
    if resume:
        _resume(store, run_id, others)


def _stop(store: Store, run_id: str) -> None:
    with st.spinner("Stopping the search…"):
        run = jobs.stop_search(store, run_id, _launching_for(run_id))
    if run.get("status") in ACTIVE_STATUSES:
        _flash("warning", f"Run {run_id} is still {run.get('status')}; it stops when the current batch ends.")
    else:
        _flash("success", f"Run {run_id} {run.get('status')}.")
    st.session_state.pop("launching", None)
    st.rerun()


def _resume(store: Store, run_id: str, runs: list[RunRecord]) -> None:
    try:
        st.session_state["launching"] = jobs.resume_search(store, run_id, data_dir=DATA_DIR, cwd=ROOT)
    except StoreError as exc:  # atomic claim: a second tab or terminal cannot resume it too
        _flash("error", views.sentence(str(exc)))
    st.rerun()


def _watch_for_changes(db_path: str, signature: tuple) -> None:
    """Fragment body while nothing is live: redraw the page when a run starts or ends elsewhere."""
    try:
        runs = jobs.reconcile(_store_for(db_path))
    except StoreError:
        return
    if _signature(runs) != signature:
        st.rerun()


def _signature(runs: list[RunRecord]) -> tuple:
    return tuple(
        (
            r["run_id"],
            r.get("status"),
            r.get("generations_done"),
            r.get("stage"),
            tuple(sorted(r.get("finalizing") or {})),
            tuple(sorted(r.get("finalized") or {})),
        )
        for r in runs
    )


def _busy(run: RunRecord) -> bool:
    return run.get("status") in ACTIVE_STATUSES or bool(jobs.finalizing(run))


def runs_block(store: Store, runs: list[RunRecord]) -> None:
    """All runs of the database in one table, and two or more of them compared on one chart; drawn
    only while its expander is open."""
    page_sections.lazy_expander("All runs and comparison", "all_runs", lambda: _runs_table_and_comparison(store, runs))


def _runs_table_and_comparison(store: Store, runs: list[RunRecord]) -> None:
    st.caption(f"{len(runs)} runs in this database.")
    st.dataframe(
        views.runs_table(runs),
        hide_index=True,
        key="runs_table",
        height=page_sections.table_height(len(runs), 10),
        column_config={
            "Best validation": st.column_config.NumberColumn(format="%.4f"),
            "Test": st.column_config.NumberColumn(format="%.4f"),
            "Candidates": st.column_config.NumberColumn(format="localized"),
        },
    )
    if len(runs) < 2:
        return
    st.subheader("Compare runs")
    labels = {r["run_id"]: views.run_label(r) for r in runs}
    chosen = st.multiselect(
        "Runs to compare",
        list(reversed(list(labels))),
        key="compare",
        format_func=lambda rid: labels.get(rid, rid),
        max_selections=6,
        placeholder="Pick two or more runs",
    )
    with st.container():
        if not chosen:
            st.caption("Pick runs to draw their best (solid) and mean (dashed) validation accuracy per generation.")
        else:
            curves = {rid: store.generations(rid) for rid in chosen}
            st.altair_chart(views.compare_chart(curves), key="compare_chart")
            st.caption("Solid: the best validation accuracy of each generation; dashed: the generation's mean.")


def _run_settings(store: Store, run: RunRecord, db_path: str) -> None:
    run_id = run["run_id"]
    st.json(run.get("config") or {}, expanded=False)
    st.caption(f"Resume from a terminal: `python -m automodel resume {run_id} --db {db_path}`")
    if run.get("status") in ("failed", "interrupted"):
        tail = jobs.log_tail(jobs.run_dir_for(store, run_id) / "search.log")
        if tail:
            st.caption("End of the search log")
            st.code(tail, language=None)


def main(root: Path) -> None:
    """Draw the page; ``root`` is the folder of app.py (its ``data/`` holds the bundled datasets)."""
    global ROOT, DATA_DIR
    ROOT, DATA_DIR = root, root / "data"
    st.set_page_config(page_title="AutoModel", page_icon="🧬", layout="wide")
    if not page_access.password_gate():
        return
    _warm_imports()
    page_form.defaults_into_state()
    page_form.conditional_defaults()
    page_form.keep_form_state()
    with st.sidebar:
        form_area = st.container()
        db_area = st.container()
    with db_area:
        store = sidebar_database()
    with form_area:
        page_form.sidebar_form(store, DATA_DIR, ROOT)
    _main_area(store)


def _main_area(store: Store | None) -> None:
    st.title("AutoModel")
    st.caption(
        "Evolves a convolutional network for an image dataset with a genetic algorithm. "
        "Set up a search in the sidebar and press **Start**; the search runs on in its own process "
        "when you close this tab."
    )
    # One fixed slot per part, whatever is shown: while a fragment redraws every second, Streamlit
    # may skip removing elements of the previous full run, and an element that moved would then
    # show twice. In fixed slots a part can only be replaced in place.
    flash_slot, picker_slot, notice_slot, panel_slot, watch_slot, settings_slot, compare_slot = (
        st.container() for _ in range(7)
    )
    with flash_slot:
        _show_flash()
    if store is None:
        with notice_slot:
            st.error(st.session_state.get("_db_error", "The database cannot be used."))
            st.info("Pick another file in the sidebar's **Database file** box; the damaged one is left untouched.")
        return
    try:
        runs = jobs.reconcile(store)
    except StoreError as exc:
        notice_slot.error(str(exc))
        return
    db_path = str(store.path)
    if not runs:
        notice_slot.info(
            "No runs in this database yet. The defaults are the **Quick demo**: bundled digits on "
            "the CPU, about a minute — press **Start** in the sidebar."
        )
        with watch_slot:
            st.fragment(run_every=2)(_watch_for_changes)(db_path, _signature(runs))
        return

    newest_first = [r["run_id"] for r in reversed(runs)]
    by_id = {r["run_id"]: r for r in runs}
    active = next((r for r in runs if r.get("status") in ACTIVE_STATUSES), None)
    if st.session_state.get("run_pick") not in by_id:
        st.session_state["run_pick"] = active["run_id"] if active else newest_first[0]
    run_id = picker_slot.selectbox(
        "Run", newest_first, key="run_pick", format_func=lambda rid: views.run_label(by_id[rid])
    )
    if active and active["run_id"] != run_id:
        with notice_slot:
            st.info(f"Run **{active['run_id']}** is {active['status']}.")
            st.button(
                "Show the active run",
                key="show_active",
                on_click=lambda rid=active["run_id"]: st.session_state.update(run_pick=rid),
            )

    run = by_id[run_id]
    live = _busy(run) or _launching_for(run_id) is not None
    # Always a fragment, so the panel keeps its shape when a run goes live or ends; only the timer
    # differs. Idle, a cheap watcher redraws the page when a run starts or ends elsewhere.
    with panel_slot:
        st.fragment(run_every=1 if live else None)(run_panel)(db_path, run_id, live)
    if not live:
        with watch_slot:
            st.fragment(run_every=2)(_watch_for_changes)(db_path, _signature(runs))

    with settings_slot:  # the JSON viewer is slow to start in a browser: drawn only when opened
        page_sections.lazy_expander("Run settings", "run_settings", lambda: _run_settings(store, run, db_path))
    with compare_slot:
        runs_block(store, runs)
