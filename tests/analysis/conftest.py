"""A tiny finished study for the analysis tests and the notebooks: stage 1, BACL's classifier
stage (FCBL + FHM) and the baseline trained for one epoch each on the tiny dataset, both
evaluated. Built once per session; read-only."""

from __future__ import annotations

import pytest
import yaml

from bacl.engine.train import train
from bacl.evaluation.checkpoint_eval import evaluate_checkpoint
from bacl.params import load_params

from ..conftest import use_train_counts, write_tiny_lvis

def study_overrides(root, runs) -> list[str]:
    overrides = [f"data.root={root}", "evaluate.min_size=64", "evaluate.workers=0", "evaluate.batch_size=4",
                 "solver.batch_size=4", "solver.workers=0", "solver.warmup_iters=2", "solver.base_lr=0.01",
                 f"representation.output_dir={runs / 'representation'}",
                 f"classifier.output_dir={runs / 'bacl'}", f"baseline.output_dir={runs / 'baseline'}"]
    for section in ("representation", "classifier", "baseline"):
        overrides += [f"{section}.{kv}" for kv in ("epochs=1", "lr_steps=[1]", "min_sizes=[64]")]
    return overrides


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("study")
    data = write_tiny_lvis(base / "tiny", num_train=16, num_val=6, seed=5)  # every class in val
    use_train_counts(data["train"], data["val"])
    runs = base / "runs"
    overrides = study_overrides(data["root"], runs)
    params = load_params(None, overrides)
    params_file = base / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.to_dict(), sort_keys=False))
    out = {**data, "params": params, "params_file": params_file}
    out["representation"] = train(params, stage="representation", device="cpu")
    for stage, name in (("classifier", "bacl"), ("baseline", "baseline")):
        final = train(params, stage=stage, device="cpu")
        eval_dir = runs / name / "eval"
        evaluate_checkpoint(params, final, output=eval_dir / "metrics.json",
                            detections_out=eval_dir / "detections.json", device="cpu")
        out[name] = {"final": final, "last": runs / name / "checkpoints" / "last.pt",
                     "metrics": eval_dir / "metrics.json", "detections": eval_dir / "detections.json"}
    return out
