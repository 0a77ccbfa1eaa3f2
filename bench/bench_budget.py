"""The budget against the yardstick: a plain hand-written CNN trained once (bench/hand_cnn.py,
time T), then `automodel run --budget k×T` for the GA and for random search at the same budget
(one generation holding as many candidates as the GA trained, the same successive halving, trainer
and final training), each scored once on the test split. Sets: the harder ones of
bench/harder_sets.py (test styles never seen in training).

    python bench/bench_budget.py [--sets glyphs,shapes] [--multiples 1,3] [--seeds 0] [--work bench/out/budget]

Prints one line per run and a table of test accuracy and wall time against the budget.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.hand_cnn import train_and_test  # noqa: E402


def automodel(*args: str) -> dict:
    subprocess.run([sys.executable, "-m", "automodel", *args, "--quiet"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    db = args[args.index("--db") + 1]
    run_id = args[args.index("--run-id") + 1]
    shown = subprocess.run([sys.executable, "-m", "automodel", "show", run_id, "--db", db, "--json"], cwd=ROOT,
                           check=True, capture_output=True, text=True)
    return json.loads(shown.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="glyphs,shapes")
    parser.add_argument("--multiples", default="1,3")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "budget")
    args = parser.parse_args()
    work = args.work.resolve()
    from bench.harder_sets import ensure_set
    import torch
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    rows = []
    for name in args.sets.split(","):
        folder = str(ensure_set(name, work / "sets", 3000, 0))
        for seed in map(int, args.seeds.split(",")):
            hand, t = train_and_test(folder, seed=seed)
            print(f"{name} seed {seed}: hand CNN {hand:.4f} in {t:.1f} s (T)", flush=True)
            rows.append((name, seed, "hand CNN", 1.0, t, hand, t, ""))
            for k in map(float, args.multiples.split(",")):
                budget = f"{k * t:.0f}"
                db = str(work / f"{name}-{seed}.json")
                ga = automodel("run", "--dataset", folder, "--budget", budget, "--seed", str(seed), "--db", db,
                               "--run-id", f"ga-{k:g}")
                population = max(2, ga["plan"]["population"] * ga["generations_done"])
                rs = automodel("run", "--dataset", folder, "--budget", budget, "--seed", str(seed), "--db", db,
                               "--run-id", f"random-{k:g}", "--generations", "1", "--population", str(population))
                for label, run in (("GA", ga), ("random", rs)):
                    elapsed = _elapsed(db, run["run_id"])
                    plan = run["plan"]
                    detail = (f"{plan['population']}×{run['generations_done']} gen, {plan['epochs']} ep, "
                              f"final {plan['final_epochs']} ep")
                    print(f"{name} seed {seed} {k:g}×T: {label} {run['test_accuracy']:.4f} in {elapsed:.1f} s "
                          f"of {budget} s ({detail})", flush=True)
                    rows.append((name, seed, label, k, float(budget), run["test_accuracy"], elapsed, detail))
    print("\n| set | seed | search | budget | test accuracy | wall (s) | plan |\n|---|---|---|---|---|---|---|")
    for name, seed, label, k, budget, accuracy, elapsed, detail in rows:
        print(f"| {name} | {seed} | {label} | {k:g}×T = {budget:.0f} s | {accuracy:.4f} | {elapsed:.1f} | {detail} |")


def _elapsed(db: str, run_id: str) -> float:
    from automodel.store import Store
    return float(Store(db).get_run(run_id)["elapsed_s"])


if __name__ == "__main__":
    main()
