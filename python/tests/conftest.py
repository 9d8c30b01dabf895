"""Shared fixtures: the repository's test data and the qconv CLI binary (when built)."""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
GOLDEN = DATA / "golden"
MODELS = DATA / "models"
FORUM = REPO / "examples" / "forum-5x5.toml"


def cli_binary() -> pathlib.Path | None:
    """The qconv CLI: $QCONV_CLI, else target/release/qconv, else `qconv` on PATH."""
    env = os.environ.get("QCONV_CLI")
    if env:
        return pathlib.Path(env)
    built = REPO / "target" / "release" / "qconv"
    if built.exists():
        return built
    found = shutil.which("qconv")
    return pathlib.Path(found) if found else None


@pytest.fixture(scope="session")
def cli() -> pathlib.Path:
    path = cli_binary()
    if path is None:
        pytest.skip("the qconv CLI is not built (cargo build --release): cannot compare with it")
    return path
