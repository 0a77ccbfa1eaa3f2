"""The whole space, fuzzed: a few hundred genomes of the default space and of the widest space the
config accepts, on 1- and 3-channel images of two sizes, in both memory formats, with 1 and 2 torch
threads, under oneDNN's AVX2 kernels (what a CPU without AVX-512 runs) and the machine's own; each
trained for a few steps in a child process with a wall-time limit (automodel/testing/space_fuzz.py).
Prints every genome that crashed or hung, then one line of figures.

    python bench/bench_fuzz.py [--default 160] [--widest 80] [--steps 8] [--timeout 60]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from automodel.config import SearchSpace  # noqa: E402
from automodel.testing.space_fuzz import run_cases, sample_cases, summarize, widest_space  # noqa: E402

SHAPES = [(1, 32, 32), (3, 32, 32), (1, 64, 64), (3, 64, 64)]
ISAS = ("AVX2", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--default", type=int, default=160, help="genomes of the default space")
    parser.add_argument("--widest", type=int, default=80, help="genomes of the widest space")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a genome may take")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, oneDNN ISA capped to {ISAS[0]} and uncapped"
    )
    total_failures = 0
    with tempfile.TemporaryDirectory() as work:
        for name, space, count in (("default", SearchSpace(), args.default), ("widest", widest_space(), args.widest)):
            cases = sample_cases(space, count, seed=1, input_shapes=SHAPES, isas=ISAS, steps=args.steps)
            report = run_cases(cases, case_timeout_s=args.timeout, workdir=work)
            for line in summarize(report):
                print(line)
            total_failures += len(report.failures)
            crashes = sum(f.outcome == "crash" for f in report.failures)
            seconds = report.case_seconds or [0.0]
            print(
                f"{name} space: {report.cases} genomes, {crashes} crashed, {len(report.failures) - crashes} hung, "
                f"{report.seconds:.0f} s (per genome: median {statistics.median(seconds):.2f} s, "
                f"max {max(seconds):.2f} s)"
            )
    print(f"failures: {total_failures}")


if __name__ == "__main__":
    main()
