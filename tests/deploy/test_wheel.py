"""A hub built as a release is (sdist, then a wheel from it) and pip-installed elsewhere is whole.

The build runs from a copy of the checkout's files as git sees them (no node_modules, no
vendored assets), so the build itself must fetch uPlot from npm as package-lock.json pins
it; the wheel is built from the sdist, which has no lock file, so the sdist must carry
the assets. The wheel goes into a fresh virtualenv, and `hub serve` runs from a folder
outside the checkout with nothing of the checkout on its path.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser.support import Console, launch, log_in, publish, register, stored_count
from tests.e2e.harness import HubUnderTest, _healthy, _stop_all, now_ms
from tests.support import ROOT, free_port, hub_env, wait_until

pytestmark = pytest.mark.e2e

# What the pages load, as static/uplot/…; uPlot's licence travels with it.
SERVED = ("uPlot.iife.min.js", "uPlot.min.css")
VENDORED = tuple(f"telemetry/vendor/uplot/{name}" for name in (*SERVED, "LICENSE"))
PASSWORD = "wheel-test-password-1"
MINUTE_MS = 60_000
# A chart's `data-points` once it has drawn some (charts.js, device.js).
DRAWN = re.compile(r"^[1-9][0-9]*$")


def checkout_copy(target: Path) -> None:
    """Copy the files git tracks or would track (ignored ones, like node_modules, stay out)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not listed twice
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def outside_env(**overrides: str) -> dict[str, str]:
    """Return an environment in which nothing of the checkout or its virtualenv is importable."""
    env = hub_env(**overrides)
    for key in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(key, None)
    return env


def run(args: list[str | Path], cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run a command to completion; fail with its output when it fails."""
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


class Phases:
    """Seconds each phase of the test took, for its output (the whole is slow, so say why)."""

    def __init__(self) -> None:
        self.mark = time.monotonic()
        self.seconds: dict[str, float] = {}

    def done(self, name: str) -> None:
        """Record the time since the last phase ended as this one's."""
        now = time.monotonic()
        self.seconds[name], self.mark = now - self.mark, now

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.seconds.items())


class InstalledHub:
    """A virtualenv with the built wheel installed, and `hub` run from it outside the checkout."""

    def __init__(self, tmp: Path, wheel: Path) -> None:
        self.venv = tmp / "venv"
        self.cwd = tmp / "elsewhere"
        self.cwd.mkdir()
        self.env = outside_env(HUB_VAR_DIR=str(tmp / "var"))
        run([sys.executable, "-m", "venv", self.venv], self.cwd, self.env, 120)
        # pip's cache serves the dependencies after the first run; --no-compile leaves the
        # bytecode to the imports the hub really makes (the install's longest step otherwise).
        pip = [self.bin / "pip", "install", "--quiet", "--no-compile", wheel]
        run(pip, self.cwd, self.env, 480)

    @property
    def bin(self) -> Path:
        """Return the virtualenv's bin folder."""
        return self.venv / "bin"

    def python(self, code: str) -> str:
        """Run Python code with the virtualenv's interpreter; return what it printed."""
        return run([self.bin / "python", "-c", code], self.cwd, self.env, 60).strip()

    def hub(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run the installed `hub` command to completion, whatever its exit code."""
        return subprocess.run(
            [str(self.bin / "hub"), *args],
            cwd=self.cwd,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    @contextlib.contextmanager
    def serve(self, logs: Path) -> Iterator[HubUnderTest]:
        """Run `hub serve` from the virtualenv until HTTP answers and the bridge listens."""
        http_port, mqtt_port = free_port(), free_port()
        http = f"http://127.0.0.1:{http_port}"
        server = HubUnderTest("embedded", http, mqtt_port, self.env, logs)
        log_path = logs / "serve.log"
        with log_path.open("wb") as log:
            server.processes["serve"] = subprocess.Popen(
                [
                    *(str(self.bin / "hub"), "serve"),
                    *("--port", str(http_port), "--mqtt-port", str(mqtt_port)),
                ],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(lambda: _healthy(server), timeout=90, message="the installed hub's /healthz")
            wait_until(
                lambda: "mqtt: subscribed" in log_path.read_text(errors="replace"),
                timeout=30,
                message="the installed hub's bridge subscription",
            )
            yield server
        finally:
            _stop_all(server)


@pytest.mark.timeout(900)
def test_wheel_built_from_sdist_and_installed_elsewhere_serves_the_device_charts(tmp_path):
    # Build as a release would: the sdist from the checkout's files, the wheel from the sdist.
    source, dist = tmp_path / "source", tmp_path / "dist"
    checkout_copy(source)
    assert not (source / "telemetry" / "vendor").exists()
    assert not (source / "node_modules").exists()
    phases = Phases()
    run([sys.executable, "-m", "build", "--outdir", dist, source], source, outside_env(), 300)
    phases.done("build")
    lock = (source / "package-lock.json").read_bytes()
    stamp = (source / "telemetry" / "vendor" / "package-lock.sha256").read_text().strip()
    assert stamp == hashlib.sha256(lock).hexdigest(), "the build did not vendor from the lock"

    [sdist] = dist.glob("telemetry_hub-*.tar.gz")
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert set(VENDORED) <= in_sdist
    # No lock file in the sdist: a wheel built from it cannot have run npm.
    assert "package-lock.json" not in in_sdist
    [wheel] = dist.glob("telemetry_hub-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert set(VENDORED) <= set(archive.namelist())
        shipped = {name: archive.read(f"telemetry/vendor/uplot/{name}").decode() for name in SERVED}

    installed = InstalledHub(tmp_path, wheel)
    phases.done("venv and pip install")
    where = installed.python("import hub, telemetry; print(hub.__file__, telemetry.__file__)")
    for path in where.split():
        assert Path(path).is_relative_to(installed.venv), f"{path} is not the installed copy"
    assert installed.hub("check").returncode == 0

    logs = tmp_path / "logs"
    logs.mkdir()
    console = Console()
    with installed.serve(logs) as server:
        # After `hub serve` has migrated its SQLite database.
        created = installed.hub(
            "createsuperuser",
            *("--noinput", "--username", "operator", "--email", "operator@example.com"),
            DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        )
        assert created.returncode == 0, created.stderr
        status, body = server.request(
            "POST", "/api/v1/auth/token/", {"username": "operator", "password": PASSWORD}
        )
        assert status == 200, body
        api = str(body["token"])
        token = register(server, api, "boiler-1", "Boiler")
        started = now_ms()
        # Half an hour of history for the 1 h chart, the last minutes also in the live chart.
        readings = [
            {"ts": started - minutes * MINUTE_MS, "values": {"temperature": 60 + minutes % 7}}
            for minutes in range(30, 0, -1)
        ]
        publish(server, "boiler-1", token, readings)
        wait_until(
            lambda: stored_count(server, api, "boiler-1", started - 31 * MINUTE_MS) == 30,
            timeout=15,
            message="the readings over REST",
        )
        for name in SERVED:
            status, served = server.request("GET", f"/static/uplot/{name}", accept="*/*")
            assert status == 200, f"/static/uplot/{name} answered {status}"
            assert served == shipped[name]

        expect.set_options(timeout=15_000)
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            console.watch(page)
            log_in(page, server.http, "/devices/boiler-1/", "operator", PASSWORD)
            live = page.locator('#live-charts [data-metric="temperature"] .plot')
            expect(live).to_have_attribute("data-points", DRAWN)
            expect(live.locator("canvas").first).to_be_visible()
            history = page.locator("#history-chart")
            expect(history).to_have_attribute("data-points", DRAWN)
            expect(history.locator("canvas").first).to_be_visible()
            assert page.evaluate("typeof uPlot") == "function"
            browser.close()
    assert console.errors == []
    phases.done("serve and Chromium")

    # The same installation without its assets: each command says so, and how to fix it.
    package = Path(installed.python("import telemetry; print(telemetry.__file__)")).parent
    shutil.rmtree(package / "vendor")
    serve = ("serve", "--port", str(free_port()), "--mqtt-port", str(free_port()))
    for command in (("check",), ("migrate",), serve):
        refused = installed.hub(*command)
        assert refused.returncode != 0, f"hub {command[0]} ran without the dashboard's assets"
        assert "(telemetry.E001)" in refused.stderr and "`make`" in refused.stderr
    phases.done("refusals")
    print(f"wheel test phases: {phases}")
