"""The fitness chart, the Pareto front and the comparison of runs, as Altair specs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import altair as alt
import pandas as pd

from automodel.page.views.labels import CANDIDATE_STATUSES, STAT_COLORS, STATUS_COLORS, gen_label


def generations_long(generations: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Generation records → long rows (Generation, Statistic, Fitness) for line charts."""
    rows = [
        {"Generation": gen_label(g["generation"]), "Statistic": stat, "Fitness": float(g[stat])}
        for g in generations
        for stat in ("best", "mean", "worst")
        if g.get(stat) is not None
    ]
    return pd.DataFrame.from_records(rows, columns=["Generation", "Statistic", "Fitness"])


def generation_lines(generations: Sequence[Mapping[str, Any]], frame: pd.DataFrame) -> pd.DataFrame:
    """Best / mean / worst per generation as long rows (Generation, Statistic, Fitness, So far): a
    recorded generation from its record; one without a record yet (in progress, or cut short by
    the time budget) from the candidates it has so far, so the lines follow the search live."""
    lines = generations_long(generations).assign(**{"So far": False})
    recorded = {gen_label(g["generation"]) for g in generations}
    if frame.empty or "fitness" not in frame:
        return lines
    scored = frame[frame["fitness"].notna() & ~frame["gen"].isin(recorded)]
    if scored.empty:
        return lines
    stats = scored.groupby("gen")["fitness"].agg(["max", "mean", "min"])
    rows = [
        {"Generation": int(gen), "Statistic": stat, "Fitness": float(row[column]), "So far": True}
        for gen, row in stats.iterrows()
        for stat, column in (("best", "max"), ("mean", "mean"), ("worst", "min"))
    ]
    return pd.concat([lines, pd.DataFrame.from_records(rows, columns=lines.columns)], ignore_index=True)


MAX_CHART_POINTS = 2_000  # a browser draws more points slowly; the lines keep every generation's statistics


def thin_points(
    frame: pd.DataFrame,
    limit: int = MAX_CHART_POINTS,
    by: str = "generation",
    value: str = "fitness",
    always: pd.Series | None = None,
) -> pd.DataFrame:
    """At most about ``limit`` rows for a chart: every group's (``by``) best and worst ``value``, the
    rows marked in ``always``, and an even sample of the rest (the same sample on every redraw)."""
    if len(frame) <= limit:
        return frame
    groups = frame.groupby(by)[value]
    keep = frame.index.isin(groups.idxmax()) | frame.index.isin(groups.idxmin())
    if always is not None:
        keep |= always.to_numpy(dtype=bool)
    rest = frame[~keep]
    room = max(0, limit - int(keep.sum()))
    step = max(1, -(-len(rest) // max(1, room)))
    return pd.concat([frame[keep], rest.iloc[::step]]).sort_index()


def candidate_points(frame: pd.DataFrame, population: int | None = None) -> pd.DataFrame:
    """One row per candidate, spread a little sideways within its generation so none hide."""
    columns = [
        "x",
        "Generation",
        "Candidate",
        "Fitness",
        "Status",
        "Architecture",
        "Parameters",
        "Seconds",
        "Reason",
        "Reused",
    ]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    if len(frame) > MAX_CHART_POINTS:
        frame = thin_points(frame)
    size = max(int(population or 0), int(frame["index"].max()) + 1, 1)
    offset = (frame["index"].astype(float) + 0.5) / size * 0.5 - 0.25
    return pd.DataFrame(
        {
            "x": frame["gen"] + offset,
            "Generation": frame["gen"],
            "Candidate": frame["index"].astype("int64") + 1,
            "Fitness": frame["fitness"],
            "Status": frame["status"],
            "Architecture": frame["summary"],
            "Parameters": frame["params"],
            "Seconds": frame["seconds"],
            "Reason": frame["reason"],
            "Reused": frame["cached"],
        }
    )


def _x_axis(max_generation: int) -> alt.X:
    return alt.X(
        "x:Q",
        title="Generation",
        scale=alt.Scale(domain=[0.5, max(max_generation, 1) + 0.5], nice=False),
        axis=alt.Axis(
            tickMinStep=1,
            format="d",
            values=list(range(1, max(max_generation, 1) + 1)) if max_generation <= 30 else alt.Undefined,
        ),
    )


def fitness_chart(
    generations: Sequence[Mapping[str, Any]],
    frame: pd.DataFrame,
    total_generations: int | None = None,
    population: int | None = None,
    height: int = 340,
) -> alt.LayerChart:
    """Best / mean / worst validation accuracy per generation (so far, for one not finished), with
    every candidate as a point."""
    lines = generation_lines(generations, frame).rename(columns={"Generation": "x"})
    points = candidate_points(frame, population)
    max_gen = max(
        [int(total_generations or 0)] + [int(v) for v in points["Generation"]] + [int(v) for v in lines["x"]] + [1]
    )
    y = alt.Y("Fitness:Q", title="Validation accuracy", scale=alt.Scale(zero=False, nice=True))
    # The legend lists the statuses present ("ok" always), in a fixed order with fixed colours.
    present = set(points["Status"]) | {"ok"}
    statuses = [s for s in CANDIDATE_STATUSES if s in present] + sorted(present - set(CANDIDATE_STATUSES))
    status_scale = alt.Scale(domain=statuses, range=[STATUS_COLORS.get(s, "#888888") for s in statuses])
    point_layer = (
        alt.Chart(points)
        .mark_circle(size=46, opacity=0.6)
        .encode(
            x=_x_axis(max_gen),
            y=y,
            color=alt.Color(
                "Status:N", scale=status_scale, title="Candidate", legend=alt.Legend(orient="right", symbolOpacity=0.8)
            ),
            tooltip=[
                alt.Tooltip("Generation:Q"),
                alt.Tooltip("Candidate:Q"),
                alt.Tooltip("Fitness:Q", format=".4f"),
                alt.Tooltip("Status:N"),
                alt.Tooltip("Architecture:N"),
                alt.Tooltip("Parameters:Q", format=","),
                alt.Tooltip("Seconds:Q", format=".1f"),
                alt.Tooltip("Reused:N"),
                alt.Tooltip("Reason:N"),
            ],
        )
    )
    stats = ["best", "mean", "worst"]
    line_layer = (
        alt.Chart(lines)
        .mark_line(point=alt.OverlayMarkDef(size=36, filled=True), strokeWidth=2.5)
        .encode(
            x=_x_axis(max_gen),
            y=y,
            color=alt.Color(
                "Statistic:N",
                scale=alt.Scale(domain=stats, range=[STAT_COLORS[s] for s in stats]),
                sort=stats,
                title="Per generation",
                legend=alt.Legend(orient="right", symbolType="stroke", symbolStrokeWidth=3),
            ),
            tooltip=[
                alt.Tooltip("x:Q", title="Generation"),
                alt.Tooltip("Statistic:N"),
                alt.Tooltip("Fitness:Q", format=".4f"),
                alt.Tooltip("So far:N", title="Generation not finished"),
            ],
        )
    )
    return alt.layer(point_layer, line_layer).resolve_scale(color="independent").properties(height=height)


COST_LABELS = {
    "params": ("params", "Parameters"),
    "macs": ("macs", "Multiply-accumulates per image"),
    "latency": ("latency_ms", "Latency per image (ms)"),
}


def pareto_frame(records: Iterable[Mapping[str, Any]], objectives: Sequence[str]) -> pd.DataFrame:
    """The fully trained candidates (one per genome) with their costs and whether they are on the
    run's Pareto front."""
    from automodel.evolution.pareto import pareto_front

    records = list(records)
    front = {r["key"] for r in pareto_front(records, objectives)}
    seen, rows = set(), []
    for r in records:
        if r.get("status") != "ok" or r.get("cached") or r["key"] in seen:
            continue
        seen.add(r["key"])
        rows.append(
            {
                "key": r["key"],
                "Accuracy": float(r["fitness"]),
                "params": r.get("params"),
                "macs": r.get("macs"),
                "latency_ms": r.get("latency_ms"),
                "Architecture": r.get("summary", ""),
                "Generation": gen_label(r["generation"]),
                "Candidate": int(r["index"]) + 1,
                "On the front": r["key"] in front,
            }
        )
    return pd.DataFrame.from_records(
        rows,
        columns=[
            "key",
            "Accuracy",
            "params",
            "macs",
            "latency_ms",
            "Architecture",
            "Generation",
            "Candidate",
            "On the front",
        ],
    )


def pareto_chart(frame: pd.DataFrame, cost: str, height: int = 320) -> alt.LayerChart:
    """Validation accuracy against a cost (log scale), every fully trained candidate a point, the
    Pareto front highlighted and joined as a staircase."""
    field, title = COST_LABELS[cost]
    data = frame[frame[field].notna() & (frame[field] > 0)] if not frame.empty else frame
    x = alt.X(f"{field}:Q", title=title, scale=alt.Scale(type="log"))
    y = alt.Y("Accuracy:Q", title="Validation accuracy", scale=alt.Scale(zero=False))
    tooltip = [
        alt.Tooltip("Architecture:N"),
        alt.Tooltip("Accuracy:Q", format=".4f"),
        alt.Tooltip("params:Q", title="Parameters", format=","),
        alt.Tooltip("macs:Q", title="MACs", format=","),
        alt.Tooltip("latency_ms:Q", title="ms", format=".3f"),
        alt.Tooltip("Generation:Q"),
        alt.Tooltip("Candidate:Q"),
        alt.Tooltip("key:N"),
    ]
    # Every member of the front is drawn; on large runs the others are thinned.
    shown = data if data.empty else thin_points(data, by="Generation", value="Accuracy", always=data["On the front"])
    points = (
        alt.Chart(shown)
        .mark_circle(size=70)
        .encode(
            x=x,
            y=y,
            tooltip=tooltip,
            color=alt.Color(
                "On the front:N",
                scale=alt.Scale(domain=[True, False], range=["#e15759", "#9db4cf"]),
                legend=alt.Legend(title="Pareto front", orient="right"),
            ),
            opacity=alt.condition("datum['On the front']", alt.value(1.0), alt.value(0.5)),
        )
    )
    front = data[data["On the front"]].sort_values(field) if not data.empty else data
    line = alt.Chart(front).mark_line(interpolate="step-after", color="#e15759", strokeWidth=2).encode(x=x, y=y)
    return alt.LayerChart(layer=[line, points], height=height)


def compare_frame(curves: Mapping[str, Sequence[Mapping[str, Any]]]) -> pd.DataFrame:
    """{run label: generation records} → long rows (Run, Generation, Statistic, Fitness)."""
    frames = []
    for label, generations in curves.items():
        long = generations_long(generations)
        long = long[long["Statistic"].isin(["best", "mean"])]
        long.insert(0, "Run", label)
        frames.append(long)
    if not frames:
        return pd.DataFrame(columns=["Run", "Generation", "Statistic", "Fitness"])
    return pd.concat(frames, ignore_index=True)


def compare_chart(curves: Mapping[str, Sequence[Mapping[str, Any]]], height: int = 300) -> alt.Chart:
    """Best (solid) and mean (dashed) fitness per generation of several runs on one chart."""
    data = compare_frame(curves)
    return (
        alt.Chart(data)
        .mark_line(point=True, strokeWidth=2.2)
        .encode(
            x=alt.X("Generation:Q", axis=alt.Axis(tickMinStep=1, format="d")),
            y=alt.Y("Fitness:Q", title="Validation accuracy", scale=alt.Scale(zero=False, nice=True)),
            color=alt.Color(
                "Run:N", scale=alt.Scale(scheme="tableau10"), legend=alt.Legend(orient="right", labelLimit=320)
            ),
            strokeDash=alt.StrokeDash(
                "Statistic:N", scale=alt.Scale(domain=["best", "mean"], range=[[1, 0], [5, 4]]), legend=None
            ),  # the page says "solid: best, dashed: mean" beneath
            tooltip=["Run:N", "Generation:Q", "Statistic:N", alt.Tooltip("Fitness:Q", format=".4f")],
        )
        .properties(height=height)
    )
