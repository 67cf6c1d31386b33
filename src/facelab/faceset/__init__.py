"""Face-set tools, one module per command: sorting (:mod:`~facelab.faceset.sort`, with per-face
:mod:`~facelab.faceset.features` and head :mod:`~facelab.faceset.pose`), landmark debug images
(:mod:`~facelab.faceset.debug`), original names (:mod:`~facelab.faceset.names`), resize
(:mod:`~facelab.faceset.resize`), records for outside editors (:mod:`~facelab.faceset.meta`), PNG to JPEG
(:mod:`~facelab.faceset.tojpg`), pack (:mod:`~facelab.faceset.pack`), DeepFaceLab sets
(:mod:`~facelab.faceset.dfl`) and the coverage report (:mod:`~facelab.faceset.coverage`); the face files
of a folder: :mod:`~facelab.faceset.files`. For the UI's face-set page: the face list with its filters and
sort orders (:mod:`~facelab.faceset.browse`), face ids (:mod:`~facelab.faceset.faceid`), thumbnails
(:mod:`~facelab.faceset.thumbs`), the trash with undo (:mod:`~facelab.faceset.trash`) and one face's details
(:mod:`~facelab.faceset.detail`)."""
