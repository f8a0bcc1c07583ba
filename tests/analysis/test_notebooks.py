"""The analysis notebooks run end to end (papermill, the environment's own kernel) on a
tiny finished study, with no error cell, and write their figures."""

import sys
from pathlib import Path

import nbformat
import papermill

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL = "python3"  # what dvc.yaml passes: ipykernel's spec, launched with papermill's own Python


def run(name: str, tmp_path: Path, parameters: dict) -> nbformat.NotebookNode:
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), parameters=parameters,
                               kernel_name=KERNEL, cwd=str(tmp_path), progress_bar=False)
    book = nbformat.read(out, as_version=4)
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    return book


def test_notebooks_have_a_parameters_cell():
    for path in NOTEBOOKS.glob("*.ipynb"):
        book = nbformat.read(path, as_version=4)
        tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        assert all(not c.get("outputs") for c in book.cells if c.cell_type == "code"), f"{path.name}: saved outputs"


def test_the_kernel_is_this_environments_python(tmp_path):
    probe = nbformat.v4.new_notebook()
    probe.cells = [nbformat.v4.new_code_cell("import sys\nprint(sys.executable)")]
    src = tmp_path / "probe.ipynb"
    nbformat.write(probe, src)
    papermill.execute_notebook(str(src), str(tmp_path / "out.ipynb"), kernel_name=KERNEL, progress_bar=False)
    printed = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs[0].text.strip()
    assert Path(printed).resolve() == Path(sys.executable).resolve()


def test_tail_class_gains(tiny_study, tmp_path):
    figures = tmp_path / "figures"
    run("tail_class_gains", tmp_path, {
        "params_file": str(tiny_study["params_file"]),
        "baseline_metrics": str(tiny_study["baseline"]["metrics"]),
        "bacl_metrics": str(tiny_study["bacl"]["metrics"]),
        "baseline_detections": str(tiny_study["baseline"]["detections"]),
        "bacl_detections": str(tiny_study["bacl"]["detections"]),
        "bacl_checkpoint": str(tiny_study["bacl"]["final"]),
        "figures_dir": str(figures),
    })
    assert {"ap_by_frequency.png", "ap_by_image_count.png", "ap_change_vs_image_count.png",
            "confusion_between_bins.png", "gallery_rare.png"} <= {p.name for p in figures.glob("*.png")}


def test_hallucinated_features(tiny_study, tmp_path):
    figures = tmp_path / "figures"
    run("hallucinated_features", tmp_path, {
        "params_file": str(tiny_study["params_file"]),
        "bacl_checkpoint": str(tiny_study["bacl"]["final"]),
        "figures_dir": str(figures),
        "max_real_per_class": 4,
        "num_hallucinated": 8,
    })
    assert {"sampling_probability_vs_accuracy.png", "feature_variance_vs_image_count.png", "fcbl_margins.png",
            "real_vs_hallucinated_pca.png"} <= {p.name for p in figures.glob("*.png")}


def test_hallucinated_features_of_a_run_without_fhm_or_fcbl(tiny_study, tmp_path):
    """An ablation such as `dvc exp run -S classifier.fhm.enabled=false` still gets its report."""
    figures = tmp_path / "figures"
    book = run("hallucinated_features", tmp_path, {
        "params_file": str(tiny_study["params_file"]),
        "bacl_checkpoint": str(tiny_study["baseline"]["final"]),  # BCE, no FHM
        "figures_dir": str(figures),
    })
    printed = "".join(o.get("text", "") for c in book.cells if c.cell_type == "code" for o in c.outputs)
    assert "trained without FHM" in printed and "no margins" in printed
    assert not list(figures.glob("*.png"))


def test_method_comparison_on_a_sweep(tmp_path):
    """A generated results.json of tools/compare_methods.py: 3 seeds, 5 methods, 4 protocols;
    BACL's gain over the baseline is built to show under the per-image caps only."""
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    methods = ("baseline", "cls-bce", "cls-eql", "fhm", "bacl")
    level = {method: rng.uniform(0.05, 0.3, size=4) for method in methods}  # small spread over seeds
    level["bacl"] = level["baseline"]  # + 0.05 under the caps, nothing under Fixed AP
    results = {str(seed): {method: {
        protocol: {metric: float(value + rng.normal(0, 0.002)
                                 + (0.05 if method == "bacl" and protocol != "fixed" else 0.0))
                   for metric, value in zip(("AP", "APr", "APc", "APf"), level[method])}
        for protocol in ("lvis", "lvis@300", "fixed", "pooled")} for method in methods} for seed in range(3)}
    (tmp_path / "results.json").write_text(json.dumps(results))
    figures = tmp_path / "figures"
    book = run("method_comparison", tmp_path, {"source": "sweep", "results": str(tmp_path / "results.json"),
                                               "figures_dir": str(figures)})
    assert {"ap_per_bin_by_protocol.png", "apr_capped_vs_fixed.png"} <= {p.name for p in figures.glob("*.png")}
    shown = "".join(o.get("data", {}).get("text/markdown", "") + o.get("text", "")
                    for c in book.cells if c.cell_type == "code" for o in c.outputs)
    assert "5 methods, seeds [0, 1, 2]" in shown
    assert "BACL (FCBL + FHM): the AP gain over baseline survives under lvis@300, lvis; not under fixed" in shown
