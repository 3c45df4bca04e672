"""Live curves on visdom: a real server on loopback receives the run's curves and a real headless Chromium renders
them; a hung or missing server costs one warning and never blocks training."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _train_fixtures import PatternFaces, free_port, tiny_config

import Train
from Utils.training.sinks.visdom import VisdomLogger

REPO = Path(__file__).resolve().parents[1]


class SilentServer:
    """Accepts connections and never answers (the case where visdom's own client hangs forever)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)  # keep it open, say nothing

    def close(self):
        for c in self.conns:
            c.close()
        self.sock.close()


def test_hung_server_costs_one_warning_and_no_waiting():
    server = SilentServer()
    warnings_seen = []
    try:
        v = VisdomLogger("http://127.0.0.1", server.port, "hung", timeout=0.5, warn=warnings_seen.append)
        t0 = time.perf_counter()
        for i in range(200):
            v.line("loss", i, 1.0 / (i + 1))
        assert time.perf_counter() - t0 < 0.2  # the caller never waits on the network
        time.sleep(1.5)
        for i in range(10):
            v.line("loss", i, 0.0)
        v.close()
        assert v.disabled and len(warnings_seen) == 1 and "0.5" in warnings_seen[0]
    finally:
        server.close()


def test_training_against_hung_server_finishes(tmp_path):
    server = SilentServer()
    try:
        cfg = tiny_config(tmp_path, backbone="TinyTestNet", epochs=1, use_visdom=True, visdom_port=server.port,
                          visdom_timeout=0.5, run_name="hung")
        t0 = time.perf_counter()
        res = Train.train(cfg, dataset=PatternFaces())
        assert res.state.iteration == 4 and time.perf_counter() - t0 < 60
        log = (tmp_path / "runs" / "hung" / "train.log").read_text()
        assert log.count("warning: visdom:") == 1
    finally:
        server.close()


def test_missing_server_costs_one_warning(tmp_path):
    warnings_seen = []
    v = VisdomLogger("http://127.0.0.1", free_port(), "none", timeout=1.0, warn=warnings_seen.append)
    for i in range(20):
        v.line("loss", i, 1.0)
        time.sleep(0.01)
    v.close(2.0)
    assert v.disabled and len(warnings_seen) == 1


@pytest.fixture(scope="module")
def visdom_server(tmp_path_factory):
    from Utils.tools.visdom_server import assets_installed, install_assets

    if not assets_installed():
        if shutil.which("npm") is None:
            pytest.skip("visdom page assets missing and npm not installed (python -m Utils.tools.visdom_server --setup)")
        install_assets(log=lambda *_: None)
    port = free_port()
    env_path = tmp_path_factory.mktemp("visdom_env")
    proc = subprocess.Popen([sys.executable, "-m", "Utils.tools.visdom_server", f"--port={port}",
                             f"--env_path={env_path}"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"visdom server exited: {proc.stdout.read().decode()[-2000:]}")
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("visdom server did not start within 60 s")
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def test_real_server_receives_the_runs_curves_and_chromium_renders_them(tmp_path, visdom_server):
    port = visdom_server
    cfg = tiny_config(tmp_path, backbone="TinyTestNet", epochs=2, use_visdom=True, visdom_port=port,
                      run_name="live", log_every=2, eval_every=4, val_sets=["toy"])
    from types import SimpleNamespace

    accs = iter([0.7, 0.9])
    res = Train.train(cfg, dataset=PatternFaces(), val_sets=[SimpleNamespace(name="toy")],
                      verify_fn=lambda model, vset, **kw: {"accuracy": next(accs), "std": 0.0})
    from visdom import Visdom

    client = Visdom(server="http://127.0.0.1", port=port, use_incoming_socket=False, raise_exceptions=True)
    logged = [r for r in res.history if r["kind"] == "train"]
    for win, key in (("loss", "loss"), ("train_accuracy", "accuracy"), ("lr", "lr")):
        data = json.loads(client.get_window_data(win=win, env="live"))["content"]["data"][0]
        assert data["x"] == [r["iteration"] for r in logged], win
        assert data["y"] == pytest.approx([r[key] for r in logged], rel=1e-6), win
    val = json.loads(client.get_window_data(win="val_toy", env="live"))["content"]["data"][0]
    assert val["x"] == [4, 8] and val["y"] == pytest.approx([0.7, 0.9])

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install -y chromium): page rendering not checked")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
                          "--dump-dom", f"http://127.0.0.1:{port}/env/live"], capture_output=True, text=True,
                         timeout=120).stdout
    # plotly drew the figures: one scatter trace per window, each with a line path through the points
    assert dom.count("js-plotly-plot") >= 4
    assert dom.count('class="js-line"') >= 4
    assert "loss" in dom and "val_toy" in dom
