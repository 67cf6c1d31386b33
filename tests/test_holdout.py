"""`facelab train --holdout N`: faces kept out of training, chosen once, followed through renames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facelab.errors import SettingsError
from facelab.stages import sort, train
from facelab.train import holdout

TINY = dict(model="quick", batch_size=2, device="cpu", architecture=(("resolution", 32),))


def test_pick_is_even_and_deterministic():
    paths = [Path(f"{i:05d}_0.jpg") for i in range(30)]
    assert [p.name for p in holdout.pick(paths[::-1], 3)] == ["00005_0.jpg", "00015_0.jpg", "00025_0.jpg"]
    assert holdout.pick(paths, 0) == []
    with pytest.raises(SettingsError, match="leaves none to train on"):
        holdout.pick(paths, 30)


def _run(ws, lines, marker, **kw):
    return train.run(ws, train.TrainSettings(**TINY, **kw), log=lines.append, marker=marker)


def _loaded(lines) -> str:
    return next(line for line in lines if line.startswith("loading faces"))


def test_holdout_is_kept_out_fixed_and_follows_renames(ws, marker):
    lines: list[str] = []
    _run(ws, lines, marker, iterations=1, holdout=3)
    doc = json.loads((ws.model_dir("quick") / "holdout.json").read_text())
    assert doc["count"] == 3 and len(doc["src"]) == len(doc["dst"]) == 3
    assert "src 27, dst 27" in _loaded(lines)
    held_keys = {tuple(k) for k in doc["src_keys"]}

    # sorting renames every src face; the same faces stay out on the next run, without the flag
    sort.run(ws, "src", sort.SortSettings(by="hist", workers=2))
    assert not set(doc["src"]) & {p.name for p in ws.aligned_paths("src")}
    lines.clear()
    _run(ws, lines, marker, iterations=2)
    assert "src 27, dst 27" in _loaded(lines)
    train_paths, held = holdout.split(ws.aligned_paths("src"), doc, "src")
    assert len(held) == 3 and {holdout._key(p) for p in held} == held_keys

    with pytest.raises(SettingsError, match="cannot change to 5"):
        _run(ws, [], marker, iterations=3, holdout=5)


def test_holdout_cannot_be_added_to_a_trained_model(ws, marker):
    _run(ws, [], marker, iterations=1)
    with pytest.raises(SettingsError, match="keeps 0 faces"):
        _run(ws, [], marker, iterations=2, holdout=2)


def test_holdout_range_is_checked():
    with pytest.raises(SettingsError, match="holdout"):
        train.TrainSettings(holdout=-1)
