"""Multi-objective search against random search: hypervolume of the fronts, and MACs against latency.

On each set and seed, side by side: the GA with ``objectives = accuracy, params, latency``
(NSGA-II), population × generations candidates, and random search (one generation of as many
candidates, the same training), both with the same successive halving. The GA does not retrain
its elite, so random search is scored on its first candidates whose trained epochs together stay
within the GA's (equal training budget). From each run's fully
trained candidates it computes the 2-D hypervolume of accuracy × parameters and of accuracy ×
latency, on normalised axes (1 − accuracy; log10 of parameters over 10^3…10^7; log10 of
milliseconds over 10^-2…10^2; reference point (1, 1)), and over all candidates the rank
correlation (Spearman) between MACs and measured latency on this machine.

    python bench/bench_pareto.py [--sets digits,glyphs] [--seeds 0,1,2] [--epochs 2]

Target: the GA's mean hypervolume ≥ random search's, for both pairs.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from harder_sets import ensure_set  # noqa: E402
from searches import SearchOnly, within_epochs  # noqa: E402

from automodel.config import Config  # noqa: E402
from automodel.evolution.pareto import hypervolume_2d, nondominated_sort  # noqa: E402
from automodel.store import Store  # noqa: E402


def _scaled_log(value: float, low: float, high: float) -> float:
    return min(1.0, max(0.0, (math.log10(max(value, 1e-12)) - low) / (high - low)))


def hypervolumes(rows: list[dict]) -> dict[str, float]:
    trained = [r for r in rows if r["status"] == "ok" and not r.get("cached")]
    result = {}
    for name, field, low, high in (("params", "params", 3, 7), ("latency", "latency_ms", -2, 2)):
        points = [(1 - r["fitness"], _scaled_log(r[field], low, high)) for r in trained if r.get(field)]
        front = [points[i] for i in nondominated_sort(points)[0]] if points else []
        result[name] = hypervolume_2d(front, (1.0, 1.0))
    return result


def spearman(xs: list[float], ys: list[float]) -> float:
    def ranks(values):
        order = sorted(range(len(values)), key=values.__getitem__)
        r = [0.0] * len(values)
        for rank, i in enumerate(order):
            r[i] = rank
        return r

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))


def run(dataset: str, seed: int, population: int, generations: int, epochs: int, folder: Path) -> list[dict]:
    config = Config.from_dict(
        {
            **Config().to_dict(),
            "dataset": dataset,
            "population": population,
            "generations": generations,
            "epochs": epochs,
            "seed": seed,
            "device": "cpu",
            "objectives": ["accuracy", "params", "latency"],
            "elitism": 1 if generations > 1 else 0,
        }
    )
    store = Store(folder / "db.json")
    store.create_run("b", config.to_dict())
    SearchOnly(config, store, "b", data_dir=ROOT / "data").run()
    return store.individuals("b")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="digits,glyphs")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    print(
        f"# {datetime.date.today()} · {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads · GA: population {args.population} × {args.generations} generations; random: "
        f"{args.population * args.generations} candidates; {args.epochs} epochs each"
    )
    print("set | seed | GA hv(acc×params) | random hv(acc×params) | GA hv(acc×latency) | random hv(acc×latency)")
    verdict = []
    for name in args.sets.split(","):
        dataset = "digits" if name == "digits" else str(ensure_set(name, ROOT / "bench" / "out" / "sets"))
        table, pairs = [], []
        for seed in (int(s) for s in args.seeds.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                ga = run(dataset, seed, args.population, args.generations, args.epochs, Path(tmp) / "ga")
                rnd = run(dataset, seed, args.population * args.generations, 1, args.epochs, Path(tmp) / "rnd")
            # The GA does not retrain its elites: random search gets as many trained epochs as the GA had.
            ga_epochs = sum(row.get("trained_epochs", 0) for row in ga)
            g, r = hypervolumes(ga), hypervolumes(within_epochs(rnd, ga_epochs))
            table.append((g, r))
            pairs += [
                (row["macs"], row["latency_ms"])
                for row in ga + rnd
                if row.get("macs") and row.get("latency_ms") and not row.get("cached")
            ]
            print(
                f"{name} | {seed} | {g['params']:.4f} | {r['params']:.4f} | {g['latency']:.4f} | {r['latency']:.4f}",
                flush=True,
            )
        for objective in ("params", "latency"):
            ga_mean = statistics.fmean(g[objective] for g, _ in table)
            rnd_mean = statistics.fmean(r[objective] for _, r in table)
            ok = ga_mean >= rnd_mean
            verdict.append(ok)
            print(
                f"{name} accuracy × {objective}: GA {ga_mean:.4f} · random {rnd_mean:.4f} · GA ≥ random: "
                f"{'yes' if ok else 'NO'}"
            )
        rho = spearman([p[0] for p in pairs], [p[1] for p in pairs])
        print(f"{name}: MACs against measured latency on this CPU, Spearman ρ = {rho:.2f} over {len(pairs)} candidates")
    print(f"pareto_targets_met: {all(verdict)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
