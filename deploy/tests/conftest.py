"""Fixtures shared by the deploy tests: the rendered overlays, rendered once per test session."""

import pytest

from deploy.tests.rendering import OVERLAYS, render_overlay


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, list[dict]]:
    """Objects of every overlay, by overlay name."""
    workdir = tmp_path_factory.mktemp("render")
    return {overlay: render_overlay(overlay=overlay, workdir=workdir) for overlay in OVERLAYS}
