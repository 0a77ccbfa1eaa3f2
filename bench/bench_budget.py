"""The budget against the yardstick: a plain hand-written CNN trained once (bench/hand_cnn.py,
time T), then `automodel run --budget k×T` for each search at the same budget, each scored once on
the test split. Sets: the harder ones of bench/harder_sets.py (test styles never seen in training).

Searches (``--searches``):

- ``ga``: ``automodel run --budget`` as a person runs it (the defaults);
- ``ga-fresh``: the same without weight inheritance (``--no-inherit-weights``; the default since
  2026-12-02: ``ga-inherit`` is the same with it);
- ``ga-continue``: the same with a final training that starts from the winner's trained weights;
- ``ga-search-continue``: a search even where the plan would train one network (``--epochs 9`` is
  given, so no ``direct`` plan), its final continuing from the winner's weights;
- ``ga-batch64``: the same at batch 64 (bench/RESULTS.md §18 measured an automatic batch of 64,
  with the first rung counted in images, against today's 16 at commit 56b0f1a);
- ``ga-3``: the same with 3 epochs per candidate (one rung on these sets: the plan's choice before
  it chose 9 epochs, with rungs at 3 and 9, whenever one generation of eight fits them);
- ``random``: one generation holding as many candidates as the GA's run trained, the same
  successive halving, trainer and final training;
- ``tpe``: every generation after the first asked of Optuna's TPE sampler (bench/searches.py),
  the same plan, trainer, halving and final training.

Where the GA's plan is ``direct`` (too short to search), random search and TPE would train the same
reference network: their rows repeat the GA's (``same_as``) rather than train it again.

    python bench/bench_budget.py [--sets glyphs,shapes] [--multiples 1,3] [--seeds 0,1,2]
                                 [--searches ga,random,tpe | "1:ga;3:ga,random,tpe"] [--work bench/out/budget]
    python bench/bench_budget.py --report [--work bench/out/budget]

Every run's row is kept in WORK/rows.jsonl; ``--report`` prints the table of means over seeds of all
rows there and draws bench/budget.svg (test accuracy against budget).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.hand_cnn import train_and_test  # noqa: E402

FLAGS = {
    "ga": [],
    "ga-fresh": ["--no-inherit-weights"],
    "ga-inherit": ["--inherit-weights"],
    "ga-continue": ["--final-from", "search"],
    "ga-3": ["--epochs", "3"],
    "ga-batch64": ["--batch-size", "64"],
    "ga-batch-time": ["--batch-by-time"],
    "ga-search-continue": ["--epochs", "9", "--final-from", "search"],
}
LABELS = {
    "ga": "GA",
    "ga-fresh": "GA, no inheritance",
    "ga-inherit": "GA, inheritance",
    "ga-continue": "GA, final continues",
    "ga-3": "GA, 3 epochs",
    "ga-batch64": "GA, batch 64",
    "ga-batch-time": "GA, batch by time",
    "ga-search-continue": "GA searching, final continues",
    "random": "random",
    "tpe": "TPE",
    "hand": "hand CNN",
}


def automodel(*args: str, runner: list[str] | None = None) -> dict:
    subprocess.run(
        [*(runner or [sys.executable, "-m", "automodel"]), *args, "--quiet"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    db = args[args.index("--db") + 1]
    run_id = args[args.index("--run-id") + 1]
    shown = subprocess.run(
        [sys.executable, "-m", "automodel", "show", run_id, "--db", db, "--json"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(shown.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="glyphs,shapes", help="any of glyphs, shapes, faces")
    parser.add_argument("--multiples", default="1,3")
    parser.add_argument("--seeds", default="0")
    parser.add_argument(
        "--searches",
        default="ga,random,tpe",
        help="searches for every multiple, or per multiple: '1:ga;3:ga,random,tpe'",
    )
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "budget")
    parser.add_argument("--report", action="store_true", help="only print the table and draw the plot")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.report:
        report(work)
        return
    import torch

    from bench.harder_sets import ensure_set

    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    if ":" in args.searches:
        per_multiple = {float(k): v.split(",") for k, v in (part.split(":") for part in args.searches.split(";"))}
    else:
        per_multiple = {float(k): args.searches.split(",") for k in args.multiples.split(",")}
    for name in args.sets.split(","):
        folder = str(ensure_set(name, work / "sets", 3000, 0))
        for seed in map(int, args.seeds.split(",")):
            hand, t = train_and_test(folder, seed=seed)
            print(f"{name} seed {seed}: hand CNN {hand:.4f} in {t:.1f} s (T)", flush=True)
            keep(
                work,
                {
                    "set": name,
                    "seed": seed,
                    "search": "hand",
                    "k": 1.0,
                    "budget": t,
                    "test": hand,
                    "elapsed": t,
                    "plan": "",
                },
            )
            for k, searches in per_multiple.items():
                budget = f"{k * t:.0f}"
                db = str(work / f"{name}-{seed}.json")
                common = ["--dataset", folder, "--budget", budget, "--seed", str(seed), "--db", db]
                ga, ga_row = None, {}
                for search in searches:
                    run_id = f"{search}-{k:g}-{budget}"
                    if search in ("random", "tpe") and ga is not None and ga["plan"].get("direct"):
                        # Too short to search: every search trains the same reference network with all of it.
                        print(f"{name} seed {seed} {k:g}×T: {LABELS[search]} is the GA's direct run", flush=True)
                        keep(work, {**ga_row, "search": search, "same_as": "ga"})
                        continue
                    if search in FLAGS:
                        run = automodel("run", *common, "--run-id", run_id, *FLAGS[search])
                        ga = run if search == "ga" else ga
                    elif search == "random":
                        if ga is None:
                            raise SystemExit("random search is given the GA's number of candidates: list ga first")
                        population = max(2, ga["plan"]["population"] * ga["generations_done"])
                        run = automodel(
                            "run", *common, "--run-id", run_id, "--generations", "1", "--population", str(population)
                        )
                    elif search == "tpe":
                        run = automodel(
                            "tpe",
                            "run",
                            *common,
                            "--run-id",
                            run_id,
                            runner=[sys.executable, str(ROOT / "bench" / "searches.py")],
                        )
                    else:
                        raise SystemExit(
                            f"unknown search {search!r}; use any of ga, ga-fresh, ga-continue, random, tpe"
                        )
                    elapsed = _elapsed(db, run["run_id"])
                    plan = run["plan"]
                    detail = (
                        f"{plan['population']}×{run['generations_done']} gen, {plan['epochs']} ep, "
                        f"final {plan['final_epochs']} ep"
                    )
                    print(
                        f"{name} seed {seed} {k:g}×T: {LABELS[search]} {run['test_accuracy']:.4f} in "
                        f"{elapsed:.1f} s of {budget} s ({detail})",
                        flush=True,
                    )
                    row = {
                        "set": name,
                        "seed": seed,
                        "search": search,
                        "k": k,
                        "budget": float(budget),
                        "test": run["test_accuracy"],
                        "elapsed": elapsed,
                        "plan": detail,
                        "cut_share": _cut_share(db, run["run_id"]),
                    }
                    ga_row = row if search == "ga" else ga_row
                    keep(work, row)
    report(work)


def keep(work: Path, row: dict) -> None:
    with open(work / "rows.jsonl", "a") as out:
        out.write(json.dumps(row) + "\n")


def report(work: Path) -> None:
    rows = [json.loads(line) for line in (work / "rows.jsonl").read_text().splitlines() if line.strip()]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["set"], row["search"], row["k"]), []).append(row)
    print("\n| set | search | budget | seeds | test accuracy (mean ± sd) | wall / budget (worst) | cut share | plans |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, search, k), members in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        tests = [m["test"] for m in members]
        sd = statistics.stdev(tests) if len(tests) > 1 else 0.0
        over = max(m["elapsed"] / m["budget"] for m in members)
        cut = statistics.fmean(m.get("cut_share", 0.0) for m in members)
        plans = "; ".join(sorted({m["plan"] for m in members if m["plan"]}))
        print(
            f"| {name} | {LABELS[search]} | {k:g}×T | {len(members)} | {statistics.fmean(tests):.3f} ± {sd:.3f} "
            f"| {over:.2f} | {cut:.2f} | {plans} |"
        )
    draw(groups, ROOT / "bench" / "budget.svg")


def draw(groups: dict[tuple, list[dict]], path: Path) -> None:
    """Mean test accuracy against the budget (in T), one panel per set, one line per search."""
    sets = sorted({name for name, _, _ in groups})
    colours = {
        "ga": "#4c78a8",
        "ga-fresh": "#9ecae9",
        "ga-inherit": "#72b7b2",
        "ga-continue": "#54a24b",
        "ga-3": "#b279a2",
        "random": "#f58518",
        "tpe": "#e45756",
        "hand": "#222222",
    }
    width, height, pad = 360, 260, 44
    ks = sorted({k for _, search, k in groups if search != "hand"}) or [1.0]
    k_max = max(ks)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * len(sets)}" height="{height + 60}" '
        f'font-family="sans-serif" font-size="11">'
    ]
    for p, name in enumerate(sets):
        x0 = p * width

        def x(k: float, x0: float = x0) -> float:
            return x0 + pad + (k / k_max) * (width - 2 * pad)

        def y(acc: float) -> float:
            return height - pad + 10 - acc * (height - 2 * pad)

        parts.append(f'<text x="{x0 + width / 2}" y="16" text-anchor="middle" font-size="13">{name}</text>')
        parts.append(f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(k_max)}" y2="{y(0)}" stroke="#888"/>')
        parts.append(f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(0)}" y2="{y(1)}" stroke="#888"/>')
        for acc in (0.0, 0.25, 0.5, 0.75, 1.0):
            parts.append(f'<text x="{x(0) - 6}" y="{y(acc) + 4}" text-anchor="end">{acc:.2f}</text>')
        for k in ks:
            parts.append(f'<text x="{x(k)}" y="{y(0) + 16}" text-anchor="middle">{k:g}×T</text>')
        for search in [s for s in colours if s != "hand"]:
            points = sorted(
                (k, statistics.fmean(m["test"] for m in members))
                for (n, s, k), members in groups.items()
                if n == name and s == search
            )
            if not points:
                continue
            path_d = " ".join(f"{'M' if i == 0 else 'L'}{x(k):.1f},{y(a):.1f}" for i, (k, a) in enumerate(points))
            parts.append(f'<path d="{path_d}" fill="none" stroke="{colours[search]}" stroke-width="2"/>')
            for k, a in points:
                parts.append(f'<circle cx="{x(k):.1f}" cy="{y(a):.1f}" r="3" fill="{colours[search]}"/>')
        hand = groups.get((name, "hand", 1.0))
        if hand:
            a = statistics.fmean(m["test"] for m in hand)
            parts.append(f'<rect x="{x(1) - 4:.1f}" y="{y(a) - 4:.1f}" width="8" height="8" fill="#222"/>')
    legend = [s for s in colours if any(search == s for _, search, _ in groups)]
    for i, search in enumerate(legend):
        parts.append(
            f'<rect x="{pad + i * 120}" y="{height + 30}" width="10" height="10" fill="{colours[search]}"/>'
            f'<text x="{pad + i * 120 + 14}" y="{height + 39}">{LABELS[search]}</text>'
        )
    parts.append(
        f'<text x="{pad}" y="{height + 56}" fill="#555">mean final test accuracy over seeds against the '
        f"budget, in multiples of one hand-written training (T)</text></svg>"
    )
    path.write_text("\n".join(parts) + "\n")
    print(f"plot: {path.relative_to(ROOT)}")


def _cut_share(db: str, run_id: str) -> float:
    """The share of the candidates' training seconds spent on candidates successive halving later cut."""
    from automodel.store import Store

    rows = [r for r in Store(db).individuals(run_id) if not r.get("cached")]
    total = sum(r.get("seconds") or 0.0 for r in rows)
    return sum(r.get("seconds") or 0.0 for r in rows if r["status"] == "pruned") / total if total else 0.0


def _elapsed(db: str, run_id: str) -> float:
    from automodel.store import Store

    return float(Store(db).get_run(run_id)["elapsed_s"])


if __name__ == "__main__":
    main()
