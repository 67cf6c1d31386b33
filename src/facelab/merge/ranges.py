"""Merge settings that differ per frame range.

A :class:`MergePlan` is the default :class:`~facelab.merge.compose.MergeSettings`
plus overrides for frame ranges (1-based frame numbers, both ends included, as
in the frame file names ``00100.png``). The last range that holds a frame wins.
Overrides name only the settings they change, so a later change of the default
still reaches the rest::

    plan = MergePlan(MergeSettings(mode="seamless"))
    plan = plan.with_range(FrameRange(100, 250), {"color": "lct", "erode": 20})
    plan.settings_for(120).color   # "lct"
    plan.settings_for(99).color    # the default's

In a TOML settings file (``facelab merge --config merge.toml``) the top-level
keys are the default and each ``[[ranges]]`` table is one range::

    mode = "seamless"
    color = "rct"

    [[ranges]]
    frames = "100-250"
    color = "lct"
    erode = 20
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from facelab.errors import SettingsError
from facelab.merge.compose import MergeSettings
from facelab.merge.options import RENAMED_SETTINGS


@dataclass(frozen=True, order=True)
class FrameRange:
    first: int
    last: int

    def __post_init__(self) -> None:
        if not (isinstance(self.first, int) and isinstance(self.last, int) and 1 <= self.first <= self.last):
            raise SettingsError(f"frames: {self.first}-{self.last} is not a range of frames",
                                "use FIRST-LAST with 1 <= FIRST <= LAST, e.g. 100-250 (frame numbers as in 00100.png)")

    @classmethod
    def parse(cls, text: str) -> FrameRange:
        """``"100-250"`` or ``"100"`` (one frame)."""
        t = str(text).strip()
        a, sep, b = t.partition("-")
        try:
            first = int(a)
            last = int(b) if sep else first
        except ValueError:
            raise SettingsError(f"frames: {text!r} is not a range of frames", "use FIRST-LAST, e.g. 100-250") from None
        return cls(first, last)

    def __contains__(self, n: int) -> bool:
        return self.first <= n <= self.last

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


def _check_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    overrides = {RENAMED_SETTINGS.get(k, k): v for k, v in overrides.items()}
    MergeSettings.from_dict({**MergeSettings().to_dict(), **overrides})  # unknown keys and bad values raise here
    return overrides


@dataclass(frozen=True)
class MergePlan:
    default: MergeSettings = field(default_factory=MergeSettings)
    ranges: tuple[tuple[FrameRange, tuple[tuple[str, Any], ...]], ...] = ()

    def with_range(self, frames: FrameRange, overrides: dict[str, Any]) -> MergePlan:
        """This plan with ``overrides`` for ``frames`` (an earlier entry for exactly these frames is replaced)."""
        kept = tuple(r for r in self.ranges if r[0] != frames)
        return replace(self, ranges=(*kept, (frames, tuple(sorted(_check_overrides(overrides).items())))))

    def changes(self, frame_number: int | None, settings: MergeSettings) -> dict[str, Any]:
        """The settings in which ``settings`` differ from what this plan gives frame ``frame_number``: what an
        editor changed while looking at that frame (``{}`` for none)."""
        now, wanted = self.settings_for(frame_number).to_dict(), settings.to_dict()
        return {k: v for k, v in wanted.items() if now[k] != v}

    def with_changes(self, changes: dict[str, Any], frames: FrameRange | None = None) -> MergePlan:
        """This plan with ``changes`` (setting -> value) for ``frames``, or for every frame (None).

        Every frame of ``frames`` gets the changed values and keeps its other settings. For one range: the
        entry for exactly these frames takes the changes (its other overrides stay) and becomes the last, so
        it wins over ranges that overlap it. For every frame: the default takes the changes, and the changed
        settings are dropped from every range (a range left without overrides goes).

            plan.with_changes(plan.changes(120, shown), FrameRange(120, 120))   # this frame
            plan.with_changes(plan.changes(120, shown), FrameRange(100, 250))   # a range
            plan.with_changes(plan.changes(120, shown))                         # all frames
        """
        changes = _check_overrides(dict(changes))
        if not changes:
            return self
        if frames is not None:
            old = next((dict(o) for f, o in self.ranges if f == frames), {})
            return self.with_range(frames, {**old, **changes})
        default = MergeSettings.from_dict({**self.default.to_dict(), **changes})
        ranges = tuple((f, kept) for f, o in self.ranges if (kept := tuple((k, v) for k, v in o if k not in changes)))
        return replace(self, default=default, ranges=ranges)

    def settings_for(self, frame_number: int | None) -> MergeSettings:
        merged = self.default.to_dict()
        if frame_number is not None:
            for frames, overrides in self.ranges:
                if frame_number in frames:
                    merged.update(dict(overrides))
        return MergeSettings.from_dict(merged)

    def to_dict(self) -> dict[str, Any]:
        return {"default": self.default.to_dict(),
                "ranges": [{"frames": str(f), "settings": dict(o)} for f, o in self.ranges]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MergePlan:
        plan = cls(MergeSettings.from_dict(dict(d.get("default", {}))))
        for r in d.get("ranges", []):
            plan = plan.with_range(FrameRange.parse(r["frames"]), dict(r.get("settings", {})))
        return plan

    @classmethod
    def from_toml(cls, data: dict[str, Any], source: str = "settings file") -> MergePlan:
        """Top-level keys: the default; ``[[ranges]]`` tables with ``frames = "A-B"`` and overrides."""
        data = {k.replace("-", "_"): v for k, v in data.items()}
        ranges = data.pop("ranges", [])
        if not isinstance(ranges, list) or not all(isinstance(r, dict) for r in ranges):
            raise SettingsError(f"{source}: ranges must be [[ranges]] tables", 'e.g. [[ranges]] frames = "100-250" color = "lct"')
        plan = cls(MergeSettings.from_dict(data))
        for r in ranges:
            r = {k.replace("-", "_"): v for k, v in r.items()}
            if "frames" not in r:
                raise SettingsError(f"{source}: a [[ranges]] table has no frames key", 'add frames = "FIRST-LAST"')
            frames = FrameRange.parse(r.pop("frames"))
            plan = plan.with_range(frames, r)
        return plan

    def fingerprint(self, frame_number: int | None) -> str:
        """A stable text of the settings a frame is merged with (to find frames whose settings changed). A renamed
        setting keeps its old key here, so frames merged before the rename stay done."""
        d = self.settings_for(frame_number).to_dict()
        for old, new in RENAMED_SETTINGS.items():
            d[old] = d.pop(new)
        return json.dumps(d, sort_keys=True)
