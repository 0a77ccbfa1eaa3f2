"""Which cheap signal ranks candidates like a full training does, and at what cost.

On each harder set of bench/harder_sets.py, a sample of genomes of the default search space
(fitted to the images as the search fits them) is scored by

- zero-cost proxies at initialisation: parameter count, MACs, the NASWOT activation-pattern score
  (Mellor et al. 2021, log|K_H| of the binary codes of one batch), synflow (Tanaka et al. 2020;
  as a zero-cost proxy in Abdelfattah et al. 2021);
- the validation accuracy after 1, 2, 3 and 5 epochs of the search's own training of
  ``--epochs`` epochs (the learning-rate schedule spans all of them, as on a successive-halving
  rung), and the slope between epochs 1 and 3;
- the validation accuracy of short trainings of 1 and 3 epochs whose schedule ends with them (what
  a candidate of a plan with 1 or 3 epochs per candidate is scored by);

and each signal's Spearman rank correlation with the validation accuracy after the full
``--epochs`` is printed with the seconds the signal costs per genome. Two worker processes with
one thread each train side by side, as the search does on a 2-core CPU.

    python bench/bench_fidelity.py [--sets glyphs,shapes] [--genomes 30] [--epochs 15] [--workers 2] [--reuse]

With ``--reuse`` the full trainings recorded in WORK/SET.json are kept and only what is missing is
trained.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from automodel.config import Config, resolve_batch_size, resolve_max_macs  # noqa: E402
from automodel.data import load_dataset  # noqa: E402
from automodel.evolution.genome import Genome, sample_genome  # noqa: E402
from automodel.evolution.repair import fit_to_budget, fit_to_image  # noqa: E402
from automodel.training.model import build_model, measure_cost  # noqa: E402
from automodel.training.trainer import DeviceData, TrainSettings, resolve_augment, train_candidate  # noqa: E402

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh)
EARLY_EPOCHS = (1, 2, 3, 5)
OWN_SCHEDULES = (1, 3)  # short trainings whose schedule ends with them


def naswot(model: nn.Module, x: torch.Tensor) -> float:
    """NASWOT (Mellor et al. 2021): log|det K| where K[i, j] counts the units on which inputs i and j
    fall on the same side of zero before every activation (the binary code of a ReLU network)."""
    n = len(x)
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(_module, inputs, _output):
        code = (inputs[0].detach().reshape(n, -1) > 0).double()
        kernel.add_(code @ code.T + (1 - code) @ (1 - code).T)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, ACTIVATIONS)]
    model.train()  # batch statistics, as the codes are defined on a batch
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else -math.inf


def synflow(model: nn.Module, input_shape) -> float:
    """Synflow (Tanaka et al. 2020): sum of |θ · ∂R/∂θ| with all weights made positive and R the sum
    of the network's output on an all-ones input (float64, batch norm in eval mode)."""
    model = model.double().eval()
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.abs_()
    model.zero_grad()
    model(torch.ones(1, *input_shape, dtype=torch.float64)).sum().backward()
    score = sum((p * p.grad).abs().sum().item() for p in model.parameters() if p.grad is not None)
    return math.log(score) if score > 0 else -math.inf


_DATA: DeviceData | None = None


def _load(folder: str) -> None:
    global _DATA
    torch.set_num_threads(1)
    _DATA = DeviceData(load_dataset(folder, ROOT / "data", seed=0), torch.device("cpu"))


def score_genome(job: tuple[int, dict, dict, dict | None]) -> dict:
    """Proxies at initialisation, one training of ``epochs`` epochs (unless ``known`` has it) and
    short trainings with their own schedules (in a worker)."""
    index, genome_dict, settings_dict, known = job
    data = _DATA
    genome = Genome.from_dict(genome_dict)
    settings = TrainSettings(**settings_dict)
    row = known if known is not None else full_training(index, genome, settings)
    for epochs in OWN_SCHEDULES:
        if f"own{epochs}" not in row:
            short = train_candidate(genome, data, TrainSettings(**{**settings_dict, "epochs": epochs}), seed=index)
            row[f"own{epochs}"], row[f"own{epochs}_s"] = short.fitness, short.seconds
    return row


def full_training(index: int, genome: Genome, settings: TrainSettings) -> dict:
    data = _DATA
    cost = measure_cost(genome, data.input_shape, len(data.classes))
    row: dict = {"index": index, "params": cost.params, "macs": cost.macs, "summary": genome.summary()}
    generator = torch.Generator().manual_seed(index)
    batch = data.train_x[torch.randperm(len(data.train_x), generator=generator)[:64]].float().div(255)
    torch.manual_seed(index)
    started = time.perf_counter()
    row["naswot"] = naswot(build_model(genome, data.input_shape, data.classes, data.mean, data.std), batch)
    row["naswot_s"] = time.perf_counter() - started
    started = time.perf_counter()
    row["synflow"] = synflow(build_model(genome, data.input_shape, data.classes, data.mean, data.std), data.input_shape)
    row["synflow_s"] = time.perf_counter() - started
    result = train_candidate(genome, data, settings, seed=index)
    row.update(status=result.status, final=result.fitness, seconds=result.seconds, reason=result.reason)
    elapsed = 0.0
    for point in result.history:
        elapsed += point["seconds"]
        row[f"ep{point['epoch']}"] = point["val_accuracy"]
        row[f"ep{point['epoch']}_s"] = elapsed
    return row


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    sd = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / sd if sd else float("nan")


def sample(folder: str, count: int, seed: int) -> tuple[list[Genome], dict]:
    config = Config()
    data = load_dataset(folder, ROOT / "data", seed=0)
    rng = random.Random(seed)
    genomes, max_macs = [], resolve_max_macs(config.max_macs, data.input_shape)
    while len(genomes) < count:
        genome = fit_to_image(sample_genome(config.space, rng), data.input_shape)
        genome = fit_to_budget(
            genome,
            data.input_shape,
            len(data.classes),
            max_macs=max_macs,
            max_params=config.max_params,
            min_filters=min(config.space.filters),
            min_blocks=config.space.conv_blocks[0],
        )
        if genome is not None and genome not in genomes:
            genomes.append(genome)
    batch = resolve_batch_size(config.batch_size, len(data.train_x))
    return genomes, {
        "batch_size": batch,
        "augment": resolve_augment(config.augment, data.name),
        "steps_per_epoch": len(data.train_x) // batch,
        "train": len(data.train_x),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="glyphs,shapes")
    parser.add_argument("--genomes", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "fidelity")
    parser.add_argument("--reuse", action="store_true", help="keep the full trainings already recorded")
    args = parser.parse_args()
    from bench.harder_sets import ensure_set

    print(
        f"machine: {platform.processor() or platform.machine()}, {args.workers} workers × 1 thread, "
        f"torch {torch.__version__}",
        flush=True,
    )
    args.work.mkdir(parents=True, exist_ok=True)
    for name in args.sets.split(","):
        folder = str(ensure_set(name, ROOT / "bench" / "out" / "budget" / "sets", 3000, 0))
        genomes, info = sample(folder, args.genomes, args.seed)
        saved = args.work / f"{name}.json"
        known = {r["index"]: r for r in json.loads(saved.read_text())} if args.reuse and saved.exists() else {}
        settings = {
            "epochs": args.epochs,
            "batch_size": info["batch_size"],
            "augment": info["augment"],
            "time_limit_s": 3600.0,
        }
        print(
            f"{name}: {len(genomes)} genomes, {info['train']} training images, batch {info['batch_size']} "
            f"({info['steps_per_epoch']} steps per epoch), {args.epochs} epochs each",
            flush=True,
        )
        rows = []
        with ProcessPoolExecutor(args.workers, initializer=_load, initargs=(folder,)) as pool:
            jobs = [(i, g.to_dict(), settings, known.get(i)) for i, g in enumerate(genomes)]
            for row in pool.map(score_genome, jobs):
                rows.append(row)
                print(
                    f"  {row['index']:2d} {row['status']:8s} final {row['final']:.3f} ep1 {row.get('ep1', 0):.3f} "
                    f"naswot {row['naswot']:.1f} synflow {row['synflow']:.1f} {row['seconds']:.0f} s "
                    f"{row['summary']}",
                    flush=True,
                )
        saved.write_text(json.dumps(rows, indent=1))
        report(name, rows, args.epochs, info["steps_per_epoch"])


def report(name: str, rows: list[dict], epochs: int, steps_per_epoch: int) -> None:
    """Spearman correlation of each signal with the full training's score, and its cost."""
    full = [r["final"] for r in rows]
    mean_full_s = sum(r.get(f"ep{epochs}_s", r["seconds"]) for r in rows) / len(rows)
    signals = [
        ("parameters", [r["params"] for r in rows], 0.0),
        ("MACs", [r["macs"] for r in rows], 0.0),
        ("NASWOT", [r["naswot"] for r in rows], sum(r["naswot_s"] for r in rows) / len(rows)),
        ("synflow", [r["synflow"] for r in rows], sum(r["synflow_s"] for r in rows) / len(rows)),
    ]
    for e in EARLY_EPOCHS:
        if e < epochs:
            signals.append(
                (
                    f"after {e} epoch{'s' if e > 1 else ''} ({e * steps_per_epoch} steps)",
                    [r.get(f"ep{e}") or 0.0 for r in rows],
                    sum(r.get(f"ep{e}_s", 0.0) for r in rows) / len(rows),
                )
            )
    signals.append(
        (
            "slope epochs 1→3",
            [(r.get("ep3") or 0.0) - (r.get("ep1") or 0.0) for r in rows],
            sum(r.get("ep3_s", 0.0) for r in rows) / len(rows),
        )
    )
    for e in OWN_SCHEDULES:
        if all(f"own{e}" in r for r in rows):
            signals.append(
                (
                    f"a training of {e} epoch{'s' if e > 1 else ''} with its own schedule",
                    [r[f"own{e}"] for r in rows],
                    sum(r[f"own{e}_s"] for r in rows) / len(rows),
                )
            )
    ok = sum(r["status"] == "ok" for r in rows)
    print(
        f"\n{name}: {len(rows)} genomes ({ok} trained all {epochs} epochs), full training {mean_full_s:.1f} s "
        f"per genome on one worker; validation accuracy after {epochs} epochs: median "
        f"{sorted(full)[len(full) // 2]:.3f}, best {max(full):.3f}"
    )
    print("| signal | Spearman ρ with the full training | seconds per genome | share of a full training |")
    print("|---|---|---|---|")
    for label, values, seconds in signals:
        print(f"| {label} | {spearman(values, full):+.2f} | {seconds:.2f} | {seconds / mean_full_s:.3f} |")


if __name__ == "__main__":
    main()
