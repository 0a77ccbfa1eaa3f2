"""One generation's wall time: the local back end against Ray with 1, 2, … workers.

The generation is generation 0 of a search (seed 0 by default): its candidates are trained
with the local back end (in this process, one after another) and then with a local Ray
instance of N workers (N candidates at a time, each reserving ``--cpus-per-candidate`` CPUs and
``--gpus-per-candidate`` GPUs). For Ray three figures are given: starting the instance, the
first generation (cold: worker processes start and read the dataset once each), and the same
generation again (warm workers, the steady state of a long search). Every Ray result is
checked against the local one trained with one thread (the thread count Ray's tasks use with
one CPU each); the last column says whether all fitness values are equal.

    python bench/bench_ray.py [--dataset digits] [--population 8] [--epochs 2] [--workers 1,2]
    python bench/bench_ray.py --device cuda --gpus-per-candidate 0.25 --workers 1,4   # GPU sharing
    python bench/bench_ray.py --cluster [--set glyphs] [--epochs 2] [--kill-only]

``--cluster``: the same generation on one of bench/harder_sets.py's 32×32 sets with the local
back end's worker processes (one per core, one thread each) against a three-node Ray cluster on
this machine (a head with no CPU and two worker nodes of one CPU each,
``automodel.testing.local_cluster``), cold and warm; the overhead of the cluster path per
candidate; then the generation once more on the cluster with one worker node's raylet SIGKILLed
while both nodes train, and the time from the kill until Ray marks the node dead, until its
candidate starts again on the other node (which waits for a free CPU there) and until that
candidate's result arrives. ``--kill-only`` measures only that last generation.

Needs Ray: pip install -r requirements-ray.txt.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automodel.config import Config  # noqa: E402
from automodel.data import load_dataset  # noqa: E402
from automodel.evaluators.base import LocalEvaluator, Task  # noqa: E402
from automodel.evolution.loop import Search, derive_seed  # noqa: E402
from automodel.store import Store  # noqa: E402
from automodel.training.trainer import DeviceData, TrainSettings, resolve_augment, resolve_device  # noqa: E402


def generation_tasks(config: Config, generation: int = 0) -> list[Task]:
    with tempfile.TemporaryDirectory() as folder:
        population = Search(config, Store(Path(folder) / "db.json"), "bench").population(0)
    return [Task(generation, i, g, derive_seed(config.seed, "train", 0, i)) for i, g in enumerate(population)]


def run(evaluator, tasks: list[Task]) -> tuple[float, dict[int, float]]:
    fitness: dict[int, float] = {}
    started = time.perf_counter()
    evaluator.evaluate(tasks, lambda t, r: fitness.__setitem__(t.index, r.fitness), lambda t, i: None, lambda: False)
    return time.perf_counter() - started, fitness


def cluster_main(args: argparse.Namespace) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from automodel.evaluators.ray_cluster import RayEvaluator
    from automodel.evaluators.worker_pool import WorkerPoolEvaluator
    from automodel.testing.local_cluster import LocalCluster
    from bench.harder_sets import ensure_set

    work = Path(tempfile.mkdtemp(prefix="bench-ray-cluster-"))
    folder = ensure_set(args.set, Path(__file__).resolve().parent / "out" / "sets", 3000, 0)
    config = Config(dataset=str(folder), population=args.population, epochs=args.epochs, seed=args.seed)
    data = load_dataset(config.dataset, "data", val_fraction=config.val_fraction, seed=config.seed)
    settings = TrainSettings(epochs=config.epochs, augment=resolve_augment(config.augment, data.name), threads=1)
    tasks, again = generation_tasks(config), generation_tasks(config, generation=1)
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPU cores; torch {torch.__version__}, Ray {ray.__version__}"
    )
    print(
        f"one generation: {len(tasks)} candidates of {args.set} ({len(data.train_x)} training images, 32×32), "
        f"{config.epochs} epochs each\n"
    )
    if args.kill_only:
        reference: dict[int, float] | None = None
    else:
        pool = WorkerPoolEvaluator(DeviceData(data, torch.device("cpu")), settings, os.cpu_count() or 1)
        try:
            local_s, reference = run(pool, tasks)
            local_warm_s, _ = run(pool, again)
        finally:
            pool.close()
        print(f"local workers ({pool.workers}, 1 thread each): {local_s:.1f} s, again {local_warm_s:.1f} s", flush=True)

    started = time.perf_counter()
    cluster = LocalCluster(work)
    cluster_start_s = time.perf_counter() - started
    try:
        started = time.perf_counter()
        evaluator = RayEvaluator(data, settings, address=cluster.address)
        join_s = time.perf_counter() - started
        try:
            if not args.kill_only:
                cold_s, first = run(evaluator, tasks)
                warm_s, second = run(evaluator, again)
            killed = kill_during(evaluator, cluster, generation_tasks(config, generation=2))
        finally:
            evaluator.close()
    finally:
        cluster.shutdown()
    print(f"cluster: {cluster_start_s:.1f} s to start 3 nodes, {join_s:.1f} s to join and put the data")
    if reference is not None:
        same = first == reference == second
        print(f"cluster generation: {cold_s:.1f} s cold, {warm_s:.1f} s warm; same fitness as local: {same}")
        print(
            f"overhead of the cluster path per candidate: {(cold_s - local_s) / len(tasks):+.2f} s cold, "
            f"{(warm_s - local_warm_s) / len(tasks):+.2f} s warm"
        )
    print(
        f"node lost: Ray marked it dead {killed['dead_s']:.1f} s after the kill; its candidate started again "
        f"{killed['restart_s']:.1f} s after the kill (when the surviving node had a CPU free), its result "
        f"{killed['result_s']:.1f} s after; generation {killed['seconds']:.1f} s; all {len(tasks)} recorded ok: "
        f"{killed['all_ok']}" + ("" if reference is None else f"; same fitness: {killed['fitness'] == reference}")
    )


def kill_during(evaluator, cluster, tasks: list[Task]) -> dict:
    """Train ``tasks``; once both nodes train, SIGKILL node b's raylet and time the recovery: until a
    candidate that was training when the node went starts again (its progress goes back, or repeats)
    and until its result arrives; and until Ray marks the node dead."""
    import ray

    last: dict[str, tuple[int, int]] = {}
    marks: dict[str, float] = {}
    killed_at: list[float] = []
    restarted: set[str] = set()
    fitness: dict[int, float] = {}
    statuses: list[str] = []

    def watch_for_death() -> None:  # bounded: Ray marks a lost node dead within its health checks
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline:
            alive = [n for n in ray.nodes() if n.get("Alive") and "automodel_node_b" in n.get("Resources", {})]
            if not alive:
                marks["dead"] = time.perf_counter()
                return
            time.sleep(0.1)

    def progress(task: Task, info: dict) -> None:
        label, point = info["worker"], (int(info["epoch"]), int(info["batch"]))
        if killed_at and label in last and point <= last[label] and label not in restarted:
            restarted.add(label)
            marks.setdefault("restart", time.perf_counter())
        last[label] = point
        if not killed_at and len(last) >= 2:  # a candidate on each node (one CPU each)
            cluster.kill_raylet("b")
            killed_at.append(time.perf_counter())
            threading.Thread(target=watch_for_death, daemon=True).start()

    def result(task: Task, outcome) -> None:
        fitness[task.index] = outcome.fitness
        statuses.append(outcome.status)
        if task.worker_label in restarted:
            marks.setdefault("result", time.perf_counter())

    started = time.perf_counter()
    evaluator.evaluate(tasks, result, progress, lambda: False)
    seconds = time.perf_counter() - started
    kill = killed_at[0] if killed_at else float("nan")
    return {
        "dead_s": marks.get("dead", float("nan")) - kill,
        "restart_s": marks.get("restart", float("nan")) - kill,
        "result_s": marks.get("result", float("nan")) - kill,
        "seconds": seconds,
        "all_ok": statuses.count("ok") == len(tasks),
        "fitness": fitness,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--workers", default="1,2", help="comma-separated numbers of Ray workers")
    parser.add_argument("--cpus-per-candidate", type=float, default=1.0)
    parser.add_argument("--gpus-per-candidate", type=float, default=None)
    parser.add_argument("--cluster", action="store_true", help="local workers against a three-node Ray cluster")
    parser.add_argument("--set", default="glyphs", help="with --cluster: a set of bench/harder_sets.py")
    parser.add_argument(
        "--kill-only", action="store_true", help="with --cluster: only the generation during which a node is lost"
    )
    args = parser.parse_args()
    if args.cluster:
        cluster_main(args)
        return

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private, short-lived local instance
    import ray

    from automodel.evaluators.ray_cluster import RayEvaluator  # here, so that --help works without Ray

    config = Config(
        dataset=args.dataset, population=args.population, epochs=args.epochs, seed=args.seed, device=args.device
    )
    data = load_dataset(config.dataset, "data", val_fraction=config.val_fraction, seed=config.seed)
    device = resolve_device(config.device)
    settings = TrainSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        device=str(device),
        augment=resolve_augment(config.augment, data.name),
    )
    tasks = generation_tasks(config)
    again = generation_tasks(config, generation=1)  # the same candidates, labelled as a second generation
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPU cores"
        + (f", {torch.cuda.get_device_name()}" if device.type == "cuda" else "")
        + f"; torch {torch.__version__} ({torch.get_num_threads()} threads by default), Ray {ray.__version__}"
    )
    print(
        f"one generation: {len(tasks)} candidates of {config.dataset} ({len(data.train_x)} training images), "
        f"{config.epochs} epochs each, batch {config.batch_size}, device {device}\n"
    )

    rows = []
    local_data = DeviceData(data, device)
    seconds, _ = run(LocalEvaluator(local_data, settings), tasks)
    rows.append((f"local ({torch.get_num_threads()} threads)", "-", seconds, None, "-", "-"))
    seconds, reference = run(LocalEvaluator(local_data, replace(settings, threads=1)), tasks)
    rows.append(("local (1 thread)", "-", seconds, None, "-", "-"))

    for workers in [int(w) for w in args.workers.split(",")]:
        started = time.perf_counter()
        evaluator = RayEvaluator(
            data,
            settings,
            device=config.device,
            cpus_per_candidate=args.cpus_per_candidate,
            gpus_per_candidate=args.gpus_per_candidate,
            num_cpus=max(1, int(workers * args.cpus_per_candidate)),
        )
        startup = time.perf_counter() - started
        try:
            cold, first = run(evaluator, tasks)
            warm, second = run(evaluator, again)
            loads = len(evaluator.data_loads())
        finally:
            evaluator.close()
        same = "yes" if first == reference == second else "no" if device.type == "cpu" else "n/a (GPU)"
        rows.append(
            (f"ray, {workers} worker{'s' if workers > 1 else ''}", f"{startup:.1f}", cold, warm, str(loads), same)
        )

    print(
        f"{'back end':24} {'start s':>8} {'generation s':>13} {'again (warm) s':>15} {'data reads':>11}  same fitness"
    )
    for name, startup, cold, warm, loads, same in rows:
        warm_text = "-" if warm is None else f"{warm:.1f}"
        print(f"{name:24} {startup:>8} {cold:>13.1f} {warm_text:>15} {loads:>11}  {same}")


if __name__ == "__main__":
    main()
