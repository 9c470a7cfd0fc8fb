"""Issue 25: dlbench in a notebook. docs/tour.ipynb runs in a real Jupyter kernel (nbclient): it
trains, plots a curve with matplotlib, compares two optimizers, loads the model, and catches a
mistake as one DlbenchError; what the cells print holds no terminal control character."""

import json
import shutil
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).parent.parent


def test_the_tour_notebook_runs_in_a_jupyter_kernel(tmp_path, monkeypatch):
    notebook = nbformat.read(ROOT / "docs" / "tour.ipynb", as_version=4)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own (inline) backend, as in Jupyter
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = json.dumps(
        [o.get("text", "") for o in outputs] + [o.get("data", {}).get("text/plain", "") for o in outputs]
    )
    assert "\\u001b" not in text and "\\r" not in text, text[:3000]  # no escape sequence, no carriage return
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the two figures
    assert "Run('" in text and "test/acc" in text
    assert "Unknown model option 'mlpp'. Did you mean: mlp" in text
    runs = sorted((tmp_path / "outputs" / "digits_mlp").iterdir())
    assert len(runs) == 3 and all((run / "metrics.json").is_file() for run in runs)
    shutil.rmtree(tmp_path / "outputs")
