"""Search settings and the search space, with validation and a JSON round trip.

Every value a person can set lives here, in two dataclasses: :class:`SearchSpace` (which
architectures and hyper-parameters the genetic algorithm may choose from) and
:class:`Config` (the algorithm, the training budget and the run). ``validate`` raises
:class:`ConfigError` with one sentence naming the bad value and what is accepted; the command
line and the page show that sentence as it is.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeGuard

from automodel.errors import ConfigError  # noqa: F401  (defined with the other errors, re-exported)

PLANNED = ("population", "generations", "epochs", "min_epochs", "final_epochs")  # what a budget plans

SELECTION_METHODS = ("roulette", "tournament", "rank", "truncation", "sus")
CROSSOVER_METHODS = ("one_point", "two_point", "uniform")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "silu", "tanh")
BLOCK_KINDS = ("plain", "residual", "separable")
DOWNSAMPLING = ("max", "avg", "stride", "none")
HEADS = ("flatten", "avgmax", "gap")
OPTIMIZERS = ("adam", "adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("local", "ray")
AUGMENTATIONS = ("auto", "none", "crop", "flip_crop")
# The final training starts from fresh weights, or the winner's trained ones; auto: the winner's when
# the run has them (a budget too short to search has none), else fresh.
FINAL_STARTS = ("auto", "scratch", "search")


# Learning rates that train, per optimizer, at the reference batch size of 64 (the trainer scales
# them with the batch size): measured by bench/bench_priors.py on the harder sets of bench/.
DEFAULT_LEARNING_RATES = {"sgd": [0.01, 0.05], "adam": [7e-4, 3e-3], "adamw": [7e-4, 3e-3]}


GROUPS = (
    "data",
    "budget",
    "search",
    "training",
    "costs",
    "back end",
    "tracking",
)  # as README's settings table groups them


def setting(default: Any, group: str, help: str, *, accepts: str | tuple[str, ...] | None = None) -> Any:
    """A Config field with the one definition of its meaning: the group it belongs to, what it does
    and the values it accepts; the command line's ``--help``, the page and README read them here.
    ``default`` may be a factory (a list's)."""
    accepted = ", ".join(accepts) if isinstance(accepts, tuple) else accepts
    metadata = {"group": group, "help": help, "accepts": accepted}
    if callable(default):
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


def setting_help(name: str) -> str:
    """One setting's help: what it does, its default and the values it accepts."""
    f = next(f for f in fields(Config) if f.name == name)
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    shown = "none" if default is None else ",".join(default) if isinstance(default, list) else default
    accepts = f"; accepts {f.metadata['accepts']}" if f.metadata.get("accepts") else ""
    return f"{f.metadata['help']} (default {shown}{accepts})"


@dataclass
class SearchSpace:
    """The values each gene may take. Ranges are inclusive ``[low, high]`` pairs; a learning rate
    is drawn on a log scale from its optimizer's range."""

    conv_blocks: list[int] = field(default_factory=lambda: [3, 5])
    filters: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 5])
    block_kinds: list[str] = field(default_factory=lambda: list(BLOCK_KINDS))
    activations: list[str] = field(default_factory=lambda: ["relu", "leaky_relu", "elu", "gelu", "silu"])
    downsampling: list[str] = field(default_factory=lambda: list(DOWNSAMPLING))
    batch_norm: list[bool] = field(default_factory=lambda: [True])
    heads: list[str] = field(default_factory=lambda: ["flatten"])
    dense_layers: list[int] = field(default_factory=lambda: [0, 1])
    dense_units: list[int] = field(default_factory=lambda: [128, 256, 512])
    dropout: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3])
    optimizers: list[str] = field(default_factory=lambda: ["sgd", "adam", "adamw"])
    learning_rates: dict[str, list[float]] = field(
        default_factory=lambda: {name: list(pair) for name, pair in DEFAULT_LEARNING_RATES.items()}
    )
    weight_decays: list[float] = field(default_factory=lambda: [0.0, 1e-5, 1e-4, 5e-4])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        """Build a space from JSON-like data; spaces saved by earlier versions are translated:
        ``pooling`` became ``downsampling``, and a list of learning rates becomes, for every
        optimizer, the range from its smallest to its largest value."""
        data = dict(data)
        if "pooling" in data and "downsampling" not in data:
            data["downsampling"] = data.pop("pooling")
        rates = data.get("learning_rates")
        if isinstance(rates, list) and rates and all(_is_num(v) for v in rates):
            data["learning_rates"] = {name: [min(rates), max(rates)] for name in OPTIMIZERS}
        elif isinstance(rates, dict):
            # A partial mapping narrows some optimizers; the others keep their default range.
            data["learning_rates"] = {**{k: list(v) for k, v in DEFAULT_LEARNING_RATES.items()}, **rates}
        _refuse_unknown(data, cls, "search space setting")
        return cls(**data)

    def learning_rate_range(self, optimizer: str) -> tuple[float, float]:
        low, high = self.learning_rates.get(optimizer) or DEFAULT_LEARNING_RATES[optimizer]
        return float(low), float(high)

    def validate(self) -> None:
        for name in ("conv_blocks", "dense_layers"):
            pair = getattr(self, name)
            low_ok = 1 if name == "conv_blocks" else 0
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(_is_int(v) for v in pair)
                or pair[0] < low_ok
                or pair[0] > pair[1]
                or pair[1] > 12
            ):
                raise ConfigError(
                    f"search space {name} = {pair!r} is not accepted; give [min, max] "
                    f"whole numbers with {low_ok} <= min <= max <= 12."
                )
        _check_choices("filters", self.filters, lambda v: _is_int(v) and 1 <= v <= 1024, "whole numbers from 1 to 1024")
        _check_choices(
            "kernel_sizes",
            self.kernel_sizes,
            lambda v: _is_int(v) and v >= 1 and v % 2 == 1 and v <= 11,
            "odd whole numbers from 1 to 11",
        )
        _check_choices("block_kinds", self.block_kinds, lambda v: v in BLOCK_KINDS, f"any of {', '.join(BLOCK_KINDS)}")
        _check_choices("activations", self.activations, lambda v: v in ACTIVATIONS, f"any of {', '.join(ACTIVATIONS)}")
        _check_choices(
            "downsampling", self.downsampling, lambda v: v in DOWNSAMPLING, f"any of {', '.join(DOWNSAMPLING)}"
        )
        _check_choices("batch_norm", self.batch_norm, lambda v: isinstance(v, bool), "true and/or false")
        _check_choices("heads", self.heads, lambda v: v in HEADS, f"any of {', '.join(HEADS)}")
        _check_choices(
            "dense_units", self.dense_units, lambda v: _is_int(v) and 1 <= v <= 16384, "whole numbers from 1 to 16384"
        )
        _check_choices(
            "dropout", self.dropout, lambda v: _is_num(v) and 0 <= v < 1, "numbers from 0 up to (not including) 1"
        )
        _check_choices("optimizers", self.optimizers, lambda v: v in OPTIMIZERS, f"any of {', '.join(OPTIMIZERS)}")
        self._validate_learning_rates()
        _check_choices("weight_decays", self.weight_decays, lambda v: _is_num(v) and 0 <= v <= 1, "numbers from 0 to 1")

    def _validate_learning_rates(self) -> None:
        rates = self.learning_rates
        accepted = (
            'a mapping from optimizer to [low, high], e.g. {"sgd": [0.01, 0.2], "adam": [0.0003, 0.003]}, '
            "with 0 < low <= high <= 10"
        )
        if not isinstance(rates, dict):
            raise ConfigError(f"search space learning_rates = {rates!r} is not accepted; give {accepted}.")
        for name, pair in rates.items():
            if name not in OPTIMIZERS:
                raise ConfigError(
                    f"search space learning_rates names {name!r}, which is not an optimizer; "
                    f"use {', '.join(OPTIMIZERS)}."
                )
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(_is_num(v) for v in pair)
                or not 0 < pair[0] <= pair[1] <= 10
            ):
                raise ConfigError(
                    f"search space learning_rates[{name!r}] = {pair!r} is not accepted; give "
                    f"[low, high] with 0 < low <= high <= 10."
                )


@dataclass
class Config:
    """Everything that defines one search. Defaults give the Quick demo on the bundled data."""

    # ---- data
    dataset: str = setting(
        "digits",
        "data",
        "a built-in dataset (digits, cifar10, cifar100, mnist, fashion-mnist), "
        "a folder of images (one sub-folder per class, or train/ and test/), or a .zip of one",
    )
    image_size: int | str = setting(
        "auto",
        "data",
        "the longer side, in pixels, that folder images are scaled to (aspect kept); auto: their "
        "own size, at most 64 on a CPU and 128 on a GPU; built-in datasets keep their size",
        accepts="auto or 8-1024",
    )
    val_fraction: float = setting(
        0.15, "data", "share of the training data held out to measure fitness", accepts="above 0, at most 0.9"
    )
    # ---- budget
    # The whole run's time, final training included (seconds; "5m" or "1h" on the command line): the
    # search plans population, generations, epochs and final epochs from it (automodel/evolution/budget.py).
    budget_s: float | None = setting(
        None,
        "budget",
        "the whole run's time, final training included (90, 90s, 5m, 1h); plans population, "
        "generations, epochs and final epochs unless they are given (5m when none of them is)",
        accepts="at least 10 seconds",
    )
    overrides: list[str] = setting(
        list,
        "budget",
        "the planned settings a person gave, which a budget's plan keeps (filled in by the command line and the page)",
    )
    time_budget_s: float | None = setting(
        None,
        "budget",
        "an end to the generations only, in seconds (the final training not counted); none: no limit",
        accepts="above 0",
    )
    target_fitness: float | None = setting(
        None, "budget", "end the search once a candidate reaches this validation accuracy; none: never", accepts="0-1"
    )
    # ---- genetic algorithm
    population: int = setting(8, "search", "candidates per generation", accepts="2-10000")
    generations: int = setting(3, "search", "number of generations", accepts="1-100000")
    selection: str = setting("tournament", "search", "how parents are chosen", accepts=SELECTION_METHODS)
    tournament_size: int = setting(
        3, "search", "entrants per tournament (clipped to the population)", accepts="1-10000"
    )
    truncation_fraction: float = setting(
        0.5, "search", "share of the best that truncation selection draws from", accepts="above 0, at most 1"
    )
    crossover: str = setting("uniform", "search", "how two parents' genes are combined", accepts=CROSSOVER_METHODS)
    crossover_rate: float = setting(0.3, "search", "chance that a pair of parents is crossed", accepts="0-1")
    mutation_rate: float = setting(
        0.05,
        "search",
        "per-gene chance of being redrawn (and of adding or removing a "
        "layer): about one or two changes per child, a local step",
        accepts="0-1",
    )
    elitism: int = setting(
        1, "search", "best candidates copied unchanged into the next generation", accepts="0 to population - 1"
    )
    seed: int = setting(0, "search", "the run's seed: the same seed gives the same search", accepts="0 or more")
    warm_start: list[str] = setting(
        list,
        "search",
        "earlier runs (of the same store) whose best distinct genomes "
        "seed generation 0, up to half of it, repaired to this run's images and budgets; "
        "the rest is sampled as usual",
        accepts="run IDs, e.g. run-a,run-b",
    )
    # ---- training of each candidate and of the final model
    epochs: int = setting(
        3, "training", "a candidate's full training, its top rung of successive halving", accepts="1-10000"
    )
    min_epochs: int = setting(
        1,
        "training",
        "successive halving's first rung (raised to at least 300 steps); min_epochs = epochs turns halving off",
        accepts="1-10000",
    )
    reduction_factor: int = setting(
        3, "training", "successive halving keeps the best 1 in this many of each rung", accepts="2-100"
    )
    final_epochs: int = setting(15, "training", "epochs of the final training on train + validation", accepts="1-10000")
    final_from: str = setting(
        "auto",
        "training",
        "where the final training starts: fresh weights (scratch), the "
        "winner's trained weights (search), or auto: the winner's when the run has them, "
        "else fresh",
        accepts=FINAL_STARTS,
    )
    batch_size: int | None = setting(
        None, "training", "images per step; none: from the training set's size (16 to 256)", accepts="1-65536"
    )
    batch_by_time: bool = setting(
        False,
        "training",
        "with a budget and no batch size given: train at batch 64 when it trains more images a second "
        "than the automatic size (timed at the start), each candidate given the same time, so more epochs",
    )
    augment: str = setting(
        "auto",
        "training",
        "augmentation per batch: none, crop (random translation), flip_crop; auto: no flips for digit datasets",
        accepts=AUGMENTATIONS,
    )
    label_smoothing: float = setting(0.1, "training", "label smoothing of the loss; 0 turns it off", accepts="0-0.5")
    clip_grad_norm: float = setting(5.0, "training", "gradient norm clipping; 0 turns it off", accepts="0 or more")
    compile: bool = setting(
        False, "training", "torch.compile each candidate (a GPU's; seconds of compiling per network)"
    )
    time_limit_s: float = setting(
        600.0,
        "training",
        "a candidate's time limit in seconds; with a budget at most a quarter of it",
        accepts="above 0",
    )
    prune: bool = setting(
        False,
        "training",
        "also stop a candidate after its first epoch when it scores below "
        "prune_fraction × the median first epoch of earlier generations",
    )
    prune_fraction: float = setting(
        0.5,
        "training",
        "the share of the earlier first-epoch median below which prune stops a candidate",
        accepts="above 0, at most 1",
    )
    # Off by default: it has not yet measured better than fresh weights at equal budget (bench/RESULTS.md §13).
    inherit_weights: bool = setting(
        False,
        "training",
        "children start from a parent's trained weights where their layers match in shape (Lamarckian inheritance)",
    )
    # ---- size and cost limits, objectives
    max_params: int = setting(
        20_000_000, "costs", "parameter cap: larger genomes are repaired, or refused", accepts="1 or more"
    )
    max_macs: int | None = setting(
        None,
        "costs",
        "multiply-accumulates per image; none: 20,000 × height × width; genomes above it are repaired before training",
        accepts="1 or more",
    )
    max_latency_ms: float | None = setting(
        None,
        "costs",
        "refuse, before training, a network slower than this per "
        "image at batch 1 on the search's device; none: no limit",
        accepts="above 0",
    )
    objectives: list[str] = setting(
        lambda: ["accuracy"],
        "costs",
        "accuracy, then any of params, macs, latency: several make the search find the Pareto front",
        accepts="e.g. accuracy,params",
    )
    # ---- where candidates train
    device: str = setting("auto", "back end", "auto (CUDA when present), cpu or cuda", accepts=DEVICES)
    backend: str = setting(
        "local", "back end", "local (worker processes on this machine) or ray (a cluster)", accepts=BACKENDS
    )
    workers: int | str = setting(
        "auto",
        "back end",
        "candidates trained at once by the local back end; auto: one per CPU core (4 per GPU)",
        accepts="auto or 1-1024",
    )
    ray_address: str | None = setting(
        None, "back end", "none: start a local Ray for the run; auto or host:port: join a running cluster"
    )
    cpus_per_candidate: float = setting(
        1.0,
        "back end",
        "CPUs each candidate's Ray task reserves (also its torch threads, rounded down)",
        accepts="above 0",
    )
    gpus_per_candidate: float | None = setting(
        None,
        "back end",
        "GPUs each candidate's Ray task reserves (fractions share one); none: 1 on cuda, else 0",
        accepts="0-1",
    )
    retries: int = setting(1, "back end", "times a candidate whose Ray worker died is tried again", accepts="0-10")
    # ---- where the run is also recorded
    mlflow: str | None = setting(
        None,
        "tracking",
        "log the run and each candidate to MLflow at this tracking URI; "
        "default: $MLFLOW_TRACKING_URI, else mlflow.db beside the store; none: off",
        accepts="none, default, or a URI (sqlite:///path.db, http://host:port)",
    )
    mlflow_experiment: str = setting("automodel", "tracking", "the MLflow experiment the run is logged under")
    space: SearchSpace = field(default_factory=SearchSpace)

    def validate(self) -> None:
        """Raise :class:`ConfigError` for the first unacceptable value."""
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError(
                "dataset is empty; give a dataset name (digits, cifar10, cifar100, mnist, "
                "fashion-mnist) or a path to an image folder or .zip."
            )
        _check_int("population", self.population, 2, 10_000)
        _check_int("generations", self.generations, 1, 100_000)
        _check_choice("selection", self.selection, SELECTION_METHODS)
        _check_int("tournament_size", self.tournament_size, 1, 10_000)
        _check_float("truncation_fraction", self.truncation_fraction, 0.0, 1.0, low_open=True)
        _check_choice("crossover", self.crossover, CROSSOVER_METHODS)
        _check_float("crossover_rate", self.crossover_rate, 0.0, 1.0)
        _check_float("mutation_rate", self.mutation_rate, 0.0, 1.0)
        _check_int("elitism", self.elitism, 0, 10_000)
        if self.elitism >= self.population:
            raise ConfigError(
                f"elitism {self.elitism} must be smaller than the population ({self.population}); "
                f"use 0 to {self.population - 1}."
            )
        _check_int("seed", self.seed, 0, 2**63 - 1)
        if not isinstance(self.warm_start, list) or not all(isinstance(r, str) and r.strip() for r in self.warm_start):
            raise ConfigError(
                f"warm_start = {self.warm_start!r} is not accepted; give run IDs of this store, e.g. run-a,run-b."
            )
        if self.target_fitness is not None:
            _check_float("target_fitness", self.target_fitness, 0.0, 1.0)
        if self.time_budget_s is not None:
            _check_float("time_budget_s", self.time_budget_s, 0.0, math.inf, low_open=True)
        if self.budget_s is not None:
            _check_float("budget_s", self.budget_s, 10.0, math.inf)
        if not isinstance(self.overrides, list) or any(o not in PLANNED for o in self.overrides):
            raise ConfigError(
                f"overrides = {self.overrides!r} is not accepted; give a list of any of {', '.join(PLANNED)}."
            )
        _check_int("epochs", self.epochs, 1, 10_000)
        _check_int("min_epochs", self.min_epochs, 1, 10_000)
        _check_int("reduction_factor", self.reduction_factor, 2, 100)
        _check_int("final_epochs", self.final_epochs, 1, 10_000)
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, 1, 65_536)
        _check_float("val_fraction", self.val_fraction, 0.0, 0.9, low_open=True)
        if self.image_size != "auto" and (not _is_int(self.image_size) or not 8 <= self.image_size <= 1024):
            raise ConfigError(
                f"image_size = {self.image_size!r} is not accepted; use auto or a whole number of "
                f"pixels from 8 to 1024 (the longer side images are scaled to)."
            )
        _check_choice("augment", self.augment, AUGMENTATIONS)
        _check_choice("final_from", self.final_from, FINAL_STARTS)
        _check_float("label_smoothing", self.label_smoothing, 0.0, 0.5)
        _check_float("clip_grad_norm", self.clip_grad_norm, 0.0, 1e6)
        _check_float("time_limit_s", self.time_limit_s, 0.0, math.inf, low_open=True)
        if not isinstance(self.compile, bool):
            raise ConfigError(f"compile = {self.compile!r} is not accepted; use true or false.")
        for name in ("prune", "inherit_weights", "batch_by_time"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} = {getattr(self, name)!r} is not accepted; use true or false.")
        _check_float("prune_fraction", self.prune_fraction, 0.0, 1.0, low_open=True)
        _check_int("max_params", self.max_params, 1, 10**12)
        if self.max_macs is not None:
            _check_int("max_macs", self.max_macs, 1, 10**15)
        if self.max_latency_ms is not None:
            _check_float("max_latency_ms", self.max_latency_ms, 0.0, math.inf, low_open=True)
        costs = ("params", "macs", "latency")
        if (
            not isinstance(self.objectives, list)
            or not self.objectives
            or self.objectives[0] != "accuracy"
            or any(o not in costs for o in self.objectives[1:])
            or len(set(self.objectives)) != len(self.objectives)
        ):
            raise ConfigError(
                f"objectives = {self.objectives!r} is not accepted; give accuracy first, then any of "
                f"{', '.join(costs)} once each (e.g. accuracy,params)."
            )
        _check_choice("device", self.device, DEVICES)
        _check_choice("backend", self.backend, BACKENDS)
        if self.workers != "auto":
            if not _is_int(self.workers) or not 1 <= self.workers <= 1024:
                raise ConfigError(
                    f"workers = {self.workers!r} is not accepted; use auto or a whole number from 1 to 1024."
                )
        if self.ray_address is not None:
            address = self.ray_address
            if not isinstance(address, str) or not address.strip() or any(ch.isspace() for ch in address):
                raise ConfigError(
                    f"ray_address = {self.ray_address!r} is not accepted; give auto, host:port or "
                    f"ray://host:port, or leave it out to start a local Ray."
                )
            if self.backend != "ray":
                raise ConfigError(
                    f"ray_address is set but backend is {self.backend!r}; add --backend ray or leave out --ray-address."
                )
        _check_float("cpus_per_candidate", self.cpus_per_candidate, 0.0, 1024.0, low_open=True)
        if self.gpus_per_candidate is not None:
            _check_float("gpus_per_candidate", self.gpus_per_candidate, 0.0, 1.0)
            if self.gpus_per_candidate > 0 and self.device == "cpu":
                raise ConfigError(
                    f"gpus_per_candidate = {self.gpus_per_candidate!r} asks for GPUs but device is cpu; "
                    f"use device auto or cuda, or gpus_per_candidate 0."
                )
        _check_int("retries", self.retries, 0, 10)
        self._validate_tracking()
        if not isinstance(self.space, SearchSpace):
            raise ConfigError("space must be a mapping of search-space settings.")
        self.space.validate()

    def _validate_tracking(self) -> None:
        if self.mlflow is not None:
            if not isinstance(self.mlflow, str) or not self.mlflow.strip() or any(ch.isspace() for ch in self.mlflow):
                raise ConfigError(
                    f"mlflow = {self.mlflow!r} is not accepted; give default or a tracking URI such as "
                    f"sqlite:///mlflow.db or http://127.0.0.1:5000, or leave it out."
                )
            if importlib.util.find_spec("mlflow") is None:
                raise ConfigError(
                    "MLflow tracking needs the mlflow package, which is not installed; install it with "
                    "pip install -r requirements-mlflow.txt, or leave out mlflow."
                )
        if not isinstance(self.mlflow_experiment, str) or not self.mlflow_experiment.strip():
            raise ConfigError(
                f"mlflow_experiment = {self.mlflow_experiment!r} is not accepted; give an experiment "
                f"name, e.g. automodel."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fidelities(self, steps_per_epoch: int | None = None) -> list[int]:
        """The epochs of each successive-halving rung, from ``min_epochs`` up to ``epochs``, growing
        by ``reduction_factor`` (e.g. 1, 3, 9 for 9 epochs); one rung when halving is off.

        Given ``steps_per_epoch``, the first rung is at least ``MIN_RUNG_STEPS`` steps long: scores
        taken earlier mostly measure noise (few networks are above chance by then on the harder
        sets of bench/), so ranking on them would promote at random. On a small dataset this can
        leave a single rung: every candidate gets the full budget.
        """
        start = min(self.min_epochs, self.epochs)
        if steps_per_epoch:
            start = max(start, math.ceil(MIN_RUNG_STEPS / steps_per_epoch))
        rungs, epochs = [], min(start, self.epochs)
        while epochs < self.epochs:
            rungs.append(epochs)
            epochs *= self.reduction_factor
        return rungs + [self.epochs]

    def measures_latency(self) -> bool:
        return "latency" in self.objectives or self.max_latency_ms is not None

    def candidate_time_limit(self) -> float:
        """A candidate's time limit: ``time_limit_s``, and at most a quarter of a time budget."""
        if self.time_budget_s is None:
            return self.time_limit_s
        return min(self.time_limit_s, max(1.0, self.time_budget_s / 4))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build and validate a config; unknown keys and wrong types are refused."""
        if not isinstance(data, dict):
            raise ConfigError("the config must be a JSON object of settings.")
        data = dict(data)
        space_data = data.pop("space", None)
        if space_data is None:
            space_data = {}
        if not isinstance(space_data, dict):
            raise ConfigError("space must be a JSON object of search-space settings.")
        _refuse_unknown(data, cls, "setting")
        config = cls(**data, space=SearchSpace.from_dict(space_data))
        config.validate()
        return config

    @classmethod
    def from_json_file(cls, path: str | Path) -> Config:
        return cls.from_dict(read_settings_file(path))


def read_settings_file(path: str | Path) -> Any:
    """The JSON of a config file, or a ConfigError saying in one sentence why it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; give the path of a JSON file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"config file {path} cannot be read ({exc.__class__.__name__}); give a UTF-8 JSON file."
        ) from None
    try:
        # NaN and Infinity parse as floats; validation then names the setting that holds one.
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON (line {exc.lineno}: {exc.msg}).") from None
    return data


MIN_RUNG_STEPS = 300  # the shortest first rung of successive halving, in optimizer steps
MACS_PER_PIXEL = 20_000  # the default max_macs per input pixel: about 2× a plain 3-block CNN


def resolve_max_macs(max_macs: int | None, input_shape) -> int:
    """``max_macs``, or its default for images of ``input_shape`` (C, H, W)."""
    return int(max_macs) if max_macs is not None else MACS_PER_PIXEL * int(input_shape[1]) * int(input_shape[2])


STEPS_PER_EPOCH = 128  # the automatic batch size gives at least this many steps per epoch, where it can


def resolve_batch_size(batch_size: int | None, train_size: int) -> int:
    """``batch_size``, or by default the largest power of two from 16 to 256 that still gives
    ``STEPS_PER_EPOCH`` steps per epoch: small datasets get small batches, so that a candidate
    trained for a few epochs takes enough steps to learn; large ones get batches that keep a GPU
    busy. Batch 64 trains a single network to a higher accuracy in the same time on a set of
    2,000 images (bench/RESULTS.md §16), but inside a search at an equal budget it lost to batch 16
    in every measured pair (§18): the plan spends the faster epochs on more candidates, each of
    which takes a quarter of the steps."""
    if batch_size is not None:
        return int(batch_size)
    size = 16
    while size < 256 and train_size / (size * 2) >= STEPS_PER_EPOCH:
        size *= 2
    return size


def available_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


AUTO_IMAGE_SIDE = {"cpu": 64, "cuda": 128}  # image_size auto: the most the longer side is scaled to


def resolve_image_size(image_size: int | str, device: str) -> tuple[int | None, int]:
    """``(image_size, max_side)`` for ``load_dataset``: a number is the longer side, exactly; auto
    keeps the images' own size up to ``AUTO_IMAGE_SIDE`` of the device the candidates train on
    (``cpu`` or ``cuda``)."""
    if image_size == "auto":
        return None, AUTO_IMAGE_SIDE["cuda" if device == "cuda" else "cpu"]
    return int(image_size), int(image_size)


GPU_WORKERS = 4  # candidates per GPU with workers auto: small CNNs leave a large GPU mostly idle one at a time


def resolve_workers(workers: int | str, device: str, population: int, cpus: int | None = None) -> tuple[int, int]:
    """(worker processes, torch threads each) for the local back end.

    ``auto``: on the CPU one worker per CPU with one thread each (for the small networks of a search,
    two trainings side by side use two cores far better than one training with two threads), at most
    one per candidate of a generation; on a GPU ``GPU_WORKERS``. A number: that many workers, sharing
    the CPUs. One worker (a process of its own) trains with the search process's threads.
    """
    cpus = cpus or available_cpus()
    if workers == "auto":
        workers = GPU_WORKERS if device == "cuda" else cpus
        workers = max(1, min(workers, population))
    workers = int(workers)
    return workers, max(1, cpus // workers)


def _refuse_unknown(data: dict, cls: type, what: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} {unknown[0]!r}; accepted: {', '.join(sorted(known))}.")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if not _is_int(value) or not low <= value <= high:
        raise ConfigError(f"{name} = {value!r} is not accepted; use a whole number from {low} to {high}.")


def _check_float(name: str, value: Any, low: float, high: float, low_open: bool = False) -> None:
    ok = _is_num(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"above {low:g}" if low_open else f"from {low:g}"
        upper = "" if high == math.inf else f" to {high:g}"
        raise ConfigError(f"{name} = {value!r} is not accepted; use a number {bound}{upper}.")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} = {value!r} is not accepted; use one of {', '.join(choices)}.")


def _check_choices(name: str, values: Any, ok, accepted: str) -> None:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"search space {name} = {values!r} is not accepted; give a non-empty list of {accepted}.")
    for value in values:
        if not ok(value):
            raise ConfigError(f"search space {name} holds {value!r}, which is not accepted; use {accepted}.")
