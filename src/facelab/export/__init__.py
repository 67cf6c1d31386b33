"""Export for real-time players: a swap model (or a mask network) as one ONNX / ``.dfm`` file, and an
onnxruntime predictor that merges with such a file.

- :func:`export_swap_model`: a facelab swap model -> the DeepFaceLive / FaceFusion layout (:mod:`.onnx`);
- :func:`export_mask_model`: any ``(N, 3, R, R) -> (N, 1, R, R)`` logits network -> ``in_face:0`` / ``out_mask:0``;
- :func:`load_onnx_predictor`: such a file as the merge's predictor (:mod:`.runtime`);
- :func:`player_check`: the checks DeepFaceLive makes when it opens a file.

See ``docs/export.md``.
"""

from facelab.export.onnx import FORMATS, Exported, export_mask_model, export_swap_model
from facelab.export.runtime import OnnxPredictor, PlayerInfo, file_id, load_onnx_predictor, player_check

__all__ = ["FORMATS", "Exported", "export_swap_model", "export_mask_model", "OnnxPredictor", "PlayerInfo", "file_id",
           "load_onnx_predictor", "player_check"]
