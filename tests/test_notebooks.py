"""The tutorial notebooks: stored without outputs, and each runs top to bottom ("Run All") against the sandbox.

Each notebook is executed with nbclient in a temporary working directory, on a ``python3`` kernel
whose spec (in a temporary ``JUPYTER_PATH``) runs this interpreter, so the kernel sees the same
environment as the tests. A cell error fails the test; the notebooks' own closing cells assert on
what they showed. ``TELNYX_API_KEY`` is removed so that they use the sandbox.
"""

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_notebooks_exist():
    names = [p.name for p in NOTEBOOKS]
    assert "01-quickstart.ipynb" in names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} of {path.name} has stored outputs"
            assert cell.execution_count is None, f"cell {i} of {path.name} has an execution count"
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state"
    assert path.stat().st_size < 50_000, f"{path.name} is {path.stat().st_size} bytes"


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A python3 kernelspec that runs this interpreter, found first through JUPYTER_PATH."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (telnyx_nb tests)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.delenv("TELNYX_API_KEY", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    work = tmp_path / "work"
    work.mkdir()
    return work


@pytest.mark.timeout(240)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, kernel_env):
    nb = nbformat.read(path, as_version=4)
    n_cells = len(nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                                     resources={"metadata": {"path": str(kernel_env)}})
    client.execute()  # raises CellExecutionError on the first cell that fails (timings: bench_notebooks.py)
    last = nb.cells[n_cells].outputs
    assert last and Path(last[0]["text"].strip()) == Path(sys.executable), last
    for i, cell in enumerate(nb.cells[:n_cells]):
        if cell.cell_type == "code":
            errors = [o for o in cell.outputs if o.get("output_type") == "error"]
            assert not errors, f"cell {i}: {errors}"
