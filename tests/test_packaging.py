"""The built wheel works outside the repository: feeder data ship with it and the default day solves.

The wheel is built from the checkout and installed, without its dependencies, into a
fresh venv that borrows this environment's site-packages for them (a `.pth` line, which
does not bring the editable install's finder along); the CLI then runs from a folder
outside the repository, so nothing can be found through the working tree.
"""

from __future__ import annotations

import json
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin folder of a fresh venv holding only the p2pgame wheel."""
    work = tmp_path_factory.mktemp("wheel")
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", work / "dist", ROOT, cwd=work)
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("p2pgame-*.whl")
    env = work / "env"
    venv.create(env, with_pip=True)
    purelib = next(env.glob("lib/python*/site-packages"))
    (purelib / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    done = _run(env / "bin" / "python", "-m", "pip", "install", "--no-deps", "--quiet", wheel, cwd=work)
    assert done.returncode == 0, done.stderr
    return env / "bin"


def test_installed_wheel_solves_the_default_day(installed, tmp_path):
    where = _run(installed / "python", "-c", "import p2pgame, sys; print(p2pgame.__file__)", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert str(ROOT) not in where.stdout, "the test imported the working tree, not the wheel"
    feeders = _run(installed / "p2pgame", "feeders", cwd=tmp_path)
    assert feeders.returncode == 0, feeders.stderr
    out = _run(installed / "p2pgame", "solve", "--method", "centralized", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["scenario"] and result["certificate"]["imbalance_kw"] < 1e-3
