"""Pruning: does stopping hopeless candidates after one epoch save time without lowering the best?

Runs the same searches with pruning off and on (same seeds, bundled digits data, CPU) and prints
wall time, best validation accuracy and final test accuracy side by side.

    python bench/bench_pruning.py [--seeds 0 1 2] [--generations 4] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automodel.config import Config  # noqa: E402
from automodel.evolution.loop import Search  # noqa: E402
from automodel.store import Store  # noqa: E402


def one_search(seed: int, prune: bool, generations: int, epochs: int) -> dict:
    config = Config(
        population=8, generations=generations, epochs=epochs, final_epochs=5, seed=seed, prune=prune, device="cpu"
    )
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "db.json")
        store.create_run("b", config.to_dict())
        started = time.perf_counter()
        Search(config, store, "b").run()
        seconds = time.perf_counter() - started
        run = store.get_run("b")
        pruned = sum(r["status"] == "pruned" for r in store.individuals("b"))
    return {"seconds": seconds, "best": run["best_fitness"], "test": run["test_accuracy"], "pruned": pruned}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()} CPU, {os.cpu_count()} cores; digits, population 8, "
        f"{args.generations} generations, {args.epochs} epochs"
    )
    print(f"{'seed':>4} {'prune':>6} {'seconds':>8} {'best val':>9} {'test':>7} {'pruned':>7}")
    rows = {False: [], True: []}
    for seed in args.seeds:
        for prune in (False, True):
            r = one_search(seed, prune, args.generations, args.epochs)
            rows[prune].append(r)
            print(
                f"{seed:>4} {str(prune):>6} {r['seconds']:>8.1f} {r['best']:>9.4f} {r['test']:>7.4f} {r['pruned']:>7}"
            )
    for prune in (False, True):
        print(
            f"mean prune={prune}: {statistics.fmean(r['seconds'] for r in rows[prune]):.1f} s, "
            f"best {statistics.fmean(r['best'] for r in rows[prune]):.4f}, "
            f"test {statistics.fmean(r['test'] for r in rows[prune]):.4f}"
        )


if __name__ == "__main__":
    main()
