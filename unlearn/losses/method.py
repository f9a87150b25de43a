"""A method = weighting x granularity x sampling x base objective, built by name from a typed config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from unlearn.errors import ConfigError
from unlearn.losses.objectives import OBJECTIVES, retain_nll
from unlearn.losses.shaping import GRANULARITIES, SAMPLERS
from unlearn.losses.weightings import WEIGHTINGS, fp32
from unlearn.registry import Registry

LOW_WEIGHT = 0.01  # weights below this count as "switched off" in the logged statistics

# The four component registries of a method, in the order a method is read.
COMPONENTS: dict[str, Registry] = {
    "weighting": WEIGHTINGS,
    "granularity": GRANULARITIES,
    "sampling": SAMPLERS,
    "objective": OBJECTIVES,
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
    """

    weighting: str = "satimp"
    granularity: str = "token"
    sampling: str = "none"
    objective: str = "ga"
    importance: bool = False  # count only answer tokens inside the examples' key phrases
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

    def __post_init__(self) -> None:
        self.component_params()  # validates names, applicability and ranges

    def applicable(self) -> dict[str, tuple[str, ...]]:
        """Names of the hyper-parameters each chosen component takes."""
        return {kind: _params_of(reg, getattr(self, kind)) for kind, reg in COMPONENTS.items()}

    def component_params(self) -> dict[str, Any]:
        """The frozen params object of each component (None for parameterless ones)."""
        applicable = self.applicable()
        valid = [p for ps in applicable.values() for p in ps]
        for name in PARAM_NAMES:
            if getattr(self, name) is not None and name not in valid:
                chosen = ", ".join(f"{k}={getattr(self, k)!r}" for k in COMPONENTS)
                raise ConfigError(
                    f"parameter {name!r} does not apply to {chosen}; parameters that apply: "
                    f"{', '.join(valid) or 'none'}"
                )
        return {
            kind: COMPONENTS[kind].build_params(
                getattr(self, kind), {p: getattr(self, p) for p in applicable[kind] if getattr(self, p) is not None}
            )
            for kind in COMPONENTS
        }

    def resolved(self) -> dict[str, Any]:
        """Component names plus every applicable hyper-parameter with its default filled in."""
        out: dict[str, Any] = {kind: getattr(self, kind) for kind in COMPONENTS}
        out["importance"] = self.importance
        for params in self.component_params().values():
            if params is not None:
                out.update(dataclasses.asdict(params))
        return out

    @property
    def label(self) -> str:
        """Short human name, e.g. ``satimp-gd`` or ``simsat/group/topk-npo``."""
        parts = [self.weighting]
        parts += [v for v in (self.granularity, self.sampling) if v not in ("token", "none")]
        return "/".join(parts) + f"-{self.objective}"


@dataclass(frozen=True)
class LossOutput:
    """The scalar loss and detached statistics worth logging."""

    loss: torch.Tensor
    stats: dict[str, float]


class Method:
    """A built method: pure tensor maths over per-token CE; it never sees a model."""

    def __init__(self, cfg: MethodConfig) -> None:
        self.cfg = cfg
        params = cfg.component_params()
        self._weighting = WEIGHTINGS.get(cfg.weighting)
        self._granularity = GRANULARITIES.get(cfg.granularity)
        self._sampler = SAMPLERS.get(cfg.sampling)
        self._objective = OBJECTIVES.get(cfg.objective)
        self._p = params

    @property
    def retain_kind(self) -> str:
        """"none", "nll" or "kl": which retain term the objective adds."""
        return self._objective.retain

    @property
    def needs_reference(self) -> bool:
        """Whether a frozen reference model is needed (NPO forget term, KL retain term)."""
        return self._objective.needs_reference or self._objective.retain == "kl"

    @property
    def needs_forget_reference(self) -> bool:
        """Whether the forget term needs the reference model's CE (NPO)."""
        return self._objective.needs_reference

    @property
    def forget_unit(self) -> str:
        """"token" or "sequence": what the forget term is a mean over (for exact gradient accumulation)."""
        return self._objective.unit

    @property
    def alpha(self) -> float:
        return getattr(self._p["objective"], "alpha", 0.0)

    def counted_mask(self, mask: torch.Tensor, importance: torch.Tensor | None) -> torch.Tensor:
        """The answer tokens that count: all of them, or only key-phrase tokens when ``importance`` is on."""
        if not self.cfg.importance:
            return mask
        if importance is None:
            raise ConfigError("method.importance is on but the batch carries no key-phrase mask ('importance')")
        if importance.shape != mask.shape:
            raise ConfigError(f"importance mask shape {tuple(importance.shape)} != mask shape {tuple(mask.shape)}")
        return mask & importance

    def weights(self, ce: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Detached fp32 weights (B, T) of the forget tokens, 0 outside ``mask``."""
        ce = fp32(ce)
        mask = mask.bool()
        p = self._p
        w = self._granularity(ce, mask, lambda c: self._weighting(c, p["weighting"]), p["granularity"])
        return (w * self._sampler(ce, mask, p["sampling"], generator)).detach()

    def forget_term(self, ce: torch.Tensor, mask: torch.Tensor, *, ref_ce: torch.Tensor | None = None,
                    importance: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> LossOutput:
        """The forget part of the loss. ce, mask, ref_ce, importance: (B, T)."""
        if ce.shape != mask.shape:
            raise ConfigError(f"ce shape {tuple(ce.shape)} != mask shape {tuple(mask.shape)}")
        if self._objective.needs_reference and ref_ce is None:
            raise ConfigError(f"objective {self.cfg.objective!r} needs reference CE (ref_ce) on the forget tokens")
        mask = self.counted_mask(mask.bool(), importance)
        w = self.weights(ce, mask, generator)
        loss = self._objective.forget(ce.to(w.dtype), w, mask, ref_ce, self._p["objective"])
        n = mask.sum().clamp_min(1)
        stats = {
            "mean_weight": float((w * mask).sum() / n),
            "low_weight_frac": float(((w < LOW_WEIGHT) & mask).sum() / n),
            "forget_ce": float((ce.detach() * mask).sum() / n),
        }
        return LossOutput(loss, stats)

    def retain_term(self, *, ce: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                    kl: torch.Tensor | None = None) -> LossOutput:
        """alpha * (retain NLL or KL); 0 for objectives without a retain term. All tensors (B, T)."""
        kind = self.retain_kind
        if kind == "none" or self.alpha == 0.0:
            zero = torch.zeros((), device=ce.device if ce is not None else None)
            return LossOutput(zero, {})
        if mask is None or (ce if kind == "nll" else kl) is None:
            raise ConfigError(f"objective {self.cfg.objective!r} needs retain {'CE' if kind == 'nll' else 'KL'} and mask")
        term = retain_nll(ce if kind == "nll" else kl, mask.bool())
        stats = {f"retain_{'ce' if kind == 'nll' else 'kl'}": float(term.detach())}
        return LossOutput(self.alpha * term, stats)

    def __call__(self, forget_ce: torch.Tensor, forget_mask: torch.Tensor, *, ref_ce: torch.Tensor | None = None,
                 importance: torch.Tensor | None = None, retain_ce: torch.Tensor | None = None,
                 retain_mask: torch.Tensor | None = None, retain_kl: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> LossOutput:
        """forget_term + retain_term, with merged statistics."""
        f = self.forget_term(forget_ce, forget_mask, ref_ce=ref_ce, importance=importance, generator=generator)
        r = self.retain_term(ce=retain_ce, mask=retain_mask, kl=retain_kl)
        return LossOutput(f.loss + r.loss.to(f.loss.device), {**f.stats, **r.stats})


def build_method(name: str = "satimp", **params: Any) -> Method:
    """Build a method from a weighting name plus component names and hyper-parameters.

    Example: ``build_method("satimp", objective="gd", beta1=5.0, beta2=0.1, alpha=1.0)``.
    Unknown names or parameters raise ConfigError listing the valid ones.
    """
    from unlearn.config import from_dict

    return Method(from_dict(MethodConfig, {"weighting": name, **params}, where="method"))
