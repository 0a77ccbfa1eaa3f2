"""Local workers: generation wall time with one candidate at a time against ``workers auto``.

For the bundled digits and one harder 32×32 set (bench/harder_sets.py): a search of two
generations of 8 candidates (elitism 0, so 8 trainings each), no final training, run with
``--workers 1`` (one candidate at a time in the search process, with all its threads) and with
``--workers auto``, alternating, 3 times each. The figure is the wall time of the second generation
(the worker processes are started by then; the whole run's time, start-up included, is shown
too), median of 3.
Both modes must breed the same genomes.

    python bench/bench_workers.py [--repeats 3] [--sets digits,glyphs]

Last line: ``workers_speedup: X.XX`` (the smaller of the sets' speedups).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from harder_sets import ensure_set  # noqa: E402
from searches import SearchOnly  # noqa: E402

from automodel.config import Config, available_cpus, resolve_workers  # noqa: E402
from automodel.store import Store  # noqa: E402


def one_run(dataset: str, workers, seed: int) -> dict:
    config = Config.from_dict(
        {
            **Config().to_dict(),
            "dataset": dataset,
            "population": 8,
            "generations": 2,
            "elitism": 0,
            "epochs": 3,
            "seed": seed,
            "device": "cpu",
            "workers": workers,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "db.json")
        store.create_run("b", config.to_dict())
        started = time.perf_counter()
        SearchOnly(config, store, "b", data_dir=ROOT / "data").run()
        total = time.perf_counter() - started
        generations = store.generations("b")
        return {
            "total": total,
            "generation": generations[1]["seconds"],
            "first": generations[0]["seconds"],
            "genomes": [r["key"] for r in store.individuals("b")],
            "fitness": [r["fitness"] for r in store.individuals("b")],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sets", default="digits,glyphs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cpus = available_cpus()
    auto = resolve_workers("auto", "cpu", 8)
    print(
        f"# {datetime.date.today()} · {platform.machine()}, {cpus} CPUs, torch {torch.__version__}; "
        f"workers 1 = one candidate at a time with {torch.get_num_threads()} threads; auto = {auto[0]} workers × "
        f"{auto[1]} thread(s)"
    )
    speedups = []
    for name in args.sets.split(","):
        dataset = "digits" if name == "digits" else str(ensure_set(name, ROOT / "bench" / "out" / "sets"))
        runs: dict[str, list[dict]] = {"1": [], "auto": []}
        for _ in range(args.repeats):
            for mode in ("1", "auto"):
                runs[mode].append(one_run(dataset, 1 if mode == "1" else "auto", args.seed))
        same = all(r["genomes"] == runs["1"][0]["genomes"] for r in runs["1"] + runs["auto"])
        one = statistics.median(r["generation"] for r in runs["1"])
        many = statistics.median(r["generation"] for r in runs["auto"])
        totals = {mode: statistics.median(r["total"] for r in runs[mode]) for mode in runs}
        speedups.append(one / many)
        each = {mode: ", ".join(f"{r['generation']:.1f}" for r in runs[mode]) for mode in runs}
        print(
            f"{name}: generation of 8 candidates, median of {args.repeats}: workers 1 {one:.1f} s "
            f"({each['1']}) · auto {many:.1f} s ({each['auto']}) · speedup {one / many:.2f} · "
            f"whole run (data, start-up, 2 generations): {totals['1']:.1f} s against {totals['auto']:.1f} s · "
            f"same genomes: {same}"
        )
    print(f"workers_speedup: {min(speedups):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
