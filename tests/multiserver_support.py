"""Several real app servers (``kb serve``: gunicorn) on one PostgreSQL database, for
tests/test_multiserver.py: processes, a small HTTP client with explicit cookies, setup data."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KB = [sys.executable, "-m", "kb"]
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(eq=False)
class Server:
    """One app server: its own folder (courses copy, index, instance), the shared database."""

    name: str
    root: Path
    env: dict
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def base(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def kb(self, *args, timeout=120, check=True) -> subprocess.CompletedProcess:
        """Run a ``kb`` command as this server's deploy step would."""
        done = subprocess.run([*KB, *args], env=self.env, cwd=self.root, capture_output=True,
                              text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"kb {' '.join(args)} on {self.name} failed:\n{done.stderr}")
        return done

    def start(self, workers: int = 2) -> None:
        self.port = free_port()
        log = open(self.root / "server.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [*KB, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)],
            env=self.env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait_up(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log()}")
            try:
                status, _, _ = Browser().get(self, "/healthz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not answer /healthz in {timeout} s:\n{self.log()}")

    def log(self, tail: int = 4000) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # gunicorn and its workers (own group)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)


def make_server(name: str, root: Path, common_env: dict, fixtures: Path, quiz_yaml: str) -> Server:
    """A server folder with its own copy of the content (as each machine has after a deploy)."""
    root.mkdir(parents=True)
    shutil.copytree(fixtures, root / "courses")
    (root / "quizzes").mkdir()
    (root / "quizzes" / "basics-quiz.yaml").write_text(quiz_yaml, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    env.update(common_env)
    env.update({
        "KB_COURSES_DIR": str(root / "courses"),
        "KB_QUIZZES_DIR": str(root / "quizzes"),
        "KB_INDEX_DIR": str(root / "index"),
        "KB_INSTANCE_DIR": str(root / "instance"),
        "PYTHONPATH": str(REPO),
    })
    return Server(name, root, env)


@dataclass
class Browser:
    """One phone: cookies kept by name, sent to whichever server it talks to."""

    cookies: dict = field(default_factory=dict)

    def request(self, server: Server, method: str, path: str, form: dict | None = None,
                body: dict | None = None, headers: dict | None = None):
        headers = dict(headers or {})
        payload = None
        if form is not None:
            payload = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPConnection(*server.base, timeout=60)
        try:
            conn.request(method, path, payload, headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        finally:
            conn.close()
        for raw in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(raw).items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response.status, response.headers, text

    def get(self, server, path, **kw):
        return self.request(server, "GET", path, **kw)

    def post(self, server, path, **kw):
        return self.request(server, "POST", path, **kw)

    def csrf(self, server, path) -> str:
        status, _, page = self.get(server, path)
        assert status == 200, (path, status)
        return CSRF_FIELD.search(page).group(1)

    def login(self, server, username, password) -> int:
        token = self.csrf(server, "/login")
        status, _, _ = self.post(server, "/login", form={"csrf_token": token, "login": username,
                                                         "password": password})
        return status
