"""Any output size: a factor from 1.1 to 8, or a width, a height, or a box to fit inside.

The network runs at the smallest trained scale that reaches the size, or above 4x in two stages (the
cheapest pair: 2x then 3x for up to 6x, 2x then 4x for up to 8x), each stage exact; then MATLAB's bicubic
(antialiased) brings the result down to the exact size. The trained scales 2, 3 and 4 are the network
alone, as before. A factor's size is ``ceil(side * factor)`` on each side, as MATLAB's imresize computes it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mdsr.model import SUPPORTED_SCALES, shown

MIN_FACTOR, MAX_FACTOR = 1.1, 8.0


@dataclass(frozen=True)
class Target:
    """What was asked: a ``factor``, or a ``width`` and/or ``height`` (one alone keeps the aspect ratio; both
    give that exact size), or a ``fit`` box (width, height) to fill as far as the aspect ratio allows."""

    factor: float | None = None
    width: int | None = None
    height: int | None = None
    fit: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        # Targets come from callers of the library too: one kind of request, with sides in whole pixels.
        kinds = [self.factor is not None, self.width is not None or self.height is not None, self.fit is not None]
        if sum(kinds) != 1:
            raise ValueError(
                f"a size target is a factor, a width and/or a height, or a fit box: one of them; got {self}"
            )
        if self.factor is not None:
            object.__setattr__(self, "factor", parse_factor(self.factor))
        sides = {"width": self.width, "height": self.height}
        if self.fit is not None:
            if not isinstance(self.fit, tuple) or len(self.fit) != 2:
                raise ValueError(f"fit is a (width, height) box; got {shown(self.fit)}")
            sides = {"the fit box's width": self.fit[0], "the fit box's height": self.fit[1]}
        for name, side in sides.items():
            if side is not None and (not isinstance(side, int) or isinstance(side, bool) or side < 1):
                raise ValueError(f"{name} is a number of pixels, at least 1; got {shown(side)}")

    def describe(self) -> str:
        """What was asked, as the start of a sentence."""
        if self.factor is not None:
            return f"a scale of {self.factor:g}"
        if self.fit is not None:
            return f"fitting inside {self.fit[0]}x{self.fit[1]}"
        if self.width is not None and self.height is not None:
            return f"a size of {self.width}x{self.height}"
        return f"a width of {self.width}" if self.width is not None else f"a height of {self.height}"


@dataclass(frozen=True)
class SizePlan:
    """How to reach a size: the network's scales, in order, and the exact size after the last resize."""

    stages: tuple[int, ...]
    size: tuple[int, int]  # (width, height)

    @property
    def scale(self) -> int:
        """The network's overall scale."""
        return math.prod(self.stages)

    def resized(self, input_size: tuple[int, int]) -> bool:
        return self.size != (input_size[0] * self.scale, input_size[1] * self.scale)


def parse_factor(value: object) -> float:
    """A factor from an untrusted caller: a number from 1.1 to 8 (2, 3 and 4 included). A refused value is
    shown exactly as given (1.0999999999, not 1.1)."""
    if isinstance(value, str) and "_" in value:  # float() and int() read "1_5" as 15
        raise ValueError(
            f"the scale must be a number from {MIN_FACTOR:g} to {MAX_FACTOR:g}, written without underscores; "
            f"got {shown(value)}"
        )
    # Only floats can be infinite or NaN (math.isfinite of an int past float's range raises OverflowError).
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise ValueError(f"the scale must be a number from {MIN_FACTOR:g} to {MAX_FACTOR:g}; got {shown(value)}")
    if not MIN_FACTOR <= value <= MAX_FACTOR:
        raise ValueError(f"the scale must be from {MIN_FACTOR:g} to {MAX_FACTOR:g}; got {_exact(value)}")
    return float(value)


def parse_size(text: object) -> Target:
    """A size as people write it: "1920x1080" (fit inside), "1920x" (that width), "x1080" (that height)."""
    match = re.fullmatch(r"\s*(\d{1,6})?\s*[xX×]\s*(\d{1,6})?\s*", text) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError(
            f"a size is WIDTHxHEIGHT (to fit inside), WIDTHx or xHEIGHT, e.g. 1920x1080; got {shown(text)}"
        )
    width, height = (int(v) if v else None for v in match.groups())
    if width is not None and height is not None:
        return Target(fit=(width, height))
    return Target(width=width, height=height)


def stages_for(factor: float) -> tuple[int, ...]:
    """The network's scales for ``factor``: one trained scale up to 4x, else the cheapest pair (the work is
    the first stage's output plus the second's), the smaller scale first."""
    if factor <= max(SUPPORTED_SCALES):
        return (min(s for s in SUPPORTED_SCALES if s >= factor - 1e-9),)
    pairs = [(a, b) for a in SUPPORTED_SCALES for b in SUPPORTED_SCALES if a * b >= factor - 1e-9]
    return min(pairs, key=lambda p: (p[0] ** 2 + (p[0] * p[1]) ** 2, p))


def plan(input_size: tuple[int, int], target: Target | int | float) -> SizePlan:
    """The stages and exact output size for an input of ``input_size`` (width, height)."""
    w, h = input_size
    if not isinstance(target, Target):
        target = Target(factor=target)  # parsed by Target
    if target.factor is not None:
        factor = target.factor
        size = (math.ceil(w * factor - 1e-9), math.ceil(h * factor - 1e-9))
    elif target.fit is not None:
        factor = min(target.fit[0] / w, target.fit[1] / h)
        size = (min(target.fit[0], round(w * factor)), min(target.fit[1], round(h * factor)))
    elif target.width is not None and target.height is not None:
        size, factor = (target.width, target.height), max(target.width / w, target.height / h)
    elif target.width is not None:
        factor = target.width / w
        size = (target.width, round(h * factor))
    else:
        height = target.height
        assert height is not None  # a Target is one kind of request (__post_init__)
        factor = height / h
        size = (round(w * factor), height)
    ratios = (size[0] / w, size[1] / h)
    failing = [
        (name, side, out)
        for name, side, out in (("width", w, size[0]), ("height", h, size[1]))
        if not _reachable(out / side)
    ]
    if failing:
        made = f"{target.describe()} makes a {w}x{h} image {size[0]}x{size[1]}"
        if len(failing) == 2 and _times(ratios[0]) == _times(ratios[1]):  # the whole image, by one ratio
            raise ValueError(
                f"{made}, {_times(ratios[0])}; the output must be {MIN_FACTOR:g} to {MAX_FACTOR:g} times the input"
            )
        sides = " and ".join(f"its {name} {side} -> {out} is {_times(out / side)}" for name, side, out in failing)
        raise ValueError(f"{made}: {sides}; each side must be {MIN_FACTOR:g} to {MAX_FACTOR:g} times the input")
    return SizePlan(stages_for(max(ratios)), size)


def _reachable(ratio: float) -> bool:
    return MIN_FACTOR - 1e-9 <= ratio <= MAX_FACTOR + 1e-9


def _times(ratio: float) -> str:
    """A ratio in 3 significant digits, or as many more as it takes not to round a refused one into the range
    (1.0999 is 1.0999x, not 1.1x)."""
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    text = f"{ratio:.3g}"
    for digits in range(4, 16):
        if _reachable(float(text)) == _reachable(ratio):
            break
        text = f"{ratio:.{digits}g}"
    return f"{text}x"


def _exact(value: int | float) -> str:
    """A number as given: a float's shortest exact form (1.0999999999, where :g would say 1.1)."""
    return repr(float(value)) if isinstance(value, float) else shown(value)
