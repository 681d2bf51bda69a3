"""The notebook tour: committed without outputs, and it runs top to bottom (small budgets)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# Replaces the cell tagged "parameters": the smallest budgets that still run every cell.
QUICK_PARAMETERS = "EPOCHS = 1\nDEPTHS = (20, 32)\nSEED = 0\nTHREADS = 1\n"


def _parameters_cell(nb):
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "one code cell tagged 'parameters' holds the budgets"
    return tagged[0]


def test_there_is_a_tour():
    assert any(p.name == "tour.ipynb" for p in NOTEBOOKS)


def test_committed_notebooks_have_no_outputs():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name} cell {i}"


@pytest.fixture(scope="module")
def executed_tour(tmp_path_factory):
    """The tour executed top to bottom with the quick budgets."""
    nb = nbformat.read(NOTEBOOKS[[p.name for p in NOTEBOOKS].index("tour.ipynb")], as_version=4)
    cell = _parameters_cell(nb)
    names = {line.split("=")[0].strip() for line in cell.source.splitlines()
             if "=" in line and not line.startswith("#")}
    assert names == {"EPOCHS", "DEPTHS", "SEED", "THREADS"}  # the quick values set them all
    cell.source = QUICK_PARAMETERS
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path_factory.mktemp("tour"))}}).execute()
    return nb


def _outputs(nb):
    return [out for c in nb.cells if c.cell_type == "code" for out in c.outputs]


def test_tour_runs_top_to_bottom(executed_tour):
    outputs = _outputs(executed_tour)
    text = "\n".join(out.get("text", "") for out in outputs if out.get("name") != "stderr")
    assert "naive, by hand: 854,196,224 MACs, output depth 672" in text
    assert "(1, 192, 28, 28) -> (1, 256, 28, 28)" in text
    for name in ("plain20", "resnet20", "plain32", "resnet32"):
        assert f"{name} " in text and "training error" in text
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 3  # the depth plot, the training curves, the gradient profiles


def test_tour_writes_no_warnings(executed_tour):
    """Nothing on the cells' stderr: a warning there is a defect to fix, not to filter."""
    stderr = [out.text for out in _outputs(executed_tour) if out.get("name") == "stderr"]
    assert stderr == []
