"""The insight tabs: the architecture diagram, learning curves, which genes matter, diversity, test results."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import altair as alt
import pandas as pd

from automodel.page.views.charts import thin_points
from automodel.page.views.labels import gen_label

LABEL_WIDTH = 34  # characters per line of a diagram node, so that the diagram fits half the page's width


def architecture_dot(rows: Sequence[Mapping[str, Any]], title: str = "") -> str:
    """``automodel.training.model.layer_table`` rows → a Graphviz DOT diagram: layers top to bottom with
    their output shapes and parameters; a residual block's skip is drawn as its own edge around it."""

    def esc(text: str) -> str:
        return str(text).replace("\\", "\\\\").replace('"', '\\"')

    lines = [
        "digraph architecture {",
        '  graph [rankdir=TB, fontname="Helvetica", fontsize=11, nodesep=0.25, '
        f'ranksep=0.25, label="{esc(title)}", labelloc=t];',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, fillcolor="#eef3fa", '
        'color="#4e79a7"];',
        '  edge [color="#555555", arrowsize=0.6];',
    ]
    colours = {"residual": "#fdebd3", "separable": "#e3f2e1", "plain": "#eef3fa"}
    for i, row in enumerate(rows):
        params = int(row.get("parameters") or 0)
        # Lines are joined with DOT's own line break (a backslash and n in the DOT text), after each
        # line is escaped: escaping the joined label would print the backslash.
        text_lines = textwrap.wrap(str(row["layer"]), LABEL_WIDTH) or [""]
        text_lines.append(f"{row['output_shape']}" + (f" · {params:,} params" if params else ""))
        label = "\\n".join(esc(line) for line in text_lines)
        fill = colours.get(str(row.get("kind")), "#f4f4f4" if i else "#ffffff")
        lines.append(f'  n{i} [label="{label}", fillcolor="{fill}"];')
        if i:
            lines.append(f"  n{i - 1} -> n{i};")
    for i, row in enumerate(rows):
        if row.get("skip") and i + 1 < len(rows):
            how = "skip (1×1 conv)" if "via 1×1" in str(row["layer"]) else "skip"
            lines.append(
                f'  n{i - 1} -> n{i + 1} [style=dashed, color="#f28e2b", label="{esc(how)}", '
                "fontsize=9, constraint=false];"
            )
    lines.append("}")
    return "\n".join(lines)


def learning_curves(records: Iterable[Mapping[str, Any]], labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Per epoch of each record with a learning curve: its label, epoch, validation accuracy and
    training loss (from the ``history`` every candidate records)."""
    rows = []
    for n, r in enumerate(records):
        label = labels[n] if labels else f"gen {gen_label(r['generation'])} · #{int(r['index']) + 1}"
        for point in r.get("history") or []:
            rows.append(
                {
                    "Candidate": label,
                    "Epoch": int(point["epoch"]),
                    "Validation accuracy": point.get("val_accuracy"),
                    "Training loss": point.get("train_loss"),
                }
            )
    return pd.DataFrame.from_records(rows, columns=["Candidate", "Epoch", "Validation accuracy", "Training loss"])


FINAL_CURVE = "final training"


def final_training_curve(run: Mapping[str, Any]) -> dict[str, Any] | None:
    """The final training's learning curve as a record ``learning_curves`` can draw: its training
    loss per epoch. It trains on training + validation images, so it has no validation accuracy to
    show (its one score is the test accuracy, shown with the test results). None before it ran."""
    history = run.get("final_history") or []
    points = [
        {"epoch": int(p["epoch"]), "train_loss": p.get("train_loss"), "val_accuracy": None}
        for p in history
        if p.get("epoch") is not None and p.get("train_loss") is not None
    ]
    return {"history": points} if points else None


def learning_curve_charts(curves: pd.DataFrame, height: int = 260) -> tuple[alt.Chart, alt.Chart]:
    """Validation accuracy and training loss per epoch, one line per candidate (two charts). The
    legend sits on the right: below the plot, Streamlit's layout takes its room out of the plot's
    height, which left a strip a few pixels tall."""
    base = alt.Chart(curves).encode(
        x=alt.X("Epoch:Q", axis=alt.Axis(tickMinStep=1, format="d")),
        color=alt.Color("Candidate:N", legend=alt.Legend(orient="right", title=None)),
    )
    accuracy = (
        base.mark_line(point=True)
        .encode(
            y=alt.Y("Validation accuracy:Q", scale=alt.Scale(zero=False)),
            tooltip=["Candidate", "Epoch", alt.Tooltip("Validation accuracy:Q", format=".4f")],
        )
        .transform_filter("isValid(datum['Validation accuracy'])")
        .properties(height=height)
    )
    loss = (
        base.mark_line(point=True)
        .encode(
            y=alt.Y("Training loss:Q", scale=alt.Scale(zero=False)),
            tooltip=["Candidate", "Epoch", alt.Tooltip("Training loss:Q", format=".4f")],
        )
        .properties(height=height)
    )
    return accuracy, loss


GENES = {  # name → (label, how to read it from a genome dict)
    "blocks": ("Convolution blocks", lambda g: len(g.get("conv") or [])),
    "head": ("Head", lambda g: g.get("head", "flatten")),
    "optimizer": ("Optimizer", lambda g: g.get("optimizer")),
    "learning_rate": (
        "Learning rate (log₁₀, rounded to ½)",
        lambda g: round(2 * math.log10(g["learning_rate"])) / 2 if g.get("learning_rate") else None,
    ),
    "kind": ("Kind of the first block", lambda g: (g.get("conv") or [{}])[0].get("kind", "plain")),
    "residual_share": (
        "Share of residual blocks",
        lambda g: round(
            sum(b.get("kind") == "residual" for b in g.get("conv") or []) / max(1, len(g.get("conv") or [])), 1
        ),
    ),
    "downsamples": (
        "Downsampling blocks",
        lambda g: sum(b.get("downsample", b.get("pooling", "none")) != "none" for b in g.get("conv") or []),
    ),
    "widest": ("Widest block (filters)", lambda g: max([b.get("filters", 0) for b in g.get("conv") or []] or [0])),
    "kernel": ("Kernel of the first block", lambda g: (g.get("conv") or [{}])[0].get("kernel")),
    "dense_layers": ("Hidden dense layers", lambda g: len(g.get("dense") or [])),
    "dropout": ("Dropout", lambda g: g.get("dropout")),
}


def gene_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per trained candidate (fully or in part): its fitness, epochs and every gene of GENES."""
    rows = []
    for r in records:
        if r.get("cached") or not r.get("genome") or r.get("status") not in ("ok", "pruned", "partial"):
            continue
        row = {
            "Fitness": float(r["fitness"]),
            "Epochs": int(r.get("epochs") or 0),
            "Generation": gen_label(r["generation"]),
            "Architecture": r.get("summary", ""),
        }
        for name, (_, read) in GENES.items():
            try:
                row[name] = read(r["genome"])
            except (KeyError, TypeError, ValueError):
                row[name] = None
        rows.append(row)
    return pd.DataFrame.from_records(rows, columns=["Fitness", "Epochs", "Generation", "Architecture", *GENES])


def gene_chart(frame: pd.DataFrame, gene: str, height: int = 260) -> alt.LayerChart:
    """Validation accuracy by the values of one gene: every candidate a point, the median a tick.
    Only candidates at the run's highest fidelity are compared (equal epochs)."""
    label = GENES[gene][0]
    data = frame[frame["Epochs"] == frame["Epochs"].max()] if not frame.empty else frame
    data = data.assign(Value=data[gene].astype(str)) if not data.empty else data.assign(Value=[])
    # The medians come from every candidate; the points drawn are thinned on large runs.
    medians = data.groupby("Value")["Fitness"].agg(["median", "count"]).reset_index()
    medians.columns = ["Value", "Median", "Candidates"]
    x = alt.X("Value:N", title=label, sort="ascending")
    # Only the columns drawn travel to the browser (the frame holds every gene).
    shown = thin_points(data, by="Value", value="Fitness")[["Value", "Fitness", "Architecture", "Generation"]]
    points = (
        alt.Chart(shown)
        .mark_circle(size=40, opacity=0.5, color="#4e79a7")
        .encode(
            x=x,
            y=alt.Y("Fitness:Q", title="Validation accuracy", scale=alt.Scale(zero=False)),
            xOffset=alt.XOffset("jitter:Q"),
            tooltip=["Architecture", alt.Tooltip("Fitness:Q", format=".4f"), "Generation"],
        )
        .transform_calculate(jitter="random()")
    )
    median = (
        alt.Chart(medians)
        .mark_tick(color="#e15759", thickness=3, size=28)
        .encode(x=x, y="Median:Q", tooltip=[alt.Tooltip("Median:Q", title="median", format=".4f"), "Candidates:Q"])
    )
    return alt.LayerChart(layer=[points, median], height=height)


def diversity_chart(generations: Sequence[Mapping[str, Any]], height: int = 160) -> alt.Chart:
    """The population's diversity (mean share of differing genes between two candidates) per generation."""
    frame = pd.DataFrame(
        [
            {"Generation": gen_label(g["generation"]), "Diversity": g.get("diversity")}
            for g in generations
            if g.get("diversity") is not None
        ],
        columns=["Generation", "Diversity"],
    )
    return (
        alt.Chart(frame)
        .mark_line(point=True, color="#59a14f")
        .encode(
            x=alt.X("Generation:Q", axis=alt.Axis(tickMinStep=1, format="d")),
            y=alt.Y("Diversity:Q", scale=alt.Scale(domain=[0, 1])),
            tooltip=["Generation", alt.Tooltip("Diversity:Q", format=".2f")],
        )
        .properties(height=height)
    )


def per_class_frame(report: Mapping[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"Class": c["class"], "Accuracy": c["accuracy"], "Test images": c["count"]}
            for c in report.get("per_class", [])
        ],
        columns=["Class", "Accuracy", "Test images"],
    )


def confusion_chart(report: Mapping[str, Any], size: int = 360) -> alt.LayerChart:
    """The confusion matrix as a heatmap: true class down, predicted class across, counts written in."""
    classes = report["classes"]
    rows = [
        {"True": classes[i], "Predicted": classes[j], "Count": int(n), "Share": n / max(1, sum(report["confusion"][i]))}
        for i, row in enumerate(report["confusion"])
        for j, n in enumerate(row)
    ]
    frame = pd.DataFrame(rows, columns=["True", "Predicted", "Count", "Share"])
    base = alt.Chart(frame).encode(x=alt.X("Predicted:N", sort=classes), y=alt.Y("True:N", sort=classes))
    cells = base.mark_rect().encode(
        color=alt.Color(
            "Share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), legend=alt.Legend(title="Share of the row")
        ),
        tooltip=["True", "Predicted", "Count", alt.Tooltip("Share:Q", format=".1%")],
    )
    text = base.mark_text(fontSize=10).encode(
        text="Count:Q", color=alt.condition("datum.Share > 0.5", alt.value("white"), alt.value("#333333"))
    )
    return alt.LayerChart(layer=[cells, text], width=size, height=size)
