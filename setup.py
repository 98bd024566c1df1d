"""Build the hub with the dashboard's browser libraries inside its wheel and sdist.

Everything else about the package is in pyproject.toml. The libraries (uPlot) come
from the npm registry exactly as package-lock.json pins them: scripts/assets.sh runs
`npm ci` and copies what the pages load into telemetry/vendor/ (git-ignored, never
committed), with the lock file's SHA-256 beside them. A build from a checkout runs it
when that copy is missing or older than the lock; an sdist carries the copy and no
lock file, so a wheel built from it needs no npm.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from setuptools import Command, setup
from setuptools.command.build import build
from setuptools.command.sdist import sdist
from setuptools.errors import SetupError

ROOT = Path(__file__).resolve().parent
LOCK = ROOT / "package-lock.json"
ASSETS_SCRIPT = ROOT / "scripts" / "assets.sh"
# Written last by scripts/assets.sh: the SHA-256 of the package-lock.json it installed.
STAMP = ROOT / "telemetry" / "vendor" / "package-lock.sha256"


def assets_vendor() -> None:
    """Make telemetry/vendor/ hold the npm packages package-lock.json pins, or fail saying how."""
    stamp = STAMP.read_text().strip() if STAMP.exists() else None
    if not LOCK.exists():
        # An unpacked sdist: it carries the vendored copy instead of the lock file.
        if stamp is None:
            raise SetupError(
                "the dashboard's assets are missing (telemetry/vendor/) and there is no "
                "package-lock.json to build them from: build from a git checkout with npm "
                "(scripts/assets.sh), or from an sdist made that way"
            )
        return
    if stamp == hashlib.sha256(LOCK.read_bytes()).hexdigest():
        return
    if shutil.which("npm") is None:
        raise SetupError(
            "npm is needed to build the dashboard's assets from package-lock.json: "
            "install Debian's npm (apt-get install npm) or run scripts/assets.sh, "
            "which installs it"
        )
    subprocess.run(["bash", str(ASSETS_SCRIPT)], cwd=ROOT, check=True)  # noqa: S603, S607
    if not STAMP.exists():
        raise SetupError(f"{ASSETS_SCRIPT.name} finished without writing {STAMP}")


class BuildAssets(Command):
    """Vendor the dashboard's npm packages into telemetry/vendor/ before the Python build."""

    description = "vendor the dashboard's browser libraries (npm ci from package-lock.json)"
    user_options: list[tuple[str, str | None, str]] = []
    # setuptools' build sub-command protocol: editable installs set these.
    editable_mode = False
    build_lib: str | None = None

    def initialize_options(self) -> None:
        """Declare no options."""

    def finalize_options(self) -> None:
        """Accept no options."""

    def run(self) -> None:
        """Vendor the assets (they land in the package folder, so build_py copies them)."""
        assets_vendor()

    def get_source_files(self) -> list[str]:
        """Name no sources of the sdist: package data brings the vendored files."""
        return []

    def get_outputs(self) -> list[str]:
        """Name no files of the wheel: build_py copies them as package data."""
        return []

    def get_output_mapping(self) -> dict[str, str]:
        """Map nothing: the files are in the package folder itself."""
        return {}


class BuildWithAssets(build):
    """Run build_assets before build_py gathers the package data."""

    sub_commands = [("build_assets", None), *build.sub_commands]


class SdistWithAssets(sdist):
    """Vendor the assets before the sdist's file list is made, so the sdist carries them."""

    def run(self) -> None:
        """Vendor, then make the sdist."""
        self.run_command("build_assets")
        super().run()


setup(cmdclass={"build_assets": BuildAssets, "build": BuildWithAssets, "sdist": SdistWithAssets})
