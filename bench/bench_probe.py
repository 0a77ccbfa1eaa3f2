"""How well the start's timing predicts what candidates cost: a budget's plan buys candidate-epochs
at the timed seconds per epoch, so an estimate 1.5× too high leaves a third of the search unbought.

For each seed, the truth is a generation 0's worth of candidates of the default space (``--truth``
genomes, drawn apart from the probes' genomes) each trained for one whole epoch on the search's
workers, two at once as the search trains them: the mean seconds of one training step over them.
Against it, each probe (``--probes``: ``GENOMESxSTEPS:STAT``, genomes per worker × timed steps,
``median`` or ``mean`` of the genomes' median step) is made three times in a row on the same
workers, its estimate divided by the truth. The table gives the ratio's spread and the probe's
wall seconds.

    python bench/bench_probe.py [--sets glyphs] [--seeds 0,1,2] [--probes 1x20:median,3x20:mean]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from automodel.config import Config  # noqa: E402
from automodel.evaluators.base import Task  # noqa: E402
from automodel.evolution.final import derive_seed, train_settings  # noqa: E402
from automodel.evolution.genome import sample_genome  # noqa: E402
from automodel.evolution.loop import PROBE_GENERATION, Search  # noqa: E402
from automodel.store import Store  # noqa: E402


def steps_of(evaluator, tasks: list[Task]) -> tuple[list[float], float]:
    """Each task's median step seconds (a probe) and the wall seconds of the lot."""
    results: list = []
    started = time.monotonic()
    evaluator.evaluate(tasks, lambda _t, r: results.append(r), lambda _t, _i: None, lambda: False)
    return [r.step_seconds for r in results if r.step_seconds is not None], time.monotonic() - started


def truth(search: Search, evaluator, count: int) -> float:
    """Mean seconds of one training step of generation 0's first ``count`` genomes (the search's own
    first candidates), each trained for a whole epoch."""
    genomes = search.initial_genomes(count)
    tasks = [Task(0, i, g, search.training_seed(g), epochs=1) for i, g in enumerate(genomes)]
    results: list = []
    evaluator.evaluate(tasks, lambda _t, r: results.append(r), lambda _t, _i: None, lambda: False)
    data = search.dataset
    steps = max(1, len(data.train_x) // evaluator.settings.batch_size)
    # An epoch ends with its validation pass: about a third of a training step per image.
    per_epoch = steps * (1 + len(data.val_x) / len(data.train_x) / 3)
    return statistics.fmean(r.history[0]["seconds"] / per_epoch for r in results if r.history)


def final_truth(search: Search, evaluator) -> float:
    """Seconds of one epoch of the reference CNN trained as a final training (train + validation, all threads)."""
    import torch

    genome = search.initial_genomes(1)[0]
    task = Task(0, 0, genome, 0, final=True, epochs=1, threads=torch.get_num_threads())
    results: list = []
    evaluator.evaluate([task], lambda _t, r: results.append(r), lambda _t, _i: None, lambda: False)
    return results[0].history[0]["seconds"]


def probe(
    search: Search, evaluator, seed: int, draw: str, per_worker: int, steps: int, stat: str
) -> tuple[float, float]:
    """A timing's estimate of seconds per step: of samples drawn apart from the search's genomes
    (``sample``, the timing before 2026-12-04) or of generation 0's first genomes (``initial``)."""
    count = per_worker * evaluator.workers
    if draw == "initial":
        genomes = search.initial_genomes(count)
    else:
        rng = random.Random(derive_seed(seed, "probe"))
        genomes = [search.fit(sample_genome(search.space, rng)) for _ in range(count)]
    tasks = [Task(PROBE_GENERATION, i, g, search.training_seed(g), probe_steps=steps) for i, g in enumerate(genomes)]
    timed, wall = steps_of(evaluator, tasks)
    timed.sort()
    estimate = statistics.fmean(timed) if stat == "mean" else timed[len(timed) // 2]
    return estimate, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="glyphs")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--probes", default="sample:1x20:median,initial:2x20:mean")
    parser.add_argument("--truth", type=int, default=8, help="genomes trained for one epoch each")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "probe")
    args = parser.parse_args()
    import torch

    from bench.harder_sets import ensure_set

    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    probes = []
    for spec in args.probes.split(","):
        draw, shape, stat = spec.split(":")
        per_worker, steps = (int(v) for v in shape.split("x"))
        probes.append((spec, draw, per_worker, steps, stat))
    ratios: dict[str, list[float]] = {spec: [] for spec, *_ in probes}
    walls: dict[str, list[float]] = {spec: [] for spec, *_ in probes}
    finals: list[tuple[float, float, float]] = []
    for name in args.sets.split(","):
        folder = str(ensure_set(name, args.work.resolve() / "sets", 3000, 0))
        for seed in map(int, args.seeds.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                store = Store(Path(tmp) / "runs.json")
                config = Config(dataset=folder, seed=seed)
                run_id = f"probe-{seed}"
                store.create_run(run_id, config.to_dict())
                search = Search(config, store, run_id)
                search.data = search._load_data(store.get_run(run_id) or {})
                evaluator = search._local_evaluator(search.data, train_settings(config, search.data))
                try:
                    # The first probe starts the workers, as a search's first timing does.
                    made = [
                        (repeat, spec, *probe(search, evaluator, seed, *shape))
                        for repeat in range(args.repeats)
                        for spec, *shape in probes
                    ]
                    real = truth(search, evaluator, args.truth)
                    final_epoch = final_truth(search, evaluator)
                    final = search._time_final(evaluator, search.initial_genomes(1)[0], None)
                    data = search.dataset
                    final_steps = (len(data.train_x) + len(data.val_x)) // evaluator.settings.batch_size
                    finals.append((final_epoch, min(final.values()) * final_steps, made[0][2] * final_steps))
                    print(
                        f"{name} seed {seed}: the reference's final epoch {final_epoch:.2f} s; its final timing "
                        f"says {finals[-1][1]:.2f} s, a candidate timing {finals[-1][2]:.2f} s",
                        flush=True,
                    )
                    for repeat, spec, estimate, wall in made:
                        ratios[spec].append(estimate / real)
                        walls[spec].append(wall)
                        print(
                            f"{name} seed {seed} #{repeat} {spec:14s} {estimate * 1000:6.1f} ms/step, "
                            f"truth {real * 1000:6.1f}: ×{estimate / real:.2f} in {wall:.1f} s",
                            flush=True,
                        )
                finally:
                    evaluator.close()
                    store.close()
    print("\nfinal epoch of the reference, real / its final timing / the candidate timing's estimate:")
    for real_s, final_s, candidate_s in finals:
        print(f"  {real_s:.2f} s   ×{final_s / real_s:.2f}   ×{candidate_s / real_s:.2f}")
    print("\nprobe            ratio to truth: mean  min   max   |ratio-1| mean   wall s")
    for spec, *_ in probes:
        r = ratios[spec]
        err = statistics.fmean(abs(v - 1) for v in r)
        print(
            f"{spec:16s} {statistics.fmean(r):5.2f} {min(r):5.2f} {max(r):5.2f}   {err:5.2f}"
            f"          {statistics.fmean(walls[spec]):5.1f}"
        )


if __name__ == "__main__":
    main()
