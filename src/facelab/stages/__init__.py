"""Workflow steps as plain functions: ``run(workspace, settings) -> Summary``.

The CLI, the UI and scripts all call these. A step reads its declared inputs
from the workspace, writes each output under a temporary name and renames it,
skips outputs it already finished (unless ``force``), and returns a
:class:`Summary`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Summary:
    """What a step did: counts, wall time, where results are, and warnings."""

    step: str
    counts: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        parts = [f"{k.replace('_', ' ')}: {v:g}" if isinstance(v, float) else f"{k.replace('_', ' ')}: {v}" for k, v in self.counts.items()]
        text = f"{self.step}: " + ", ".join(parts) + f" ({self.seconds:.1f} s)"
        if self.outputs:
            text += " -> " + ", ".join(self.outputs)
        return text
