"""Methods compared over seeds and evaluation protocols: what the method_comparison
notebook shows.

Two sources give one long table of :class:`ResultRow` ``(method, seed, protocol, AP,
APr, APc, APf)``, values as fractions (0..1), NaN where undefined:

- a sweep of ``tools/compare_methods.py``: its ``results.json``,
  ``{seed: {variant: {protocol: {AP, APr, APc, APf}}}}`` (:func:`load_sweep`);
- DVC experiments: ``dvc exp show --json`` (:func:`load_dvc_experiments`), where each
  experiment's parameters name two methods, the classifier stage's
  (``metrics/classifier.json``) and the baseline's (``metrics/baseline.json``).

Method names are those of the sweep (:func:`classifier_method`,
:func:`baseline_method`): ``baseline``, ``cls-<loss>``, ``fhm``, ``bacl``,
``e2e-<loss>``, ``stage1``. On top come :func:`summary` (mean and sample standard
deviation over seeds) and :func:`paired_differences` with its rule, :func:`verdict`:
a gain over a reference method *survives* when the mean of the per-seed differences
minus two standard errors is above zero.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import MissingFileError
from ..params import FCBLOptions
from .errors import AnalysisInputError
from .tables import markdown_table

METRICS = ("AP", "APr", "APc", "APf")
BIN_METRICS = ("APr", "APc", "APf")
#: The panels of the notebook: LVIS's 300 per image, the per-image budget scaled to the
#: dataset (``evaluate.detections_per_img``) and Fixed AP.
DEFAULT_PROTOCOLS = ("lvis@300", "lvis", "fixed")
#: Losses in the order the tables list them; others follow alphabetically.
LOSS_ORDER = ("bce", "softmax_ce", "fcbl", "eql", "eqlv2", "seesaw", "federated", "logit_adjusted", "ecm", "bags")
FCBL_DEFAULTS = {"alpha": FCBLOptions.model_fields["alpha"].default,
                 "reweight": FCBLOptions.model_fields["reweight"].default}
#: A gain survives when mean - SURVIVAL_Z * standard error > 0 (see :func:`verdict`).
SURVIVAL_Z = 2.0
MIN_SEEDS = 2


@dataclass(frozen=True, kw_only=True)
class ResultRow:
    """One method, seed and protocol. Metrics are fractions in [0, 1], NaN when undefined
    (lvis-api's -1, e.g. APr without a rare class in the split). ``origin`` says where the
    row was read, for error messages. Checked at construction."""

    method: str
    seed: int
    protocol: str
    AP: float
    APr: float
    APc: float
    APf: float
    origin: str = ""

    def __post_init__(self) -> None:
        where = f"{self.origin or 'row'}: {self.method}, seed {self.seed}, protocol {self.protocol}"
        if not self.method or not self.protocol:
            raise AnalysisInputError(f"{where}: empty method or protocol name")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise AnalysisInputError(f"{where}: seed must be an integer")
        for name in METRICS:
            value = getattr(self, name)
            if not isinstance(value, float) or not (value != value or 0.0 <= value <= 1.0):
                raise AnalysisInputError(f"{where}: {name} must be a float in [0, 1] or NaN, got {value!r}")

    def metric(self, name: str) -> float:
        if name not in METRICS:
            raise KeyError(f"unknown metric {name!r}: one of {list(METRICS)}")
        return getattr(self, name)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fraction(value: Any, where: str) -> float:
    """A metric value as a float in [0, 1]; None or negative (lvis-api's -1) is NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnalysisInputError(f"{where}: expected a number or null, got {value!r}")
    value = float(value)
    if value < 0 or value != value:
        return math.nan
    if value > 1:
        raise AnalysisInputError(f"{where}: {value} is above 1; metrics are fractions, not percent")
    return value


def _metrics_row(method: str, seed: int, protocol: str, values: Any, *, where: str, origin: str,
                 missing_is_undefined: bool) -> ResultRow:
    if not isinstance(values, Mapping):
        raise AnalysisInputError(f"{where}: expected an object of metrics, got {type(values).__name__}")
    if missing_is_undefined:
        if not any(k in values for k in METRICS):
            raise AnalysisInputError(f"{where}: none of {list(METRICS)}")
    else:
        missing = [k for k in METRICS if k not in values]
        if missing:
            raise AnalysisInputError(f"{where}: no {', '.join(missing)}")
    numbers = {k: _fraction(values.get(k), f"{where}, {k}") for k in METRICS}
    return ResultRow(method=method, seed=seed, protocol=protocol, origin=origin, **numbers)


def _seed(value: Any, where: str) -> int:
    """A seed given as an integer or its decimal string (results.json keys are strings)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    raise AnalysisInputError(f"{where}: seed {value!r} is not an integer")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no {what}") from None
    except ValueError as err:
        raise AnalysisInputError(f"{path}: not valid JSON ({err})") from None


# --- the sweep (tools/compare_methods.py) ------------------------------------------------------

def sweep_rows(results: Any, *, source: str = "results.json") -> list[ResultRow]:
    """Rows of a parsed sweep ``{seed (str): {variant: {protocol: {AP, APr, APc, APf}}}}``;
    every key must be there (null or -1 for an undefined value). Errors name ``source``
    and the seed, variant and protocol."""
    if not isinstance(results, Mapping):
        raise AnalysisInputError(f"{source}: expected an object keyed by seed, got {type(results).__name__}")
    rows = []
    for seed_key, variants in results.items():
        seed = _seed(seed_key, f"{source}: seed {seed_key!r}")
        if not isinstance(variants, Mapping):
            raise AnalysisInputError(f"{source}: seed {seed_key!r}: expected an object keyed by variant")
        for method, protocols in variants.items():
            if not isinstance(protocols, Mapping):
                raise AnalysisInputError(f"{source}: seed {seed_key!r}, variant {method!r}: "
                                         "expected an object keyed by protocol")
            for protocol, values in protocols.items():
                where = f"{source}: seed {seed_key!r}, variant {method!r}, protocol {protocol!r}"
                rows.append(_metrics_row(str(method), seed, str(protocol), values, where=where,
                                         origin=f"{source}, seed {seed}", missing_is_undefined=False))
    return rows


def load_sweep(path: str | Path) -> list[ResultRow]:
    """:func:`sweep_rows` of a ``results.json`` written by ``tools/compare_methods.py``."""
    path = Path(path)
    return sweep_rows(_read_json(path, "sweep results; run tools/compare_methods.py first"), source=str(path))


# --- DVC experiments ---------------------------------------------------------------------------

def _fcbl_qualifiers(alpha: float, reweight: bool) -> str:
    """``""`` for FCBL's published settings, else e.g. ``"[alpha=0.5,reweight=false]"``."""
    parts = []
    if float(alpha) != float(FCBL_DEFAULTS["alpha"]):
        parts.append(f"alpha={float(alpha):g}")
    if bool(reweight) != bool(FCBL_DEFAULTS["reweight"]):
        parts.append(f"reweight={str(bool(reweight)).lower()}")
    return f"[{','.join(parts)}]" if parts else ""


def classifier_method(*, loss: str, fhm: bool, alpha: float | None = None, reweight: bool | None = None) -> str:
    """The sweep's name of a classifier-stage run: ``bacl`` (FCBL + FHM), ``fhm`` (FHM
    with FCBL reduced to BCE: alpha 0, no reweighting), ``cls-<loss>`` (no FHM), and
    ``cls-<loss>+fhm`` for FHM with another loss. FCBL settings other than the published
    ones (:data:`FCBL_DEFAULTS`) are appended, e.g. ``bacl[alpha=0.5]``, so they are not
    averaged with the published ones. ``alpha`` and ``reweight`` are needed for FCBL only."""
    if loss == "fcbl" and (alpha is None or reweight is None):
        raise ValueError("FCBL runs need alpha and reweight to be named")
    if loss != "fcbl":
        return f"cls-{loss}+fhm" if fhm else f"cls-{loss}"
    if not fhm:
        return "cls-fcbl" + _fcbl_qualifiers(alpha, reweight)
    if float(alpha) == 0.0 and not reweight:
        return "fhm"
    return "bacl" + _fcbl_qualifiers(alpha, reweight)


def baseline_method(*, loss: str, alpha: float | None = None, reweight: bool | None = None) -> str:
    """The sweep's name of a baseline-stage run (stage 1 continued, nothing frozen):
    ``baseline`` with BCE, ``e2e-<loss>`` with another loss (FCBL settings appended as in
    :func:`classifier_method`)."""
    if loss == "bce":
        return "baseline"
    if loss == "fcbl":
        if alpha is None or reweight is None:
            raise ValueError("FCBL runs need alpha and reweight to be named")
        return "e2e-fcbl" + _fcbl_qualifiers(alpha, reweight)
    return f"e2e-{loss}"


def _param(tree: Mapping[str, Any], key: str, where: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise AnalysisInputError(f"{where}: no parameter {key}")
        node = node[part]
    return node


def _stage_methods(params: Mapping[str, Any], where: str) -> dict[str, str]:
    """``{"classifier": method, "baseline": method}`` named by an experiment's params."""
    def fcbl(loss: str) -> dict[str, Any]:
        if loss != "fcbl":
            return {}
        return {"alpha": _param(params, "losses.fcbl.alpha", where),
                "reweight": _param(params, "losses.fcbl.reweight", where)}

    cls_loss = str(_param(params, "classifier.loss", where))
    fhm = _param(params, "classifier.fhm.enabled", where)
    base_loss = str(_param(params, "baseline.loss", where))
    return {"classifier": classifier_method(loss=cls_loss, fhm=bool(fhm), **fcbl(cls_loss)),
            "baseline": baseline_method(loss=base_loss, **fcbl(base_loss))}


def _file_data(files: Any, name: str) -> tuple[Any, str | None]:
    """``(data, None)`` of one file of an experiment's params or metrics, or ``(None, why)``."""
    entry = files.get(name) if isinstance(files, Mapping) else None
    if not isinstance(entry, Mapping):
        return None, f"no {name}"
    if entry.get("error"):
        error = entry["error"]
        return None, f"{name}: {error.get('msg', error) if isinstance(error, Mapping) else error}"
    if "data" not in entry:
        return None, f"no {name}"
    return entry["data"], None


def _experiment_states(shown: Any, source: str) -> Iterable[tuple[str, Mapping[str, Any], str | None]]:
    """``(label, state, executor state)`` of every commit row (the workspace and the
    baseline commits) and every experiment of ``dvc exp show --json``'s output."""
    if not isinstance(shown, list):
        raise AnalysisInputError(f"{source}: expected the list dvc exp show --json prints, "
                                 f"got {type(shown).__name__}")
    for commit in shown:
        if not isinstance(commit, Mapping) or "rev" not in commit:
            raise AnalysisInputError(f"{source}: a row without 'rev': not the output of dvc exp show --json")
        name = commit.get("name")
        rev = str(commit["rev"])
        yield (rev if rev == "workspace" else f"{name or 'commit'} ({rev[:7]})"), commit, None
        for exp in commit.get("experiments") or []:
            revs = (exp.get("revs") or []) if isinstance(exp, Mapping) else []
            if not revs:
                continue
            tip = revs[0]  # dvc's own table shows the tip of a range
            executor = exp.get("executor") or {}
            label = f"experiment {tip.get('name') or exp.get('name')} ({str(tip.get('rev', ''))[:7]})"
            yield label, tip, executor.get("state") if isinstance(executor, Mapping) else None


def _same_numbers(a: ResultRow, b: ResultRow) -> bool:
    return all(x == y or (x != x and y != y) for x, y in ((a.metric(m), b.metric(m)) for m in METRICS))


def parse_dvc_experiments(text: str, *, source: str = "dvc exp show --json", include_workspace: bool = True,
                          params_file: str = "params.yaml",
                          metrics_files: Mapping[str, str] | None = None) -> list[ResultRow]:
    """Rows of the output of ``dvc exp show --json`` (DVC 3).

    Every row of the output is read: the workspace (unless ``include_workspace`` is
    false), each baseline commit and each experiment. Its ``params_file`` names the
    methods (:func:`classifier_method` from ``classifier.loss``,
    ``classifier.fhm.enabled`` and, for FCBL, ``losses.fcbl.alpha``/``reweight``;
    :func:`baseline_method` from ``baseline.loss``) and ``seed`` the seed; the metrics
    files ``metrics_files`` (default: ``{"classifier": "metrics/classifier.json",
    "baseline": "metrics/baseline.json"}``) give one row per protocol of their
    ``protocols`` (a file without it: its headline protocol, ``protocol``). DVC leaves
    null values out, so a missing metric is undefined (NaN).

    Queued, running and failed experiments, rows with an error and missing metrics files
    are skipped with a warning naming them. The same method and seed read twice with the
    same numbers (the workspace after ``dvc exp run``, a baseline stage no experiment
    changed) is kept once; with different numbers it raises
    :class:`~.errors.AnalysisInputError` naming both rows (leave one out: ``dvc exp
    remove``, or ``include_workspace=False``).
    """
    metrics_files = dict(metrics_files or {"classifier": "metrics/classifier.json",
                                           "baseline": "metrics/baseline.json"})
    try:
        shown = json.loads(text)
    except ValueError as err:
        raise AnalysisInputError(f"{source}: not valid JSON ({err})") from None
    rows: dict[tuple[str, int, str], ResultRow] = {}
    for label, state, executor in _experiment_states(shown, source):
        if label == "workspace" and not include_workspace:
            continue
        where = f"{source}: {label}"
        if executor not in (None, "success"):
            warnings.warn(f"{where}: skipped, {executor}", stacklevel=2)
            continue
        data = state.get("data")
        if state.get("error") or not isinstance(data, Mapping):
            warnings.warn(f"{where}: skipped, {state.get('error') or 'no data'}", stacklevel=2)
            continue
        params, why = _file_data(data.get("params"), params_file)
        if params is None:
            warnings.warn(f"{where}: skipped, {why}", stacklevel=2)
            continue
        methods = _stage_methods(params, where)
        seed = _seed(_param(params, "seed", where), where)
        for stage, file_name in metrics_files.items():
            metrics, why = _file_data(data.get("metrics"), file_name)
            if metrics is None:
                warnings.warn(f"{where}: {stage} skipped, {why}", stacklevel=2)
                continue
            if not isinstance(metrics, Mapping):
                raise AnalysisInputError(f"{where}, {file_name}: expected an object of metrics")
            protocols = metrics.get("protocols") or {str(metrics.get("protocol", "lvis")): metrics}
            if not isinstance(protocols, Mapping):
                raise AnalysisInputError(f"{where}, {file_name}: 'protocols' is not an object keyed by protocol")
            for protocol, values in protocols.items():
                row = _metrics_row(methods[stage], seed, str(protocol), values, origin=label,
                                   where=f"{where}, {file_name}, protocol {protocol!r}", missing_is_undefined=True)
                key = (row.method, row.seed, row.protocol)
                seen = rows.get(key)
                if seen is None:
                    rows[key] = row
                elif not _same_numbers(seen, row):
                    raise AnalysisInputError(
                        f"{source}: {row.method}, seed {row.seed}, protocol {row.protocol}: {seen.origin} and "
                        f"{row.origin} differ (AP {seen.AP:.4f} vs {row.AP:.4f}); leave one out (dvc exp remove, "
                        "or without the workspace)")
    return list(rows.values())


def load_dvc_experiments(repo_dir: str | Path = ".", *, all_commits: bool = False, include_workspace: bool = True,
                         params_file: str = "params.yaml",
                         metrics_files: Mapping[str, str] | None = None) -> list[ResultRow]:
    """:func:`parse_dvc_experiments` of ``dvc exp show --json`` (``-A`` with
    ``all_commits``: the experiments of every commit, not only HEAD's) run in
    ``repo_dir`` with this environment's DVC."""
    repo_dir = Path(repo_dir)
    if not repo_dir.is_dir():
        raise MissingFileError(f"{repo_dir}: no such repository folder")
    command = [sys.executable, "-m", "dvc", "exp", "show", "--json", *(["-A"] if all_commits else [])]
    done = subprocess.run(command, cwd=repo_dir, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise AnalysisInputError(f"{repo_dir}: dvc exp show failed: {lines[-1] if lines else done.returncode}")
    return parse_dvc_experiments(done.stdout, source=f"{repo_dir}: dvc exp show", include_workspace=include_workspace,
                                 params_file=params_file, metrics_files=metrics_files)


# --- naming and ordering -----------------------------------------------------------------------

def _split(method: str) -> tuple[str, str]:
    base, _, qualifiers = method.partition("[")
    return base, ("[" + qualifiers) if qualifiers else ""


def _loss_rank(loss: str) -> tuple[int, str]:
    return (LOSS_ORDER.index(loss), "") if loss in LOSS_ORDER else (len(LOSS_ORDER), loss)


def _method_key(method: str) -> tuple:
    """(group, loss rank, with FHM, qualifiers, name): the name last, so the order never
    depends on the input's."""
    base, qualifiers = _split(method)
    fixed = {"stage1": 0, "baseline": 1, "fhm": 3, "bacl": 4}
    if base in fixed:
        return (fixed[base], (0, ""), False, qualifiers, method)
    kind, _, loss = base.partition("-")
    group = {"cls": 2, "e2e": 5}.get(kind)
    if group is None or not loss:
        return (6, (0, ""), False, "", method)
    plain = loss.removesuffix("+fhm")
    return (group, _loss_rank(plain), plain != loss, qualifiers, method)


def method_order(methods: Iterable[str]) -> list[str]:
    """Distinct ``methods`` in table order: stage1, baseline, the classifier-stage losses
    (:data:`LOSS_ORDER`), fhm, bacl, the end-to-end losses, then any other name
    alphabetically; qualified variants (``bacl[alpha=0.5]``) after their plain one."""
    return sorted(set(methods), key=_method_key)


def method_label(method: str) -> str:
    """A readable name for a table or legend, e.g. ``cls-eql`` -> ``eql, classifier stage``."""
    base, qualifiers = _split(method)
    named = {"stage1": "stage 1 alone", "baseline": "baseline (stage 1 continued, BCE)",
             "fhm": "FHM only, classifier stage", "bacl": "BACL (FCBL + FHM)"}
    if base in named:
        text = named[base]
    else:
        kind, _, loss = base.partition("-")
        where = {"cls": "classifier stage", "e2e": "end to end"}.get(kind)
        if where is None or not loss:
            return method
        text = f"{loss.replace('+fhm', ' + FHM')}, {where}"
    return f"{text} {qualifiers}" if qualifiers else text


def protocol_title(protocol: str) -> str:
    """A short panel or table title for a protocol name of ``evaluate.protocols``, e.g.
    ``lvis@300`` -> ``lvis@300: 300 detections per image``."""
    kind, _, budget = protocol.partition("@")
    if kind == "lvis":
        what = f"{budget} detections per image" if budget else "scaled per-image cap"
    else:
        what = {"fixed": "Fixed AP", "pooled": "pooled AP"}.get(kind, kind)
        if budget:
            what += f", {budget} per class"
    return f"{protocol}: {what}"


def protocols_of(rows: Sequence[ResultRow]) -> list[str]:
    """The protocols ``rows`` hold, in order of first appearance."""
    return list(dict.fromkeys(r.protocol for r in rows))


def pick_protocols(rows: Sequence[ResultRow], wanted: Sequence[str] = DEFAULT_PROTOCOLS) -> list[str]:
    """The protocols of ``wanted`` that ``rows`` hold, in ``wanted``'s order; every
    protocol of ``rows`` (in order of appearance) when none of them is there."""
    present = protocols_of(rows)
    chosen = [p for p in wanted if p in present]
    return chosen or present


# --- statistics ---------------------------------------------------------------------------------

def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN below two values); NaN when empty."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(values) / n
    if n < 2:
        return mean, math.nan
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def summary(rows: Sequence[ResultRow]) -> list[dict[str, Any]]:
    """One dict per method and protocol, methods in :func:`method_order`, protocols in
    order of appearance: ``method, label, protocol, n_seeds, seeds`` and, per metric ``m``
    of :data:`METRICS`, ``m_mean``, ``m_std`` (sample standard deviation over seeds, NaN
    with one seed) and ``m_n`` (seeds where it is defined; undefined values are left out).
    A method and seed given twice for a protocol raises :class:`~.errors.AnalysisInputError`."""
    groups: dict[tuple[str, str], dict[int, ResultRow]] = {}
    for row in rows:
        group = groups.setdefault((row.method, row.protocol), {})
        if row.seed in group:
            raise AnalysisInputError(f"{row.method}, seed {row.seed}, protocol {row.protocol}: given twice "
                                     f"({group[row.seed].origin}; {row.origin})")
        group[row.seed] = row
    protocols = protocols_of(rows)
    out = []
    for method in method_order(m for m, _ in groups):
        for protocol in protocols:
            group = groups.get((method, protocol))
            if not group:
                continue
            entry: dict[str, Any] = {"method": method, "label": method_label(method), "protocol": protocol,
                                     "n_seeds": len(group), "seeds": sorted(group)}
            for m in METRICS:
                values = [r.metric(m) for r in group.values() if r.metric(m) == r.metric(m)]
                entry[f"{m}_mean"], entry[f"{m}_std"] = _mean_std(values)
                entry[f"{m}_n"] = len(values)
            out.append(entry)
    return out


def format_mean_std(mean: float, std: float, *, signed: bool = False) -> str:
    """``12.3 ± 0.4`` in percent points; the mean alone without a spread, ``n/a`` without a mean."""
    if mean != mean:
        return "n/a"
    text = f"{100 * mean:+.1f}" if signed else f"{100 * mean:.1f}"
    return text if std != std else f"{text} ± {100 * std:.1f}"


def summary_table(summary_rows: Sequence[Mapping[str, Any]], protocol: str,
                  metrics: Sequence[str] = METRICS) -> str:
    """A markdown table of one protocol's :func:`summary`: method, seeds, mean ± sample
    standard deviation of each metric in percent (``(n=k)`` where fewer seeds define it)."""
    table = []
    for entry in summary_rows:
        if entry["protocol"] != protocol:
            continue
        cells = {"method": entry["label"], "seeds": str(entry["n_seeds"])}
        for m in metrics:
            text = format_mean_std(entry[f"{m}_mean"], entry[f"{m}_std"])
            if entry[f"{m}_n"] != entry["n_seeds"]:
                text += f" (n={entry[f'{m}_n']})"
            cells[m] = text
        table.append(cells)
    return markdown_table(table, ["method", "seeds", *metrics],
                          headers=["method", "seeds", *(f"{m} (%)" for m in metrics)])


def verdict(mean: float, std: float, n: int, *, z: float = SURVIVAL_Z) -> str:
    """The rule, in plain words, for ``n`` paired per-seed differences (method minus
    reference) with mean ``mean`` and sample standard deviation ``std``: with standard
    error ``se = std / sqrt(n)``,

    - ``"survives"``: ``mean - z * se > 0`` (a gain larger than its noise);
    - ``"clear loss"``: ``mean + z * se < 0``;
    - ``"no clear difference"``: neither;
    - ``"too few seeds"``: ``n < 2`` (no spread to judge by).

    ``z = 2`` is roughly a two-sided 95 % interval for a normal mean; with few seeds a
    t quantile would be wider (3 seeds: 4.30), so the rule is lenient there."""
    if n < MIN_SEEDS or mean != mean or std != std:
        return "too few seeds"
    se = std / math.sqrt(n)
    if mean - z * se > 0:
        return "survives"
    if mean + z * se < 0:
        return "clear loss"
    return "no clear difference"


def paired_differences(rows: Sequence[ResultRow], *, reference: str, metric: str = "AP",
                       protocols: Sequence[str] | None = None, z: float = SURVIVAL_Z) -> list[dict[str, Any]]:
    """Per method other than ``reference`` and per protocol (default: all, in order of
    appearance): the per-seed differences ``method - reference`` of ``metric`` over the
    seeds where both define it, as ``method, label, reference, protocol, metric, n,
    seeds, mean, std`` (sample, NaN below two), ``se`` (``std / sqrt(n)``), ``lower``
    and ``upper`` (``mean -/+ z * se``) and :func:`verdict`. Methods in
    :func:`method_order`; a method without a common seed with the reference gets ``n = 0``."""
    if metric not in METRICS:
        raise KeyError(f"unknown metric {metric!r}: one of {list(METRICS)}")
    values: dict[tuple[str, str], dict[int, float]] = {}
    for row in rows:
        cell = values.setdefault((row.method, row.protocol), {})
        if row.seed in cell:
            raise AnalysisInputError(f"{row.method}, seed {row.seed}, protocol {row.protocol}: given twice")
        cell[row.seed] = row.metric(metric)
    methods = method_order(m for m, _ in values)
    if reference not in methods:
        raise AnalysisInputError(f"reference method {reference!r} is not among the results ({', '.join(methods)})")
    protocols = list(protocols) if protocols is not None else protocols_of(rows)
    out = []
    for method in methods:
        if method == reference:
            continue
        for protocol in protocols:
            ours, theirs = values.get((method, protocol)), values.get((reference, protocol))
            if ours is None or theirs is None:
                continue
            seeds = sorted(s for s in ours.keys() & theirs.keys() if ours[s] == ours[s] and theirs[s] == theirs[s])
            diffs = [ours[s] - theirs[s] for s in seeds]
            mean, std = _mean_std(diffs)
            se = std / math.sqrt(len(diffs)) if diffs else math.nan
            out.append({"method": method, "label": method_label(method), "reference": reference,
                        "protocol": protocol, "metric": metric, "n": len(diffs), "seeds": seeds, "mean": mean,
                        "std": std, "se": se, "lower": mean - z * se, "upper": mean + z * se,
                        "verdict": verdict(mean, std, len(diffs), z=z)})
    return out


def survival_table(differences: Sequence[Mapping[str, Any]], protocols: Sequence[str]) -> str:
    """A markdown table of :func:`paired_differences`: one row per method, one column per
    protocol, each cell ``+1.2 ± 0.4: survives`` (mean ± sample standard deviation of
    the per-seed differences in AP points, then the verdict)."""
    by_method: dict[str, dict[str, Any]] = {}
    for d in differences:
        cells = by_method.setdefault(d["method"], {"method": d["label"], "seeds": set()})
        cells["seeds"].add(d["n"])
        cells[d["protocol"]] = f"{format_mean_std(d['mean'], d['std'], signed=True)}: {d['verdict']}"
    table = [{**cells, "seeds": "/".join(str(n) for n in sorted(cells["seeds"]))}
             for method, cells in ((m, by_method[m]) for m in method_order(by_method))]
    return markdown_table(table, ["method", "seeds", *protocols],
                          headers=["method", "paired seeds", *protocols])


def survival_sentences(differences: Sequence[Mapping[str, Any]]) -> list[str]:
    """One plain sentence per method saying under which protocols its gain survives, e.g.
    ``"eql, classifier stage: the APr gain over baseline survives under lvis@300, lvis;
    not under fixed (no clear difference)."``"""
    by_method: dict[str, list[Mapping[str, Any]]] = {}
    for d in differences:
        by_method.setdefault(d["method"], []).append(d)
    out = []
    for method in method_order(by_method):
        group = by_method[method]
        first = group[0]
        kept = [d["protocol"] for d in group if d["verdict"] == "survives"]
        lost = [f"{d['protocol']} ({d['verdict']})" for d in group if d["verdict"] != "survives"]
        head = f"{first['label']}: the {first['metric']} gain over {first['reference']}"
        if not kept:
            out.append(f"{head} survives under no protocol: {', '.join(lost)}.")
        elif not lost:
            out.append(f"{head} survives under every protocol ({', '.join(kept)}).")
        else:
            out.append(f"{head} survives under {', '.join(kept)}; not under {', '.join(lost)}.")
    return out


def paired_points(rows: Sequence[ResultRow], *, x_protocol: str, y_protocol: str,
                  metric: str = "APr") -> list[dict[str, Any]]:
    """Per method and seed with ``metric`` defined under both protocols: ``method, label,
    seed, x, y`` (x under ``x_protocol``, y under ``y_protocol``); methods in
    :func:`method_order`, then seeds ascending."""
    if metric not in METRICS:
        raise KeyError(f"unknown metric {metric!r}: one of {list(METRICS)}")
    by_key = {(r.method, r.seed, r.protocol): r.metric(metric) for r in rows}
    order = {m: i for i, m in enumerate(method_order(r.method for r in rows))}
    points = []
    for (method, seed, protocol), x in by_key.items():
        if protocol != x_protocol:
            continue
        y = by_key.get((method, seed, y_protocol), math.nan)
        if x == x and y == y:
            points.append({"method": method, "label": method_label(method), "seed": seed, "x": x, "y": y})
    return sorted(points, key=lambda p: (order[p["method"]], p["seed"]))
