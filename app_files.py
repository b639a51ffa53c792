"""What the app lets browsers download, and where it keeps what nobody may download.

Gradio serves every file under ``allowed_paths`` and in its cache folder at ``/gradio_api/file=<absolute path>``
to anyone who asks, dotfiles included. So the app (``app.launch``):

- never serves the runs folder: it is not an allowed path, and it is a *blocked* path (so is the state folder).
  Run files reach a browser only through handlers that check the owner token: plots as copies in Gradio's cache
  (removed by its ``delete_cache`` schedule), bundles, ``config.json`` and ``predictions.csv`` (every held-out
  prediction) through short-lived signed links;
- keeps server secrets in a private state folder outside the runs folder: ``PEFT_STATE_DIR``, default
  ``<runs folder>/../.peft_state`` (mode 0700; the key file 0600).

A signed link is ``/peft/download/<run id>/<file name>?exp=<unix seconds>&sig=<hex>``: ``sig`` is the HMAC-SHA256
of ``<run id>/<file name>/<exp>`` under a key derived from the server secret. Only the run's owner gets one (from
``/export`` or the page), it names one file of :data:`DOWNLOADABLE`, and it expires after
``PEFT_DOWNLOAD_LINK_TTL_S`` seconds (default 3600). The route streams the file (no copy in Gradio's cache).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Callable

ROUTE = "/peft/download"
DOWNLOADABLE = ("bundle-fp32.zip", "bundle-int8.zip", "config.json", "predictions.csv",
                "scored.csv")  # names a link may name
DEFAULT_LINK_TTL_S = 3600.0
_RUN_ID = re.compile(r"[0-9a-f]{32}")
log = logging.getLogger("peft_app")


def state_dir(runs_root: str | Path) -> Path:
    """The private state folder (created 0700): ``PEFT_STATE_DIR``, else ``<runs_root>/../.peft_state``."""
    raw = os.environ.get("PEFT_STATE_DIR", "").strip()
    path = Path(raw).resolve() if raw else Path(runs_root).resolve().parent / ".peft_state"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def stored_secret(runs_root: str | Path) -> str:
    """The server secret kept in ``state_dir()/browser_secret`` (created 0600 on first use). A key left by an
    older version in ``<runs_root>/.browser_secret`` (a served folder then) is moved there, so owner tokens
    stored in browsers stay readable."""
    path = state_dir(runs_root) / "browser_secret"
    old = Path(runs_root) / ".browser_secret"
    if old.is_file():
        if path.is_file():
            old.unlink()
        else:
            shutil.move(old, path)
            log.warning("moved the browser-token key from %s to %s (outside the runs folder)", old, path)
    if not path.is_file():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another thread created it meanwhile
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
    path.chmod(0o600)
    return path.read_text().strip()


def link_ttl_s() -> float:
    """Seconds a signed download link stays valid: ``PEFT_DOWNLOAD_LINK_TTL_S`` (default 3600)."""
    raw = os.environ.get("PEFT_DOWNLOAD_LINK_TTL_S", "").strip()
    return float(raw) if raw else DEFAULT_LINK_TTL_S


def _key(secret: str) -> bytes:
    return hashlib.sha256(b"peft-studio download links\0" + secret.encode()).digest()


def signature(secret: str, run_id: str, name: str, expires: int) -> str:
    """HMAC-SHA256 (hex) of ``<run_id>/<name>/<expires>`` under a key derived from ``secret``."""
    return hmac.new(_key(secret), f"{run_id}/{name}/{int(expires)}".encode(), hashlib.sha256).hexdigest()


def signed_path(secret: str, run_id: str, name: str, now: float | None = None) -> str:
    """The path (no host) of a link to file ``name`` of run ``run_id``, valid for :func:`link_ttl_s` seconds.
    The caller must have checked that the run belongs to the asking owner."""
    if name not in DOWNLOADABLE:
        raise ValueError(f"{name!r} is not a downloadable run file")
    expires = int((time.time() if now is None else now) + link_ttl_s())
    return f"{ROUTE}/{run_id}/{name}?exp={expires}&sig={signature(secret, run_id, name, expires)}"


def checked_file(secret: str, runs_root: str | Path, run_id: str, name: str, exp: str, sig: str,
                 now: float | None = None) -> Path | tuple[int, str]:
    """The file a link points to, or (HTTP status, why it is refused): a malformed or tampered link (403), an
    expired one (403), or a file that no longer exists (404)."""
    if not (_RUN_ID.fullmatch(run_id or "") and name in DOWNLOADABLE and (exp or "").isdigit()):
        return 403, "not a download link of this app"
    if not hmac.compare_digest(signature(secret, run_id, name, int(exp)), sig or ""):
        return 403, "this download link is not valid (it was changed or comes from another server)"
    if int(exp) < (time.time() if now is None else now):
        return 403, "this download link has expired: press Export again (or select the run again) for a new one"
    root = Path(runs_root).resolve()
    path = root / run_id / name
    if path.is_symlink() or not path.is_file() or path.resolve().parent.parent != root:
        return 404, "this file is not there any more (the run was deleted, or not exported yet)"
    return path


def download_route(get_secret: Callable[[], str], get_runs_root: Callable[[], Path]):
    """A Starlette route serving signed links (see module doc): 200 with the file as an attachment, else 403/404
    with a one-line reason."""
    from starlette.responses import FileResponse, PlainTextResponse
    from starlette.routing import Route

    def download(request):
        p, q = request.path_params, request.query_params
        found = checked_file(get_secret(), get_runs_root(), p["run_id"], p["name"], q.get("exp", ""),
                             q.get("sig", ""))
        if isinstance(found, tuple):
            return PlainTextResponse(found[1], status_code=found[0])
        return FileResponse(found, filename=found.name, content_disposition_type="attachment",
                            headers={"Cache-Control": "private, no-store"})

    return Route(ROUTE + "/{run_id}/{name}", download, methods=["GET", "HEAD"])


def root_url(request, root_path: str | None) -> str:
    """The app's public URL (no trailing slash) as the browser or API client that sent ``request`` (a
    ``gr.Request``) sees it, proxies included (Gradio's own rule)."""
    from gradio import route_utils

    raw = request.request
    return route_utils.get_root_url(raw, route_utils.get_api_call_path(raw), root_path)
