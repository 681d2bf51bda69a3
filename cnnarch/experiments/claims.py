"""The claim registry: every lecture claim and every experiment, defined once.

``reproduce``, ``cnnarch experiment``, the CLI's choices, the Markdown/HTML report and
results.json all iterate this registry; adding a claim or an experiment touches one place,
the module that measures it.

Concepts
--------
- A **verdict** is one of ``REPRODUCED``, ``NOT_REPRODUCED``, ``INCONCLUSIVE`` (plus
  ``NOT_RUN`` for a part whose experiment did not run, and ``NOT_TESTED`` for a part not
  testable at this scale).
- ``PartResult(verdict, reason, measured)``: what one rule says about one set of measurements;
  ``reason`` is a sentence with the numbers ("inconclusive: both depths at the ceiling: 0.1 %
  vs 0.1 % training error"). Build it with ``reproduced(...)``, ``not_reproduced(...)``,
  ``inconclusive(...)``, or ``verdict_if(ok, ...)``.
- ``Rule(version, text, judge, why_changed)``: ``judge(measurements) -> PartResult`` is a pure
  function of the claim's measurement dict. ``text`` states the rule as the claim is stated
  (fixed before measuring); a new version gets a new ``Rule`` and the old one moves into the
  part's ``history``, with ``why_changed`` saying why. The report shows the verdict under
  every earlier version too.
- ``Part(name, rule, history, scales, trained, experiment)``: one named part of a claim's
  rule. ``scales`` (None = all) are the scale names at which the part is testable;
  ``trained`` marks parts measured on trained networks (they run over seeds and need
  negative controls); ``experiment`` names the experiment that supplies the measurements the
  judge reads (default: the claim's own experiment), so a later experiment can add a part
  to an existing claim.
- ``Claim(id, statement, experiment, parts, figure, caption, controls, draw)``: the lecture's
  statement, the parts, the figure file with its "what to look for" caption, the negative
  controls its rules were tested against (keys of ``CONTROLS``), and ``draw(measured, data,
  path)`` that draws the figure from the claim's measurements and every experiment's data.
- ``Experiment(name, run, claims, order, summary)``: ``run(ctx) -> {"measurements": {claim
  id: dict}, "data": dict}``. ``ctx`` is a ``Context`` (the scale, data set, seeds,
  device, progress, run folders, and a cache through which experiments share trained
  models: ``ctx.twins(seed)`` trains the plain/ResNet twins of the scale once per seed).

Registration: ``register(claim)``, ``add_parts(claim_id, *parts)`` (add parts to a claim
defined elsewhere), ``register_experiment(experiment)``. Every module of this package is
imported by ``load()``, so a new module that registers at import time is found without
being listed anywhere. ``claims()`` returns the claims in report order (G1..G5, R1..R5,
B1, B2, then any other id); ``experiments()`` the experiments by ``order``.

Judging: ``judge_claim(claim, measurements, scale, ran)`` judges every part (and every
earlier rule version). The claim is *reproduced* only if every part testable at this scale
is reproduced; *not reproduced* if any part is not reproduced; otherwise *inconclusive*,
with the inconclusive (or not run) parts' reasons.

Seeds: a trained part's measurements hold one value per seed (``per_seed`` lists, the
``seeds`` key of the claim's measurements); ``spread(values)`` gives mean, min and max, and
``every_seed(values, predicate)`` asks a rule to hold in every seed.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
NOT_RUN, NOT_TESTED = "not run", "not tested at this scale"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)

# Negative controls: conditions under which a trained claim's rule must not say "reproduced".
CONTROLS = {
    "random-labels": "labels carry no information (random images with random labels, or the "
                     "data set's labels permuted): nothing can be learned",
    "plain-twins": "the residual networks replaced by their plain twins (no shortcut)",
    "aux-weight-0": "GoogLeNet's auxiliary losses weighted 0",
    "untrained": "the networks at initialisation, before any training",
}


# --- verdicts of one part ----------------------------------------------------------------------


@dataclass(frozen=True)
class PartResult:
    """One rule's verdict on one set of measurements, with its reason and the numbers used."""

    verdict: str
    reason: str
    measured: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.verdict not in (*VERDICTS, NOT_RUN, NOT_TESTED):
            raise ValueError(f"unknown verdict {self.verdict!r}")


def reproduced(reason: str, **measured) -> PartResult:
    return PartResult(REPRODUCED, reason, measured)


def not_reproduced(reason: str, **measured) -> PartResult:
    return PartResult(NOT_REPRODUCED, reason, measured)


def inconclusive(reason: str, **measured) -> PartResult:
    return PartResult(INCONCLUSIVE, reason, measured)


def verdict_if(ok: bool, reason: str, **measured) -> PartResult:
    """Reproduced if ``ok`` (computed from the measurements), else not reproduced."""
    return PartResult(REPRODUCED if ok else NOT_REPRODUCED, reason, measured)


# --- rules, parts, claims, experiments ---------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    version: int
    text: str
    judge: Callable[[dict], PartResult]
    why_changed: str = ""  # for version > 1: why the previous version was replaced


@dataclass(frozen=True)
class Part:
    name: str
    rule: Rule
    history: tuple[Rule, ...] = ()  # earlier versions, oldest first
    scales: frozenset[str] | None = None  # scale names where testable; None = every scale
    trained: bool = False
    experiment: str = ""  # experiment supplying the measurements ("" = the claim's)

    def testable_at(self, scale: str) -> bool:
        return self.scales is None or scale in self.scales


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    experiment: str
    parts: tuple[Part, ...]
    figure: str = ""  # PNG file name in the report folder ("" = none)
    caption: str = ""  # "what to look for" in the figure
    controls: tuple[str, ...] = ()  # keys of CONTROLS the trained parts were tested against
    draw: Callable[[dict, dict, Path], Path] | None = None  # (measured, data, path) -> path

    @property
    def trained(self) -> bool:
        return any(p.trained for p in self.parts)

    def experiments(self) -> tuple[str, ...]:
        """Every experiment that supplies measurements to this claim, the claim's own first."""
        names = [self.experiment] + [p.experiment for p in self.parts if p.experiment]
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Experiment:
    name: str  # the CLI name, e.g. "degradation"
    run: Callable  # run(ctx) -> {"measurements": {claim id: dict}, "data": dict}
    claims: tuple[str, ...]
    order: int = 100  # position in `reproduce` (lower first)
    summary: str = ""  # one line for `cnnarch experiment --help`


_CLAIMS: dict[str, Claim] = {}
_EXPERIMENTS: dict[str, Experiment] = {}
_PENDING_PARTS: dict[str, list[Part]] = {}
REPORT_ORDER = ("G1", "G2", "G3", "G4", "G5", "R1", "R2", "R3", "R4", "R5", "B1", "B2")
_SKIP_MODULES = {"claims", "common", "reproduce", "context"}
_loaded = False


def register(claim: Claim) -> Claim:
    """Add a claim (its id must be new); parts added earlier by ``add_parts`` are appended."""
    if claim.id in _CLAIMS:
        raise ValueError(f"claim {claim.id} is registered twice")
    names = [p.name for p in claim.parts]
    if len(set(names)) != len(names):
        raise ValueError(f"claim {claim.id}: part names repeat: {names}")
    _CLAIMS[claim.id] = claim
    for part in _PENDING_PARTS.pop(claim.id, []):
        add_parts(claim.id, part)
    return _CLAIMS[claim.id]


def add_parts(claim_id: str, *parts: Part) -> None:
    """Append parts to a claim registered (now or later) by another module."""
    if claim_id not in _CLAIMS:
        _PENDING_PARTS.setdefault(claim_id, []).extend(parts)
        return
    c = _CLAIMS[claim_id]
    clash = {p.name for p in parts} & {p.name for p in c.parts}
    if clash:
        raise ValueError(f"claim {claim_id} already has part(s) {sorted(clash)}")
    _CLAIMS[claim_id] = Claim(c.id, c.statement, c.experiment, c.parts + tuple(parts), c.figure,
                              c.caption, c.controls, c.draw)


def register_experiment(experiment: Experiment) -> Experiment:
    if experiment.name in _EXPERIMENTS:
        raise ValueError(f"experiment {experiment.name} is registered twice")
    _EXPERIMENTS[experiment.name] = experiment
    return experiment


def load() -> None:
    """Import every module of this package once, so each one's registrations run."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = importlib.import_module(__package__)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name not in _SKIP_MODULES and not info.name.startswith("_"):
            importlib.import_module(f"{__package__}.{info.name}")


def _order_key(cid: str) -> tuple[int, str]:
    return (REPORT_ORDER.index(cid), cid) if cid in REPORT_ORDER else (len(REPORT_ORDER), cid)


def claims() -> list[Claim]:
    """Every registered claim in report order."""
    load()
    return [_CLAIMS[c] for c in sorted(_CLAIMS, key=_order_key)]


def claim_ids() -> tuple[str, ...]:
    return tuple(c.id for c in claims())


def get_claim(cid: str) -> Claim:
    load()
    return _CLAIMS[cid]


def experiments() -> list[Experiment]:
    """Every registered experiment in run order."""
    load()
    return sorted(_EXPERIMENTS.values(), key=lambda e: (e.order, e.name))


def experiment_names() -> tuple[str, ...]:
    return tuple(e.name for e in experiments())


def get_experiment(name: str) -> Experiment:
    load()
    if name not in _EXPERIMENTS:
        raise UserError(f"unknown experiment {name!r}; choose from {', '.join(experiment_names())}")
    return _EXPERIMENTS[name]


# --- judging -----------------------------------------------------------------------------------


def _judge_part(part: Part, claim: Claim, measurements: dict, scale: str, ran) -> dict:
    source = part.experiment or claim.experiment
    out = {"rule": part.rule.text, "version": part.rule.version, "trained": part.trained}
    if not part.testable_at(scale):
        res = PartResult(NOT_TESTED, f"not testable at scale {scale}")
    elif ran is not None and source not in ran:
        res = PartResult(NOT_RUN, f"experiment {source} did not run")
    else:
        res = part.rule.judge(measurements)
        history = []
        for old in part.history:
            try:
                r = old.judge(measurements)
                history.append({"version": old.version, "rule": old.text, "verdict": r.verdict,
                                "reason": r.reason})
            except KeyError as exc:  # the old rule read a measurement no longer taken
                history.append({"version": old.version, "rule": old.text, "verdict": NOT_RUN,
                                "reason": f"measurement {exc} is no longer taken"})
        out["history"] = history
    return dict(out, verdict=res.verdict, reason=res.reason, measured=res.measured)


def judge_claim(claim: Claim, measurements: dict, scale: str, ran: Iterable[str] | None = None) -> dict:
    """Judge every part of ``claim`` on ``measurements`` (the claim's merged measurement dict).

    ``ran``: names of the experiments that ran (None = all). Returns ``{"verdict", "reason",
    "statement", "parts": {name: {verdict, reason, rule, version, measured, history}},
    "seeds"?}``.
    """
    ran = None if ran is None else set(ran)
    parts = {p.name: _judge_part(p, claim, measurements, scale, ran) for p in claim.parts}
    judged = {n: p for n, p in parts.items() if p["verdict"] != NOT_TESTED}
    failed = [n for n, p in judged.items() if p["verdict"] == NOT_REPRODUCED]
    open_ = [n for n, p in judged.items() if p["verdict"] in (INCONCLUSIVE, NOT_RUN)]
    if not judged:
        verdict, reason = NOT_RUN, f"no part is testable at scale {scale}"
    elif all(p["verdict"] == NOT_RUN for p in judged.values()):
        verdict, reason = NOT_RUN, "; ".join(f"({n}) {judged[n]['reason']}" for n in judged)
    elif failed:
        verdict = NOT_REPRODUCED
        reason = "; ".join(f"({n}) {judged[n]['reason']}" for n in failed)
    elif open_:
        verdict = INCONCLUSIVE
        reason = "; ".join(f"({n}) {judged[n]['reason']}" for n in open_)
    else:
        verdict = REPRODUCED
        reason = "; ".join(f"({n}) {p['reason']}" for n, p in judged.items())
    out = {"verdict": verdict, "reason": reason, "statement": claim.statement, "parts": parts}
    if claim.trained and "seeds" in measurements:
        out["seeds"] = list(measurements["seeds"])
    return out


# --- seeds -------------------------------------------------------------------------------------


def spread(values: Iterable[float]) -> dict:
    """Mean, min and max over seeds (NaN-free values expected)."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("spread of no values")
    return {"mean": sum(v) / len(v), "min": min(v), "max": max(v), "n": len(v)}


def every_seed(values: Iterable, predicate: Callable) -> bool:
    """True when ``predicate`` holds for every seed's value (and there is at least one)."""
    v = list(values)
    return bool(v) and all(predicate(x) for x in v)


def fmt_spread(values: Iterable[float], fmt: Callable[[float], str] = lambda x: f"{x:.3g}") -> str:
    """'mean (min-max over n seeds)', or the single value for one seed."""
    s = spread(values)
    if s["n"] == 1:
        return fmt(s["mean"])
    return f"{fmt(s['mean'])} ({fmt(s['min'])}-{fmt(s['max'])}, {s['n']} seeds)"


def is_finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
