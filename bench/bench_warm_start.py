"""Warm start against a cold start at the same budget, on a set the source run never saw.

For each target set, a source search runs once on another of the harder sets (bench/harder_sets.py)
at ``--source-multiple`` × its own T (T: one training of the plain hand-written CNN,
bench/hand_cnn.py). Then, for each seed and budget multiple k, ``automodel run --budget k×T`` on
the target, cold and with ``--warm-start SOURCE``, each scored once on the target's test split.
Both arms share the seed, so they sample the same generation 0 apart from the warm genomes.

    python bench/bench_warm_start.py [--pairs glyphs:shapes,shapes:glyphs] [--multiples 3,10]
                                     [--seeds 0,1,2] [--source-multiple 10] [--work bench/out/warm]
    python bench/bench_warm_start.py --report [--work bench/out/warm]

``--pairs TARGET:SOURCE,…``. Rows are appended to WORK/rows.jsonl; ``--report`` prints the table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_budget import _elapsed, automodel  # noqa: E402
from bench.hand_cnn import train_and_test  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="glyphs:shapes,shapes:glyphs", help="TARGET:SOURCE pairs")
    parser.add_argument("--multiples", default="3,10")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--source-multiple", type=float, default=10.0)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "warm")
    parser.add_argument("--report", action="store_true")
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
        f"torch {torch.__version__}",
        flush=True,
    )
    yardstick: dict[str, float] = {}

    def t_of(name: str, folder: str) -> float:
        if name not in yardstick:
            hand, yardstick[name] = train_and_test(folder, seed=0)
            print(f"{name}: hand CNN {hand:.4f} in {yardstick[name]:.1f} s (T)", flush=True)
            keep(work, {"target": name, "arm": "hand", "seed": 0, "k": 1.0, "test": hand, "budget": yardstick[name]})
        return yardstick[name]

    for pair in args.pairs.split(","):
        target, source = pair.split(":")
        target_folder = str(ensure_set(target, work / "sets", 3000, 0))
        source_folder = str(ensure_set(source, work / "sets", 3000, 0))
        db = str(work / f"{target}-from-{source}.json")
        source_id = f"source-{source}"
        budget = f"{args.source_multiple * t_of(source, source_folder):.0f}"
        src = automodel(
            "run", "--dataset", source_folder, "--budget", budget, "--seed", "0", "--db", db, "--run-id", source_id
        )
        print(f"source {source}: {src['test_accuracy']:.4f} at {budget} s, best {src['best_summary']}", flush=True)
        t = t_of(target, target_folder)
        for k in map(float, args.multiples.split(",")):
            for seed in map(int, args.seeds.split(",")):
                budget = f"{k * t:.0f}"
                for arm, extra in (("cold", []), ("warm", ["--warm-start", source_id])):
                    run_id = f"{arm}-{k:g}-{seed}"
                    run = automodel(
                        "run",
                        "--dataset",
                        target_folder,
                        "--budget",
                        budget,
                        "--seed",
                        str(seed),
                        "--db",
                        db,
                        "--run-id",
                        run_id,
                        *extra,
                    )
                    plan = run["plan"]
                    detail = (
                        "direct"
                        if plan.get("direct")
                        else f"{plan['population']}×{run['generations_done']} gen, {plan['epochs']} ep"
                    ) + f", final {plan['final_epochs']} ep"
                    elapsed = _elapsed(db, run_id)
                    print(
                        f"{target} from {source} {k:g}×T seed {seed}: {arm} {run['test_accuracy']:.4f} in "
                        f"{elapsed:.1f} s of {budget} s ({detail}; {run['best_summary']})",
                        flush=True,
                    )
                    keep(
                        work,
                        {
                            "target": target,
                            "source": source,
                            "arm": arm,
                            "seed": seed,
                            "k": k,
                            "budget": float(budget),
                            "elapsed": elapsed,
                            "test": run["test_accuracy"],
                            "plan": detail,
                            "best": run["best_summary"],
                            "best_is_warm": _best_is_warm(db, run_id),
                        },
                    )
    report(work)


def _best_is_warm(db: str, run_id: str) -> bool:
    from automodel.store import Store

    run = Store(db).get_run(run_id) or {}
    warm = {json.dumps(g, sort_keys=True) for g in run.get("warm_genomes") or []}
    return json.dumps(run.get("best_genome"), sort_keys=True) in warm


def keep(work: Path, row: dict) -> None:
    with open(work / "rows.jsonl", "a") as out:
        out.write(json.dumps(row) + "\n")


def report(work: Path) -> None:
    rows = [json.loads(line) for line in open(work / "rows.jsonl")]
    print("| target (source) | k×T | cold: test per seed | warm: test per seed | mean warm − cold |")
    print("|---|---|---|---|---|")
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for r in rows:
        if r["arm"] in ("cold", "warm"):
            groups.setdefault((r["target"], r["source"], r["k"]), {}).setdefault(r["arm"], []).append(r)
    for (target, source, k), arms in sorted(groups.items()):
        cold = sorted(arms.get("cold", []), key=lambda r: r["seed"])
        warm = sorted(arms.get("warm", []), key=lambda r: r["seed"])
        paired = [(c["test"], w["test"]) for c in cold for w in warm if c["seed"] == w["seed"]]
        gap = statistics.fmean(w - c for c, w in paired) if paired else float("nan")
        cold_tests = " / ".join(f"{r['test']:.3f}" for r in cold)
        warm_tests = " / ".join(f"{r['test']:.3f}" + ("*" if r.get("best_is_warm") else "") for r in warm)
        print(f"| {target} ({source}) | {k:g} | {cold_tests} | {warm_tests} | {gap:+.3f} |")
    print("(* the winner was one of the warm genomes)")


if __name__ == "__main__":
    main()
