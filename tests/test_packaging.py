"""The built wheel works on its own: installed outside the checkout, it validates and imports.

The wheel is built from a copy of the sources (so the checkout gets no build/ folder), installed
with ``pip install --target`` into a clean folder, and run in a subprocess whose sys.path holds
that folder and the venv's dependencies only (``python -S``: no .pth files, so the editable
install of the checkout is not on the path either), from a working directory outside the
checkout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from pipelines import domains as d
from pipelines.preparation import validation

ROOT = Path(__file__).resolve().parents[1]


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "pipelines", src / "pipelines", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--no-deps", "--no-build-isolation", "--quiet", "--wheel-dir", str(out), ".", cwd=src)
    (built,) = out.glob("airsight-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    _pip("install", "--no-deps", "--no-compile", "--quiet", "--target", str(target), str(wheel), cwd=target)
    return target


def test_wheel_carries_a_suite_for_every_dataset_type(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in (*d.FORECAST_DATASET_TYPES, *d.PERSONALIZE_DATASET_TYPES):
        assert f"pipelines/expectations/{kind}.json" in names, f"the wheel has no suite for {kind}"
    assert "pipelines/expectations/README.md" in names
    assert not [n for n in names if n.startswith(("tests/", "dags/", "expectations/"))]


def test_wheel_carries_the_views_pages_scripts_and_styles(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    static = ROOT / "pipelines" / "serving" / "views" / "static"
    expected = {f"pipelines/serving/views/static/{p.name}" for p in static.iterdir() if p.is_file()}
    assert len(expected) >= 9 and expected <= names, sorted(expected - names)


def test_installed_wheel_validates_and_imports_both_example_groups(installed, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    probe = """
import json, sys
import pipelines
from pipelines import example_data
from pipelines.preparation import steps, validation
from pipelines.settings import load_group

results = {"package": pipelines.__file__, "suites": str(validation.suites_dir()), "groups": {}}
for name, settings in example_data.write_examples("examples").items():
    group = load_group(settings)
    validated = steps.validate_schema(group)
    imported = steps.import_data(group, validated=validated)
    results["groups"][name] = {"validated": validated, "imported": imported}
results["modules"] = sorted({m.__file__ for n, m in sys.modules.items()
                             if n.split(".")[0] == "pipelines" and getattr(m, "__file__", None)})
from pipelines.serving.views import routes
results["views"] = {name: routes.document(name) for name in routes.PAGES}
results["chart"] = len(routes._static("chart.js") or b"")
print(json.dumps(results, default=str))
"""
    site_packages = sysconfig.get_paths()["purelib"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRSIGHT_", "PYTHON", "MLFLOW_"))}
    env |= {"PYTHONPATH": os.pathsep.join([str(installed), site_packages]), "AIRSIGHT_HOME": str(work / "home")}
    run = subprocess.run(
        [sys.executable, "-S", "-c", probe], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])

    assert Path(results["package"]).is_relative_to(installed)
    assert Path(results["suites"]) == installed / "pipelines" / "expectations"
    assert results["modules"] and all(Path(m).is_relative_to(installed) for m in results["modules"])
    assert set(results["groups"]) == {"retail_demo", "interactions_demo"}
    for name, page in results["views"].items():  # the views' pages come from the installed package
        assert f'src="static/{name}.js"' in page and "<h1>" in page
    assert results["chart"] > 1000
    for name, outcome in results["groups"].items():
        validated, imported = outcome["validated"], outcome["imported"]
        assert validated["group"] == imported["group"] == name
        assert validated["datasets"] and set(validated["datasets"]) == set(imported["datasets"])
        snapshot = Path(imported["snapshot"])
        assert snapshot.is_relative_to(work / "home")
        manifest = json.loads((snapshot / "manifest.json").read_text())
        for kind, entry in manifest["datasets"].items():
            assert (snapshot / entry["file"]).is_file(), f"{name}: {kind} has no snapshot file"
            assert entry["rows"] > 0
        assert (Path(imported["data_docs"])).is_file()


def test_a_missing_suite_names_the_dataset_type(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRSIGHT_EXPECTATIONS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="TARGET_TIME_SERIES"):
        validation.load_suite_template("TARGET_TIME_SERIES")
    (tmp_path / "TARGET_TIME_SERIES.json").write_text(json.dumps({"name": "reviewed here", "expectations": []}))
    assert validation.load_suite_template("TARGET_TIME_SERIES")["name"] == "reviewed here"


def test_the_runtime_reads_no_file_beside_its_sources():
    """Files next to a module are found through importlib.resources, which works in a wheel and a zip.

    The DAG files are the one exception: they are Airflow's (``AIRFLOW__CORE__DAGS_FOLDER``), not
    read by the library, and the image copies them to their own folder.
    """
    allowed = {"pipelines/launch/demo.py"}  # DAGS_FOLDER: the checkout's dags/ unless $AIRSIGHT_DAGS_FOLDER
    pattern = re.compile(r"__file__")
    found = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "pipelines").rglob("*.py")
        if pattern.search(path.read_text()) and str(path.relative_to(ROOT)) not in allowed
    ]
    assert found == []
