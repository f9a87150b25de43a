"""A method = weighting x granularity x sampling x objective x retain term, built by name from a typed config."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from unlearn.config import from_dict
from unlearn.errors import ConfigError
from unlearn.losses.objectives import OBJECTIVES, RETAINS, reduce_units
from unlearn.losses.rmu import activation_mse, control_vector
from unlearn.losses.shaping import (GRANULARITIES, SAMPLERS, SEQUENCE_LEVEL, ImportanceParams, importance_factor,
                                    sequence_weights)
from unlearn.losses.weightings import WEIGHTINGS, fp32
from unlearn.registry import Registry

LOW_WEIGHT = 0.01  # weights below this count as "switched off" in the logged statistics
REDUCTIONS = ("mean", "sum")

# The component registries of a method, in the order a method is read.
COMPONENTS: dict[str, Registry] = {
    "weighting": WEIGHTINGS,
    "granularity": GRANULARITIES,
    "sampling": SAMPLERS,
    "objective": OBJECTIVES,
    "retain": RETAINS,
}


def _params_of(registry: Registry, name: str) -> tuple[str, ...]:
    cls = registry.entry(name).params
    return tuple(f.name for f in dataclasses.fields(cls)) if cls else ()


PARAM_NAMES: tuple[str, ...] = tuple(
    dict.fromkeys(p for reg in COMPONENTS.values() for e in reg for p in _params_of(reg, e.name))
)


@dataclass(frozen=True)
class MethodConfig:
    """Which components make the method, and the hyper-parameters that apply to them.

    A hyper-parameter left as ``None`` takes its component's default; one that no chosen component
    uses is an error (so a typo or a parameter of another weighting never passes silently).
    ``retain`` left as ``None`` is the objective's own (ga: none; gd, npo, simnpo: nll; kl: kl).
    ``importance``: key-phrase answer tokens weighted ``s``, the others ``1 - s`` (s = 1: only key tokens).
    ``reduction``: "mean" (over tokens, or sequences for instance / batch granularity and NPO / SimNPO)
    or "sum" (no division: the reference's hard-sampling runs), for the forget and the retain term.
    """

    weighting: str = "satimp"
    granularity: str = "token"
    sampling: str = "none"
    objective: str = "ga"
    retain: str | None = None
    importance: bool = False
    reduction: str = "mean"
    beta1: float | None = None
    beta2: float | None = None
    beta: float | None = None
    group_size: int | None = None
    k: float | None = None
    s: float | None = None
    gamma: float | None = None
    alpha: float | None = None
    npo_beta: float | None = None
    delta: float | None = None
    steering_coeff: float | None = None
    layer: int | None = None
    trainable: str | None = None

    def __post_init__(self) -> None:
        if self.reduction not in REDUCTIONS:
            raise ConfigError(f"reduction={self.reduction!r} is not valid; valid: {', '.join(REDUCTIONS)}")
        for name in PARAM_NAMES:  # inf / nan pass a range like [0, inf) and turn the loss into NaN
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name}={value!r} is not a finite number; valid: a finite value in "
                                  "its range (`unlearn-sweep losses` lists them)")
        self._check_activation_objective()
        self.component_params()  # validates names, applicability and ranges

    def _check_activation_objective(self) -> None:
        """RMU works on a layer's activations, not on per-token CE: the CE shaping components do not apply,
        and the activation retain term (embed) needs RMU's layer."""
        on_acts = OBJECTIVES.get(self.objective).inputs == "activations"
        if on_acts:
            shaping = {"weighting": (self.weighting, "uniform"), "granularity": (self.granularity, "token"),
                       "sampling": (self.sampling, "none"), "importance": (self.importance, False)}
            bad = {k: v for k, (v, ok) in shaping.items() if v != ok}
            if bad:
                name, value = next(iter(bad.items()))
                raise ConfigError(f"{name}={value!r} does not apply to objective={self.objective!r} (it steers a "
                                  "layer's activations, there are no per-token CE weights to shape); valid: "
                                  "weighting='uniform', granularity='token', sampling='none', importance=false")
        if self.retain == "embed" and not on_acts:
            raise ConfigError(f"retain='embed' matches a layer's activations to the frozen model's and needs "
                              f"objective='rmu' (its layer), got objective={self.objective!r}; valid: retain "
                              "none, nll or kl, or objective='rmu'")

    @property
    def retain_term(self) -> str:
        """The retain term's name: ``retain``, or the objective's own when it is not given."""
        obj = OBJECTIVES.get(self.objective)
        if self.retain is None:
            return obj.retain
        RETAINS.entry(self.retain)  # an unknown name lists the valid ones
        if obj.fixed_retain and self.retain != obj.retain:
            raise ConfigError(
                f"retain={self.retain!r} does not apply to objective={self.objective!r} (ga + {obj.retain} "
                f"retain); valid: retain={obj.retain!r}, or objective='ga' with retain={self.retain!r}"
            )
        return self.retain

    def names(self) -> dict[str, str]:
        """The chosen component of each kind (the retain term resolved)."""
        return {**{kind: getattr(self, kind) for kind in COMPONENTS if kind != "retain"}, "retain": self.retain_term}

    def applicable(self) -> dict[str, tuple[str, ...]]:
        """Names of the hyper-parameters each chosen component takes (``importance``: s, when on)."""
        out = {kind: _params_of(COMPONENTS[kind], name) for kind, name in self.names().items()}
        out["importance"] = ("s",) if self.importance else ()
        return out

    def component_params(self) -> dict[str, Any]:
        """The frozen params object of each component (None for parameterless ones)."""
        applicable = self.applicable()
        valid = list(dict.fromkeys(p for ps in applicable.values() for p in ps))
        for name in PARAM_NAMES:
            if getattr(self, name) is not None and name not in valid:
                chosen = ", ".join(f"{k}={v!r}" for k, v in self.names().items())
                raise ConfigError(
                    f"parameter {name!r} does not apply to {chosen}, importance={self.importance}; "
                    f"parameters that apply: {', '.join(valid) or 'none'}"
                )

        def values(kind: str) -> dict[str, Any]:
            return {p: getattr(self, p) for p in applicable[kind] if getattr(self, p) is not None}

        out = {kind: COMPONENTS[kind].build_params(name, values(kind)) for kind, name in self.names().items()}
        out["importance"] = from_dict(ImportanceParams, values("importance"), where="method.importance") \
            if self.importance else None
        return out

    def resolved(self) -> dict[str, Any]:
        """Component names plus every applicable hyper-parameter with its default filled in."""
        out: dict[str, Any] = self.names()
        out["importance"] = self.importance
        out["reduction"] = self.reduction
        for params in self.component_params().values():
            if params is not None:
                out.update(dataclasses.asdict(params))
        return out

    @property
    def label(self) -> str:
        """Short human name, e.g. ``satimp-gd``, ``simsat/group/topk-npo`` or ``uniform-npo+kl``."""
        parts = [self.weighting]
        parts += [v for v in (self.granularity, self.sampling) if v not in ("token", "none")]
        retain = "" if self.retain_term == OBJECTIVES.get(self.objective).retain else f"+{self.retain_term}"
        return "/".join(parts) + f"-{self.objective}{retain}"


@dataclass(frozen=True)
class LossOutput:
    """The scalar loss and detached statistics worth logging."""

    loss: torch.Tensor
    stats: dict[str, float]


class Method:
    """A built method: pure tensor maths over per-token CE; it never sees a model."""

    def __init__(self, cfg: MethodConfig) -> None:
        self.cfg = cfg
        self._p = cfg.component_params()
        self._weighting = WEIGHTINGS.get(cfg.weighting)
        self._granularity = GRANULARITIES.get(cfg.granularity)
        self._sampler = SAMPLERS.get(cfg.sampling)
        self._objective = OBJECTIVES.get(cfg.objective)
        self._retain = RETAINS.get(cfg.retain_term)

    @property
    def retain_kind(self) -> str:
        """"none", "nll" or "kl": which retain term the method adds."""
        return self.cfg.retain_term

    @property
    def needs_reference(self) -> bool:
        """Whether a frozen reference model is needed (NPO forget term, KL or embed retain term)."""
        return self._objective.needs_reference or self.retain_kind in ("kl", "embed")

    @property
    def needs_activations(self) -> bool:
        """Whether the forget term works on a layer's activations (RMU) instead of per-token CE."""
        return self._objective.inputs == "activations"

    @property
    def layer(self) -> int | None:
        """RMU's steered decoder layer (None for the CE objectives)."""
        return self._p["objective"].layer if self.needs_activations else None

    @property
    def trainable(self) -> str | None:
        """RMU's pattern of trainable parameter names (None: every parameter trains)."""
        return self._p["objective"].trainable if self.needs_activations else None

    def control_vector(self, dim: int, seed: int) -> torch.Tensor:
        """RMU's fixed direction (dim,), from a generator seeded with the run's seed (no global RNG): the
        same on every rank, micro-step and epoch of a run."""
        return control_vector(dim, self._p["objective"].steering_coeff, torch.Generator().manual_seed(seed))

    @property
    def needs_forget_reference(self) -> bool:
        """Whether the forget term needs the reference model's CE (NPO)."""
        return self._objective.needs_reference

    @property
    def needs_batch_weight(self) -> bool:
        """Batch granularity: the weight is a mean over the *global* batch, computed before the micro-steps."""
        return self.cfg.granularity == "batch"

    @property
    def reduction(self) -> str:
        return self.cfg.reduction

    @property
    def forget_unit(self) -> str:
        """"token" or "sequence": what the forget term is a mean over (for exact gradient accumulation)."""
        if self._objective.unit in ("sequence", "label"):
            return self._objective.unit
        if self.cfg.granularity in SEQUENCE_LEVEL:
            return "sequence"
        return "token"

    @property
    def retain_unit(self) -> str:
        """"token" (answer tokens, nll), "position" (attended positions, kl) or "label" (positions with a
        label, unshifted: embed): what the retain mean is over."""
        return self._retain.unit or "token"

    @property
    def alpha(self) -> float:
        return getattr(self._p["retain"], "alpha", 0.0)

    def _gamma(self) -> float:
        return self._p["objective"].gamma

    def batch_weight_parts(self, ce: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(sum of f(p_b) over the sequences with an answer token, their number): (2,) fp64, no gradient.

        Summed over micro-batches and ranks, the ratio is batch granularity's weight for the global batch.
        """
        ce, mask = fp32(ce), mask.bool()
        w_seq, has = sequence_weights(ce, mask, lambda c: self._weighting(c, self._p["weighting"]))
        return torch.stack([(w_seq * has).sum().double(), has.sum().double()])

    def weights(self, ce: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None, *,
                importance: torch.Tensor | None = None, batch_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Detached fp32 weights (B, T) of the forget tokens, 0 outside ``mask``.

        Args:
            ce, mask: (B, T) per-token CE and answer mask, after the causal shift.
            importance: (B, T) bool key-phrase mask, shifted like the labels; needed with method.importance.
            batch_weight: batch granularity's weight computed over the global batch (else: over this one).
        """
        ce = fp32(ce)
        mask = mask.bool()
        p = self._p
        if self.needs_batch_weight and batch_weight is not None:
            w = batch_weight.to(device=ce.device, dtype=ce.dtype) * mask
        else:
            w = self._granularity(ce, mask, lambda c: self._weighting(c, p["weighting"]), p["granularity"])
        w = w * self._sampler(ce, mask, p["sampling"], generator)
        if self.cfg.importance:
            w = w * importance_factor(self._check_importance(importance, mask), mask, p["importance"])
        return w.detach()

    @staticmethod
    def _check_importance(importance: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        if importance is None:
            raise ConfigError("method.importance is on but the batch carries no key-phrase mask ('importance')")
        if importance.shape != mask.shape:
            raise ConfigError(f"importance mask shape {tuple(importance.shape)} != mask shape {tuple(mask.shape)}; "
                              "shift it like the labels (importance[:, 1:], see shift_mask)")
        return importance.to(mask.device)

    def forget_term(self, ce: torch.Tensor, mask: torch.Tensor, *, ref_ce: torch.Tensor | None = None,
                    importance: torch.Tensor | None = None, generator: torch.Generator | None = None,
                    batch_weight: torch.Tensor | None = None) -> LossOutput:
        """gamma * the forget objective. ce, mask, ref_ce, importance: (B, T), after the causal shift."""
        if self.needs_activations:
            raise ConfigError(f"objective {self.cfg.objective!r} works on a layer's activations; its forget term "
                              "is activation_forget_term(h, mask, control), not forget_term(ce, mask)")
        if ce.shape != mask.shape:
            raise ConfigError(f"ce shape {tuple(ce.shape)} != mask shape {tuple(mask.shape)}")
        if self._objective.needs_reference and ref_ce is None:
            raise ConfigError(f"objective {self.cfg.objective!r} needs reference CE (ref_ce) on the forget tokens")
        mask = mask.bool()
        w = self.weights(ce, mask, generator, importance=importance, batch_weight=batch_weight)
        ref = None if ref_ce is None else ref_ce.to(w.dtype)
        per_seq = self._objective.forget(ce.to(w.dtype), w, mask, ref, self._p["objective"])
        n_units = mask.sum() if self.forget_unit == "token" else mask.any(1).sum()
        loss = self._gamma() * reduce_units(per_seq, n_units, self.reduction)
        n = mask.sum().clamp_min(1)
        stats = {
            "mean_weight": float((w * mask).sum() / n),
            "low_weight_frac": float(((w < LOW_WEIGHT) & mask).sum() / n),
            "forget_ce": float((ce.detach() * mask).sum() / n),
        }
        return LossOutput(loss, stats)

    def activation_forget_term(self, h: torch.Tensor, mask: torch.Tensor, control: torch.Tensor) -> LossOutput:
        """gamma * RMU's forget term: the mean over counted positions of mean_H (h - control)^2.

        Args:
            h: (B, T, H) the steered layer's output; mask: (B, T) counted positions (labels != -100,
                unshifted); control: (H,) the control vector (``control_vector``).
        """
        mask = mask.bool()
        mse = activation_mse(h, control)
        per_seq = self._objective.forget(mse, mask)
        loss = self._gamma() * reduce_units(per_seq, mask.sum(), self.reduction)
        n = mask.sum().clamp_min(1)
        return LossOutput(loss, {"forget_act_mse": float((mse.detach() * mask).sum() / n)})

    def retain_term(self, *, ce: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                    kl: torch.Tensor | None = None, embed: torch.Tensor | None = None) -> LossOutput:
        """alpha * (retain NLL, KL or activation MSE); 0 without a retain term.

        Args:
            ce: (B, T-1) retain CE with ``mask`` its answer mask (nll); kl: (B, T) per-position
                KL(reference || current) with ``mask`` the attention mask (kl); embed: (B, T) per-position
                MSE of the layer's output to the frozen model's (``activation_mse``) with ``mask`` the
                positions with a label (embed).
        """
        kind = self.retain_kind
        if kind == "none" or self.alpha == 0.0:
            device = next((t.device for t in (ce, kl, embed) if t is not None), None)
            return LossOutput(torch.zeros((), device=device), {})
        values, stat = {"nll": (ce, "retain_ce"), "kl": (kl, "retain_kl"), "embed": (embed, "retain_act_mse")}[kind]
        if mask is None or values is None:
            raise ConfigError(f"retain term {kind!r} needs retain {stat.removeprefix('retain_')} values and mask")
        mask = mask.bool()
        term = reduce_units(values * mask, mask.sum(), self.reduction)
        return LossOutput(self.alpha * term, {stat: float(term.detach())})

    def __call__(self, forget_ce: torch.Tensor, forget_mask: torch.Tensor, *, ref_ce: torch.Tensor | None = None,
                 importance: torch.Tensor | None = None, retain_ce: torch.Tensor | None = None,
                 retain_mask: torch.Tensor | None = None, retain_kl: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, batch_weight: torch.Tensor | None = None) -> LossOutput:
        """forget_term + retain_term, with merged statistics."""
        f = self.forget_term(forget_ce, forget_mask, ref_ce=ref_ce, importance=importance, generator=generator,
                             batch_weight=batch_weight)
        r = self.retain_term(ce=retain_ce, mask=retain_mask, kl=retain_kl)
        return LossOutput(f.loss + r.loss.to(f.loss.device), {**f.stats, **r.stats})


def build_method(name: str = "satimp", **params: Any) -> Method:
    """Build a method from a weighting name plus component names and hyper-parameters.

    Example: ``build_method("satimp", objective="gd", beta1=5.0, beta2=0.1, alpha=1.0)``;
    NPO + KL: ``build_method("uniform", objective="npo", retain="kl")``.
    Unknown names or parameters raise ConfigError listing the valid ones.
    """
    return Method(from_dict(MethodConfig, {"weighting": name, **params}, where="method"))
