"""A throwaway PostgreSQL server for tests: its own cluster in a temporary folder.

``PostgresServer.start()`` runs Debian's (or any) ``initdb`` and ``pg_ctl`` to make a cluster
in a fresh temporary folder and start it on a free TCP port of 127.0.0.1, with trust
authentication and no durability (``fsync=off``: it is thrown away). PostgreSQL refuses to run
as root, so as root (CI) the server runs as the unprivileged ``postgres`` user that Debian's
package creates, and owns its folder. ``stop()`` stops it and removes the folder; it is safe to
call after a failed start and more than once.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

# The superuser of the throwaway cluster (trust authentication: no password).
SUPERUSER = "postgres"
# The unprivileged user that runs the server when the tests run as root.
SERVER_USER = "postgres"


def postgres_bin_dir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: the newest Debian package's, else the PATH's."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """A PostgreSQL cluster of its own, listening on ``127.0.0.1:port``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise RuntimeError(
                    f"PostgreSQL does not run as root, and there is no {SERVER_USER} user to run "
                    "it as (Debian's postgresql package creates one)"
                ) from None
            self._user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        # As root, in /tmp itself: that user must reach the folder ($TMPDIR may not let it).
        self.folder = Path(
            tempfile.mkdtemp(prefix="fastmlp-pg-", dir="/tmp" if self._user else None)
        )
        if self._user:
            os.chown(self.folder, self._user["user"], self._user["group"])
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self._started = False

    def _run(self, program: str, *arguments: str) -> None:
        """Run one of PostgreSQL's programs as the server's user; an error shows its output."""
        result = subprocess.run(
            [str(self.bin_dir / program), *arguments],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            cwd=self.folder,
            timeout=120,
            **self._user,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stdout}{result.stderr}{log}"
            )

    def start(self) -> PostgresServer:
        """Make the cluster and start the server; returns self."""
        self._run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.folder} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._started = True
        self._run(
            "pg_ctl",
            "start",
            "--pgdata",
            str(self.data),
            "--wait",
            "--log",
            str(self.log),
            "--options",
            options,
        )
        return self

    def url(self, database: str = "postgres") -> str:
        """The ``postgresql://`` URL of ``database`` on this server."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server at once and remove its folder."""
        try:
            if self._started and (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "immediate")
        finally:
            self._started = False
            shutil.rmtree(self.folder, ignore_errors=True)
