"""Records written by earlier versions still load: checkpoints, configs, genomes and runs."""

from __future__ import annotations

import torch
from torch import nn

from automodel.config import Config
from automodel.evolution.genome import Genome
from automodel.evolution.loop import Search
from automodel.store import Store
from automodel.training.export import FORMAT_V1, load_model
from automodel.training.trainer import TrainResult

# A genome as the previous version recorded it: blocks with "pooling", no "kind", no "head",
# dense layers without "batch_norm".
OLD_GENOME = {
    "conv": [
        {"filters": 8, "kernel": 3, "activation": "relu", "pooling": "max", "batch_norm": True},
        {"filters": 16, "kernel": 5, "activation": "elu", "pooling": "none", "batch_norm": False},
    ],
    "dense": [{"units": 32, "activation": "gelu"}],
    "dropout": 0.1,
    "optimizer": "adam",
    "learning_rate": 0.001,
    "weight_decay": 0.0,
}
OLD_CONFIG = {
    "dataset": "digits",
    "population": 4,
    "generations": 2,
    "epochs": 2,
    "final_epochs": 1,
    "batch_size": 32,
    "prune": True,
    "prune_fraction": 0.5,
    "label_smoothing": 0.0,
    "elitism": 1,
    "space": {
        "conv_blocks": [1, 3],
        "filters": [8, 16],
        "kernel_sizes": [1, 3, 5, 7],
        "pooling": ["max", "avg", "none"],
        "batch_norm": [True, False],
        "dense_layers": [0, 2],
        "dense_units": [32, 64],
        "dropout": [0.0, 0.5],
        "optimizers": ["adam", "sgd"],
        "learning_rates": [1e-1, 1e-3, 1e-5],
        "weight_decays": [0.0],
    },
}


def old_layout_network() -> nn.Module:
    """The network the previous version built for OLD_GENOME on 1×28×28: two flat sequences."""
    features = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(8, 16, 5, padding=2),
        nn.ELU(),
        nn.AdaptiveAvgPool2d((4, 4)),
    )
    classifier = nn.Sequential(
        nn.Flatten(), nn.Dropout(0.1), nn.Linear(16 * 16, 32), nn.GELU(), nn.Dropout(0.1), nn.Linear(32, 3)
    )
    return nn.ModuleDict({"features": features, "classifier": classifier})


def test_a_checkpoint_of_the_previous_version_loads_and_predicts_the_same(tmp_path):
    torch.manual_seed(0)
    old = old_layout_network()
    with torch.no_grad():  # non-trivial batch-norm statistics
        old["features"][1].running_mean.uniform_(-0.5, 0.5)
        old["features"][1].running_var.uniform_(0.5, 2.0)
    state = {
        f"{part}.{key}": value for part in ("features", "classifier") for key, value in old[part].state_dict().items()
    }
    state["mean"], state["std"] = torch.tensor([0.3]).view(1, 1, 1, 1), torch.tensor([0.2]).view(1, 1, 1, 1)
    path = tmp_path / "old.pt"
    torch.save(
        {
            "format": FORMAT_V1,
            "genome": OLD_GENOME,
            "input_shape": [1, 28, 28],
            "classes": ["a", "b", "c"],
            "mean": [0.3],
            "std": [0.2],
            "metrics": {"test_accuracy": 0.5},
            "state_dict": state,
        },
        path,
    )

    model = load_model(path)
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    old.eval()
    with torch.no_grad():
        expected = old["classifier"](old["features"]((x - 0.3) / 0.2))
        assert torch.allclose(model(x), expected, atol=1e-5)
    assert model.metrics == {"test_accuracy": 0.5}


def test_an_old_config_still_validates_with_the_same_meaning():
    config = Config.from_dict(OLD_CONFIG)
    assert config.space.downsampling == ["max", "avg", "none"]
    assert config.space.learning_rates == {"adam": [1e-5, 1e-1], "adamw": [1e-5, 1e-1], "sgd": [1e-5, 1e-1]}
    assert Config.from_dict(config.to_dict()) == config  # and round-trips in today's form


def test_an_old_genome_keeps_its_network():
    genome = Genome.from_dict(OLD_GENOME)
    assert [b.kind for b in genome.conv] == ["plain", "plain"] and genome.head == "flatten"
    assert [b.downsample for b in genome.conv] == ["max", "none"]
    assert not genome.dense[0].batch_norm  # earlier dense layers had no batch norm
    assert Genome.from_dict(genome.to_dict()) == genome


class ScoreByWidth:
    """An evaluator that scores without training (wider first block, higher score)."""

    def __init__(self):
        self.trained: list[str] = []

    def evaluate(self, tasks, on_result, on_progress, should_stop):
        from automodel.training.model import build_model

        for task in tasks:
            self.trained.append(task.genome.key())
            model = build_model(task.genome, (1, 8, 8), [str(i) for i in range(10)])
            on_result(
                task,
                TrainResult(
                    "ok", task.genome.conv[0].filters / 100, params=1, epochs_done=2, state_dict=model.state_dict()
                ),
            )

    def close(self):
        pass


def test_a_run_recorded_by_the_previous_version_resumes(tmp_path):
    """Generation 0 recorded in the old format (old genomes, old keys, no MACs or history);
    resuming breeds generation 1 from it, never retrains a recorded genome, and finishes."""
    store = Store(tmp_path / "db.json")
    store.create_run("old", OLD_CONFIG, status="interrupted")
    old_genomes = [
        OLD_GENOME,
        {**OLD_GENOME, "conv": OLD_GENOME["conv"][:1]},
        {**OLD_GENOME, "dense": []},
        {**OLD_GENOME, "dropout": 0.5},
    ]
    for index, genome in enumerate(old_genomes):
        store.add_individual(
            {
                "run_id": "old",
                "generation": 0,
                "index": index,
                "key": f"old-key-{index}",
                "genome": genome,
                "summary": "old",
                "fitness": 0.5 + index / 10,
                "status": "ok",
                "reason": "",
                "params": 1000,
                "seconds": 1.0,
                "epochs": 2,
                "train_loss": 1.0,
                "first_epoch_fitness": 0.4,
                "cached": False,
                "recorded_at": 0.0,
            }
        )
    store.add_generation(
        {
            "run_id": "old",
            "generation": 0,
            "best": 0.8,
            "mean": 0.65,
            "worst": 0.5,
            "diversity": 0.5,
            "failed": 0,
            "seconds": 4.0,
        }
    )
    evaluator = ScoreByWidth()
    config = Config.from_dict(store.get_run("old")["config"])
    assert Search(config, store, "old", evaluator_factory=lambda d, s: evaluator).run() == "completed"
    recorded = {Genome.from_dict(g).key() for g in old_genomes}
    assert not recorded & set(evaluator.trained[:-1]), "a genome recorded before the upgrade was trained again"
    assert [g["generation"] for g in store.generations("old")] == [0, 1]
    assert len(store.individuals("old", 1)) == 4
    assert store.get_run("old")["test_accuracy"] is not None
