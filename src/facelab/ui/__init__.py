"""``facelab ui``: the workflow in a local browser UI.

A FastAPI app (:func:`facelab.ui.app.create_app`) served by uvicorn on
127.0.0.1. Pages are Jinja2 templates with small plain JavaScript modules in
``static/`` (no build step, nothing fetched from a CDN); progress and the
training loss arrive as server-sent events.

The UI calls the same stage functions as the CLI (:mod:`facelab.stages`), runs
each long step as a job (:mod:`facelab.ui.jobs`) and builds every form from the
option declarations (:mod:`facelab.options`), so it has no option of its own.

Security (:mod:`facelab.ui.security`): a random token in the start URL,
exchanged for an HttpOnly SameSite=Strict cookie; Host and Origin checked; a
strict Content-Security-Policy; files addressed by workspace-relative ids
(:mod:`facelab.ui.files`), never by a path from the client.
"""
