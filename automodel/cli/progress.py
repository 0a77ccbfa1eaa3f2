"""Progress bars for the terminal: generation, candidate, and batches with the loss."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from tqdm import tqdm

from automodel.evaluators.base import Task
from automodel.evolution.loop import Reporter


class BarReporter(Reporter):
    """Stacked tqdm bars, like a training script's, on stderr: the generations, the generation's
    candidates, and one line per candidate in training (several with workers), each in a fixed
    place so that nothing jumps."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.generations = self.candidates = self.images = None
        self.batches: dict[str, tqdm] = {}  # by the candidate's worker label
        self.positions: dict[str, int] = {}

    def generation_started(self, generation: int, generations: int, todo: int, population: int) -> None:
        if self.generations is None:
            self.generations = tqdm(
                total=generations, desc="generation", position=0, file=self.stream, dynamic_ncols=True
            )
        self.generations.total = generations  # a budget's search may go on past its planned generations
        self.generations.n = generation
        self.generations.refresh()
        self._close_batches()
        self._close(("candidates",))
        self.candidates = tqdm(
            total=population,
            initial=population - todo,
            desc=f"gen {generation} candidates",
            position=1,
            leave=False,
            file=self.stream,
            dynamic_ncols=True,
        )

    def candidate_progress(self, task: Task, info: dict) -> None:
        total = info["epochs"] * info["batches"]
        key = task.worker_label
        bar = self.batches.get(key)
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
            taken = {self.positions[k] for k in self.batches if k != key}
            position = self.positions[key] = next(p for p in range(2, 3 + len(self.batches)) if p not in taken)
            label = "final model" if task.final else f"candidate {task.index}"
            bar = self.batches[key] = tqdm(
                total=total,
                desc=label,
                position=position,
                leave=False,
                file=self.stream,
                dynamic_ncols=True,
                unit="batch",
            )
        bar.n = (info["epoch"] - 1) * info["batches"] + info["batch"]
        bar.set_postfix(epoch=f"{info['epoch']}/{info['epochs']}", loss=f"{info['loss']:.4f}", refresh=True)

    def candidate_done(self, task: Task, record: Mapping[str, Any]) -> None:
        bar = self.batches.pop(task.worker_label, None)
        self.positions.pop(task.worker_label, None)
        if bar is not None:
            bar.close()
        if self.candidates is not None:
            self.candidates.update(1)
            self.candidates.set_postfix(last=f"{record['fitness']:.3f}", status=record["status"])

    def generation_done(self, record: dict) -> None:
        if self.generations is not None:
            self.generations.n = record["generation"] + 1
            self.generations.set_postfix(best=f"{record['best']:.4f}", mean=f"{record['mean']:.4f}")
        self.message(
            f"generation {record['generation']}: best {record['best']:.4f}  mean {record['mean']:.4f}  "
            f"worst {record['worst']:.4f}  ({record['seconds']:.1f} s)"
        )

    def data_progress(self, done: int, total: int) -> None:
        if self.images is None:
            self.images = tqdm(
                total=total,
                desc="decoding images",
                position=0,
                leave=False,
                file=self.stream,
                dynamic_ncols=True,
                unit="img",
            )
        self.images.n = done
        self.images.refresh()
        if done >= total:
            self._close(("images",))

    def message(self, text: str) -> None:
        tqdm.write(text, file=self.stream)

    def close(self) -> None:
        self._close_batches()
        self._close(("images", "candidates", "generations"))

    def _close_batches(self) -> None:
        for bar in self.batches.values():
            bar.close()
        self.batches, self.positions = {}, {}

    def _close(self, names) -> None:
        for name in names:
            bar = getattr(self, name)
            if bar is not None:
                bar.close()
                setattr(self, name, None)
