"""facelab: face replacement for video with per-pair autoencoders.

Every stage is a plain function (see :mod:`facelab.stages`) that the CLI, the
UI and scripts all call. Everything facelab writes is marked as synthetic.
"""

__version__ = "0.1.0"
