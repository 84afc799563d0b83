"""The package's structure, checked: the import contracts hold, no import circles, the registry is read once per load,
and the app serves and scores where TensorFlow cannot be imported (the app's own install has none)."""
import subprocess
import sys

import grimp
import pytest

from lungfake.scoring.scoring import Scorer
from lungfake.serving import registry as registry_module
from tests.helpers import REPO


def test_the_import_contracts_hold():
    run = subprocess.run([str(REPO / ".venv" / "bin" / "lint-imports"), "--no-cache"] if (REPO / ".venv").exists()
                         else [sys.executable, "-m", "importlinter.cli"], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "0 broken" in run.stdout


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Every module that can reach itself through imports (function-level ones included), with one such path."""
    found = []
    for start in sorted(modules):
        for target in graph.find_modules_directly_imported_by(start) & modules:
            chain = graph.find_shortest_chain(importer=target, imported=start)
            if chain:
                found.append([start, *chain])
    return found


def test_no_module_of_the_package_imports_itself_back():
    graph = grimp.build_graph("lungfake", cache_dir=None)
    assert _cycles(graph, {m for m in graph.modules if m.startswith("lungfake")}) == []


def test_a_circle_would_be_found():
    graph = grimp.ImportGraph()
    for module in ("p.a", "p.b", "p.c"):
        graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    assert _cycles(graph, set(graph.modules)) == []
    graph.add_import(importer="p.c", imported="p.a")
    assert sorted(c[0] for c in _cycles(graph, set(graph.modules))) == ["p.a", "p.b", "p.c"]


def test_loading_the_scorer_reads_the_registry_once(tiny_weights, monkeypatch):
    reads = []
    real = registry_module.Registry.load.__func__

    def counted(cls, folder=None):
        reads.append(folder)
        return real(cls, folder)

    monkeypatch.setattr(registry_module.Registry, "load", classmethod(counted))
    Scorer.load(folder=tiny_weights)
    assert len(reads) == 1


WITHOUT_TENSORFLOW = r"""
import sys
from streamlit.testing.v1 import AppTest
for name in ("tensorflow", "keras", "tf_keras_vis"):
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(f"{name} is importable: the test proves nothing")
at = AppTest.from_file(sys.argv[1], default_timeout=300)
at.run()
at.file_uploader[0].upload("tile.png", open(sys.argv[2], "rb").read(), "image/png").run()
assert not at.exception, [e.value for e in at.exception]
assert [m for m in at.metric if m.label == "Prediction"], "not scored"
assert len(at.image) >= 3, "no overlays"
for page in sys.argv[3:]:
    at.switch_page(page).run()
    assert not at.exception, (page, [e.value for e in at.exception])
print("served and scored without TensorFlow")
"""


@pytest.mark.slow
def test_the_app_serves_and_scores_where_tensorflow_cannot_be_imported(tmp_path):
    """Stand-ins that refuse to import shadow TensorFlow, Keras and tf-keras-vis for the app and its models' process
    (PYTHONPATH is inherited), as on Community Cloud, which installs requirements.txt alone."""
    blocked = tmp_path / "blocked"
    for name in ("tensorflow", "keras", "tf_keras_vis"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed with the app')\n")
    from tests.test_app import PAGES, _a_tile_png

    (tmp_path / "tile.png").write_bytes(_a_tile_png())
    env = {**__import__("os").environ, "PYTHONPATH": str(blocked)}
    run = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, str(REPO / "streamlit_app.py"), str(tmp_path / "tile.png"),
                          *PAGES], capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "served and scored without TensorFlow"


def test_at_most_nine_maintained_benchmarks():
    assert len([p for p in (REPO / "benchmarks").glob("*.py") if p.name != "__init__.py"]) <= 9
