"""Fault-test helpers: a private PostgreSQL cluster, ``kb serve`` in a child process, a client.

The shared PostgreSQL server on 127.0.0.1:5432 is never stopped or restarted: a test that
restarts PostgreSQL runs its own throw-away cluster (``initdb`` + ``pg_ctl`` from
``/usr/lib/postgresql/15/bin`` as the ``postgres`` user, in a temporary folder, on a free port).
"""

from __future__ import annotations

import contextlib
import errno
import http.cookiejar
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PG_BIN = Path(os.environ.get("KB_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_cluster_unavailable() -> str | None:
    """Why a private cluster cannot run here (None when it can)."""
    if not (PG_BIN / "initdb").exists():
        return f"no PostgreSQL server binaries in {PG_BIN}"
    if os.geteuid() != 0:
        return "starting a private PostgreSQL cluster needs root (runuser -u postgres)"
    if shutil.which("runuser") is None:
        return "runuser is not installed"
    return None


class PrivateCluster:
    """A PostgreSQL cluster of our own that may be stopped and restarted at will."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="kb-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        shutil.chown(self.dir, "postgres")
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync",
                 "-E", "UTF8", "--locale=C.UTF-8")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
                              capture_output=True, text=True, check=check, timeout=60)

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        # fsync=off: these tests stop the server, not the machine; the WAL in the OS page cache
        # survives an immediate shutdown, so what is committed is still on "disk".
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off")
        return self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
                        "-t", "30", "-o", options, *args, check=check)

    def start(self) -> None:
        self._ctl("start")

    def stop(self, mode: str = "immediate") -> None:
        self._ctl("-m", mode, "stop")

    def restart(self, mode: str = "immediate") -> None:
        self._ctl("-m", mode, "restart")

    def destroy(self) -> None:
        self._ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    """``kb serve`` (gunicorn, sync workers) in its own process group, configured by KB_*."""

    def __init__(self, env: dict[str, str], workers: int = 2, cwd: Path | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        home = Path(tempfile.mkdtemp(prefix="kb-serve-home-"))
        self._home = home
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
        # HOME of our own: gunicorn's control socket (~/.gunicorn/gunicorn.ctl) is not shared
        # with servers other tests or helpers run at the same time.
        child_env.update(env, HOME=str(home), PYTHONSAFEPATH="1")
        self.log = home / "server.log"
        self._log_file = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from kb.cli import main; main()", "serve",
             "--port", str(self.port), "--workers", str(workers)],
            env=child_env, cwd=str(cwd or REPO), stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait_up(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("kb serve exited:\n" + self.output())
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("kb serve did not answer:\n" + self.output())

    def output(self) -> str:
        if self._log_file.closed:
            return self._output
        self._log_file.flush()
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
            except ProcessLookupError:
                pass
        self._log_file.close()
        self._output = self.log.read_text(encoding="utf-8", errors="replace")
        shutil.rmtree(self._home, ignore_errors=True)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Reply:
    def __init__(self, status: int, headers, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


class Browser:
    """One person's cookies; redirects are not followed (a 302 is an answer of its own)."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                  _NoRedirect())
        self.csrf = ""

    def request(self, path: str, form: dict | None = None, json_body=None,
                headers: dict | None = None, timeout: float = 30) -> Reply:
        headers = dict(headers or {})
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
        elif json_body is not None:
            data = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
            headers.setdefault("Accept", "application/json")
        if data is not None and self.csrf:
            headers.setdefault("X-CSRFToken", self.csrf)
        req = urllib.request.Request(self.base + path, data, headers)
        try:
            with self.opener.open(req, timeout=timeout) as r:
                return Reply(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.headers, e.read())

    def login(self, username: str, password: str) -> None:
        import re

        page = self.request("/login")
        found = re.search(r'csrf_token"[^>]*value="([^"]+)"', page.text)
        assert found, f"no login form: {page.status} {page.text[:500]}"
        self.csrf = found.group(1)
        reply = self.request("/login", {"csrf_token": self.csrf, "login": username,
                                        "password": password})
        assert reply.status == 302, f"login failed for {username}: {reply.status}"
        # Flask-WTF keeps one token per session: read the signed-in one.
        page = self.request("/progress/claims/new").text
        self.csrf = re.search(r'csrf_token"[^>]*value="([^"]+)"', page).group(1)


@contextlib.contextmanager
def mounted_small_disk(tmp_path: Path, size: str = "4m"):
    """A small tmpfs of our own (needs root), unmounted afterwards; skips the test when
    mounting is not permitted (the injected-ENOSPC tests cover the same paths)."""
    import pytest

    mount_point = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                           str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


class Filler:
    """Fills a file system to the last byte; ``free()`` gives the space back."""

    def __init__(self, folder: Path):
        self.path = folder / "filler"

    def fill(self):
        with open(self.path, "ab", buffering=0) as f:
            chunk = b"\0" * 65536
            while True:
                try:
                    f.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    if len(chunk) == 1:
                        return
                    chunk = chunk[: len(chunk) // 2]

    def free(self):
        self.path.unlink(missing_ok=True)
