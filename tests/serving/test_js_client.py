"""The JavaScript client's own tests (node's test runner) against a live server of this world."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

GROUP = "jsshop"
CLIENT = Path(__file__).resolve().parents[2] / "clients" / "js"


def test_the_javascript_client_passes_its_tests_against_a_live_server(live_url, world):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JavaScript client's tests need Node 18 or later")
    env = {**os.environ, "AIRSIGHT_URL": live_url, "AIRSIGHT_API_KEY": world.keys["writer"], "AIRSIGHT_GROUP": GROUP}
    done = subprocess.run([node, "--test", "test/"], cwd=CLIENT, env=env, capture_output=True, text=True, timeout=300)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    assert "# fail 0" in report and "# skipped 0" in report, report[-3000:]  # the live test ran too
