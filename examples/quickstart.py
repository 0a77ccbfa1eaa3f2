"""AutoModel from Python: a search, its best model, its records, a prediction, and a search in the
background that is stopped and resumed. Runs in well under a minute on a laptop's CPU.

    python examples/quickstart.py [--db data/automodel.json]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import automodel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=None, help="the store (default: data/automodel.json)")
    args = parser.parse_args()

    # A search here, in this process. A budget ("30s", "5m") plans everything; here a tiny search is
    # asked for by its settings instead, so that the example is quick.
    run = automodel.search(
        "digits", population=4, generations=2, epochs=1, final_epochs=2, seed=0, db=args.db, progress=False
    )
    print(run)
    best = run.best
    print(f"best: {best.summary}")
    print(f"validation {best.fitness:.3f}, test {best.test_accuracy:.3f}, saved at {best.model_path}")

    records = run.records()  # one row per candidate, as a pandas DataFrame
    print(records[["generation", "index", "status", "fitness", "params"]].to_string(index=False))

    # The saved model answers for image files, read as training read its images.
    with tempfile.TemporaryDirectory() as folder:
        digit = Image.fromarray(np.kron(np.eye(8, dtype=np.uint8) * 255, np.ones((1, 1), np.uint8)))
        digit.save(Path(folder) / "drawn.png")
        (answer,) = run.predict(Path(folder) / "drawn.png", top=3)
        print(f"prediction for {Path(answer.path).name}: {answer.label} ({answer.confidence:.2f})")

    # A search in its own process (as the page starts one), watched, stopped and resumed.
    background = automodel.search(
        "digits", population=4, generations=30, epochs=1, final_epochs=1, seed=1, db=args.db, background=True
    )
    print(f"started {background.run_id} in the background: {background.status}")
    background.wait(timeout=15)  # returns early if it ends
    print(f"stop: {background.stop(timeout=30)}")
    print(f"generations done before the stop: {background.record.get('generations_done', 0)}")
    background.resume(background=True)
    print(f"resumed: {background.status}")
    print(f"stop again: {background.stop(timeout=30)}")
    print("runs in the store:", ", ".join(r.run_id for r in automodel.runs(args.db)))


if __name__ == "__main__":
    main()
