"""Methods over seeds and protocols: the two loaders on hand-written inputs, the summary and
the paired differences against slow references written here, the verdict rule on
constructed cases."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import warnings

import numpy as np
import pytest

from bacl.analysis import comparison
from bacl.analysis.comparison import ResultRow
from bacl.analysis.errors import AnalysisInputError
from bacl.errors import BaclError, MissingFileError
from bacl.params import load_params

NAN = math.nan


def row(method, seed, protocol, ap, apr, apc, apf) -> ResultRow:
    return ResultRow(method=method, seed=seed, protocol=protocol, AP=ap, APr=apr, APc=apc, APf=apf)


def same(a: float, b: float) -> bool:
    return (a != a and b != b) or a == pytest.approx(b, abs=1e-12)


# --- the sweep's results.json -------------------------------------------------------------------

SWEEP = {
    "0": {"baseline": {"lvis": {"AP": 0.20, "APr": 0.05, "APc": 0.15, "APf": 0.30},
                       "fixed": {"AP": 0.21, "APr": None, "APc": 0.16, "APf": 0.31}},
          "bacl": {"lvis": {"AP": 0.25, "APr": 0.12, "APc": 0.20, "APf": 0.31},
                   "fixed": {"AP": 0.22, "APr": -1, "APc": 0.17, "APf": 0.30}}},
    "1": {"baseline": {"lvis": {"AP": 0.19, "APr": 0.04, "APc": 0.14, "APf": 0.29},
                       "fixed": {"AP": 0.20, "APr": 0.05, "APc": 0, "APf": 1}}},
}


def test_load_sweep_reads_every_seed_variant_and_protocol(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(SWEEP))
    rows = comparison.load_sweep(path)
    got = {(r.method, r.seed, r.protocol): (r.AP, r.APr, r.APc, r.APf) for r in rows}
    assert set(got) == {("baseline", 0, "lvis"), ("baseline", 0, "fixed"), ("bacl", 0, "lvis"), ("bacl", 0, "fixed"),
                        ("baseline", 1, "lvis"), ("baseline", 1, "fixed")}
    assert got[("bacl", 0, "lvis")] == (0.25, 0.12, 0.20, 0.31)
    assert got[("baseline", 1, "fixed")] == (0.20, 0.05, 0.0, 1.0)
    assert math.isnan(got[("baseline", 0, "fixed")][1])  # null
    assert math.isnan(got[("bacl", 0, "fixed")][1])  # lvis-api's -1
    assert all(isinstance(r.seed, int) and str(path) in r.origin for r in rows)


@pytest.mark.parametrize("results, message", [
    ({"0": {"bacl": {"lvis": {"AP": 0.2, "APc": 0.1, "APf": 0.3}}}},
     "seed '0', variant 'bacl', protocol 'lvis': no APr"),
    ({"0": {"bacl": {"lvis": {"AP": 25.0, "APr": 0.1, "APc": 0.1, "APf": 0.3}}}}, "above 1"),
    ({"0": {"bacl": {"lvis": {"AP": "0.2", "APr": 0.1, "APc": 0.1, "APf": 0.3}}}}, "AP: expected a number"),
    ({"0": {"bacl": {"lvis": {"AP": True, "APr": 0.1, "APc": 0.1, "APf": 0.3}}}}, "AP: expected a number"),
    ({"zero": {"bacl": {}}}, "seed 'zero' is not an integer"),
    ({"0": {"bacl": [0.2]}}, "variant 'bacl': expected an object keyed by protocol"),
    ({"0": [1]}, "seed '0': expected an object keyed by variant"),
    ([1, 2], "expected an object keyed by seed"),
])
def test_load_sweep_errors_name_the_file_and_the_record(tmp_path, results, message):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    with pytest.raises(AnalysisInputError, match="results.json") as err:
        comparison.load_sweep(path)
    assert message in str(err.value)
    assert isinstance(err.value, BaclError) and isinstance(err.value, ValueError)


def test_load_sweep_missing_or_broken_file(tmp_path):
    with pytest.raises(MissingFileError, match="compare_methods"):
        comparison.load_sweep(tmp_path / "nothing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(AnalysisInputError, match="broken.json: not valid JSON"):
        comparison.load_sweep(broken)


def test_an_empty_sweep_has_no_rows(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("{}")
    assert comparison.load_sweep(path) == []
    assert comparison.summary([]) == []


# --- dvc exp show --json --------------------------------------------------------------------------

def project_params(*, seed=0, cls_loss="fcbl", fhm=True, alpha=0.85, reweight=True, base_loss="bce") -> dict:
    """The part of params.yaml the loader reads, with neighbours it must ignore."""
    return {"seed": seed, "data": {"dataset": "synthetic"},
            "classifier": {"output_dir": "runs/bacl", "loss": cls_loss, "epochs": 2,
                           "fhm": {"enabled": fhm, "decay": 0.1}},
            "baseline": {"output_dir": "runs/baseline", "loss": base_loss, "init_from": None},
            "losses": {"bce": {}, "fcbl": {"alpha": alpha, "prob_thr": 0.7, "reweight": reweight},
                       "eql": {"lambda_": 0.00177}},
            "evaluate": {"protocols": ["lvis", "lvis@300", "fixed", "pooled"]}}


def metrics_file(ap: float, *, apr=0.05) -> dict:
    """A summary file as bacl evaluate writes it, after DVC has dropped its null values."""
    def one(kind, shift, **budget):
        out = {"AP": ap + shift, "AP50": 0.4, "AP75": 0.2, "APs": 0.1, "APm": 0.2, "APc": 0.15, "APf": 0.3,
               "num_images": 300, "num_detections": 4500, "protocol": kind, **budget}
        if apr is not None:
            out["APr"] = apr + shift
        return out
    protocols = {"lvis": one("lvis", 0.0, max_dets=15), "lvis@300": one("lvis", 0.01, max_dets=300),
                 "fixed": one("fixed", -0.01, max_dets_per_class=150),
                 "pooled": one("pooled", -0.02, max_dets_per_class=150)}
    return {**protocols["lvis"], "protocols": protocols}


def state(rev, name, params, metrics, *, error=None) -> dict:
    return {"rev": rev, "name": name,
            "data": {"rev": rev, "timestamp": None if rev == "workspace" else "2025-01-01T00:00:00",
                     "params": {"params.yaml": {"data": params}},
                     "metrics": {path: {"data": data} for path, data in metrics.items()},
                     "deps": {"bacl/losses": {"hash": "0" * 32 + ".dir", "size": 1, "nfiles": 3}},
                     "outs": {}, "meta": {}},
            "error": error, "experiments": None}


def experiment(rev, name, params, metrics, *, executor=None, error=None) -> dict:
    return {"revs": [state(rev, name, params, metrics, error=error)], "executor": executor, "name": name}


def both(cls_ap, base_ap, **kw) -> dict:
    return {"metrics/classifier.json": metrics_file(cls_ap, **kw), "metrics/baseline.json": metrics_file(base_ap)}


def shown(*, workspace=None) -> list:
    """``dvc exp show --json`` of DVC 3 (its shape captured from a scratch repository):
    the workspace, the HEAD commit, its experiments (newest first)."""
    head = state("a" * 40, "main", project_params(), both(0.25, 0.20))
    head["experiments"] = [
        experiment("b" * 40, "seed1", project_params(seed=1), both(0.26, 0.21)),
        experiment("c" * 40, "eql", project_params(cls_loss="eql", fhm=False), both(0.22, 0.20, apr=None)),
        experiment("d" * 40, "fhm-only", project_params(alpha=0, reweight=False), both(0.23, 0.20)),
        experiment("e" * 40, "alpha05", project_params(alpha=0.5), both(0.24, 0.20)),
        experiment("f" * 40, "e2e-eql", project_params(base_loss="eql"), both(0.25, 0.18)),
        experiment("1" * 40, "queued", project_params(seed=2), {},
                   executor={"state": "queued", "name": "dvc-task", "local": None}),
        experiment("3" * 40, "running", project_params(seed=8), both(0.1, 0.1),  # metrics of its base so far
                   executor={"state": "running", "name": "dvc-task", "local": None}),
        experiment("2" * 40, "broken", project_params(seed=7), both(0.1, 0.1),
                   executor={"state": "failed", "name": "dvc-task", "local": None},
                   error={"msg": "Experiment run failed", "type": ""}),
    ]
    # after `dvc exp run`, the workspace holds the last experiment's parameters and metrics
    ws = workspace or state("workspace", None, project_params(seed=1), both(0.26, 0.21))
    return [ws, head]


def parse(data, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = comparison.parse_dvc_experiments(json.dumps(data), **kw)
    return rows, [str(w.message) for w in caught]


def test_dvc_experiments_name_methods_and_read_every_protocol():
    rows, warned = parse(shown())
    got = {(r.method, r.seed, r.protocol): r for r in rows}
    methods = {(m, s) for m, s, _ in got}
    assert methods == {("bacl", 0), ("baseline", 0), ("bacl", 1), ("baseline", 1), ("cls-eql", 0), ("fhm", 0),
                       ("bacl[alpha=0.5]", 0), ("e2e-eql", 0)}
    assert {p for _, _, p in got} == {"lvis", "lvis@300", "fixed", "pooled"}
    assert len(rows) == len(got) == 8 * 4  # the workspace and the repeated baselines kept once
    assert got[("bacl", 0, "lvis@300")].AP == pytest.approx(0.26)
    assert got[("e2e-eql", 0, "fixed")].AP == pytest.approx(0.17)
    assert math.isnan(got[("cls-eql", 0, "lvis")].APr)  # left out by DVC: undefined
    assert got[("baseline", 0, "lvis")].origin == "main (aaaaaaa)"  # first seen; every seed-0 experiment repeats it
    assert got[("bacl", 1, "lvis")].origin == "workspace"  # first seen; the experiment repeats it
    assert any("experiment queued (1111111): skipped, queued" in w for w in warned)
    assert any("experiment running (3333333): skipped, running" in w for w in warned)
    assert any("experiment broken (2222222): skipped, failed" in w for w in warned)


def test_dvc_experiments_without_the_workspace():
    ws = state("workspace", None, project_params(seed=5), both(0.3, 0.3))
    rows, _ = parse(shown(workspace=ws), include_workspace=False)
    assert 5 not in {r.seed for r in rows}
    rows, _ = parse(shown(workspace=ws))
    assert {r.origin for r in rows if r.seed == 5} == {"workspace"}


def test_the_same_run_with_different_numbers_is_an_error_naming_both():
    ws = state("workspace", None, project_params(), both(0.30, 0.20))  # code changed, not committed
    with pytest.raises(AnalysisInputError, match=r"bacl, seed 0, protocol lvis: workspace and main \(aaaaaaa\) differ"):
        parse(shown(workspace=ws))
    rows, _ = parse(shown(workspace=ws), include_workspace=False)
    assert {r.AP for r in rows if (r.method, r.seed, r.protocol) == ("bacl", 0, "lvis")} == {0.25}


def test_dvc_metrics_without_protocols_give_their_headline_protocol():
    flat = {k: v for k, v in metrics_file(0.25).items() if k != "protocols"}
    ws = state("workspace", None, project_params(seed=3), {"metrics/classifier.json": flat})
    rows, warned = parse([ws])
    assert [(r.method, r.seed, r.protocol, r.AP) for r in rows] == [("bacl", 3, "lvis", 0.25)]
    assert any("baseline skipped, no metrics/baseline.json" in w for w in warned)


def test_dvc_rows_with_errors_are_skipped_with_a_warning():
    ws = state("workspace", None, project_params(), {})
    ws["data"]["metrics"] = {"metrics/classifier.json": {"error": {"type": "FileNotFoundError", "msg": "gone"}},
                             "metrics/baseline.json": {"data": metrics_file(0.2)}}
    rows, warned = parse([ws])
    assert {r.method for r in rows} == {"baseline"}
    assert any("classifier skipped, metrics/classifier.json: gone" in w for w in warned)
    no_params = state("workspace", None, {}, both(0.2, 0.2))
    no_params["data"]["params"] = {}
    rows, warned = parse([no_params])
    assert rows == [] and any("skipped, no params.yaml" in w for w in warned)


@pytest.mark.parametrize("drop, key", [(("classifier", "loss"), "classifier.loss"), (("seed",), "seed"),
                                       (("losses", "fcbl"), "losses.fcbl.alpha"),
                                       (("baseline", "loss"), "baseline.loss")])
def test_dvc_experiment_without_a_naming_parameter_is_an_error(drop, key):
    params = project_params()
    node = params
    for part in drop[:-1]:
        node = node[part]
    del node[drop[-1]]
    with pytest.raises(AnalysisInputError, match=f"workspace: no parameter {key}"):
        parse([state("workspace", None, params, both(0.2, 0.2))])


def test_dvc_metrics_of_another_shape_are_an_error_naming_the_file():
    ws = state("workspace", None, project_params(), {"metrics/classifier.json": {"AP": 0.2, "protocols": [0.2]}})
    with pytest.raises(AnalysisInputError, match="workspace, metrics/classifier.json: 'protocols' is not an object"):
        parse([ws])
    ws = state("workspace", None, project_params(), {"metrics/classifier.json": {"protocols": {"lvis": {"x": 1}}}})
    with pytest.raises(AnalysisInputError, match="metrics/classifier.json, protocol 'lvis': none of"):
        parse([ws])


@pytest.mark.parametrize("text, message", [("not json", "not valid JSON"), ('{"rev": 1}', "expected the list"),
                                           ('[{"name": "x"}]', "without 'rev'")])
def test_dvc_output_that_is_not_exp_show(text, message):
    with pytest.raises(AnalysisInputError, match=message):
        comparison.parse_dvc_experiments(text)


def test_load_dvc_experiments_runs_dvc_in_the_repository(tmp_path, monkeypatch):
    calls = []

    def fake_run(command, **kw):
        calls.append((command, kw))
        return subprocess.CompletedProcess(command, 0, stdout=json.dumps(shown()), stderr="")

    monkeypatch.setattr(comparison.subprocess, "run", fake_run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = comparison.load_dvc_experiments(tmp_path, all_commits=True)
    assert len(rows) == 32
    command, kw = calls[0]
    assert command[-5:] == ["dvc", "exp", "show", "--json", "-A"] and kw["cwd"] == tmp_path

    def failing(command, **kw):
        return subprocess.CompletedProcess(command, 253, stdout="", stderr="ERROR: you are not inside of a DVC "
                                                                          "repository\n")
    monkeypatch.setattr(comparison.subprocess, "run", failing)
    with pytest.raises(AnalysisInputError, match="dvc exp show failed: ERROR: you are not inside"):
        comparison.load_dvc_experiments(tmp_path)
    with pytest.raises(MissingFileError, match="no such repository"):
        comparison.load_dvc_experiments(tmp_path / "absent")


# --- method names --------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, name", [
    ({"loss": "fcbl", "fhm": True, "alpha": 0.85, "reweight": True}, "bacl"),
    ({"loss": "fcbl", "fhm": True, "alpha": 0.0, "reweight": False}, "fhm"),
    ({"loss": "fcbl", "fhm": True, "alpha": 0.5, "reweight": True}, "bacl[alpha=0.5]"),
    ({"loss": "fcbl", "fhm": True, "alpha": 0.0, "reweight": True}, "bacl[alpha=0]"),
    ({"loss": "fcbl", "fhm": False, "alpha": 0.85, "reweight": False}, "cls-fcbl[reweight=false]"),
    ({"loss": "fcbl", "fhm": False, "alpha": 0.85, "reweight": True}, "cls-fcbl"),
    ({"loss": "bce", "fhm": False}, "cls-bce"),
    ({"loss": "seesaw", "fhm": False}, "cls-seesaw"),
    ({"loss": "eql", "fhm": True}, "cls-eql+fhm"),
])
def test_classifier_method_names_match_the_sweep(kw, name):
    assert comparison.classifier_method(**kw) == name


def test_baseline_method_names_and_fcbl_defaults():
    assert comparison.baseline_method(loss="bce") == "baseline"
    assert comparison.baseline_method(loss="eqlv2") == "e2e-eqlv2"
    assert comparison.baseline_method(loss="fcbl", alpha=0.85, reweight=True) == "e2e-fcbl"
    with pytest.raises(ValueError, match="alpha and reweight"):
        comparison.baseline_method(loss="fcbl")
    defaults = load_params(None, []).losses.fcbl
    assert comparison.FCBL_DEFAULTS == {"alpha": defaults.alpha, "reweight": defaults.reweight}


def test_method_order_and_labels():
    shuffled = ["e2e-eql", "zzz", "bacl", "cls-eql", "bacl[alpha=0.5]", "fhm", "cls-bce", "cls-custom", "baseline",
                "stage1", "cls-fcbl", "e2e-fcbl", "cls-eql+fhm", "bacl"]
    assert comparison.method_order(shuffled) == [
        "stage1", "baseline", "cls-bce", "cls-fcbl", "cls-eql", "cls-eql+fhm", "cls-custom", "fhm", "bacl",
        "bacl[alpha=0.5]", "e2e-fcbl", "e2e-eql", "zzz"]
    assert comparison.method_label("cls-eql") == "eql, classifier stage"
    assert comparison.method_label("e2e-seesaw") == "seesaw, end to end"
    assert comparison.method_label("bacl[alpha=0.5]") == "BACL (FCBL + FHM) [alpha=0.5]"
    assert comparison.method_label("zzz") == "zzz"


def test_protocol_titles_and_picks():
    assert comparison.protocol_title("lvis@300") == "lvis@300: 300 detections per image"
    assert comparison.protocol_title("lvis") == "lvis: scaled per-image cap"
    assert comparison.protocol_title("fixed") == "fixed: Fixed AP"
    assert comparison.protocol_title("pooled@50") == "pooled@50: pooled AP, 50 per class"
    rows = [row("a", 0, p, 0.1, 0.1, 0.1, 0.1) for p in ("pooled", "fixed", "lvis")]
    assert comparison.protocols_of(rows) == ["pooled", "fixed", "lvis"]
    assert comparison.pick_protocols(rows) == ["lvis", "fixed"]
    assert comparison.pick_protocols(rows, ["fixed@10"]) == ["pooled", "fixed", "lvis"]


# --- the summary ---------------------------------------------------------------------------------

def random_rows(rng, *, methods, seeds, protocols, nan_share=0.15) -> list[ResultRow]:
    rows = []
    for m in methods:
        for s in seeds:
            for p in protocols:
                values = rng.uniform(0, 1, size=4)
                values[rng.uniform(size=4) < nan_share] = np.nan
                rows.append(row(m, int(s), p, *map(float, values)))
    return rows


def slow_summary_entry(rows, method, protocol, metric):
    values = [getattr(r, metric) for r in rows
              if r.method == method and r.protocol == protocol and not math.isnan(getattr(r, metric))]
    mean = statistics.fmean(values) if values else NAN
    std = statistics.stdev(values) if len(values) > 1 else NAN
    return mean, std, len(values)


def test_summary_matches_a_slow_reference():
    rng = np.random.default_rng(0)
    methods, protocols = ["bacl", "baseline", "cls-eql"], ["lvis", "fixed"]
    rows = random_rows(rng, methods=methods, seeds=[0, 1, 2, 3], protocols=protocols)
    rows += random_rows(rng, methods=["stage1"], seeds=[5], protocols=["lvis"])  # one seed, one protocol
    rows = [rows[i] for i in rng.permutation(len(rows))]
    out = comparison.summary(rows)
    assert [(e["method"], e["protocol"]) for e in out] == [
        (m, p) for m in ["stage1", "baseline", "cls-eql", "bacl"] for p in comparison.protocols_of(rows)
        if m != "stage1" or p == "lvis"]
    for entry in out:
        seeds = sorted({r.seed for r in rows if r.method == entry["method"] and r.protocol == entry["protocol"]})
        assert entry["seeds"] == seeds and entry["n_seeds"] == len(seeds)
        for metric in comparison.METRICS:
            mean, std, n = slow_summary_entry(rows, entry["method"], entry["protocol"], metric)
            assert same(entry[f"{metric}_mean"], mean) and same(entry[f"{metric}_std"], std)
            assert entry[f"{metric}_n"] == n
    single = next(e for e in out if e["method"] == "stage1")
    assert all(math.isnan(single[f"{m}_std"]) for m in comparison.METRICS)


def test_summary_of_a_metric_undefined_for_every_seed_and_of_duplicates():
    rows = [row("bacl", s, "lvis", 0.2, NAN, 0.1, 0.3) for s in (0, 1)]
    entry = comparison.summary(rows)[0]
    assert math.isnan(entry["APr_mean"]) and math.isnan(entry["APr_std"]) and entry["APr_n"] == 0
    with pytest.raises(AnalysisInputError, match="bacl, seed 0, protocol lvis: given twice"):
        comparison.summary(rows + [rows[0]])


def test_summary_table_shows_mean_and_spread_in_percent():
    rows = [row("bacl", 0, "lvis", 0.20, 0.10, 0.2, 0.3), row("bacl", 1, "lvis", 0.22, NAN, 0.2, 0.3),
            row("baseline", 0, "lvis", 0.15, 0.05, 0.2, 0.3), row("bacl", 0, "fixed", 0.1, 0.1, 0.1, 0.1)]
    table = comparison.summary_table(comparison.summary(rows), "lvis")
    lines = table.splitlines()
    assert lines[0] == "| method | seeds | AP (%) | APr (%) | APc (%) | APf (%) |"
    assert lines[2] == "| baseline (stage 1 continued, BCE) | 1 | 15.0 | 5.0 | 20.0 | 30.0 |"
    assert lines[3] == "| BACL (FCBL + FHM) | 2 | 21.0 ± 1.4 | 10.0 (n=1) | 20.0 ± 0.0 | 30.0 ± 0.0 |"
    assert len(lines) == 4


# --- paired differences and the verdict --------------------------------------------------------------

def test_paired_differences_match_a_slow_reference():
    rng = np.random.default_rng(1)
    rows = random_rows(rng, methods=["baseline", "bacl", "cls-eql"], seeds=[0, 1, 2, 3, 4],
                       protocols=["lvis", "lvis@300", "fixed"], nan_share=0.2)
    rows = [r for r in rows if not (r.method == "cls-eql" and r.seed == 4)]  # a seed the method lacks
    for metric in comparison.METRICS:
        out = comparison.paired_differences(rows, reference="baseline", metric=metric)
        assert [(d["method"], d["protocol"]) for d in out] == [
            (m, p) for m in ("cls-eql", "bacl") for p in ("lvis", "lvis@300", "fixed")]
        for d in out:
            ours = {r.seed: getattr(r, metric) for r in rows if r.method == d["method"] and r.protocol == d["protocol"]}
            ref = {r.seed: getattr(r, metric) for r in rows if r.method == "baseline" and r.protocol == d["protocol"]}
            diffs = [ours[s] - ref[s] for s in sorted(ours) if s in ref
                     and not math.isnan(ours[s]) and not math.isnan(ref[s])]
            assert d["n"] == len(diffs) and d["reference"] == "baseline" and d["metric"] == metric
            mean = statistics.fmean(diffs) if diffs else NAN
            std = statistics.stdev(diffs) if len(diffs) > 1 else NAN
            se = std / math.sqrt(len(diffs)) if diffs else NAN
            assert same(d["mean"], mean) and same(d["std"], std) and same(d["se"], se)
            assert same(d["lower"], mean - 2 * se) and same(d["upper"], mean + 2 * se)
            expected = ("too few seeds" if len(diffs) < 2 else "survives" if mean - 2 * se > 0
                        else "clear loss" if mean + 2 * se < 0 else "no clear difference")
            assert d["verdict"] == expected


def constructed(diffs_by_method: dict[str, list[float]], protocol="fixed") -> list[ResultRow]:
    rows = []
    for method, diffs in diffs_by_method.items():
        for seed, diff in enumerate(diffs):
            rows.append(row("baseline", seed, protocol, 0.3, 0.3, 0.3, 0.3))
            rows.append(row(method, seed, protocol, 0.3 + diff, 0.3, 0.3, 0.3))
    return list({(r.method, r.seed): r for r in rows}.values())


@pytest.mark.parametrize("diffs, expected", [
    ([0.031, 0.029, 0.030, 0.032], "survives"),              # clearly positive
    ([0.0, 0.0, 0.0], "no clear difference"),                # clearly zero
    ([0.08, -0.05, 0.02, -0.03], "no clear difference"),     # noisy: positive mean, larger spread
    ([-0.02, -0.021, -0.019], "clear loss"),
    ([0.05], "too few seeds"),
])
def test_verdict_on_constructed_cases(diffs, expected):
    (d,) = comparison.paired_differences(constructed({"bacl": diffs}), reference="baseline", metric="AP")
    assert d["verdict"] == expected
    assert d["n"] == len(diffs)


def test_verdict_rule_is_strict_at_two_standard_errors():
    assert comparison.verdict(2.0, 2.0, 4) == "no clear difference"  # se = 1: mean - 2 se = 0 exactly
    assert comparison.verdict(2.0 + 1e-9, 2.0, 4) == "survives"
    assert comparison.verdict(-2.0, 2.0, 4) == "no clear difference"
    assert comparison.verdict(-2.0 - 1e-9, 2.0, 4) == "clear loss"
    assert comparison.verdict(0.01, 0.0, 2) == "survives"  # the same gain on every seed
    assert comparison.verdict(1.0, NAN, 1) == "too few seeds"
    assert comparison.verdict(0.5, 0.1, 3, z=20) == "no clear difference"


def test_paired_differences_edge_cases():
    rows = constructed({"bacl": [0.1, 0.2]})
    with pytest.raises(AnalysisInputError, match="reference method 'cls-bce' is not among"):
        comparison.paired_differences(rows, reference="cls-bce")
    with pytest.raises(KeyError, match="APx"):
        comparison.paired_differences(rows, reference="baseline", metric="APx")
    rows.append(row("cls-eql", 9, "fixed", 0.3, 0.3, 0.3, 0.3))  # no seed in common with the reference
    out = {d["method"]: d for d in comparison.paired_differences(rows, reference="baseline")}
    assert out["cls-eql"]["n"] == 0 and out["cls-eql"]["verdict"] == "too few seeds"
    assert math.isnan(out["cls-eql"]["mean"])
    assert comparison.paired_differences(rows, reference="baseline", protocols=["lvis"]) == []


def test_survival_table_and_sentences():
    rows = constructed({"bacl": [0.031, 0.029, 0.030], "cls-eql": [0.0, 0.001, -0.001]}, protocol="lvis")
    rows += constructed({"bacl": [0.0, 0.0, 0.0], "cls-eql": [0.0, 0.001, -0.001]}, protocol="fixed")
    diffs = comparison.paired_differences(rows, reference="baseline", metric="AP")
    lines = comparison.survival_table(diffs, ["lvis", "fixed"]).splitlines()
    assert lines[0] == "| method | paired seeds | lvis | fixed |"
    assert lines[2] == ("| eql, classifier stage | 3 | +0.0 ± 0.1: no clear difference "
                        "| +0.0 ± 0.1: no clear difference |")
    assert lines[3] == "| BACL (FCBL + FHM) | 3 | +3.0 ± 0.1: survives | +0.0 ± 0.0: no clear difference |"
    assert comparison.survival_sentences(diffs) == [
        "eql, classifier stage: the AP gain over baseline survives under no protocol: lvis (no clear difference), "
        "fixed (no clear difference).",
        "BACL (FCBL + FHM): the AP gain over baseline survives under lvis; not under fixed (no clear difference).",
    ]


def test_paired_points_match_a_slow_reference():
    rng = np.random.default_rng(2)
    rows = random_rows(rng, methods=["bacl", "baseline"], seeds=[0, 1, 2], protocols=["lvis", "fixed", "pooled"])
    points = comparison.paired_points(rows, x_protocol="lvis", y_protocol="fixed", metric="APr")
    expected = []
    for method in ("baseline", "bacl"):
        for seed in (0, 1, 2):
            x = next(r.APr for r in rows if (r.method, r.seed, r.protocol) == (method, seed, "lvis"))
            y = next(r.APr for r in rows if (r.method, r.seed, r.protocol) == (method, seed, "fixed"))
            if not math.isnan(x) and not math.isnan(y):
                expected.append((method, seed, x, y))
    assert [(p["method"], p["seed"], p["x"], p["y"]) for p in points] == expected
    assert comparison.paired_points(rows, x_protocol="lvis", y_protocol="absent") == []
    assert comparison.paired_points([], x_protocol="lvis", y_protocol="fixed") == []


def test_result_rows_are_checked_at_construction():
    good = {"method": "bacl", "seed": 0, "protocol": "lvis", "AP": 0.2, "APr": NAN, "APc": 0.0, "APf": 1.0}
    assert ResultRow(**good).metric("APf") == 1.0
    for change, message in (({"AP": 1.5}, "AP must be a float in \\[0, 1\\]"), ({"APc": -0.1}, "APc must be"),
                            ({"APf": 1}, "APf must be a float"), ({"seed": "0"}, "seed must be an integer"),
                            ({"seed": True}, "seed must be an integer"), ({"method": ""}, "empty method")):
        with pytest.raises(AnalysisInputError, match=message):
            ResultRow(**{**good, **change}, origin="here")
    with pytest.raises(TypeError):
        ResultRow("bacl", 0, "lvis", 0.2, 0.1, 0.1, 0.1)  # keyword-only
    with pytest.raises(KeyError, match="AP50"):
        ResultRow(**good).metric("AP50")
