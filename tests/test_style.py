"""The code stays typed (mypy strict) and lint-clean (ruff): checked like any other test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.timeout(300)
def test_the_packages_pass_mypy_strict():
    result = subprocess.run([str(BIN / "mypy")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(120)
def test_the_packages_pass_ruff():
    result = subprocess.run([str(BIN / "ruff"), "check", "pipeline", "agents", "schemas"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
