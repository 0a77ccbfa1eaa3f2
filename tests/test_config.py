"""Config and search-space validation: defaults, JSON round trip, one clear line per bad value."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import pytest

from automodel.config import Config, ConfigError, SearchSpace


def _one_line(message: str) -> None:
    assert message.strip(), "empty error message"
    assert "\n" not in message and "\r" not in message, f"message is not one line: {message!r}"


def _raises(build, *needles: str) -> str:
    """Run ``build``; it must raise ConfigError with a one-line message containing every needle."""
    with pytest.raises(ConfigError) as info:
        build()
    message = str(info.value)
    _one_line(message)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


# ------------------------------------------------------------------------ defaults and round trip


def test_defaults_validate():
    Config().validate()
    SearchSpace().validate()


def test_json_round_trip_of_defaults():
    config = Config()
    again = Config.from_dict(json.loads(config.to_json()))
    assert again == config
    assert again.to_json() == config.to_json()


def test_json_round_trip_of_changed_settings():
    config = Config(
        dataset="cifar10",
        population=12,
        generations=5,
        selection="sus",
        crossover="two_point",
        mutation_rate=0.35,
        elitism=3,
        seed=42,
        target_fitness=0.97,
        time_budget_s=120.5,
        epochs=4,
        batch_size=64,
        augment="flip_crop",
        device="cpu",
        space=SearchSpace(
            conv_blocks=[2, 4],
            filters=[16, 32],
            kernel_sizes=[3],
            dense_layers=[1, 1],
            dropout=[0.25],
            learning_rates={"sgd": [0.01, 0.1], "adam": [0.001, 0.001], "adamw": [0.0005, 0.002]},
        ),
    )
    config.validate()
    again = Config.from_dict(json.loads(config.to_json()))
    assert again == config
    assert isinstance(again.space, SearchSpace)
    assert again.space.conv_blocks == [2, 4]


def test_from_json_file_reads_a_good_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"population": 6, "space": {"filters": [8, 16]}}), encoding="utf-8")
    config = Config.from_json_file(path)
    assert config.population == 6
    assert config.space.filters == [8, 16]
    assert config.space.kernel_sizes == SearchSpace().kernel_sizes


def test_space_null_means_default_space():
    assert Config.from_dict({"space": None}).space == SearchSpace()


# ------------------------------------------------------------------------------ bad top-level values

BAD_SETTINGS = [
    # (overrides, setting named, text about what is accepted)
    ({"population": 1}, "population", "from 2 to"),
    ({"population": 0}, "population", "from 2 to"),
    ({"generations": 0}, "generations", "from 1 to"),
    ({"population": 4, "elitism": 4}, "elitism", "use 0 to 3"),
    ({"population": 4, "elitism": 9}, "elitism", "use 0 to 3"),
    ({"tournament_size": 0}, "tournament_size", "whole number from 1 to"),
    ({"tournament_size": "3"}, "tournament_size", "whole number from 1 to"),
    ({"selection": "best"}, "selection", "roulette"),
    ({"selection": "Tournament"}, "selection", "tournament"),
    ({"crossover": "three_point"}, "crossover", "one_point"),
    ({"mutation_rate": -0.1}, "mutation_rate", "from 0 to 1"),
    ({"mutation_rate": 1.5}, "mutation_rate", "from 0 to 1"),
    ({"mutation_rate": float("nan")}, "mutation_rate", "from 0 to 1"),
    ({"crossover_rate": float("inf")}, "crossover_rate", "from 0 to 1"),
    ({"population": "8"}, "population", "whole number"),
    ({"epochs": 2.0}, "epochs", "whole number"),
    ({"population": True}, "population", "whole number"),
    ({"generations": None}, "generations", "whole number"),
    ({"truncation_fraction": 0.0}, "truncation_fraction", "above 0"),
    ({"batch_size": 0}, "batch_size", "whole number"),
    ({"device": "tpu"}, "device", "cuda"),
    ({"backend": "spark"}, "backend", "ray"),
]


@pytest.mark.parametrize("overrides, name, accepted", BAD_SETTINGS, ids=[f"{n}={o[n]!r}" for o, n, _ in BAD_SETTINGS])
def test_bad_setting_names_itself_and_what_is_accepted(overrides, name, accepted):
    _raises(lambda: Config.from_dict(overrides), name, accepted)
    # validate() on a constructed object says the same
    _raises(lambda: replace(Config(), **overrides).validate(), name, accepted)


def test_tournament_size_above_population_is_accepted_and_left_to_selection_to_clip():
    # A tournament larger than the population is clipped to it (select_tournament; see test_operators).
    for selection in ("tournament", "rank"):
        config = Config.from_dict({"population": 4, "tournament_size": 5, "selection": selection})
        assert config.tournament_size == 5


def test_unknown_top_level_key():
    message = _raises(lambda: Config.from_dict({"populaton": 8}), "populaton", "accepted")
    assert "population" in message  # the list of accepted settings


def test_unknown_search_space_key():
    message = _raises(lambda: Config.from_dict({"space": {"filter": [8]}}), "filter", "accepted")
    assert "filters" in message


def test_non_object_config_refused():
    _raises(lambda: Config.from_dict([1, 2]), "JSON object")


@pytest.mark.parametrize("space", [[1], "abc", 5])
def test_space_of_the_wrong_type_refused(space):
    _raises(lambda: Config.from_dict({"space": space}), "space")


@pytest.mark.parametrize("space", [[], 0, "", False])
def test_falsy_space_of_the_wrong_type_refused(space):
    _raises(lambda: Config.from_dict({"space": space}), "space")


# ------------------------------------------------------------------------------ bad search spaces

BAD_SPACES = [
    ({"conv_blocks": [0, 3]}, "conv_blocks", "1 <= min <= max <= 12"),
    ({"conv_blocks": [3, 1]}, "conv_blocks", "1 <= min <= max <= 12"),
    ({"conv_blocks": [1, 13]}, "conv_blocks", "1 <= min <= max <= 12"),
    ({"conv_blocks": [1]}, "conv_blocks", "[min, max]"),
    ({"conv_blocks": [1.0, 3]}, "conv_blocks", "whole numbers"),
    ({"dense_layers": [-1, 2]}, "dense_layers", "0 <= min <= max <= 12"),
    ({"kernel_sizes": [3, 4]}, "kernel_sizes", "odd whole numbers"),
    ({"kernel_sizes": [13]}, "kernel_sizes", "odd whole numbers from 1 to 11"),
    ({"filters": []}, "filters", "non-empty list"),
    ({"filters": [0]}, "filters", "whole numbers from 1 to 1024"),
    ({"filters": [True]}, "filters", "whole numbers"),
    ({"filters": "32"}, "filters", "non-empty list"),
    ({"activations": ["relu", "swish"]}, "activations", "gelu"),
    ({"downsampling": ["min"]}, "downsampling", "max, avg, stride, none"),
    ({"pooling": ["min"]}, "downsampling", "max"),  # the name earlier versions used
    ({"block_kinds": ["dense"]}, "block_kinds", "plain, residual, separable"),
    ({"heads": []}, "heads", "non-empty list"),
    ({"learning_rates": {"sgd": [0.1, 0.01]}}, "learning_rates['sgd']", "0 < low <= high"),
    ({"learning_rates": {"lbfgs": [0.1, 0.2]}}, "lbfgs", "not an optimizer"),
    ({"learning_rates": "fast"}, "learning_rates", "mapping from optimizer"),
    ({"batch_norm": [1]}, "batch_norm", "true"),
    ({"dropout": [1.0]}, "dropout", "up to (not including) 1"),
    ({"optimizers": ["rmsprop"]}, "optimizers", "adamw"),
    ({"learning_rates": [0]}, "learning_rates", "0 < low <= high"),
    ({"weight_decays": [-0.1]}, "weight_decays", "from 0 to 1"),
]


@pytest.mark.parametrize(
    "space, name, accepted", BAD_SPACES, ids=[f"{next(iter(s))}={next(iter(s.values()))!r}" for s, n, _ in BAD_SPACES]
)
def test_bad_search_space_names_itself_and_what_is_accepted(space, name, accepted):
    _raises(lambda: Config.from_dict({"space": space}), name, accepted)
    base = {k: v for k, v in SearchSpace().__dict__.items() if not ("pooling" in space and k == "downsampling")}
    _raises(lambda: SearchSpace.from_dict({**base, **space}).validate(), name, accepted)


# ---------------------------------------------------------------------------------- bad files


def test_missing_config_file(tmp_path):
    path = tmp_path / "nope.json"
    _raises(lambda: Config.from_json_file(path), str(path), "does not exist", "JSON file")


def test_invalid_json_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"population": 8,,}', encoding="utf-8")
    _raises(lambda: Config.from_json_file(path), str(path), "not valid JSON", "line 1")


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin.json"
    path.write_bytes(b'{"dataset": "caf\xe9"}')
    _raises(lambda: Config.from_json_file(path), str(path), "UTF-8")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_in_file_is_refused_in_one_line(tmp_path, constant):
    path = tmp_path / "nan.json"
    path.write_text(f'{{"population": 8, "mutation_rate": {constant}}}', encoding="utf-8")
    _raises(lambda: Config.from_json_file(path), "mutation_rate", "from 0 to 1")


def test_nan_in_file_message_names_the_setting(tmp_path):
    path = tmp_path / "nan.json"
    path.write_text('{"population": 8, "mutation_rate": NaN}', encoding="utf-8")
    _raises(lambda: Config.from_json_file(path), "mutation_rate")


def test_file_with_bad_value_gives_that_values_message(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"population": 1}', encoding="utf-8")
    _raises(lambda: Config.from_json_file(path), "population", "from 2 to")


def test_huge_number_in_file_is_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"mutation_rate": 1e999}', encoding="utf-8")  # parses as inf without a constant
    _raises(lambda: Config.from_json_file(path), "mutation_rate", "from 0 to 1")


def test_every_setting_has_one_definition_of_its_group_help_and_accepted_values():
    import dataclasses

    from automodel.config import GROUPS, setting_help

    for f in dataclasses.fields(Config):
        if f.name == "space":  # a section of its own (README's search-space table)
            continue
        assert f.metadata.get("group") in GROUPS, f.name
        assert len(f.metadata.get("help", "")) > 15, f.name
        assert "(default " in setting_help(f.name)


def test_the_command_lines_help_is_each_settings_own_and_grouped():
    from automodel.cli import commands as cli
    from automodel.config import setting_help

    text = cli.build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert "see README" not in text
    for group in (
        "data settings",
        "budget settings",
        "search settings",
        "training settings",
        "costs settings",
        "back end settings",
    ):
        assert f"\n{group}:" in text
    flat = " ".join(text.split())
    for name in ("population", "image_size", "final_from", "objectives"):
        assert " ".join(setting_help(name).split()) in flat


def test_readme_lists_every_setting():
    import dataclasses
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme[readme.index("## Configuration") : readme.index("## Accuracy and cost together")]
    for f in dataclasses.fields(Config):
        assert f"`{f.name}`" in table, f"README's settings table lacks {f.name}"


def test_every_setting_gets_a_parser_from_its_type_and_an_unknown_type_is_named(monkeypatch):
    from dataclasses import dataclass, field

    from automodel.cli import commands

    flags = commands.run_flags()
    assert flags["population"]["type"] is int and flags["max_macs"]["type"] is int  # int and int | None
    assert flags["warm_start"]["type"] is commands._comma_list
    assert flags["prune"]["action"] is argparse.BooleanOptionalAction

    @dataclass
    class Wider(Config):
        weights: dict[str, int] = field(default_factory=dict)

    monkeypatch.setattr(commands, "Config", Wider)
    with pytest.raises(TypeError, match="Config.weights has type dict"):
        commands.run_flags()
