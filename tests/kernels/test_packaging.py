"""The .cu files ship as minigan/_kernels/ package data, and cuda.py finds them there.

What a wheel holds is what setuptools' ``build_py`` lays out (packages plus
their package data), so the test runs ``build_py`` on a copy of the sources in
tmp_path -- about 1 s, and no build/ or *.egg-info left in the working tree.
``pip wheel --no-build-isolation`` would be the literal check, but it needs
setuptools >= 70.1 (or the ``wheel`` package) in the test environment, which
a fresh virtual environment (as CI makes) does not have.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minigan.backend import cuda

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The package tree a wheel of the current sources installs (the build_py output)."""
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("package")
    src, lib = tmp / "src", tmp / "lib"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("minigan", "kernels"):
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    run = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                          "build_py", "--build-lib", str(lib)], cwd=src, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"setuptools build_py failed:\n{run.stdout}\n{run.stderr}"
    return lib


def test_every_kernel_source_is_package_data(built):
    sources = sorted(p.name for p in (ROOT / "kernels").iterdir() if p.suffix in (".cu", ".cuh"))
    assert "common.cuh" in sources and len(sources) == len(cuda.KERNELS) + 1
    missing = [s for s in sources if not (built / "minigan" / "_kernels" / s).is_file()]
    assert not missing, f"kernel sources missing from the package (minigan/_kernels/): {missing}"
    assert (built / "minigan" / "_kernels" / "__init__.py").is_file()


def test_every_package_is_built(built):
    """pyproject lists the packages by hand (see [tool.setuptools]); a new one must be added there."""
    packages = sorted(p.parent.relative_to(ROOT) for p in (ROOT / "minigan").rglob("__init__.py"))
    missing = [str(p) for p in packages if not (built / p / "__init__.py").is_file()]
    assert not missing, f"packages missing from the wheel (add them to pyproject's packages list): {missing}"


def test_installed_package_finds_its_kernels(built, tmp_path):
    """Installed (no source checkout around), cuda.py reads the kernels from minigan/_kernels."""
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); from minigan.backend import cuda; "
             "print(cuda.kernel_dir()); [cuda.kernel_source(f) for f in cuda.KERNELS]")
    run = subprocess.run([sys.executable, "-c", probe, str(built)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()) == built / "minigan" / "_kernels"


def test_source_checkout_finds_its_kernels():
    """Run from the repository (plain or editable install): the kernels/ folder itself."""
    folder = Path(str(cuda.kernel_dir()))
    assert (folder / "common.cuh").is_file() and folder.samefile(ROOT / "kernels")
