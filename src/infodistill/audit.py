"""``infodistill audit``: what a teacher knows about the labels, and what is left to distil.

Before spending compute on distillation, :func:`audit` measures on held-out test examples, for
every audited teacher layer T against one student layer S, the [PID-KD] terms of I(Y; T, S)
(estimated by :func:`infodistill.pid.estimate`: flatten, L2-normalise, PCA, k-means, BROJA):

- I(Y;T): how much the teacher's layer says about the label at all;
- Red(Y:T,S): what the student already shares with it;
- Uni(Y:T\\S): what only the teacher has, i.e. what is left to distil;
- Uni(Y:S\\T) and Syn(Y:T,S) for completeness;

with bootstrap intervals for I(Y;T) and Uni(Y:T\\S), the label-permutation baseline of every term
(the plug-in bias at this n and k), and both models' accuracy on the audited examples. It then
states one plain verdict computed from these numbers (thresholds are the module constants below):

1. **nothing to distill**, if no audited teacher layer carries label information beyond estimator
   bias: for every layer the lower end of the I(Y;T) interval is at most the permutation baseline
   of I(Y;T) plus ``NOTHING_SD_FACTOR`` of its standard deviations plus ``NOTHING_MARGIN_BITS``;
2. **already transferred**, if for every informative teacher layer the upper end of the
   Uni(Y:T\\S) interval exceeds the permutation baseline of Uni(Y:T\\S) by less than
   ``max(TRANSFERRED_BITS, TRANSFERRED_FRACTION * I(Y;T))``. The baseline is added because the
   plug-in Uni(Y:T\\S) of two different layers is biased upwards like every term (about 0.06 bits
   at n = 450, k = 10; measured: a trained CNN's stage1 against its own stage3 reads 0.115 bits,
   its baseline 0.061), so without it only S = T could ever count as transferred at small n;
3. otherwise **worth distilling**, naming the layer with the largest Uni(Y:T\\S) and its interval.

Intervals. The percentile bootstrap interval of a plug-in information term sits *above* the
estimate (a resampled histogram is noisier than the sample's, and plug-in terms grow with noise;
``EstimateResult.boot_shift`` is the mean shift). For a teacher of pure noise the raw interval of
I(Y;T) then lies entirely above the permutation baseline (about twice the bias) and would make
noise look informative. The audit therefore reports *bias-centred* intervals: the percentile
interval shifted down by ``boot_shift``, which keeps its width (the sampling spread) and centres
it on the estimate; the estimate itself still carries the plug-in bias, which is why the verdict
compares it with the permutation baseline rather than with 0. The raw intervals are kept in
``AuditRow.ci_raw`` (and the JSON output).

The command line imports this module only when ``infodistill audit`` runs (its ``--help`` stays
torch-free).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data.loader import TensorPairs, auto_eval_batch, first_examples
from .models import collect_features
from .models.hooks import validate_layers
from .pid import estimate
from .pid.blas_threads import blas_threads
from .pid.terms import TERMS, format_table
from .training.config import DataConfig, ModelConfig
from .training.device import select_device
from .training.rundir import RunDir
from .training.runs import model_from_config, model_from_run, prepare_data

__all__ = [
    "NOTHING_MARGIN_BITS",
    "NOTHING_SD_FACTOR",
    "TRANSFERRED_BITS",
    "TRANSFERRED_FRACTION",
    "AuditResult",
    "AuditRow",
    "LoadedModels",
    "audit",
    "load_models",
]

#: "nothing to distill": a teacher layer is uninformative when the lower end of its (bias-centred)
#: I(Y;T) interval is at most the permutation baseline mean + NOTHING_SD_FACTOR * its sd + margin.
NOTHING_SD_FACTOR = 2.0
#: Absolute margin (bits) above the permutation baseline that I(Y;T) must clear to count as
#: information: a few hundredths of a bit of label information is nothing a student can use.
NOTHING_MARGIN_BITS = 0.02
#: "already transferred": the upper end of the Uni(Y:T\S) interval is below its permutation baseline
#: + max(TRANSFERRED_BITS, TRANSFERRED_FRACTION * I(Y;T)) for every informative teacher layer.
TRANSFERRED_BITS = 0.05
TRANSFERRED_FRACTION = 0.05
#: Label permutations for the bias baseline (more than estimate's default 5: its sd enters the verdict).
AUDIT_N_PERM = 20
#: BLAS threads while estimating (PCA's SVD). On this project's 2-core machine, with another job
#: running, one thread made a Fashion-MNIST audit (n = 2000, 3 layers + input) 2.2x faster (9.7 s
#: vs 21.3 s, identical output) and the digits tests 6x faster; None leaves the BLAS default.
BLAS_THREADS = 1

NOTHING, TRANSFERRED, WORTH = "nothing to distill", "already transferred", "worth distilling"
#: Name of the reference row: the raw input through the same pipeline in place of a teacher layer.
INPUT_LAYER = "(input)"


@dataclass(frozen=True)
class AuditRow:
    """The PID of (Y; teacher layer, student layer) on the audited examples, in bits.

    ``ci`` holds bias-centred bootstrap intervals ``{term: (low, high)}`` (see the module
    docstring), ``ci_raw`` the raw percentile intervals, ``bias`` the label-permutation baseline
    mean of every term and ``bias_sd`` its standard deviation. ``informative`` says whether I(Y;T)
    clears the permutation baseline (the "nothing to distill" test for this layer);
    ``uni_threshold`` is the bound the upper end of the Uni(Y:T\\S) interval must stay below for
    this layer to count as transferred (permutation baseline of Uni + max(0.05 bits, 5 % of I(Y;T))).
    """

    layer: str
    mi_t: float
    redundancy: float
    unique_t: float
    unique_s: float
    synergy: float
    mi_s: float
    mi_joint: float
    ci: dict
    ci_raw: dict
    bias: dict
    bias_sd: dict
    informative: bool
    uni_threshold: float
    settings: dict = field(repr=False)

    def as_dict(self) -> dict:
        d = asdict(self)
        for key in ("ci", "ci_raw"):
            d[key] = {t: [float(a), float(b)] for t, (a, b) in getattr(self, key).items()}
        return d


@dataclass(frozen=True)
class AuditResult:
    """Result of :func:`audit`: one :class:`AuditRow` per teacher layer, and the verdict.

    ``decision`` is one of ``'nothing to distill'``, ``'already transferred'``, ``'worth distilling'``;
    ``verdict`` is the one-line statement (for "worth distilling" it names the layer and the bits
    left); ``reason`` gives the numbers behind it. ``teacher_accuracy`` / ``student_accuracy`` are
    top-1 accuracies on the audited examples (None when a model's output is not (n, classes) logits).
    ``reference`` is the same decomposition with the raw input in place of the teacher layer (the
    label information this estimator already finds in the input; not used by the verdict) and
    ``notes`` are cautions computed from the numbers (e.g. no teacher layer above the input).
    """

    rows: list
    student_layer: str
    decision: str
    verdict: str
    reason: str
    teacher_accuracy: float | None
    student_accuracy: float | None
    settings: dict
    reference: AuditRow | None = None
    notes: list = field(default_factory=list)

    def row(self, layer: str) -> AuditRow:
        for r in self.rows:
            if r.layer == layer:
                return r
        raise KeyError(f"no audited teacher layer {layer!r}; audited: {[r.layer for r in self.rows]}")

    def as_dict(self) -> dict:
        """JSON-serialisable dict of everything (rows, verdict, reason, accuracies, settings)."""
        return {
            "decision": self.decision,
            "verdict": self.verdict,
            "reason": self.reason,
            "student_layer": self.student_layer,
            "teacher_accuracy": self.teacher_accuracy,
            "student_accuracy": self.student_accuracy,
            "rows": [r.as_dict() for r in self.rows],
            "reference": None if self.reference is None else self.reference.as_dict(),
            "notes": list(self.notes),
            "settings": dict(self.settings),
        }

    def table(self) -> str:
        """Readable text: a header, one line per teacher layer, the verdict and its reason."""

        s = self.settings
        head = [
            f"teacher: {s.get('teacher_name', 'teacher')}; accuracy {_acc(self.teacher_accuracy)}",
            f"student: {s.get('student_name', 'student')} at layer {self.student_layer!r}; "
            f"accuracy {_acc(self.student_accuracy)}",
            f"first {s['n']} test examples; k-means k={s['k']}, pca={s['pca']}, seed {s['seed']}; bits; "
            f"{100 * s['ci_level']:g}% bootstrap CI (n={s['n_boot']}, bias-centred); "
            f"bias = label-permutation baseline (n={s['n_perm']})",
        ]
        cols = ["layer", "I(Y;T) [CI]", "Red", "Uni(Y:T\\S) [CI]", "Uni(Y:S\\T)", "Syn", "bias I/Uni"]
        rows = []
        for r in self.rows + ([self.reference] if self.reference is not None else []):
            rows.append(
                [
                    r.layer,
                    f"{r.mi_t:.3f} [{r.ci['mi_t'][0]:.3f}, {r.ci['mi_t'][1]:.3f}]",
                    f"{r.redundancy:.3f}",
                    f"{r.unique_t:.3f} [{r.ci['unique_t'][0]:.3f}, {r.ci['unique_t'][1]:.3f}]",
                    f"{r.unique_s:.3f}",
                    f"{r.synergy:.3f}",
                    f"{r.bias['mi_t']:.3f}/{r.bias['unique_t']:.3f}",
                ]
            )
        lines = head + [format_table(cols, rows)]
        if self.reference is not None:
            lines.append(
                f"{INPUT_LAYER}: the raw input in place of the teacher (reference, not in the verdict)"
            )
        lines += [f"verdict: {self.verdict}", self.reason] + [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _acc(a: float | None) -> str:
    return "n/a" if a is None else f"{100 * a:.1f} %"


# --------------------------------------------------------------------------------------------------
# Library function


def _default_layers(model, what: str) -> list:
    names = getattr(model, "stage_names", None)
    if not names:
        raise ValueError(
            f"the {what} model {type(model).__name__} declares no stage_names; pass its layer names "
            "explicitly (keys of dict(model.named_modules()))"
        )
    return list(names)


def _accuracy(logits, y) -> float | None:
    if logits is None or logits.shape[0] != y.shape[0] or logits.shape[1] < 2:
        return None
    return float((logits.argmax(1) == y).double().mean())


def audit(
    teacher,
    student,
    test_x,
    test_y,
    teacher_layers=None,
    student_layer: str | None = None,
    n: int = 2000,
    k: int = 10,
    pca: int | None = 5,
    n_boot: int = 100,
    seed: int = 0,
    *,
    n_perm: int = AUDIT_N_PERM,
    ci: float = 0.95,
    batch_size: int | None = None,
    names: tuple[str, str] = ("teacher", "student"),
    input_reference: bool = True,
) -> AuditResult:
    """Audit what ``teacher`` knows about the labels and what ``student`` still lacks.

    Args:
        teacher, student: ``nn.Module`` s (they may be the same object). Both run in eval mode
            under ``no_grad`` (their training flags are restored afterwards); features are read by
            forward hooks (:class:`~infodistill.models.FeatureExtractor`).
        test_x, test_y: held-out inputs (N, ...) and integer labels (N,), tensors or arrays; the
            first ``min(n, N)`` examples are audited.
        teacher_layers: teacher module names to audit (default: all of ``teacher.stage_names``).
        student_layer: one student module name (default: the last of ``student.stage_names``).
        n, k, pca, n_boot, seed: examples, k-means clusters, PCA dimensions, bootstrap resamples,
            seed of :func:`infodistill.pid.estimate` (held-in estimate, as in [PID-KD]).
        n_perm, ci: label permutations for the bias baseline and the interval level.
        batch_size: examples per forward pass (None: as many as fit 16 MiB of input, at most
            1000: :func:`infodistill.data.loader.auto_eval_batch`).
        names: how the table names the two models.
        input_reference: also decompose (Y; raw input, student layer), the reference row
            ``'(input)'``: how much label information the pipeline finds in the input itself. Not
            used by the verdict; when no teacher layer exceeds it, ``notes`` says so.

    Returns an :class:`AuditResult`; raises ValueError (one line) for an unknown layer, empty data,
    ``n_boot < 1`` or an option :func:`~infodistill.pid.estimate` refuses.
    """

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be >= 1 (the verdict needs intervals), got {n_boot!r}")
    if isinstance(n_perm, bool) or not isinstance(n_perm, int) or n_perm < 2:
        raise ValueError(f"n_perm must be >= 2 (the verdict needs the baseline's sd), got {n_perm!r}")
    t_layers = _default_layers(teacher, "teacher") if teacher_layers is None else list(teacher_layers)
    if isinstance(teacher_layers, str):
        t_layers = [teacher_layers]
    if not t_layers:
        raise ValueError("teacher_layers is empty: name at least one teacher layer")
    s_layer = _default_layers(student, "student")[-1] if student_layer is None else student_layer
    x = torch.as_tensor(test_x)
    y = torch.as_tensor(np.asarray(test_y)).long().reshape(-1)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"test_x has {x.shape[0]} examples but test_y has {y.shape[0]}")
    if x.shape[0] == 0:
        raise ValueError("no test examples to audit")
    m = min(n, x.shape[0])
    x, y = x[:m], y[:m]

    batch_size = auto_eval_batch(TensorPairs(x, y), 1, batch_size)
    t_logits, t_feats = collect_features(teacher, t_layers, x, batch_size)
    s_logits, s_feats = collect_features(student, [s_layer], x, batch_size)
    t_feats = {name: v.numpy() for name, v in t_feats.items()}
    s_feats = {name: v.numpy() for name, v in s_feats.items()}
    labels = y.numpy()
    s_feat = s_feats[s_layer]

    def row(layer: str, t_feat) -> AuditRow:
        res = estimate(labels, t_feat, s_feat, k=k, pca=pca, n_boot=n_boot, n_perm=n_perm, ci=ci, seed=seed)
        terms = res.terms
        ci_raw = {t: (float(a), float(b)) for t, (a, b) in res.ci.items()}
        ci_c = {t: (a - res.boot_shift[t], b - res.boot_shift[t]) for t, (a, b) in ci_raw.items()}
        bias, bias_sd = dict(res.bias["mean"]), dict(res.bias["sd"])
        floor = bias["mi_t"] + NOTHING_SD_FACTOR * bias_sd["mi_t"] + NOTHING_MARGIN_BITS
        return AuditRow(
            layer=layer,
            **{t: float(terms[t]) for t in TERMS},
            ci=ci_c,
            ci_raw=ci_raw,
            bias=bias,
            bias_sd=bias_sd,
            informative=bool(ci_c["mi_t"][0] > floor),
            uni_threshold=bias["unique_t"]
            + max(TRANSFERRED_BITS, TRANSFERRED_FRACTION * float(terms["mi_t"])),
            settings={
                "k_t": res.settings["k_t"],
                "k_s": res.settings["k_s"],
                "shape_t": res.settings["shape_t"],
                "shape_s": res.settings["shape_s"],
                "clusters_used_t": res.settings["clusters_used_t"],
                "clusters_used_s": res.settings["clusters_used_s"],
                "boot_shift": dict(res.boot_shift),
            },
        )

    with blas_threads(BLAS_THREADS):
        rows = [row(layer, t_feats[layer]) for layer in t_layers]
        reference = None
        if input_reference:
            inputs = x.float().cpu().numpy()
            if inputs.ndim == 2 or (inputs.ndim in (3, 4) and inputs[0].size >= (pca or 1)):
                reference = row(INPUT_LAYER, inputs)
    decision, verdict, reason = _verdict(rows)
    notes = []
    best = max(rows, key=lambda r: r.mi_t)
    if reference is not None and decision != NOTHING and best.mi_t <= reference.ci["mi_t"][1]:
        notes.append(
            f"no audited teacher layer has more I(Y;T) than the raw input itself through the same "
            f"pipeline ({reference.mi_t:.3f} bits [{reference.ci['mi_t'][0]:.3f}, "
            f"{reference.ci['mi_t'][1]:.3f}]; best layer {best.layer!r}: {best.mi_t:.3f}): at this k "
            "and PCA the estimate cannot tell what the teacher learned from what the input already "
            "shows (a randomly initialised network's features carry about as much)"
        )
    settings = {
        "n": int(m),
        "k": k,
        "pca": pca,
        "n_boot": n_boot,
        "n_perm": n_perm,
        "ci_level": ci,
        "seed": seed,
        "unit": "bits",
        "teacher_layers": t_layers,
        "student_layer": s_layer,
        "teacher_name": names[0],
        "student_name": names[1],
        "thresholds": {
            "NOTHING_SD_FACTOR": NOTHING_SD_FACTOR,
            "NOTHING_MARGIN_BITS": NOTHING_MARGIN_BITS,
            "TRANSFERRED_BITS": TRANSFERRED_BITS,
            "TRANSFERRED_FRACTION": TRANSFERRED_FRACTION,
        },
        "intervals": "percentile bootstrap shifted down by the bootstrap mean shift (bias-centred)",
    }
    return AuditResult(
        rows=rows,
        student_layer=s_layer,
        decision=decision,
        verdict=verdict,
        reason=reason,
        teacher_accuracy=_accuracy(t_logits, y),
        student_accuracy=_accuracy(s_logits, y),
        settings=settings,
        reference=reference,
        notes=notes,
    )


def _verdict(rows: list) -> tuple[str, str, str]:
    """(decision, one-line verdict, reason) from the rows; see the module docstring."""
    best = max(rows, key=lambda r: r.ci["mi_t"][0])
    informative = [r for r in rows if r.informative]
    if not informative:
        floor = best.bias["mi_t"] + NOTHING_SD_FACTOR * best.bias_sd["mi_t"] + NOTHING_MARGIN_BITS
        reason = (
            f"the teacher's most informative layer {best.layer!r} has I(Y;T) = {best.mi_t:.3f} bits "
            f"[{best.ci['mi_t'][0]:.3f}, {best.ci['mi_t'][1]:.3f}], whose lower end is within the "
            f"label-permutation baseline {best.bias['mi_t']:.3f} bits (+{NOTHING_SD_FACTOR:g} sd "
            f"+{NOTHING_MARGIN_BITS:g} bits = {floor:.3f}): its features carry no label information "
            "beyond estimator bias"
        )
        return NOTHING, NOTHING, reason
    left = [r for r in informative if r.ci["unique_t"][1] >= r.uni_threshold]
    if not left:
        worst = max(informative, key=lambda r: r.ci["unique_t"][1] - r.uni_threshold)
        reason = (
            f"in every informative teacher layer the upper end of Uni(Y:T\\S) is below its "
            f"permutation baseline + max({TRANSFERRED_BITS:g} bits, {100 * TRANSFERRED_FRACTION:g} % of "
            "I(Y;T)); closest: "
            f"{worst.layer!r}: Uni(Y:T\\S) = {worst.unique_t:.3f} bits [{worst.ci['unique_t'][0]:.3f}, "
            f"{worst.ci['unique_t'][1]:.3f}] < {worst.uni_threshold:.3f}, with I(Y;T) = "
            f"{worst.mi_t:.3f} and Red = {worst.redundancy:.3f} bits"
        )
        return TRANSFERRED, TRANSFERRED, reason
    top = max(left, key=lambda r: r.unique_t)
    lo, hi = top.ci["unique_t"]
    verdict = f"{WORTH}: Uni(Y:T\\S) = {top.unique_t:.3f} bits [{lo:.3f}, {hi:.3f}] left in layer {top.layer}"
    reason = (
        f"layer {top.layer!r} has I(Y;T) = {top.mi_t:.3f} bits of which Red = {top.redundancy:.3f} is "
        f"already shared with the student; the upper end of Uni(Y:T\\S), {hi:.3f}, is not below "
        f"{top.uni_threshold:.3f} bits (its permutation baseline {top.bias['unique_t']:.3f} + "
        f"max({TRANSFERRED_BITS:g} bits, {100 * TRANSFERRED_FRACTION:g} % of I(Y;T))); {len(left)} of "
        f"{len(rows)} audited layers have information left"
    )
    return WORTH, verdict, reason


# --------------------------------------------------------------------------------------------------
# From run directories (what `infodistill audit` runs)


#: the teacher/student argument for a randomly initialised model
UNTRAINED = "untrained"


def _run_config(path: Path) -> dict | None:
    """config.json of a run directory (or of the run holding a checkpoint directory), else None."""
    for d in (path, path.parent):
        run = RunDir(d)
        if run.has_config():
            return run.read_config()
    return None


def _run_model(raw: dict) -> dict | None:
    # train-teacher runs store the trained model as "model", distill runs as "student"; either way
    # the checkpoint's "student" entry holds its weights.
    m = raw.get("model") if isinstance(raw.get("model"), dict) else raw.get("student")
    return m if isinstance(m, dict) and (m.get("name") or m.get("factory")) else None


#: suffixes of a weights file given as --teacher / --student
WEIGHTS_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def _model_spec(model: str) -> dict:
    """A model given on the command line: a built-in name, or a factory ("module:function",
    "file.py:function"; model names never hold a colon)."""
    return {"factory": model} if ":" in model else {"name": model}


def _label(spec: dict) -> str:
    return spec.get("factory") or spec.get("name")


#: the arguments of :func:`load_models` its errors name; the command line passes its flags instead
ARGUMENTS = (
    "teacher", "teacher_model", "teacher_kwargs", "teacher_weights_prefix", "teacher_weights_key",
    "student", "student_model", "student_kwargs", "student_weights_prefix", "student_weights_key",
    "data", "data_root", "data_kwargs", "device",
)  # fmt: skip


def _options(value, arg: str) -> dict | None:
    """A model's or data set's options: a mapping of option names to values, or None (not given)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise ValueError(
            f"{arg} must be a mapping of option names to values like {{'width': 8}}, got {value!r}"
        )
    return dict(value)


def _resolve(
    role: str,
    path: str,
    model: str | None,
    kwargs: dict | None,
    weights_prefix: str | None,
    weights_key: str | None,
    name: dict,
) -> dict:
    """{'path', 'untrained', 'weights', 'model', 'run'} for one side of the audit (no torch yet);
    'model' holds the ModelConfig fields (name or factory, kwargs, and a weights file's options).
    ``name`` says how the errors name the arguments (``role``, ``role_model``, ...)."""
    arg = {key: name[f"{role}_{key}"] for key in ("model", "kwargs", "weights_prefix", "weights_key")}
    arg[role] = name[role]
    kwargs = _options(kwargs, arg["kwargs"])
    path = str(path)
    p = Path(path)
    is_weights = path != UNTRAINED and p.is_file()
    if (weights_prefix is not None or weights_key is not None) and not is_weights:
        given = arg["weights_prefix"] if weights_prefix is not None else arg["weights_key"]
        raise ValueError(f"{given} is for a weights file given as {arg[role]}; {path} is not one")
    if path == UNTRAINED or is_weights:
        if model is None:
            what = "the architecture to initialise" if path == UNTRAINED else "the model the weights are for"
            raise ValueError(f"{arg[role]} {path} needs {arg['model']} ({what})")
        spec = _model_spec(model) | {"kwargs": kwargs or {}}
        if is_weights:
            if p.suffix not in WEIGHTS_SUFFIXES:
                raise ValueError(
                    f"{arg[role]} {path} is a file but not a weights file ({', '.join(WEIGHTS_SUFFIXES)}); "
                    "pass a run directory, a checkpoint directory or a weights file"
                )
            spec |= {"weights": str(p), "weights_prefix": weights_prefix, "weights_key": weights_key}
        return {"path": None, "untrained": not is_weights, "model": spec, "run": None}
    if not p.exists():
        raise FileNotFoundError(f"{arg[role]} {path}: no such run directory, checkpoint or weights file")
    raw = _run_config(p)
    run_model = _run_model(raw) if raw else None
    recorded = None
    if run_model is not None:
        recorded = {k: run_model.get(k) for k in ("name", "factory") if run_model.get(k)}
        recorded["kwargs"] = dict(run_model.get("kwargs") or {})
    if model is None:
        if recorded is None:
            raise ValueError(f"{arg[role]} {path} has no config.json naming its model; pass {arg['model']}")
        spec = dict(recorded)
        if kwargs is not None:
            spec["kwargs"] = kwargs
    else:
        spec = _model_spec(model) | {"kwargs": kwargs or {}}
        if kwargs is None and recorded is not None and _label(recorded) == model:
            spec["kwargs"] = recorded["kwargs"]  # same architecture: its recorded options
    return {"path": str(p), "untrained": False, "model": spec, "run": raw}


@dataclass(frozen=True)
class LoadedModels:
    """What :func:`load_models` returns: the teachers (in the order given) and the student, built
    and loaded, with their printable names, and the first ``n`` test examples of their data set."""

    teachers: list
    teacher_names: list
    student: object
    student_name: str
    x: object
    y: object


def load_models(
    teachers: list,
    student: str | Path,
    *,
    teacher_model: str | None = None,
    teacher_kwargs: Mapping | None = None,
    student_model: str | None = None,
    student_kwargs: Mapping | None = None,
    data: str | None = None,
    data_root: str | None = None,
    data_kwargs: Mapping | None = None,
    layers_t: list | None = None,
    layers_s: list | None = None,
    n: int = 2000,
    seed: int = 0,
    teacher_weights_prefix: str | None = None,
    teacher_weights_key: str | None = None,
    student_weights_prefix: str | None = None,
    student_weights_key: str | None = None,
    device: str = "auto",
    argument_names: Mapping | None = None,
) -> LoadedModels:
    """Build and load the teachers and the student (each a run directory, a checkpoint directory,
    a weights file with its model, or ``"untrained"`` with a model; the teacher options apply to
    every teacher), check the named layers (``layers_t`` in every teacher, ``layers_s`` in the
    student) and read the first ``n`` test examples of their data set.

    A model (``teacher_model``, ``student_model``) is a built-in name or a factory
    ``"module:function"`` / ``"file.py:function"``, called with its ``*_kwargs`` (a mapping); so is
    ``data`` (a factory returning (train, test), called with ``data_kwargs``). Omitted, a run
    directory's config.json supplies the model and the data set. An untrained teacher number i is
    initialised from ``seed + 1 + i`` and an untrained student from ``seed``, so that no two are
    identical. Errors name the arguments as ``argument_names`` maps them (default: these keyword
    names; ``infodistill audit`` passes its flags)."""
    name = {arg: arg for arg in ARGUMENTS} | dict(argument_names or {})
    if not teachers:
        raise ValueError(f"{name['teacher']} is required: name at least one teacher")
    sides = [
        _resolve(
            "teacher", t, teacher_model, teacher_kwargs, teacher_weights_prefix, teacher_weights_key, name
        )
        for t in teachers
    ]
    student_side = _resolve(
        "student", student, student_model, student_kwargs, student_weights_prefix, student_weights_key, name
    )
    extra = _options(data_kwargs, name["data_kwargs"])
    if data is not None:
        source = _model_spec(data) | {"root": data_root, "kwargs": extra or {}}
        if "factory" in source and data_root is not None:
            raise ValueError(
                f"{name['data_root']} is for the built-in data sets; pass a factory's options in "
                f"{name['data_kwargs']}"
            )
    else:
        source = None
        for side in (*sides, student_side):
            run_data = (side["run"] or {}).get("data")
            if isinstance(run_data, dict) and (run_data.get("name") or run_data.get("factory")):
                source = {k: run_data.get(k) for k in ("name", "factory") if run_data.get(k)}
                source["root"] = data_root if data_root is not None else run_data.get("root")
                source["kwargs"] = extra if extra is not None else dict(run_data.get("kwargs") or {})
                break
    if source is None:
        raise ValueError(f"{name['data']} is required (no run directory's config.json names the data set)")

    where = select_device(device, key=name["device"])
    _, test = prepare_data(DataConfig(**source), 0)
    train_like = test  # a model needs only the sample shape and the number of classes

    def build(side: dict, role: str, seed: int):
        spec = side["model"]
        label = _label(spec) + (f" {spec['kwargs']}" if spec["kwargs"] else "")
        cfg, labels = ModelConfig(**spec), (name[f"{role}_model"], name[role])
        if side["untrained"] or side["path"] is None:
            model = model_from_config(cfg, train_like, seed=seed, what=role, labels=labels)
            source = f"untrained, seed {seed}" if side["untrained"] else spec["weights"]
            return model.to(where), f"{label} ({source})"
        model = model_from_run(
            side["path"],
            cfg,
            train_like,
            what=role,
            labels=labels,
            label=f"{role} ({side['path']})",
            seed=seed,
        )
        return model.to(where), f"{label} ({side['path']})"

    # Distinct seeds so that an untrained teacher and student of one architecture are not identical.
    built = [build(side, "teacher", seed + 1 + i) for i, side in enumerate(sides)]
    s_model, s_name = build(student_side, "student", seed)

    for model, _name in built:
        if layers_t is not None:
            validate_layers(model, layers_t)
    if layers_s is not None:
        validate_layers(s_model, layers_s)

    # Only the audited examples are read (a data set decoded per item is never held whole).
    x, y = first_examples(test, max(1, n) if isinstance(n, int) else len(test))
    return LoadedModels(
        teachers=[m for m, _ in built],
        teacher_names=[label for _, label in built],
        student=s_model,
        student_name=s_name,
        x=x,
        y=y,
    )
