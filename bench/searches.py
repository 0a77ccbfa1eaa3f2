"""What the benchmarks share: a search without its final training, and a random search's share of
a training budget."""

from __future__ import annotations

from automodel.search import Search


class SearchOnly(Search):
    """The generations only: the benchmarks compare what the search found, not its final model."""

    def _final_training(self, evaluator) -> str:
        return "completed"


def within_epochs(rows: list[dict], epochs: int) -> list[dict]:
    """The first ``rows`` (in sampling order) whose trained epochs together stay within ``epochs``:
    random search given the training budget another search had (still a random search)."""
    kept, spent = [], 0
    for row in sorted(rows, key=lambda r: r["index"]):
        spent += row.get("trained_epochs", 0)
        if spent > epochs:
            break
        kept.append(row)
    return kept
