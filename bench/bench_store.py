"""Store scale: write and read latency with 100 to 100,000 candidate records.

Records have the shape the search writes (genome, summary, fitness, status, …). For each size
it prints the median of several timings of: recording one more candidate, reading all of a
run's candidates from a fresh Store (as another process would), reading one generation,
checking the stop flag, and writing live progress.

Targets: recording one candidate ≤ 20 ms at 10,000 records and ≤ 30 ms at 100,000; reading one
generation ≤ 20 ms at 100,000.

    python bench/bench_store.py [--sizes 100 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automodel.config import SearchSpace  # noqa: E402
from automodel.evolution.genome import sample_genome  # noqa: E402
from automodel.store import Store  # noqa: E402

POPULATION = 50


def record(i: int, rng: random.Random) -> dict:
    genome = sample_genome(SearchSpace(), rng)
    return {
        "run_id": "bench",
        "generation": i // POPULATION,
        "index": i % POPULATION,
        "key": genome.key(),
        "genome": genome.to_dict(),
        "summary": genome.summary(),
        "fitness": rng.random(),
        "status": "ok",
        "reason": "",
        "params": rng.randint(1000, 10**6),
        "seconds": rng.random() * 10,
        "epochs": 2,
        "train_loss": rng.random(),
        "cached": False,
        "recorded_at": time.time(),
    }


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000, 100000])
    args = parser.parse_args()
    rng = random.Random(0)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"{'records':>8} {'files MB':>8} {'add one':>9} {'read all':>9} {'read gen':>9} {'stop flag':>10} "
        f"{'progress':>9}  (ms, median)"
    )
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "db.json")
        store.create_run("bench", {})
        done = 0
        for size in args.sizes:
            store.add_individuals(record(i, rng) for i in range(done, size))
            done = size
            extra = record(size - 1, rng)  # replaces the last one: the run keeps its size
            add = median_ms(lambda extra=extra: store.add_individual(extra), 5)
            read_all = median_ms(lambda: Store(store.path).individuals("bench"), 5)
            read_gen = median_ms(
                lambda size=size: Store(store.path).individuals("bench", generation=(size - 1) // POPULATION), 5
            )
            stop = median_ms(lambda: Store(store.path).stop_requested("bench"), 20)
            progress = median_ms(lambda: store.set_progress("bench", {"epoch": 1, "batch": 3, "loss": 0.5}), 20)
            megabytes = sum(f.stat().st_size for f in store.individuals_dir.rglob("*.json")) / 1e6
            print(
                f"{size:>8} {megabytes:>8.2f} {add:>9.1f} {read_all:>9.1f} {read_gen:>9.1f} {stop:>10.2f} "
                f"{progress:>9.2f}"
            )


if __name__ == "__main__":
    main()
