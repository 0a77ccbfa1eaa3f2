"""The sections of a run's panel below the fitness chart, one tab each: population (with failures),
best model (with downloads), architecture, genes, Pareto front, test results and try the model.
Each is one function that lays out what ``automodel.page.views`` shapes."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import streamlit as st

from automodel.errors import ImageInputError
from automodel.page import views
from automodel.process import jobs
from automodel.store import ACTIVE_STATUSES, Store
from automodel.store.csv_export import records_csv
from automodel.store.records import CandidateRecord, GenerationRecord, RunRecord

TABLE_PAGE_ROWS = 200  # rows of the population table sent to the browser at once
USAGE_SNIPPET = 'from automodel import load_model\nmodel = load_model("{name}")'


@st.cache_data(show_spinner=False, max_entries=64)
def _layer_rows(genome_json: str, input_shape: tuple[int, ...], num_classes: int) -> list[dict]:
    from automodel.evolution.genome import Genome
    from automodel.training.model import layer_table

    return layer_table(Genome.from_dict(json.loads(genome_json)), list(input_shape), max(num_classes, 2))


RUN_TABS = (
    "Population",
    "Best model",
    "Architecture",
    "Which genes matter",
    "Pareto front",
    "Test results",
    "Try the model",
)
RUN_TAB_KEY = "run_tab"  # session state: the label of the open tab


def lazy_expander(label: str, key: str, draw: Callable[[], None], expanded: bool = False) -> None:
    """An expander whose body is computed and sent to the browser only while it is open (a closed
    one costs nothing to redraw). ``label`` is part of its identity: keep it fixed, or it closes."""
    with st.expander(label, expanded=expanded, key=key, on_change="rerun") as section:
        if section.open:
            draw()


def run_tab_labels(run: RunRecord) -> list[str]:
    """The tabs a run has: the Pareto front only when it trades accuracy against a cost."""
    objectives = (run.get("config") or {}).get("objectives") or ["accuracy"]
    return [label for label in RUN_TABS if label != "Pareto front" or len(objectives) > 1]


def run_tabs(
    store: Store, run: RunRecord, records: list[CandidateRecord], frame, generations: list[GenerationRecord], cwd: Path
) -> None:
    """The run's sections as tabs. Only the open tab is computed and sent to the browser, so a
    redraw costs one section, whatever the run's size."""
    labels = run_tab_labels(run)
    if st.session_state.get(RUN_TAB_KEY) not in labels:
        st.session_state.pop(RUN_TAB_KEY, None)
    tabs = st.tabs(labels, key=RUN_TAB_KEY, on_change="rerun")
    sections = {
        "Population": lambda: _population_and_failures(frame, run["run_id"]),
        "Best model": lambda: _best_and_downloads(store, run),
        "Architecture": lambda: architecture_block(run, records),
        "Which genes matter": lambda: genes_block(records, generations),
        "Pareto front": lambda: pareto_block(store, run, records, cwd),
        "Test results": lambda: test_results_block(run),
        "Try the model": lambda: try_block(run),
    }
    for label, tab in zip(labels, tabs):
        if tab.open:
            with tab:
                sections[label]()


def _population_and_failures(frame, run_id: str) -> None:
    st.fragment(population_block)(frame, run_id)
    failures_block(frame)


def _best_and_downloads(store: Store, run: RunRecord) -> None:
    left, right = st.columns([3, 2], gap="large")
    with left:
        best_block(run)
    with right:
        downloads_block(store, run)


def population_block(frame, run_id: str) -> None:
    st.subheader("Population")
    if frame.empty:
        st.caption("No candidate has finished yet.")
        return
    present = sorted({int(g) for g in frame["generation"]}, reverse=True)
    options = [None] + present
    key = f"pop_gen_{run_id}"
    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)
    # "Latest" keeps one label as generations arrive (a browser keeps a chosen option's old label).
    generation = st.selectbox(
        "Generation", options, key=key, format_func=lambda g: "Latest" if g is None else f"Generation {g + 1}"
    )
    shown = present[0] if generation is None else generation
    table = views.population_table(frame, shown)
    caption = f"Generation {shown + 1}: {len(table)} candidates, best first."
    if len(table) > TABLE_PAGE_ROWS:  # a browser need not receive thousands of rows at once
        pages = -(-len(table) // TABLE_PAGE_ROWS)
        page_number = st.number_input("Page", min_value=1, max_value=pages, value=1, key=f"pop_page_{run_id}")
        start = (int(page_number) - 1) * TABLE_PAGE_ROWS
        table = table.iloc[start : start + TABLE_PAGE_ROWS]
        caption += f" Rows {start + 1}–{start + len(table)} (page {int(page_number)} of {pages})."
    st.caption(caption)
    st.container(key="population_table").dataframe(
        table,
        hide_index=True,
        key="population",
        height=table_height(len(table), limit=20),
        column_config={
            "Candidate": st.column_config.NumberColumn("#", width=40),
            "Fitness": st.column_config.ProgressColumn(
                "Validation accuracy", min_value=0.0, max_value=1.0, format="%.4f", width=150
            ),
            "Status": st.column_config.TextColumn("Status", width=105),
            "Architecture": st.column_config.TextColumn("Architecture", width=330),
            "Parameters": st.column_config.NumberColumn("Parameters", format="localized", width=90),
            "Seconds": st.column_config.NumberColumn("Seconds", format="%.1f", width=65),
            "Reason": st.column_config.TextColumn("Reason", width=120),
            "Reused": st.column_config.CheckboxColumn(
                "Reused", width=65, help="Trained before; result taken from the cache."
            ),
        },
    )


def failures_block(frame) -> None:
    """The failed candidates and why, drawn only while their expander is open."""
    failures = views.failures_table(frame)
    if failures.empty:
        if not frame.empty:
            st.caption("No failed candidates so far (out of memory, NaN loss, time limit, too large).")
        return

    def draw() -> None:
        st.caption(f"{len(failures)} candidates failed; the reason of each:")
        st.dataframe(
            failures,
            hide_index=True,
            key="failures",
            height=table_height(len(failures), limit=10),
            column_config={
                "Parameters": st.column_config.NumberColumn(format="localized"),
                "Architecture": st.column_config.TextColumn(width="large"),
            },
        )

    lazy_expander("Failed candidates", "failures_open", draw)  # no count in the label: it would close as it grows


def pareto_block(store: Store, run: RunRecord, records: list[CandidateRecord], cwd: Path) -> None:
    """With several objectives: accuracy against a cost, the front highlighted; any member can be
    finalized (in its own process, started in ``cwd``) and then downloaded."""
    objectives = (run.get("config") or {}).get("objectives") or ["accuracy"]
    if len(objectives) < 2:
        return
    run_id = run["run_id"]
    st.subheader("Pareto front")
    frame = views.pareto_frame(records, objectives)
    if frame.empty:
        st.caption("Appears when the first candidate has trained fully.")
        return
    cost = st.selectbox(
        "Cost", objectives[1:], key=f"pareto_cost_{run_id}", format_func=lambda c: views.COST_LABELS[c][1]
    )
    st.altair_chart(views.pareto_chart(frame, cost), key=f"pareto_chart_{run_id}_{cost}")
    members = frame[frame["On the front"]].sort_values("Accuracy", ascending=False)
    labels = {
        row.key: f"{row.Accuracy:.4f} · {int(row.params or 0):,} parameters · "
        f"{(row.macs or 0) / 1e6:.1f} M MACs"
        + (f" · {row.latency_ms:.2f} ms" if row.latency_ms == row.latency_ms and row.latency_ms else "")
        + f" · {row.Architecture}"
        for row in members.itertuples()
    }
    st.caption(
        f"{len(members)} of {len(frame)} fully trained candidates are on the front: no other is both more "
        "accurate and cheaper. Choose one to train it on train + validation and test it."
    )
    key = st.selectbox(
        "Member of the front", list(labels), format_func=lambda k: labels[k], key=f"pareto_member_{run_id}"
    )
    if key is None:
        return
    done = (run.get("finalized") or {}).get(key)
    claim = jobs.finalizing(run).get(key)
    if done and Path(done["path"]).is_file():
        a, b = st.columns(2)
        a.metric("Test accuracy (finalized)", views.fmt_fitness(done["test_accuracy"]))
        b.metric("Validation accuracy", views.fmt_fitness(done["val_accuracy"]))
        left, right = st.columns(2)
        left.download_button(
            "This model (.pt)",
            data=_read_bytes(done["path"]),
            file_name=f"{run_id}-{key}.pt",
            mime="application/octet-stream",
            key=f"download_member_pt_{key}",
            on_click="ignore",
            width="stretch",
        )
        right.download_button(
            "This model (ONNX)",
            data=_onnx_bytes(done["path"]),
            file_name=f"{run_id}-{key}.onnx",
            mime="application/octet-stream",
            key=f"download_member_onnx_{key}",
            on_click="ignore",
            width="stretch",
        )
    elif claim:
        progress = [p for p in store.progress(run_id) if p.get("worker") == f"finalize-{key}"]
        where = f" · epoch {progress[0].get('epoch')}/{progress[0].get('epochs')}" if progress else ""
        st.info(f"Finalizing this candidate{where}…")
        if st.button("Stop finalizing", key=f"stop_finalize_{key}"):
            jobs.stop_finalize(claim)
            st.rerun()
    elif st.button(
        "Finalize this candidate",
        key=f"finalize_{key}",
        type="primary",
        disabled=run.get("status") in ACTIVE_STATUSES,
        help="Trains it for the final epochs on train + validation and scores it once on the test "
        "split, in its own process (it goes on if you close the tab)."
        + (" Available when the search has ended." if run.get("status") in ACTIVE_STATUSES else ""),
    ):
        jobs.start_finalize(store, run_id, key, cwd=cwd)
        st.rerun(scope="app")


def architecture_block(run: RunRecord, records: list[CandidateRecord]) -> None:
    """The best network, or a candidate of the generation shown in the population table, drawn as a
    diagram, with its learning curve."""
    st.subheader("Architecture")
    if not run.get("best_genome") or not run.get("input_shape"):
        st.caption("Appears when the first candidate has trained fully.")
        return
    run_id = run["run_id"]
    trained = [r for r in records if not r.get("cached") and r.get("genome")]
    present = sorted({r["generation"] for r in trained})
    generation = st.session_state.get(f"pop_gen_{run_id}")
    generation = present[-1] if generation is None and present else generation
    candidates = {f"{r['generation']}-{r['index']}": r for r in trained if r["generation"] == generation}
    choices = ["best", *candidates]
    best = next((r for r in records if r["key"] == run.get("best_key") and not r.get("cached")), None)

    def label(choice: str) -> str:
        if choice == "best":
            return f"The best · {run.get('best_summary')}"
        r = candidates[choice]
        return f"Gen {r['generation'] + 1} · #{r['index'] + 1} · {r['fitness']:.4f} · {r['summary']}"

    key = f"arch_pick_{run_id}"
    if st.session_state.get(key) not in choices:
        st.session_state.pop(key, None)
    choice = (
        st.selectbox(
            "Network",
            choices,
            format_func=label,
            key=key,
            help="The best, or any candidate of the generation chosen in the population table.",
        )
        or "best"
    )
    record = best if choice == "best" else candidates[choice]
    genome = run["best_genome"] if choice == "best" else candidates[choice]["genome"]
    rows = _layer_rows(json.dumps(genome, sort_keys=True), tuple(run["input_shape"]), len(run.get("classes") or []))
    left, right = st.columns([1, 1], gap="large")
    with left:
        st.graphviz_chart(views.architecture_dot(rows), width="stretch")
    with right:
        shown: list[Mapping[str, Any]] = list({id(r): r for r in (record, best) if r is not None}.values())
        labels = ["this network" if r is record else "the best" for r in shown]
        final = views.final_training_curve(run) if choice == "best" else None
        if final is not None:
            shown, labels = [*shown, final], [*labels, views.FINAL_CURVE]
        curves = views.learning_curves(shown, labels)
        if curves.empty:
            st.caption("No learning curve recorded for this candidate.")
        else:
            st.caption(
                "Learning curve: validation accuracy and training loss after each epoch"
                + (
                    "; the final training (on training and validation images, so no validation accuracy) "
                    "shows its training loss."
                    if final is not None
                    else "."
                )
            )
            accuracy, loss = views.learning_curve_charts(curves)
            st.altair_chart(accuracy, key=f"curves_acc_{run_id}")
            st.altair_chart(loss, key=f"curves_loss_{run_id}")


def genes_block(records: list[CandidateRecord], generations: list[GenerationRecord]) -> None:
    st.subheader("Which genes matter")
    frame = views.gene_frame(records)
    if len(frame) < 3:
        st.caption("Appears when a few candidates have trained.")
        return
    gene = st.selectbox("Gene", list(views.GENES), format_func=lambda g: views.GENES[g][0], key="gene_pick")
    st.altair_chart(views.gene_chart(frame, gene), key="gene_chart")
    st.caption(
        "Validation accuracy of every candidate trained to the run's full budget, by the value of the chosen "
        "gene; red ticks are medians. Below: how varied each generation was (0: all alike)."
    )
    if generations:
        st.altair_chart(views.diversity_chart(generations), key="diversity_chart")


def test_results_block(run: RunRecord) -> None:
    st.subheader("Test results")
    report = run.get("test_report")
    if not report:
        st.caption("Appears when the final model has been trained and scored once on the test split.")
        return
    st.caption(
        f"The final model on the {sum(c['count'] for c in report['per_class'])} test images: "
        f"accuracy {views.fmt_fitness(report.get('accuracy'))}, {report.get('misclassified_total', 0)} "
        "misclassified."
    )
    left, right = st.columns([2, 3], gap="large")
    with left:
        st.dataframe(
            views.per_class_frame(report),
            hide_index=True,
            key="per_class",
            height=table_height(len(report["per_class"]), limit=12),
            column_config={
                "Accuracy": st.column_config.ProgressColumn("Accuracy", min_value=0.0, max_value=1.0, format="%.3f")
            },
        )
    with right:
        st.altair_chart(views.confusion_chart(report), key="confusion_chart")
    gallery = [m for m in report.get("misclassified", []) if m.get("path") and Path(m["path"]).is_file()]
    if gallery:
        st.caption("Misclassified test images the model was surest about (true → predicted, confidence):")
        columns = st.columns(8)
        for n, item in enumerate(gallery[:24]):
            columns[n % 8].image(
                item["path"], caption=f"{item['true']} → {item['predicted']} ({item['confidence']:.0%})", width=72
            )


@st.cache_resource(show_spinner=False, max_entries=4)
def _model_for(path: str, mtime: float):
    from automodel import load_model

    return load_model(path)


def try_block(run: RunRecord) -> None:
    st.subheader("Try the model")
    path = run.get("best_model_path")
    if not path or not Path(path).is_file():
        st.caption("Appears when the first candidate has trained fully.")
        return
    which = "the final model" if run.get("stage") == "done" else "the best model so far"
    files = st.file_uploader(
        f"Images to classify with {which}",
        accept_multiple_files=True,
        key=f"try_{run['run_id']}",
        help="Each image is converted and resized as the training images were.",
    )
    if not files:
        return
    from automodel.training.report import image_tensor, top_predictions

    model = _model_for(path, Path(path).stat().st_mtime)
    for upload in files:
        try:
            x = image_tensor(upload.getvalue(), model.input_shape, name=upload.name)
        except ImageInputError as exc:
            st.error(str(exc))
            continue
        top = top_predictions(model, x)
        left, right = st.columns([1, 5])
        left.image(upload.getvalue(), width=72)
        right.markdown(
            f"**{upload.name}** — Prediction: "
            + " · ".join(f"**{c}** {p:.1%}" if i == 0 else f"{c} {p:.1%}" for i, (c, p) in enumerate(top))
        )


def best_block(run: RunRecord) -> None:
    st.subheader("Best architecture")
    with st.container():
        _best_body(run)


def _best_body(run: RunRecord) -> None:
    genome = run.get("best_genome")
    if not genome:
        st.caption("Appears when the first candidate finishes.")
        return
    test = run.get("test_accuracy")
    a, b, c = st.columns(3)
    a.metric("Validation accuracy", views.fmt_fitness(run.get("best_fitness")))
    b.metric(
        "Test accuracy",
        views.fmt_fitness(test),
        help="Measured once, on the held-out test split, after the final training.",
    )
    generation = run.get("best_generation")
    c.metric(
        "Found in", f"gen {generation + 1} · #{(run.get('best_index') or 0) + 1}" if generation is not None else "—"
    )
    st.code(run.get("best_summary") or "", language=None, wrap_lines=True)
    with st.container():
        if run.get("input_shape"):
            rows = _layer_rows(
                json.dumps(genome, sort_keys=True), tuple(run["input_shape"]), len(run.get("classes") or [])
            )
            layers = views.layer_frame(rows)
            st.container(key="layer_table").dataframe(
                layers,
                hide_index=True,
                key="layers",
                height=table_height(len(layers)),
                column_config={"Parameters": st.column_config.NumberColumn(format="localized")},
            )
    with st.container():
        if test is None:
            st.caption(
                "Test accuracy is measured once the search ends and the best architecture is trained "
                f"for {(run.get('config') or {}).get('final_epochs', '?')} final epochs."
            )


def table_height(rows: int, limit: int = 36) -> int:
    """Pixels that show ``rows`` rows without a scroll bar (up to ``limit`` rows)."""
    return 38 + 35 * min(max(rows, 1), limit)


def downloads_block(store: Store, run: RunRecord) -> None:
    st.subheader("Downloads")
    run_id = run["run_id"]
    model_path = run.get("best_model_path") or ""
    has_model = bool(model_path) and Path(model_path).is_file()
    final = run.get("stage") == "done"
    label = "final model" if final else "best model so far"
    st.download_button(
        f"Best model (.pt, {label})",
        data=_read_bytes(model_path) if has_model else b"",
        file_name=f"{run_id}.pt",
        mime="application/octet-stream",
        key="download_pt",
        disabled=not has_model,
        on_click="ignore",
        width="stretch",
    )
    shape = "×".join(str(size) for size in run.get("input_shape") or []) or "C×H×W"
    st.code(USAGE_SNIPPET.format(name=f"{run_id}.pt"), language="python", wrap_lines=True)
    st.caption(
        f"`model(images)` takes floats N×{shape} in [0, 1] and returns logits over "
        f"{len(run.get('classes') or []) or 'the'} classes (`model.classes`)."
    )
    st.download_button(
        "ONNX export",
        data=_onnx_bytes(model_path) if has_model else b"",
        file_name=f"{run_id}.onnx",
        mime="application/octet-stream",
        key="download_onnx",
        disabled=not has_model,
        on_click="ignore",
        width="stretch",
        help="Exported when you click (a few seconds); dynamic batch size, input 'images'.",
    )
    st.download_button(
        "Candidates (.csv)",
        data=_csv_bytes(store, run_id),
        file_name=f"{run_id}-candidates.csv",
        mime="text/csv",
        key="download_csv",
        on_click="ignore",
        width="stretch",
    )
    tracking = views.tracking_caption(run)
    if tracking:
        st.caption(tracking)


def _read_bytes(path: str):
    def read() -> bytes:
        return Path(path).read_bytes()

    return read


def _onnx_bytes(model_path: str):
    def export() -> bytes:
        from automodel.training.export import export_onnx

        out = Path(model_path).with_suffix(".onnx")  # beside the checkpoint, in the run's folder
        if not out.is_file() or out.stat().st_mtime < Path(model_path).stat().st_mtime:
            export_onnx(model_path, out)
        return out.read_bytes()  # self-contained: the weights are inside the file

    return export


def _csv_bytes(store: Store, run_id: str):
    def build() -> bytes:
        return records_csv(store.individuals(run_id))

    return build
