"""The project's own rules, checked: current README tables, a short README, the metrics schema, public Streamlit API
only, and tests and benchmarks apart."""
import ast
import json

import pytest

from lungfake.errors import MetricsError
from lungfake.evaluation.metrics import SCHEMA_VERSION, EvaluationMetrics
from lungfake.reports.results_table import BEGIN, END, documents, with_table
from tests.helpers import REPO, metrics_of


def test_the_committed_results_tables_match_the_metrics_files():
    for path, table in documents(REPO).items():
        text = path.read_text()
        assert with_table(text, table, path.name) == text, f"{path.name} is stale: run python scripts/results_table.py"


def test_a_stale_table_is_replaced_between_its_markers_and_nothing_else_changes():
    text = f"before\n{BEGIN}\nold table\n{END}\nafter\n"
    assert with_table(text, "new table", "x.md") == f"before\n{BEGIN}\nnew table\n{END}\nafter\n"
    with pytest.raises(MetricsError, match="no results-table markers"):
        with_table("no markers here", "table", "x.md")


def test_the_readme_is_a_front_door_not_a_notebook():
    assert len((REPO / "README.md").read_text().splitlines()) <= 250


def test_every_committed_metrics_file_reads_through_the_schema():
    files = sorted((REPO / "weights" / "metrics").glob("*.json"))
    assert files
    kinds = {EvaluationMetrics.read(path).kind for path in files}
    assert kinds == {"model", "ensemble", "baseline"}


def test_a_metrics_file_of_another_version_is_refused_with_what_to_do(tmp_path):
    good = metrics_of().to_json()
    assert EvaluationMetrics.from_json(good) == metrics_of()
    for version in (None, SCHEMA_VERSION + 1):
        path = tmp_path / "old.json"
        path.write_text(json.dumps({**good, "schema_version": version}))
        with pytest.raises(MetricsError, match=f"old.json has metrics schema version {version}.*rerun python -m lungfake evaluate"):
            EvaluationMetrics.read(path)


@pytest.mark.parametrize("change, words", [
    ({"surprise": 1}, "fields this schema does not know \\(surprise\\)"),
    ({"kind": "oracle"}, "kind 'oracle'"),
])
def test_a_metrics_file_with_unknown_fields_or_kind_is_refused(change, words):
    with pytest.raises(MetricsError, match=words):
        EvaluationMetrics.from_json({**metrics_of().to_json(), **change})


def test_a_metrics_file_missing_a_field_or_not_json_is_refused(tmp_path):
    incomplete = metrics_of().to_json()
    del incomplete["accuracy"]
    with pytest.raises(MetricsError, match="incomplete.*accuracy"):
        EvaluationMetrics.from_json(incomplete)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(MetricsError, match="broken.json cannot be read"):
        EvaluationMetrics.read(tmp_path / "broken.json")


def _imports(folder: str) -> set[tuple[str, str]]:
    """(file, imported module) for every import in the Python files under a folder of the repository."""
    found = set()
    for path in (REPO / folder).rglob("*.py") if folder.endswith("/") else [REPO / folder]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {(path.name, alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add((path.name, node.module))
    return found


def test_the_app_and_the_package_use_streamlits_public_api_only():
    private = ("streamlit.runtime", "streamlit.web", "streamlit.proto", "streamlit.elements")
    for folder in ("streamlit_app.py", "pages/", "lungfake/"):
        text_hits = [f for f in ((REPO / folder).rglob("*.py") if folder.endswith("/") else [REPO / folder])
                     if any(word in f.read_text() for word in ("script_runner", "PagesManager"))]
        assert not text_hits, text_hits
        assert not [(f, m) for f, m in _imports(folder) if m.startswith(private)]
    assert not [(f, m) for f, m in _imports("lungfake/") if m.split(".")[0] == "streamlit"]


def test_tests_and_benchmarks_do_not_import_each_other():
    assert not [(f, m) for f, m in _imports("tests/") if m.split(".")[0] == "benchmarks"]
    assert not [(f, m) for f, m in _imports("benchmarks/") if m.split(".")[0] == "tests"]
    assert not [(f, m) for f, m in _imports("lungfake/") if m.split(".")[0] in ("tests", "benchmarks")]
