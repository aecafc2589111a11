"""The PID of (Y, teacher layer, student layer) during a run, measured on held-out test examples
after chosen epochs, as [PID-KD] tracks Red(Y:T,S) and Uni(Y:T\\S) through training.

Features are pulled to the CPU (``collect_features``) and handed to the torch-free estimator
(``infodistill.pid.estimate``) with the run's ``pid.*`` settings. A fixed teacher's features,
PCA and k-means are the same at every epoch, so they are computed once per layer
(``pid.discretize``; the teacher's PCA was most of an estimate's time) and give the same numbers
as redoing them. They are also the same in every run of an experiment that shares the teacher, the
test examples and the settings (E1's methods): the process keeps the last ones, found by their
content (teacher weights and buffers, examples, layer, settings, noise), not by a name.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch
from torch import nn

from ..data.loader import first_examples
from ..methods import noisy_features
from ..models import collect_features, validate_layers
from ..pid import discretize, estimate
from ..pid.blas_threads import blas_threads
from ..pid.floor import at_floor, floor
from . import distributed
from .checkpoint import crash_point
from .config import PIDConfig

#: A fixed teacher's symbols by content fingerprint (:func:`_fingerprint`), the last few kept.
_TEACHER_SYMBOLS: OrderedDict = OrderedDict()
_KEEP = 32


def _fingerprint(teacher: nn.Module, x: torch.Tensor, *rest) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name, t in [*teacher.state_dict().items(), ("x", x)]:
        h.update(name.encode())
        h.update(repr((t.dtype, tuple(t.shape))).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    h.update(repr(rest).encode())
    return h.hexdigest()


class PIDTracker:
    """``tracker(epoch)`` -> ``{"pid": {"s_layer|t_layer": terms (+ "ci")}}`` on the epochs
    ``pid.every`` picks and the last one, ``{}`` on the others.

    For a noisy teacher the teacher's features get the same kind of noise the method sees, drawn
    from a fixed generator, so every epoch measures the same teacher representation."""

    def __init__(
        self,
        cfg: PIDConfig,
        student: nn.Module,
        teacher: nn.Module,
        test,
        *,
        epochs: int,
        seed: int,
        batch_size: int,
        workers: int | None = None,
        noise: dict | None = None,
        teacher_fixed: bool = True,
        method=None,
    ):
        # Layer names are checked now, when the run is built, not after the first epoch.
        validate_layers(student, list(dict.fromkeys(s for s, _ in cfg.pairs)))
        validate_layers(teacher, list(dict.fromkeys(t for _, t in cfg.pairs)))
        n = len(test) if cfg.n_samples is None else min(cfg.n_samples, len(test))
        if n < cfg.k:
            raise ValueError(f"pid.k = {cfg.k} clusters need at least that many test examples, got {n}")
        self.cfg, self.student, self.teacher, self.noise = cfg, student, teacher, noise
        # The first n test examples, read once (n is bounded by pid.n_samples).
        self.x, self.y = first_examples(test, n, batch_size, workers)
        self.epochs, self.seed, self.batch_size, self.teacher_fixed = epochs, seed, batch_size, teacher_fixed
        self.settings = {"k": cfg.k, "pca": cfg.pca, "seed": seed}
        self.teacher_symbols: dict = {}  # teacher layer -> its Discretized, for a fixed teacher
        self.method = None
        if cfg.stop:
            # Built before the process group is joined (Fit.run): the launcher's WORLD_SIZE says it.
            if distributed.requested_world_size() > 1:
                raise ValueError("pid.stop decides on the main process only: run it in a single process")
            missing = [p for p in cfg.pairs if method is None or method.pair_index(*p) is None]
            if missing:
                raise ValueError(f"pid.stop: the method has no pair {list(missing[0])} to switch off")
            self.method = method
            method.enable_pair_stop()

    def _teacher_symbols(self, layer: str):
        if layer in self.teacher_symbols:
            return self.teacher_symbols[layer]
        key = None
        if self.teacher_fixed:
            key = _fingerprint(self.teacher, self.x, layer, self.settings, self.noise)
            if key in _TEACHER_SYMBOLS:
                _TEACHER_SYMBOLS.move_to_end(key)
                self.teacher_symbols[layer] = _TEACHER_SYMBOLS[key]
                return self.teacher_symbols[layer]
        bs = self.batch_size
        feat = collect_features(self.teacher, [layer], self.x, bs)[1][layer]
        if self.noise is not None:
            # Noise drawn batch by batch from a fixed generator, as the method sees it.
            gen = torch.Generator().manual_seed(self.seed)
            feat = torch.cat([noisy_features(t, generator=gen, **self.noise) for t in feat.split(bs)])
        symbols = discretize(feat.numpy(), **self.settings)
        if key is not None:
            self.teacher_symbols[layer] = _TEACHER_SYMBOLS[key] = symbols
            while len(_TEACHER_SYMBOLS) > _KEEP:
                _TEACHER_SYMBOLS.popitem(last=False)
        return symbols

    @torch.no_grad()
    def __call__(self, epoch: int) -> dict:
        if (epoch + 1) % self.cfg.every and epoch + 1 != self.epochs:
            return {}
        # One BLAS thread for the PCA, k-means and solves, as the audit: quick-mnist1d's tracker took
        # 973 s with two threads and 33.7 s with one, both runs on a 2-core machine shared with
        # other jobs (bench/e1_time.py); and the PID no longer depends on the BLAS thread count.
        with blas_threads(1):
            return self._measure()

    def _measure(self) -> dict:
        out, stopped = {}, []
        for s_layer, t_layer in self.cfg.pairs:
            crash_point("pid")
            s_feat = collect_features(self.student, [s_layer], self.x, self.batch_size)[1][s_layer]
            t_sym = self._teacher_symbols(t_layer)
            # n_perm=0: the tracker records the terms and their intervals, not the permutation baseline
            res = estimate(
                self.y.numpy(),
                t_sym,
                s_feat.numpy(),
                n_boot=self.cfg.n_boot,
                n_perm=self.cfg.n_perm,
                **self.settings,
            )
            key = f"{s_layer}|{t_layer}"
            out[key] = res.pid.as_dict() | ({"ci": {k: list(v) for k, v in res.ci.items()}} if res.ci else {})
            if res.bias is not None:
                out[key]["bias"] = dict(res.bias["mean"])
            if self.method is not None:
                # The stop rule: off once the upper end of the bias-centred Uni(Y:T\S) interval is at
                # most its permutation floor (infodistill.pid.floor); an off pair stays off.
                out[key]["floor_unique_t"] = floor(res, "unique_t")
                if at_floor(res, "unique_t") and self.method.stop_pair(s_layer, t_layer):
                    stopped.append(key)
                out[key]["on"] = self.method.pair_active(self.method.pair_index(s_layer, t_layer))
        record = {"pid": out}
        if self.method is not None:
            record["pid_stop"] = {
                "stopped": stopped,  # the pairs switched off after this epoch
                "off": [
                    f"{p.student}|{p.teacher}"
                    for k, p in enumerate(self.method.pairs)
                    if not self.method.pair_active(k)
                ],
            }
        return record


__all__ = ["PIDTracker"]
