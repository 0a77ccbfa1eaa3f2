"""Genomes that crash or hang the process: the space fuzzer itself, and a slice of the space under
oneDNN's AVX2 kernels (those of CPUs without AVX-512, where PyTorch 2.14's strided 1×1 convolution
on 2–7 channels in channels-last memory corrupts the heap) and the machine's own.
bench/bench_fuzz.py runs the whole sweep."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automodel.config import SearchSpace
from automodel.evolution.genome import ConvBlock, Genome
from automodel.store import Store
from automodel.testing.space_fuzz import FuzzCase, run_cases, sample_cases, summarize, widest_space

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

# The genome that killed the process: a residual block with stride downsampling first, on RGB.
RESIDUAL_STRIDE_FIRST = Genome(
    conv=(ConvBlock(16, 5, "silu", "stride", True, "residual"),),
    dense=(),
    dropout=0.0,
    optimizer="sgd",
    learning_rate=0.014,
    weight_decay=0.0,
).to_dict()


def test_the_fuzzer_tells_a_crash_and_a_hang_from_a_case_that_trains(tmp_path):
    cases = [
        FuzzCase(RESIDUAL_STRIDE_FIRST, (1, 8, 8), steps=1),
        FuzzCase(RESIDUAL_STRIDE_FIRST, (1, 8, 8), probe="crash"),
        FuzzCase(RESIDUAL_STRIDE_FIRST, (1, 8, 8), steps=1),
        FuzzCase(RESIDUAL_STRIDE_FIRST, (1, 8, 8), probe="hang"),
        FuzzCase(RESIDUAL_STRIDE_FIRST, (1, 8, 8), steps=1),
    ]
    report = run_cases(cases, case_timeout_s=5, workdir=tmp_path)
    assert [(f.index, f.outcome) for f in report.failures] == [(1, "crash"), (3, "hang")]
    assert "SIGSEGV" in report.failures[0].detail
    assert len(report.case_seconds) == 3  # the cases after a crash and a hang still ran


def test_blocks_with_a_strided_projection_train_on_every_channel_count_format_and_thread_count(tmp_path):
    variants = []
    for channels in (1, 2, 3, 4, 5, 7, 8, 16):
        for kind, kernel in (("residual", 5), ("residual", 3), ("plain", 1), ("separable", 1)):
            genome = Genome(
                conv=(ConvBlock(16, kernel, "silu", "stride", True, kind),),
                dense=(),
                dropout=0.0,
                optimizer="sgd",
                learning_rate=0.014,
                weight_decay=0.0,
            ).to_dict()
            variants.append((genome, (channels, 16, 16)))
    cases = [
        FuzzCase(g, shape, channels_last, threads, isa, steps=3)
        for g, shape in variants
        for channels_last in (True, False)
        for threads in (1, 2)
        for isa in ("AVX2", None)
        if channels_last or threads == 1
    ]
    report = run_cases(cases, case_timeout_s=60, workdir=tmp_path)
    assert not report.failures, "\n".join(summarize(report))


@pytest.mark.parametrize("name, space, count", [("default", SearchSpace(), 24), ("widest", widest_space(), 12)])
def test_a_sample_of_the_space_trains_without_crashing_or_hanging(tmp_path, name, space, count):
    cases = sample_cases(space, count, seed=7, input_shapes=[(3, 32, 32), (1, 28, 28)], isas=("AVX2", None), steps=4)
    cases.append(FuzzCase(RESIDUAL_STRIDE_FIRST, (3, 32, 32), True, 1, "AVX2", steps=8))
    report = run_cases(cases, case_timeout_s=120, workdir=tmp_path)
    assert report.cases == count + 1
    assert not report.failures, "\n".join(summarize(report))


# ------------------------------------------------------------------------ the genome on every path


def write_rgb_folder(root, per_class: int = 24) -> None:
    """Two classes of 32×32 colour images: red-ish and blue-ish noise."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("red", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 120, (32, 32, 3), dtype=np.uint8)
            pixels[..., 0 if c == 0 else 2] += 120
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def residual_stride_run(tmp_path, *extra: str, run_id: str):
    """A search whose every genome starts with a residual block with stride downsampling, on RGB images,
    under the kernels that crashed (ONEDNN_MAX_CPU_ISA=AVX2)."""
    folder, config = tmp_path / "rgb", tmp_path / "space.json"
    if not folder.exists():
        write_rgb_folder(folder)
        config.write_text(
            json.dumps({"space": {"block_kinds": ["residual"], "downsampling": ["stride"], "conv_blocks": [1, 2]}})
        )
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
    db = tmp_path / "db.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "automodel",
            "run",
            "--dataset",
            str(folder),
            "--config",
            str(config),
            "--population",
            "3",
            "--generations",
            "1",
            "--epochs",
            "1",
            "--final-epochs",
            "1",
            "--run-id",
            run_id,
            "--db",
            str(db),
            "--quiet",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
    )
    return result, db, env


def test_the_genome_that_crashed_trains_with_one_worker_with_workers_and_in_finalize(tmp_path):
    for run_id, workers in (("one", "1"), ("auto", "auto")):
        result, db, env = residual_stride_run(tmp_path, "--workers", workers, run_id=run_id)
        assert result.returncode == 0, result.stderr[-2000:]
        rows = Store(db).individuals(run_id)
        assert rows and all(r["status"] == "ok" for r in rows), [(r["status"], r["reason"]) for r in rows]
        assert all(
            r["genome"]["conv"][0]["kind"] == "residual" and r["genome"]["conv"][0]["downsample"] == "stride"
            for r in rows
        )
        assert Store(db).get_run(run_id)["test_accuracy"] is not None
    key = rows[-1]["key"]
    done = subprocess.run(
        [sys.executable, "-m", "automodel", "finalize", "auto", "--candidate", key, "--db", str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert Store(db).get_run("auto")["finalized"][key]["test_accuracy"] is not None


def test_the_genome_that_crashed_trains_on_ray(tmp_path):
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("AUTOMODEL_REQUIRE_RAY") == "1":
            pytest.fail("AUTOMODEL_REQUIRE_RAY=1 but Ray is not installed; pip install -r requirements-ray.txt")
        pytest.skip("Ray is not installed (pip install -r requirements-ray.txt)")
    result, db, _ = residual_stride_run(tmp_path, "--backend", "ray", run_id="ray")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = Store(db).individuals("ray")
    assert rows and all(r["status"] == "ok" for r in rows), [(r["status"], r["reason"]) for r in rows]
    assert Store(db).get_run("ray")["test_accuracy"] is not None
