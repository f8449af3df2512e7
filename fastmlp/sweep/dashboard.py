"""``fastmlp sweep dashboard SWEEP_DIR``: the sweep live in a browser, with optuna-dashboard.

The local counterpart of a W&B sweep page: optuna-dashboard's web app (trial table, history,
parallel coordinates, importance; it re-reads the storage as trials finish) served over the
sweep's own storage, the journal file or the ``--storage`` database URL, while the sweep
runs or after it. It is served by the standard library's WSGI server on one address
(``127.0.0.1`` unless ``--host`` says otherwise); port 0, or a port that is busy, takes a free
one. The URL of the sweep's page is printed once the server listens; Ctrl-C (or SIGTERM)
closes it, and the command exits as every interrupted fastmlp command does.

The view is read-only: optuna-dashboard's page can also rename or delete a study, finish a
running trial, edit notes and attributes, which would undo the bookkeeping of the workers
(a trial told complete while its worker still trains it); every request other than GET and
HEAD is answered 405.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
from dataclasses import dataclass
from os import PathLike
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from fastmlp.errors import MissingDependencyError, describe
from fastmlp.sweep.report import open_local_sweep
from fastmlp.sweep.study import SweepError, require_optuna

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080  # optuna-dashboard's own default
# Seconds a request may take to arrive (a browser sends it at once).
REQUEST_TIMEOUT_S = 5
READ_ONLY_REASON = (
    b'{"reason": "fastmlp sweep dashboard is a read-only view: change a sweep with fastmlp sweep"}'
)


def require_dashboard() -> Any:
    """The optuna_dashboard module, or one line saying what to install."""
    try:
        import optuna_dashboard
    except ImportError:
        raise MissingDependencyError(
            'the sweep dashboard needs optuna-dashboard: pip install "fastmlp[sweep]"'
        ) from None
    return optuna_dashboard


def read_only(app: Any) -> Any:
    """``app`` answering only GET and HEAD; any other request gets 405 and a JSON reason
    (which optuna-dashboard's page shows)."""

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] in ("GET", "HEAD"):
            return app(environ, start_response)
        start_response(
            "405 Method Not Allowed",
            [("Content-Type", "application/json"), ("Allow", "GET, HEAD")],
        )
        return [READ_ONLY_REASON]

    return guarded


class _QuietHandler(WSGIRequestHandler):
    """Request handling without a log line per request (the page polls every few seconds),
    and with a time limit on a client's reads, so that a stalled one cannot hold up Ctrl-C."""

    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        return None


class _WSGIServerIPv6(WSGIServer):
    address_family = socket.AF_INET6


def bind_server(host: str, port: int, app: Any) -> WSGIServer:
    """A WSGI server for ``app`` listening on ``host``:``port``; on a free port when ``port``
    is 0 or busy.

    Raises:
        SweepError: the address cannot be used (an unknown host, a port below 1024, ...).
    """
    server_class = _WSGIServerIPv6 if ":" in host else WSGIServer
    try:
        return make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    except OSError as error:
        if error.errno == errno.EADDRINUSE and port != 0:
            return bind_server(host, 0, app)
        raise SweepError(
            f"cannot serve the dashboard on {host}:{port}: {describe(error)}"
        ) from None


def page_url(host: str, port: int, study_id: int) -> str:
    """The address of a study's dashboard page (``localhost`` for a server on every
    interface)."""
    if host in ("", "0.0.0.0", "::"):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/dashboard/studies/{study_id}"


@dataclass
class Dashboard:
    """A dashboard server bound to its address, not yet serving.

    Attributes:
        server: the WSGI server (``serve_forever``, ``server_close``).
        url: the sweep's page on it.
        name: the sweep's study name.
        asked_port: the port asked for (the server's may differ: 0 or busy).
    """

    server: WSGIServer
    url: str
    name: str
    asked_port: int

    @property
    def port(self) -> int:
        return int(self.server.server_port)


def open_dashboard(
    sweep_dir: str | PathLike[str],
    *,
    storage: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
) -> Dashboard:
    """Bind optuna-dashboard's app over the storage of the sweep in ``sweep_dir``.

    Args:
        sweep_dir: the sweep directory (``OUT/NAME``).
        storage: the database URL the sweep used, when its ``sweep.json`` cannot hold it.
        host, port: where to listen (port 0: any free port).

    Raises:
        MissingDependencyError: Optuna or optuna-dashboard is not installed.
        SweepError: not a local sweep, its storage cannot be read, or the address is unusable.
    """
    require_optuna()
    optuna_dashboard = require_dashboard()
    sweep = open_local_sweep(sweep_dir, storage, on_wandb="its live view is its W&B sweep page")
    try:
        study_id = sweep.storage.get_study_id_from_name(sweep.name)
    except KeyError:
        raise SweepError(f"the storage holds no sweep named {sweep.name!r}") from None
    server = bind_server(host, port, read_only(optuna_dashboard.wsgi(sweep.storage)))
    return Dashboard(
        server=server,
        url=page_url(host, server.server_port, study_id),
        name=sweep.name,
        asked_port=port,
    )


def serve_dashboard(
    sweep_dir: str | PathLike[str],
    *,
    storage: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
) -> None:
    """Serve the sweep's dashboard until Ctrl-C, announcing its URL once it listens.

    Raises:
        KeyboardInterrupt: after Ctrl-C (or SIGTERM), once the server is closed.
        MissingDependencyError, SweepError: as :func:`open_dashboard`.
    """
    dashboard = open_dashboard(sweep_dir, storage=storage, host=host, port=port)
    try:
        if dashboard.asked_port not in (0, dashboard.port):
            print(
                f"port {dashboard.asked_port} is busy: serving on port {dashboard.port}",
                file=sys.stderr,
            )
        print(f"sweep {dashboard.name}: dashboard at {dashboard.url} (Ctrl-C stops it)", flush=True)
        # Requests are handled in a thread of their own: wsgiref turns any exception in a
        # request, KeyboardInterrupt included, into an error page, so a Ctrl-C that arrived
        # while the page polled would be lost. The main thread only waits for the signal.
        serving = threading.Thread(target=dashboard.server.serve_forever, daemon=True)
        serving.start()
        try:
            serving.join()
        finally:
            dashboard.server.shutdown()  # waits for the request in progress, if any
    finally:
        dashboard.server.server_close()
