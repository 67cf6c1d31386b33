"""Write the option tables in ``docs/`` and ``README.md`` from the option declarations (:mod:`facelab.options`).

    PYTHONPATH=src python tools/gen_option_docs.py          # rewrite the tables
    PYTHONPATH=src python tools/gen_option_docs.py --check  # exit 1 if a table is out of date

A table sits between ``<!-- options:KEY -->`` and ``<!-- /options:KEY -->``;
the text around it is written by hand. ``tests/test_option_declarations.py``
runs the check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facelab.options import markdown_table, replace_table
from facelab.cli import DEMO_RUN, WORKSPACE_RUN, eval_cmd, extract_cmd, media_cmds, ui_cmd, verify_cmd
from facelab.enhance import options as enhance
from facelab.merge import options as merge
from facelab.seg import options as seg
from facelab.stages import cut, demo, denoise, export, extract, faceset, frames, sort, video
from facelab.stages import eval as evaluation
from facelab.train import options as train

ROOT = Path(__file__).resolve().parents[1]


def tables() -> dict[str, dict[str, str]]:
    """``{docs file: {table key: table}}``."""
    g = train.groups()
    return {"docs/training.md": {
        "train": markdown_table(g["Options"]),
        "train-architecture": markdown_table(g["Architecture (first run only)"], models=train.models_taking),
        "train-losses": markdown_table(g["Losses and memory"]),
        "train-sampling": markdown_table(g["Sampling, discriminators and pretraining"]),
        "train-speed": markdown_table(g["Speed"]),
        "train-late": markdown_table(g["Late training"]),
    }, "docs/extraction.md": {
        "extract": markdown_table(extract.OPTIONS + extract_cmd.ACTIONS),
    }, "docs/video-tools.md": {
        "frames": markdown_table(frames.OPTIONS + (media_cmds._FORCE["frames"], media_cmds._VIDEO_FILE)),
        "denoise": markdown_table(denoise.OPTIONS + (media_cmds._FORCE["denoise"],)),
        "video": markdown_table(video.OPTIONS + (media_cmds._FORCE["video"],)),
        "cut": markdown_table(cut.OPTIONS + (media_cmds._FORCE["cut"],)),
    }, "docs/sorting.md": {
        "sort": markdown_table(sort.OPTIONS),
    }, "docs/eval.md": {
        "eval": markdown_table(evaluation.OPTIONS + (eval_cmd.COMPARE,)),
    }, "README.md": {
        "demo": markdown_table(demo.OPTIONS + DEMO_RUN),
        "verify": markdown_table(verify_cmd.OPTIONS),
    }, "docs/ui.md": {
        "ui": markdown_table(ui_cmd.OPTIONS),
    }, "docs/workspace.md": {
        "workspace": markdown_table(WORKSPACE_RUN),
    }, "docs/merge.md": {
        "merge-run": markdown_table([o for o in merge.RUN] + [merge.SETTINGS[0]]),
        "merge-mask": markdown_table(merge.groups()["Face and mask"]),
        "merge-color": markdown_table(merge.groups()["Colour, detail and output"]),
    }, "docs/export.md": {
        "export": markdown_table(export.OPTIONS),
        "merge-onnx": markdown_table(merge.ONNX_RUN),
    }, "docs/enhancer.md": {
        "train-enhancer": markdown_table(enhance.CLI_OPTIONS),
    }, "docs/segmentation.md": {
        "seg-train": markdown_table(seg.OPTIONS["train"]),
        "seg-apply": markdown_table(seg.OPTIONS["apply"]),
    }, "docs/faceset.md": {
        f"faceset-{command}": markdown_table(options) for command, options in faceset.OPTIONS.items() if options
    }}


def render(root: Path = ROOT) -> dict[Path, tuple[str, str]]:
    """``{path: (current text, text with fresh tables)}``."""
    out = {}
    for name, blocks in tables().items():
        path = root / name
        text = new = path.read_text()
        for key, table in blocks.items():
            new = replace_table(new, key, table)
        out[path] = (text, new)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether a table is out of date")
    args = parser.parse_args()
    stale = 0
    for path, (text, new) in render().items():
        if text != new:
            stale += 1
            if args.check:
                print(f"{path.relative_to(ROOT)}: option tables out of date (run tools/gen_option_docs.py)")
            else:
                path.write_text(new)
                print(f"wrote {path.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
