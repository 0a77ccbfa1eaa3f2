"""Fuzzing the search space: many genomes, each trained for a few steps in a child process with a
wall-time limit, and every genome that crashes or hangs its process reported.

A crash in native code (a segmentation fault, heap corruption) or a hang inside a kernel cannot be
caught in the process it happens in, so the genomes are trained by a child process
(``python -m automodel.testing.space_fuzz CASES_FILE START``) that says ``start I`` before and
``done I`` after each case. The parent gives every case ``case_timeout_s`` from its ``start``; a
child that dies or goes silent is recorded against the case it had started, killed if need be, and
a new child goes on from the next case. The child's own start (importing torch) is not counted.

A case is a genome as the search would train it (sampled from a space, fitted to the image size and
repaired to the default MACs and parameter budgets), an input shape, a memory format, a torch
thread count, and optionally ``isa``: the highest CPU instruction set oneDNN may use
(``ONEDNN_MAX_CPU_ISA``, e.g. ``AVX2`` to run on an AVX-512 machine the kernels a CPU without
AVX-512 runs). Each step is the trainer's step: augmentation, cross-entropy with label smoothing,
backward, gradient clipping, the genome's optimizer; then one forward pass in eval mode.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from automodel.config import Config, SearchSpace, resolve_max_macs
from automodel.evolution.genome import Genome, sample_genome
from automodel.evolution.repair import fit_to_budget, fit_to_image

STARTUP_TIMEOUT_S = 120.0  # a child's own start (importing torch) on a slow machine


@dataclass(frozen=True)
class FuzzCase:
    genome: dict
    input_shape: tuple[int, int, int]
    channels_last: bool = True
    threads: int = 1
    isa: str | None = None  # ONEDNN_MAX_CPU_ISA for the child; None: the machine's best
    steps: int = 8
    batch_size: int = 16
    probe: str | None = None  # "crash" or "hang": a case that does so on purpose (to test the fuzzer)


@dataclass(frozen=True)
class FuzzFailure:
    index: int
    case: FuzzCase
    outcome: str  # crash | hang
    detail: str  # the signal or exit code, and the last lines the child wrote to stderr
    seconds: float


@dataclass
class FuzzReport:
    cases: int
    failures: list[FuzzFailure] = field(default_factory=list)
    seconds: float = 0.0
    case_seconds: list[float] = field(default_factory=list)  # wall time of each case that finished


def widest_space() -> SearchSpace:
    """Every value kind the config accepts, at its extremes and in between (``validate`` bounds)."""
    from automodel.config import ACTIVATIONS, BLOCK_KINDS, DOWNSAMPLING, HEADS, OPTIMIZERS

    space = SearchSpace(
        conv_blocks=[1, 12],
        filters=[1, 2, 3, 4, 5, 8, 16, 33, 64, 128, 256, 512, 1024],
        kernel_sizes=[1, 3, 5, 7, 9, 11],
        block_kinds=list(BLOCK_KINDS),
        activations=list(ACTIVATIONS),
        downsampling=list(DOWNSAMPLING),
        batch_norm=[True, False],
        heads=list(HEADS),
        dense_layers=[0, 3],
        dense_units=[1, 7, 64, 512, 4096],
        dropout=[0.0, 0.5, 0.9],
        optimizers=list(OPTIMIZERS),
        learning_rates={"sgd": [1e-4, 1.0], "adam": [1e-5, 1e-1], "adamw": [1e-5, 1e-1]},
        weight_decays=[0.0, 1e-4, 1.0],
    )
    space.validate()
    return space


def sample_cases(
    space: SearchSpace,
    count: int,
    seed: int,
    input_shapes: Sequence[tuple[int, int, int]],
    *,
    channels_last: Sequence[bool] = (True, False),
    threads: Sequence[int] = (1, 2),
    isas: Sequence[str | None] = (None,),
    steps: int = 8,
) -> list[FuzzCase]:
    """``count`` genomes drawn from ``space`` and fitted as the search fits them, each paired with
    an input shape, memory format, thread count and instruction set in turn (all combinations are
    covered once ``count`` reaches their product). Genomes the search would refuse are redrawn."""
    rng = random.Random(seed)
    defaults = Config()
    combos = [(shape, cl, t, isa) for shape in input_shapes for cl in channels_last for t in threads for isa in isas]
    cases: list[FuzzCase] = []
    while len(cases) < count:
        shape, cl, t, isa = combos[len(cases) % len(combos)]
        genome = fit_to_image(sample_genome(space, rng), shape)
        fitted = fit_to_budget(
            genome,
            shape,
            10,
            max_macs=resolve_max_macs(None, shape),
            max_params=defaults.max_params,
            min_filters=min(space.filters),
            min_blocks=space.conv_blocks[0],
        )
        if fitted is not None:
            channels, height, width = shape
            cases.append(FuzzCase(fitted.to_dict(), (channels, height, width), cl, t, isa, steps))
    return cases


def run_cases(
    cases: Sequence[FuzzCase], *, case_timeout_s: float = 60.0, workdir: str | Path, on_case=None
) -> FuzzReport:
    """Train every case in child processes (one per instruction set, a new one after each failure)
    and report the cases that crashed or hung. ``on_case(index, seconds_or_failure)`` is told each
    outcome as it comes."""
    started = time.monotonic()
    report = FuzzReport(cases=len(cases))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for isa in dict.fromkeys(c.isa for c in cases):
        indices = [i for i, c in enumerate(cases) if c.isa == isa]
        path = workdir / f"cases-{isa or 'native'}.json"
        path.write_text(json.dumps([asdict(cases[i]) for i in indices]))
        position = 0
        while position < len(indices):
            position = _run_child(path, indices, position, cases, isa, case_timeout_s, report, on_case)
    report.seconds = time.monotonic() - started
    return report


def _run_child(
    path: Path,
    indices: list[int],
    position: int,
    cases: Sequence[FuzzCase],
    isa: str | None,
    case_timeout_s: float,
    report: FuzzReport,
    on_case,
) -> int:
    """One child from ``position`` on; returns the position the next child starts at."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    stderr_path = path.with_suffix(f".{position}.stderr")
    with open(stderr_path, "wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "automodel.testing.space_fuzz", str(path), str(position)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            start_new_session=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(child.stdout, lines), daemon=True).start()
    current, case_started = None, time.monotonic()
    timeout = STARTUP_TIMEOUT_S
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.0, case_started + timeout - time.monotonic()))
            except queue.Empty:
                if current is None:
                    raise RuntimeError(f"the fuzzing child did not start in {STARTUP_TIMEOUT_S:g} s") from None
                _kill(child)
                _fail(
                    report,
                    on_case,
                    indices[current],
                    cases,
                    "hang",
                    f"no answer in {timeout:g} s; {_tail(stderr_path)}",
                    time.monotonic() - case_started,
                )
                return current + 1
            if line is None:  # the child ended
                code = child.wait()
                if current is None:
                    if code == 0 and position >= len(indices):
                        return position
                    raise RuntimeError(
                        f"the fuzzing child exited with {_describe(code)} before its first case: {_tail(stderr_path)}"
                    )
                if code == 0:
                    return len(indices)
                _fail(
                    report,
                    on_case,
                    indices[current],
                    cases,
                    "crash",
                    f"{_describe(code)}; {_tail(stderr_path)}",
                    time.monotonic() - case_started,
                )
                return current + 1
            word, _, number = line.partition(" ")
            if word == "start":
                current, case_started, timeout = int(number), time.monotonic(), case_timeout_s
            elif word == "done":
                seconds = time.monotonic() - case_started
                report.case_seconds.append(seconds)
                if on_case is not None:
                    on_case(indices[int(number)], seconds)
                current = int(number)
                case_started, timeout = time.monotonic(), case_timeout_s  # until the next "start"
    finally:
        _kill(child)
        stderr_path.unlink(missing_ok=True)


def _fail(
    report: FuzzReport, on_case, index: int, cases: Sequence[FuzzCase], outcome: str, detail: str, seconds: float
) -> None:
    failure = FuzzFailure(index, cases[index], outcome, detail, round(seconds, 2))
    report.failures.append(failure)
    if on_case is not None:
        on_case(index, failure)


def _read_lines(stream, lines: queue.Queue) -> None:
    for raw in stream:
        lines.put(raw.decode(errors="replace").strip())
    lines.put(None)


def _kill(child: subprocess.Popen) -> None:
    if child.poll() is None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            child.kill()
        child.wait()


def _describe(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _tail(path: Path, lines: int = 3) -> str:
    """What the child last said on stderr: faulthandler's "Fatal Python error" line and the frame
    it names first, else the last lines (never its list of extension modules)."""
    try:
        text = [t.strip() for t in path.read_text(errors="replace").splitlines() if t.strip()]
    except OSError:
        return ""
    text = [t for t in text if not t.startswith("Extension modules") and "total)" not in t]
    fatal = next((i for i, t in enumerate(text) if t.startswith("Fatal Python error")), None)
    if fatal is not None:
        frame = next((t for t in text[fatal:] if t.startswith("File ")), "")
        return f"{text[fatal]} {frame}"[:400]
    return " | ".join(text[-lines:])[-400:]


# ---------------------------------------------------------------------------------- the child


def train_case(case: FuzzCase) -> None:
    """A few of the trainer's steps on random images, then one forward pass in eval mode."""
    import torch
    from torch import nn

    from automodel.training.model import build_model
    from automodel.training.trainer import augment_batch, make_optimizer

    if case.probe == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if case.probe == "hang":
        time.sleep(10**6)
    torch.set_num_threads(case.threads)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    genome = Genome.from_dict(case.genome)
    fmt = torch.channels_last if case.channels_last else torch.contiguous_format
    model = build_model(genome, case.input_shape, [str(i) for i in range(10)]).to(memory_format=fmt)
    optimizer = make_optimizer(genome, model, case.batch_size)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    for _ in range(case.steps):
        x = augment_batch(torch.rand(case.batch_size, *case.input_shape, generator=generator), "flip_crop", generator)
        y = torch.randint(0, 10, (case.batch_size,), generator=generator)
        loss = loss_fn(model(x.contiguous(memory_format=fmt)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    model.eval()
    with torch.inference_mode():
        model(torch.rand(2, *case.input_shape).contiguous(memory_format=fmt))


def _child(cases_file: str, start: int) -> None:
    cases = [
        FuzzCase(**{**c, "input_shape": tuple(c["input_shape"])}) for c in json.loads(Path(cases_file).read_text())
    ]
    for i in range(start, len(cases)):
        print(f"start {i}", flush=True)
        train_case(cases[i])
        print(f"done {i}", flush=True)


def summarize(report: FuzzReport) -> Iterable[str]:
    for f in report.failures:
        yield (
            f"case {f.index}: {f.outcome} ({f.detail}) genome={json.dumps(f.case.genome)} "
            f"shape={f.case.input_shape} channels_last={f.case.channels_last} threads={f.case.threads} isa={f.case.isa}"
        )


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]))
