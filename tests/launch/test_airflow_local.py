"""``make airflow``: the UI on 127.0.0.1 by default, and nothing left running when it is stopped.

A fake ``airflow standalone`` starts what the real one can: children in its process group, a
task in a process group of its own (Airflow's supervisor does that), a child in a session of its
own with a grandchild, and one that ignores SIGTERM. Then, like standalone on SIGTERM, it dies
at once without stopping them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.launch import airflow_local

ROOT = Path(__file__).resolve().parents[2]

FAKE_STANDALONE = r"""
import json, subprocess, sys, time
out = sys.argv[1]
exit_after = float(sys.argv[2]) if len(sys.argv) > 2 else None
sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
spawner = [sys.executable, "-c",
           "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
           "time.sleep(600)"]
stubborn = [sys.executable, "-c",
            "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True);"
            "time.sleep(600)"]
children = {
    "same_group": subprocess.Popen(sleep),
    "own_group": subprocess.Popen(sleep, process_group=0),
    "own_session": subprocess.Popen(spawner, start_new_session=True),
    "ignores_sigterm": subprocess.Popen(stubborn, stdout=subprocess.PIPE, text=True),
}
children["ignores_sigterm"].stdout.readline()
time.sleep(0.5)  # the spawner's grandchild
print(json.dumps({name: child.pid for name, child in children.items()}), file=open(out + ".tmp", "w"), flush=True)
import os; os.rename(out + ".tmp", out)
if exit_after is not None:
    time.sleep(exit_after)
    sys.exit(3)  # standalone crashing: it leaves its children behind
time.sleep(600)
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait_for(path: Path, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was not written"
        time.sleep(0.05)
    return json.loads(path.read_text())


def _started(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, list[int]]:
    """The fake standalone, launched like ``launch`` does; its pids, grandchildren included."""
    script = tmp_path / "fake_standalone.py"
    script.write_text(FAKE_STANDALONE)
    pids_file = tmp_path / "pids.json"
    process = subprocess.Popen([sys.executable, str(script), str(pids_file), *args], start_new_session=True)
    children = _wait_for(pids_file)
    everything = set(airflow_local.started_by(process.pid)) | set(children.values())
    return process, sorted(everything)


@pytest.fixture
def cleanup():
    """Kill whatever a failing test left behind, so no sleeper outlives the test run."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)


pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finding processes needs /proc")


def test_started_by_finds_the_session_the_groups_and_the_descendants(tmp_path, cleanup):
    process, pids = _started(tmp_path)
    cleanup += [process.pid, *pids]
    children = json.loads((tmp_path / "pids.json").read_text())
    found = airflow_local.started_by(process.pid)
    assert set(children.values()) <= set(found)
    assert len(found) == 5  # four children and the grandchild in the other session
    assert process.pid not in found
    airflow_local.stop(process, timeout=1)


def test_stop_ends_every_process_even_one_that_ignores_sigterm(tmp_path, cleanup):
    process, pids = _started(tmp_path)
    cleanup += [process.pid, *pids]
    began = time.monotonic()
    airflow_local.stop(process, timeout=2)
    took = time.monotonic() - began
    assert process.returncode is not None
    assert [pid for pid in pids if _running(pid)] == []
    assert 2 <= took < 8, f"took {took:.1f} s: SIGKILL comes after the grace period, not before, not much later"


def test_stop_returns_as_soon_as_everything_ended(tmp_path, cleanup):
    script = tmp_path / "polite.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('up', flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen([sys.executable, str(script)], start_new_session=True, stdout=subprocess.PIPE)
    process.stdout.readline()
    pids = list(airflow_local.started_by(process.pid))
    cleanup += [process.pid, *pids]
    began = time.monotonic()
    airflow_local.stop(process, timeout=30)
    assert time.monotonic() - began < 5
    assert [pid for pid in pids if _running(pid)] == []


LAUNCHER = """
import subprocess, sys
from pipelines.launch import airflow_local
with airflow_local.StopSignals() as signals:
    signals.defer()
    process = subprocess.Popen([sys.executable, *sys.argv[1:]], start_new_session=True)
    print(process.pid, flush=True)
    sys.exit(airflow_local.supervise(process, signals, grace=2))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_launcher_stops_everything_it_started(tmp_path, cleanup, sig):
    script = tmp_path / "fake_standalone.py"
    script.write_text(FAKE_STANDALONE)
    pids_file = tmp_path / "pids.json"
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(script), str(pids_file)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    standalone = int(launcher.stdout.readline())
    children = _wait_for(pids_file)
    pids = sorted({standalone, *airflow_local.started_by(standalone), *children.values()})
    cleanup += [launcher.pid, *pids]
    launcher.send_signal(sig)
    assert launcher.wait(30) == 128 + sig
    assert [pid for pid in pids if _running(pid)] == []


def test_when_standalone_dies_by_itself_what_it_left_is_stopped(tmp_path, cleanup):
    process, pids = _started(tmp_path, "2")
    cleanup += [process.pid, *pids]
    with airflow_local.StopSignals() as signals:
        assert airflow_local.supervise(process, signals, grace=2) == 3
    assert [pid for pid in pids if _running(pid)] == []


def test_a_signal_while_starting_is_kept_until_the_process_is_supervised():
    before = signal.getsignal(signal.SIGTERM)  # another test's run may have left Airflow's handler
    with airflow_local.StopSignals() as signals:
        signals.defer()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)  # the handler runs in the main thread, between two bytecodes
        assert signals.pending == signal.SIGTERM
        with pytest.raises(airflow_local.Stopped) as stopped:
            signals.resume()
        assert stopped.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # put back as it was


def test_the_ui_binds_to_localhost_unless_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRSIGHT_AIRFLOW_HOST", raising=False)
    env = airflow_local.environment(tmp_path, "postgresql+psycopg2://postgres@127.0.0.1:5432/x", port=8123)
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"

    monkeypatch.setenv("AIRSIGHT_AIRFLOW_HOST", "0.0.0.0")
    env = airflow_local.environment(tmp_path, "postgresql+psycopg2://postgres@127.0.0.1:5432/x", port=8123)
    assert env["AIRFLOW__API__HOST"] == "0.0.0.0"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"

    monkeypatch.setenv("AIRSIGHT_AIRFLOW_HOST", "10.1.2.3")
    env = airflow_local.environment(tmp_path, "postgresql+psycopg2://postgres@127.0.0.1:5432/x", port=8123)
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://10.1.2.3:8123/execution/"
