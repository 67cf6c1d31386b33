"""Face-set tools: sorting (:mod:`facelab.faceset.sort`), head pose from landmarks
(:mod:`facelab.faceset.pose`) and per-face features (:mod:`facelab.faceset.features`)."""
