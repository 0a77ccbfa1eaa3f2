"""The page in a real browser: Start the Quick demo, watch it live, Stop, Resume, download the model.

Drives Debian's Chromium (``/usr/bin/chromium``) with Playwright for Python against
``streamlit run app.py`` on a free local port with a temporary database. Screenshots are saved in
the test's temporary folder (their paths are printed). Skipped with a reason when Chromium or
Playwright is missing, unless AUTOMODEL_REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real processes, servers or a browser

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_S = 60
FIRST_GENERATION_S = 240  # a slow 2-core machine takes over 90 s for the first candidates to train
STOP_S = 15
COMPLETE_S = 400


def _unavailable(reason: str) -> None:
    if os.environ.get("AUTOMODEL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"AUTOMODEL_REQUIRE_BROWSER=1 but {reason}")
    # A warning shows in pytest's summary even without -rs, so the skip is not missed.
    warnings.warn(f"the browser test is skipped: {reason}", stacklevel=2)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"streamlit exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"streamlit did not answer within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


def _stop_group(proc: subprocess.Popen) -> None:
    """End a process started in its own session, and everything in its group."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, PermissionError):
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _stop_searches(db: Path) -> None:
    """A failed test must not leave the search it started running (it has its own process group)."""
    if not db.exists():
        return
    from automodel.process import jobs
    from automodel.store import ACTIVE_STATUSES, Store

    store = Store(db)
    for run in store.list_runs():
        if run.get("status") in ACTIVE_STATUSES and run.get("pid"):
            jobs.request_stop(store, run["run_id"], timeout_s=5)


@pytest.fixture(scope="module")
def chromium():
    """One Chromium for the module's tests; each test's pages are closed after it (``browser``)."""
    _, sync_playwright = _browser_or_skip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def browser(chromium):
    yield chromium
    for context in list(chromium.contexts):
        context.close()


@pytest.fixture
def expect():
    return _browser_or_skip()[0]


@contextlib.contextmanager
def serving(db: Path, tmp_path: Path, name: str = "streamlit") -> Iterator[tuple[subprocess.Popen, str]]:
    """The page served on ``db`` (see :func:`_serve`); on leaving, the server and the searches it started end."""
    server, url, _ = _serve(db, tmp_path, name)
    try:
        yield server, url
    finally:
        _stop_group(server)
        _stop_searches(db)


def test_start_watch_stop_resume_and_download(tmp_path, browser, expect):
    db = tmp_path / "db" / "automodel.json"
    shots: list[Path] = []
    with serving(db, tmp_path) as (server, url):
        page = browser.new_page(viewport={"width": 1440, "height": 1000}, accept_downloads=True)

        def shot(name: str) -> None:
            # Streamlit scrolls inside its own container: grow the window to get the whole page.
            height = page.evaluate(
                "() => Math.max(...[...document.querySelectorAll('section, div')].map(e => e.scrollHeight))"
            )
            page.set_viewport_size({"width": 1440, "height": min(max(int(height), 1000), 4000)})
            path = tmp_path / f"{len(shots) + 1:02d}-{name}.png"
            page.screenshot(path=path, full_page=True)
            page.set_viewport_size({"width": 1440, "height": 1000})
            shots.append(path)
            print(f"screenshot: {path}")

        status = page.locator(".st-key-status")
        # Streamlit's own header has a "Stop" (script) button while the page redraws: look in our areas.
        main = page.get_by_test_id("stMain")
        sidebar = page.get_by_test_id("stSidebar")
        page.goto(url)
        start = sidebar.get_by_role("button", name="Start", exact=True)
        expect(start).to_be_enabled(timeout=SERVER_START_S * 1000)
        sidebar.get_by_role("button", name="Quick demo", exact=True).click()
        expect(page.get_by_text("Loaded the Quick demo preset")).to_be_visible(timeout=10_000)
        start.click()

        # Live: the first generation's candidates so far appear in the chart (its best/mean/worst
        # points) and the table (trained, or trained to a first rung of successive halving).
        chart = page.locator('[data-testid="stVegaLiteChart"]').first
        expect(chart.locator('[aria-label*="Statistic: best"]').first).to_be_attached(timeout=FIRST_GENERATION_S * 1000)
        table = page.locator(".st-key-population_table [role=gridcell]")
        expect(table.filter(has_text=re.compile("✓ ok|… partial")).first).to_be_attached(timeout=10_000)
        expect(status).to_contain_text("running")
        # In a generation, or already in the final training when the plan's generations ended early.
        expect(status).to_contain_text(re.compile(r"generation \d+/\d+|searched \d+/\d+ generations"))
        shot("running")

        # Stop: the run ends within seconds and is marked stopped.
        stop_clicked = time.monotonic()
        main.get_by_role("button", name="Stop", exact=True).click()
        expect(status).to_contain_text("stopped after", timeout=STOP_S * 1000)
        stop_seconds = time.monotonic() - stop_clicked
        print(f"stopped {stop_seconds:.1f} s after the click")
        assert stop_seconds < 10
        resume = main.get_by_role("button", name="Resume", exact=True)
        expect(resume).to_be_enabled(timeout=10_000)
        shot("stopped")

        # Resume: it continues to the end, final training included.
        resume.click()
        expect(status).to_contain_text("search and final training done", timeout=COMPLETE_S * 1000)
        shot("completed")

        # The run's tabs: each is drawn when opened.
        def open_tab(label: str) -> None:
            main.get_by_role("tab", name=label, exact=True).click()

        open_tab("Best model")
        expect(page.get_by_text("Test accuracy").first).to_be_visible(timeout=20_000)
        expect(page.locator(".st-key-layer_table [role=gridcell]").filter(has_text="Total").first).to_be_attached()
        shot("best-model")
        # The network as a diagram, the confusion matrix, and a prediction for an uploaded image.
        open_tab("Architecture")
        diagram = page.get_by_test_id("stGraphVizChart").locator("svg").first
        expect(diagram).to_be_visible(timeout=20_000)
        assert len(_diagram_nodes(diagram)) >= 4
        # The learning curves beside it: two charts, each drawn at a readable height.
        beside = (
            page.get_by_test_id("stHorizontalBlock")
            .filter(has=page.get_by_test_id("stGraphVizChart"))
            .get_by_test_id("stColumn")
            .nth(1)
        )
        curves = beside.locator(".vega-embed")
        expect(curves.first).to_be_visible(timeout=20_000)
        assert curves.count() == 2
        for i in range(2):
            chart = curves.nth(i)
            y_axis = max(
                (b for b in (a.bounding_box() for a in chart.locator("g.role-axis").all()) if b),
                key=lambda b: b["height"],
            )
            assert y_axis["height"] >= 150, y_axis  # the plotted area's height
            for axis in chart.locator("g.role-axis").all():
                boxes = [b for b in (t.bounding_box() for t in axis.locator("g.role-axis-label text").all()) if b]
                vertical = len({round(b["x"] + b["width"]) for b in boxes}) == 1  # right-aligned: the y-axis
                start, size = ("y", "height") if vertical else ("x", "width")
                boxes.sort(key=lambda b: b[start])
                assert all(a[start] + a[size] <= b[start] + 0.5 for a, b in zip(boxes, boxes[1:])), boxes
        # The best network's curves go on with its final training's loss, a series of its own.
        legend = curves.nth(1).locator("g.role-legend-label text").all_text_contents()
        assert "final training" in legend, legend
        shot("architecture")
        open_tab("Test results")
        expect(main.get_by_text("Test results", exact=True).last).to_be_visible(timeout=20_000)
        expect(page.locator('[aria-label*="Predicted"]').first).to_be_attached(timeout=20_000)
        shot("test-results")
        open_tab("Try the model")
        from PIL import Image

        Image.new("L", (8, 8), 40).save(tmp_path / "my-digit.png")
        uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]').last
        expect(uploader).to_be_attached(timeout=20_000)
        uploader.set_input_files(str(tmp_path / "my-digit.png"))
        expect(main.get_by_text(re.compile(r"my-digit\.png.*Prediction"))).to_be_visible(timeout=30_000)
        shot("try-the-model")

        # Download the best model and load it.
        open_tab("Best model")
        button = main.get_by_role("button", name=re.compile(r"Best model \(\.pt"))
        expect(button).to_be_enabled(timeout=20_000)
        with page.expect_download(timeout=30_000) as download_info:
            button.click()
        model_file = tmp_path / "downloaded-best.pt"
        download_info.value.save_as(model_file)

        # The records as CSV and the ONNX export (made on click) come the same way.
        with page.expect_download(timeout=30_000) as csv_info:
            main.get_by_role("button", name="Candidates (.csv)").click()
        csv_file = tmp_path / "candidates.csv"
        csv_info.value.save_as(csv_file)
        with page.expect_download(timeout=90_000) as onnx_info:
            main.get_by_role("button", name="ONNX export").click()
        onnx_file = tmp_path / "best.onnx"
        onnx_info.value.save_as(onnx_file)

        import torch

        from automodel import load_model
        from automodel.store import Store

        model = load_model(model_file)
        channels, height, width = model.input_shape
        with torch.no_grad():
            logits = model(torch.rand(2, channels, height, width))
        assert logits.shape == (2, len(model.classes))
        store = Store(db)
        (run,) = store.list_runs()
        assert run["status"] == "completed" and run["test_accuracy"] is not None
        assert model_file.read_bytes() == Path(run["best_model_path"]).read_bytes()

        import pandas as pd

        records = pd.read_csv(csv_file)
        # The Quick demo: its three generations, whole, with no budget to end them early.
        population, generations = run["config"]["population"], run["generations_done"]
        assert run.get("plan") is None and run["total_generations"] == generations == 3
        assert len(records) == len(store.individuals(run["run_id"])) >= population * generations
        assert set(range(generations)) <= set(records["generation"])
        try:
            import onnxruntime
        except ImportError:
            assert onnx_file.stat().st_size > 0
        else:
            session = onnxruntime.InferenceSession(str(onnx_file))
            images = torch.rand(3, channels, height, width)
            (onnx_logits,) = session.run(None, {"images": images.numpy()})
            with torch.no_grad():
                assert torch.allclose(torch.from_numpy(onnx_logits), model(images), atol=1e-4)


def test_the_pareto_front_is_shown_and_a_member_is_finalized(tmp_path, browser, expect):
    """A finished run with two objectives: the page draws accuracy against parameters with the
    front, finalizes the chosen member in its own process, and then offers its downloads."""
    db = tmp_path / "db" / "automodel.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "automodel",
            "run",
            "--dataset",
            "digits",
            "--population",
            "4",
            "--generations",
            "2",
            "--epochs",
            "1",
            "--final-epochs",
            "1",
            "--seed",
            "1",
            "--objectives",
            "accuracy,params",
            "--run-id",
            "mo",
            "--db",
            str(db),
            "--quiet",
            "--workers",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with serving(db, tmp_path) as (server, url):
        page, main = _open_tab(browser, expect, url, "Pareto front", height=1400)
        expect(main.get_by_text("Pareto front", exact=True).last).to_be_visible(timeout=20_000)
        chart = page.locator(".stVegaLiteChart, [data-testid='stVegaLiteChart']").nth(1)
        expect(chart).to_be_attached(timeout=20_000)
        expect(main.get_by_text("are on the front")).to_be_visible()
        page.screenshot(path=tmp_path / "pareto.png", full_page=True)
        main.get_by_role("button", name="Finalize this candidate").click()
        expect(main.get_by_text("Test accuracy (finalized)")).to_be_visible(timeout=COMPLETE_S * 1000)
        expect(main.get_by_role("button", name="This model (.pt)")).to_be_enabled()
        page.screenshot(path=tmp_path / "pareto-finalized.png", full_page=True)
        print(f"screenshots: {tmp_path / 'pareto.png'}, {tmp_path / 'pareto-finalized.png'}")
        from automodel import load_model
        from automodel.store import Store

        finalized = Store(db).get_run("mo")["finalized"]
        assert len(finalized) == 1
        (entry,) = finalized.values()
        assert load_model(entry["path"]).metrics["test_accuracy"] == entry["test_accuracy"]


def _serve(db: Path, tmp_path: Path, name: str = "streamlit") -> tuple[subprocess.Popen, str, Path]:
    """``streamlit run app.py`` on a free local port with the database ``db``; waits until healthy."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / f"{name}.log"
    env = {**os.environ, "AUTOMODEL_DB": str(db), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("AUTOMODEL_REQUIRE_BROWSER", None)
    with open(log, "wb") as log_file:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
                "--server.fileWatcherType",
                "none",
            ],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_healthy(url, server, log)
    except BaseException:
        _stop_group(server)
        raise
    return server, url, log


def _open_tab(browser, expect, url: str, name: str, height: int = 1000):
    """A new page on ``url`` with the run's tab ``name`` open; returns the page and its main area."""
    page = browser.new_page(viewport={"width": 1440, "height": height})
    page.goto(url)
    main = page.get_by_test_id("stMain")
    tab = main.get_by_role("tab", name=name, exact=True)
    expect(tab).to_be_visible(timeout=SERVER_START_S * 1000)
    tab.click()
    return page, main


def _diagram_nodes(diagram) -> list[list[str]]:
    """The text lines of each node of an architecture diagram's SVG, checked as a person reads
    them: real line breaks (no backslash printed), each node's layer and its shape on lines of
    their own."""
    nodes = [
        diagram.locator("g.node").nth(i).locator("text").all_text_contents()
        for i in range(diagram.locator("g.node").count())
    ]
    assert not any("\\" in line for lines in nodes for line in lines), nodes
    assert all(len(lines) >= 2 for lines in nodes), nodes
    return nodes


def _browser_or_skip():
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    return expect, sync_playwright


def test_two_browser_pages_pressing_start_together_start_exactly_one_run(tmp_path, browser, expect):
    db = tmp_path / "db" / "automodel.json"
    with serving(db, tmp_path) as (server, url):
        pages = [browser.new_page(viewport={"width": 1440, "height": 1000}) for _ in range(2)]
        for page in pages:
            page.goto(url)
            expect(page.get_by_test_id("stSidebar").get_by_role("button", name="Start", exact=True)).to_be_enabled(
                timeout=SERVER_START_S * 1000
            )
        buttons = [p.get_by_test_id("stSidebar").get_by_role("button", name="Start", exact=True) for p in pages]
        for button in buttons:  # two clicks in the same instant, from two sessions
            button.click(no_wait_after=True)
        for page in pages:
            expect(page.get_by_text(re.compile(r"Started run-|is still running"))).to_be_visible(timeout=30_000)
        said = [p.get_by_text(re.compile(r"is still running")).count() for p in pages]
        assert sorted(said) == [0, 1], said
        from automodel.store import Store

        assert len(Store(db).list_runs()) == 1


def test_a_killed_page_server_and_a_new_one_show_the_search_still_running(tmp_path, browser, expect):
    db = tmp_path / "db" / "automodel.json"
    with serving(db, tmp_path, "first") as (server, url):
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(url)
        sidebar = page.get_by_test_id("stSidebar")
        start = sidebar.get_by_role("button", name="Start", exact=True)
        expect(start).to_be_enabled(timeout=SERVER_START_S * 1000)
        start.click()
        status = page.locator(".st-key-status")
        expect(status).to_contain_text("running", timeout=FIRST_GENERATION_S * 1000)
        os.killpg(server.pid, signal.SIGKILL)  # the page's server dies, hard
        server.wait(timeout=10)
        from automodel.process import jobs
        from automodel.store import ACTIVE_STATUSES, Store

        (run,) = Store(db).list_runs()
        assert run["status"] in ACTIVE_STATUSES
        with serving(db, tmp_path, "second") as (_, url2):
            page.goto(url2)
            expect(page.locator(".st-key-status")).to_contain_text("running", timeout=SERVER_START_S * 1000)
            expect(page.locator(".st-key-status")).to_contain_text(run["run_id"])
            pid = Store(db).get_run(run["run_id"])["pid"]
            assert pid and jobs.pid_is_search(pid)
        _stop_searches(db)


def test_a_five_block_residual_network_is_drawn_a_node_per_layer_with_its_skips(tmp_path, browser, expect):
    """A finished run whose best network has five residual blocks on 32×32 colour images: the
    Architecture tab draws one node per row of its layer table, a skip edge around every block,
    and fits the diagram in its half of the page."""
    import random

    from automodel.config import Config, SearchSpace
    from automodel.evolution.genome import sample_genome
    from automodel.evolution.repair import fit_to_image
    from automodel.store import Store
    from automodel.training.model import layer_table

    space = SearchSpace(conv_blocks=[5, 5], block_kinds=["residual"], dense_layers=[1, 1])
    genome = fit_to_image(sample_genome(space, random.Random(3)), (3, 32, 32))
    rows = layer_table(genome, [3, 32, 32], 10)
    assert sum(bool(r.get("skip")) for r in rows) == 5  # the network the test means to draw
    db = tmp_path / "db" / "automodel.json"
    db.parent.mkdir()
    store = Store(db)
    store.create_run("res5", Config(dataset="digits", population=2, generations=1).to_dict(), total_generations=1)
    history = [{"epoch": e, "val_accuracy": 0.5 + 0.1 * e, "train_loss": 1.5 - 0.3 * e} for e in range(1, 4)]
    store.add_individuals(
        [
            {
                "run_id": "res5",
                "generation": 0,
                "index": i,
                "key": f"res5-{i}",
                "genome": genome.to_dict(),
                "summary": genome.summary(),
                "fitness": 0.8 + 0.05 * i,
                "status": "ok",
                "reason": "",
                "params": 1000,
                "seconds": 1.0,
                "epochs": 3,
                "history": history,
                "cached": False,
                "recorded_at": 1_700_000_000.0 + i,
            }
            for i in range(2)
        ]
    )
    store.update_run(
        "res5",
        status="completed",
        pid=None,
        generations_done=1,
        evaluated=2,
        best_fitness=0.85,
        best_key="res5-1",
        best_genome=genome.to_dict(),
        best_summary=genome.summary(),
        best_generation=0,
        best_index=1,
        input_shape=[3, 32, 32],
        classes=[str(c) for c in range(10)],
    )
    with serving(db, tmp_path) as (server, url):
        page, _ = _open_tab(browser, expect, url, "Architecture")
        diagram = page.get_by_test_id("stGraphVizChart").locator("svg").first
        expect(diagram).to_be_visible(timeout=30_000)
        nodes = _diagram_nodes(diagram)
        assert len(nodes) == len(rows), (nodes, [r["layer"] for r in rows])
        assert sum("Residual" in " ".join(lines) for lines in nodes) == 5, nodes
        skips = [
            " ".join(diagram.locator("g.edge").nth(i).locator("text").all_text_contents())
            for i in range(diagram.locator("g.edge").count())
        ]
        assert sum("skip" in text for text in skips) == 5, skips
        column = page.get_by_test_id("stGraphVizChart").first.bounding_box()
        drawn = diagram.bounding_box()
        assert column and drawn and drawn["width"] <= column["width"] + 1, (drawn, column)
        page.screenshot(path=tmp_path / "residual-5.png", full_page=True)
        print(f"screenshot: {tmp_path / 'residual-5.png'}")
