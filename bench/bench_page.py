"""Benchmark: the page with 10,000 candidates in the store — each redraw's work, and in Chromium the
time to the first full chart (target 2 s) and of a redraw after a choice (target 0.5 s).

Times, separately, what one redraw of the live view does — the store reads (runs, progress,
generations, all individuals) and the data shaping in automodel.page.views (frames, tables, the
Altair chart serialised to a Vega-Lite dict) — in two cases: a quiet store (files unchanged since
the last redraw, so the store reuses its parse) and a busy one (a candidate was recorded since,
so the individuals file is parsed again). Then a whole page run under Streamlit's AppTest, which
adds Streamlit's own work (widgets, Arrow serialisation of the tables and chart data).

With ``--browser`` it also serves the page with ``streamlit run`` and drives Debian's Chromium
with Playwright: from opening the page to the fitness chart's points being drawn, side by side with
a page of one small chart (the floor that Streamlit's scripts and this browser set on the machine);
from choosing another generation in the population table to that table being shown; and from
opening the genes tab to its chart being drawn.

    python bench/bench_page.py [--candidates 10000] [--population 50] [--repeat 7] [--browser]

Prints the figures; writes nothing but a temporary database.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from automodel.config import Config  # noqa: E402
from automodel.page import views  # noqa: E402
from automodel.process import jobs  # noqa: E402
from automodel.store import Store  # noqa: E402

STATUSES = ["ok"] * 46 + ["oom", "nan", "timeout", "too_large"]


def fill(store: Store, run_id: str, candidates: int, population: int, seed: int = 0) -> None:
    """A finished-looking run with ``candidates`` individuals in generations of ``population``."""
    rng = random.Random(seed)
    generations = candidates // population
    config = Config(population=population, generations=generations + 1).to_dict()
    store.create_run(run_id, config, total_generations=generations + 1, pid=None)
    genome = {
        "conv": [{"filters": 32, "kernel": 3, "activation": "relu", "pooling": "max", "batch_norm": True}] * 3,
        "dense": [{"units": 128, "activation": "relu"}],
        "dropout": 0.2,
        "optimizer": "adam",
        "learning_rate": 0.001,
        "weight_decay": 0.0001,
    }
    for g in range(generations):
        records = []
        for i in range(population):
            status = rng.choice(STATUSES)
            fitness = min(1.0, 0.5 + 0.4 * g / generations + rng.random() * 0.1) if status == "ok" else 0.0
            records.append(
                {
                    "run_id": run_id,
                    "generation": g,
                    "index": i,
                    "key": f"{g:04d}{i:04d}{rng.random()}",
                    "genome": genome,
                    "summary": "C32k3relu/max·bn C32k3relu/max·bn C32k3relu/max·bn → "
                    "D128relu | drop 0.2 | adam 1e-03 wd 0.0001",
                    "fitness": fitness,
                    "status": status,
                    "reason": "" if status == "ok" else f"{status}",
                    "params": rng.randint(10_000, 2_000_000),
                    "seconds": rng.random() * 30,
                    "epochs": 5,
                    "train_loss": rng.random(),
                    "cached": rng.random() < 0.1,
                    "recorded_at": time.time(),
                }
            )
        store.add_individuals(records)
        fit = [r["fitness"] for r in records]
        store.add_generation(
            {
                "run_id": run_id,
                "generation": g,
                "best": max(fit),
                "mean": statistics.fmean(fit),
                "worst": min(fit),
                "diversity": 0.4,
                "failed": sum(r["status"] != "ok" for r in records),
                "trained": population,
                "seconds": 60.0,
                "recorded_at": time.time(),
            }
        )
    # A live run on another host: the page trusts it is alive and draws the live view for it.
    store.update_run(
        run_id,
        status="running",
        pid=os.getpid(),
        host="bench-elsewhere",
        generations_done=generations,
        evaluated=generations * population,
        best_fitness=0.99,
        best_genome=genome,
        best_summary="C32k3relu/max·bn ×3",
        best_generation=generations - 1,
        best_index=0,
        input_shape=[3, 32, 32],
        classes=[str(c) for c in range(10)],
        device="cpu",
        resumed_at=time.time(),
    )
    store.set_progress(
        run_id,
        {
            "generation": generations,
            "generations": generations + 1,
            "index": 3,
            "population": population,
            "final": False,
            "summary": "x",
            "epoch": 2,
            "epochs": 5,
            "batch": 40,
            "batches": 100,
            "loss": 0.5,
            "elapsed_s": 4.0,
            "eta_s": 9.0,
        },
    )


def redraw(store: Store, run_id: str, population: int) -> dict[str, float]:
    """What run_panel does per redraw with the Population tab open, timed by step (seconds); the
    other tabs' work is done only while they are open, and is timed apart (``tab: …``)."""
    t = {}
    start = time.perf_counter()
    runs = jobs.reconcile(store)
    run = next(r for r in runs if r["run_id"] == run_id)
    progress = store.progress(run_id)
    generations = store.generations(run_id)
    t["store: runs, progress, generations"] = time.perf_counter() - start
    mark = time.perf_counter()
    records = store.individuals(run_id)
    t["store: individuals"] = time.perf_counter() - mark
    mark = time.perf_counter()
    view = views.status_view(run, progress, generations)
    frame = views.individuals_frame(records)
    table = views.population_table(frame, int(frame["generation"].max()))
    t["views: status, frame, population table"] = time.perf_counter() - mark
    mark = time.perf_counter()
    spec = views.fitness_chart(
        generations, frame, total_generations=run["total_generations"], population=population
    ).to_dict()
    t["views: fitness chart spec (to_dict)"] = time.perf_counter() - mark
    t["total"] = time.perf_counter() - start
    mark = time.perf_counter()
    views.gene_chart(views.gene_frame(records), "blocks").to_dict()
    views.diversity_chart(generations).to_dict()
    t["tab: which genes matter (when open)"] = time.perf_counter() - mark
    mark = time.perf_counter()
    views.failures_table(frame)
    t["tab: failed candidates (when open)"] = time.perf_counter() - mark
    assert view.headline and len(table) and spec
    return t


def timed(fn, repeat: int) -> dict[str, float]:
    runs = [fn() for _ in range(repeat)]
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--population", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-apptest", action="store_true")
    parser.add_argument("--browser", action="store_true", help="also time the page in Chromium")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.json"
        started = time.perf_counter()
        store = Store(db)
        fill(store, "bench-run", args.candidates, args.population)
        sizes = {p.name: p.stat().st_size for p in Path(tmp).glob("*.json")}
        print(
            f"store with {args.candidates} candidates in {time.perf_counter() - started:.1f} s: "
            + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sorted(sizes.items()))
        )

        # The run stays live while the benchmark runs, as a search's heartbeat keeps it: the page
        # redraws its live view every second throughout.
        heartbeat = jobs.Heartbeat(store, "bench-run").start()
        reader = Store(db)  # the page's own instance
        redraw(reader, "bench-run", args.population)  # first parse
        quiet = timed(lambda: redraw(reader, "bench-run", args.population), args.repeat)
        counter = iter(range(10**6))

        def busy() -> dict[str, float]:
            i = next(counter)
            store.add_individual({"run_id": "other", "generation": 0, "index": i, "fitness": 0.5, "status": "ok"})
            return redraw(reader, "bench-run", args.population)

        changed = timed(busy, args.repeat)
        print(f"\nredraw of the live view, median of {args.repeat} (seconds):")
        print(f"  {'step':38} {'quiet store':>12} {'new candidate':>14}")
        for key in quiet:
            print(f"  {key:38} {quiet[key]:12.3f} {changed[key]:14.3f}")

        if not args.no_apptest:
            apptest(db, args.repeat)
        if args.browser:
            browser(db, args.repeat)
        heartbeat.stop()


def apptest(db: Path, repeat: int) -> None:
    """A whole page run in AppTest (Streamlit's script run, widgets and serialisation included)."""
    os.environ["AUTOMODEL_DB"] = str(db)
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    from streamlit.testing.v1 import AppTest

    import automodel.training.model  # noqa: F401 - torch import, paid once per server, not per redraw

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    started = time.perf_counter()
    at.run()
    first = time.perf_counter() - started
    assert not at.exception, at.exception
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - started)
    print(
        f"\nwhole page in AppTest: first run {first:.3f} s, then median {statistics.median(times):.3f} s "
        f"(min {min(times):.3f}, max {max(times):.3f}) over {repeat} runs"
    )


FLOOR_PAGE = """
import altair as alt
import pandas as pd
import streamlit as st

st.title("One chart")
rows = [{"Generation": g, "Statistic": s, "Fitness": 0.5 + g / 400} for g in range(200) for s in ("best", "mean")]
st.altair_chart(alt.Chart(pd.DataFrame(rows)).mark_line(point=True).encode(x="Generation", y="Fitness",
                                                                           color="Statistic"))
"""


def _serve(script: Path, env: dict) -> tuple:
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(script),
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--server.fileWatcherType",
            "none",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                break
        except OSError:
            time.sleep(0.3)
    return server, f"http://127.0.0.1:{port}"


def browser(db: Path, repeat: int) -> None:
    """The page in Chromium: opening it until the fitness chart's points are drawn, beside a page
    holding nothing but one chart (what Streamlit and this browser cost on this machine); a redraw
    after choosing a generation; opening the genes tab."""
    import signal

    from playwright.sync_api import expect, sync_playwright

    floor_script = db.parent / "one_chart.py"
    floor_script.write_text(FLOOR_PAGE)
    env = {**os.environ, "AUTOMODEL_DB": str(db)}
    servers = {"page": _serve(REPO / "app.py", env), "one chart": _serve(floor_script, env)}
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            opens: dict[str, list[float]] = {name: [] for name in servers}
            redraws, tabs = [], []
            for attempt in range(repeat + 1):
                for name, (_, url) in servers.items():  # interleaved, so both see the same machine
                    page = chromium.new_page(viewport={"width": 1440, "height": 1000})
                    started = time.perf_counter()
                    page.goto(url)
                    chart = page.locator('[data-testid="stVegaLiteChart"]').first
                    expect(chart.locator('[aria-label*="Statistic: best"]').first).to_be_attached(timeout=60_000)
                    if name == "page":
                        expect(page.locator(".st-key-status")).to_contain_text("running")  # the live view
                    if attempt:  # the first opening also warms the server's imports
                        opens[name].append(time.perf_counter() - started)
                    if name == "page":
                        _page_redraws(page, expect, redraws, tabs)
                    page.close()
                    time.sleep(1.0)
            chromium.close()
        page, floor = statistics.median(opens["page"]), statistics.median(opens["one chart"])
        print(
            f"\nChromium, median of {repeat}: page opened to the fitness chart's points drawn {page:.2f} s "
            f"(runs: {', '.join(f'{t:.2f}' for t in opens['page'])}); a page of one chart {floor:.2f} s "
            f"(runs: {', '.join(f'{t:.2f}' for t in opens['one chart'])}); ratio {page / floor:.2f}"
        )
        print(
            f"redraw after choosing a generation, median {statistics.median(redraws):.2f} s "
            f"(runs: {', '.join(f'{t:.2f}' for t in redraws)})"
        )
        print(
            f"opening the genes tab to its chart drawn, median {statistics.median(tabs):.2f} s "
            f"(runs: {', '.join(f'{t:.2f}' for t in tabs)})"
        )
    finally:
        for server, _ in servers.values():
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)


def _page_redraws(page, expect, redraws: list[float], tabs: list[float]) -> None:
    for generation in (5, 9):
        page.get_by_test_id("stMain").get_by_role("combobox").nth(1).click()
        # The list of 200 generations is virtualised: type to bring the option into view.
        page.keyboard.type(f"Generation {generation}")
        page.get_by_role("option", name=f"Generation {generation}", exact=True).click()
        started = time.perf_counter()
        expect(page.get_by_text(f"Generation {generation}: ")).to_be_visible(timeout=30_000)
        redraws.append(time.perf_counter() - started)
    page.get_by_role("tab", name="Which genes matter", exact=True).click()
    started = time.perf_counter()
    expect(page.locator('[data-testid="stVegaLiteChart"]').nth(1).locator("svg, canvas").first).to_be_attached(
        timeout=30_000
    )
    tabs.append(time.perf_counter() - started)
    page.get_by_role("tab", name="Population", exact=True).click()  # back, for the next opening
    expect(page.get_by_text("candidates, best first")).to_be_visible(timeout=30_000)


if __name__ == "__main__":
    main()
