"""The local secure endpoint as a separate process, and the trust store both clients use.

The endpoint runs in its own process so that the benchmark process's CPU counters measure the
client alone. Its startup output is parsed for the HTTPS URL (with the port the OS chose), the
path of the throwaway CA and the server key fingerprint; the key served over TLS is then
checked against that fingerprint before anything is measured.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import certifi
import httpx2
from cryptography.hazmat.primitives import serialization

# Overrides the command that starts the endpoint (tests of this harness, other endpoints).
SERVER_CMD_ENV = "NOMYO_BENCH_SERVER_CMD"
STARTUP_TIMEOUT = 180.0  # RSA-4096 server keygen on a loaded 2-core box

_URL_RE = re.compile(r"https://(?:127\.0\.0\.1|localhost|\[::1\]):(\d+)")
_FINGERPRINT_RE = re.compile(r"sha256:[0-9a-f]{64}")
_PEM_PATH_RE = re.compile(r"(/\S+?\.(?:pem|crt))\b")


class EndpointStartError(RuntimeError):
    """The endpoint did not start, or did not say where it listens and what it trusts."""


@dataclass
class Startup:
    """What the endpoint announced on startup."""

    base_url: str | None = None
    ca_path: Path | None = None
    fingerprint: str | None = None

    def complete(self) -> bool:
        return None not in (self.base_url, self.ca_path, self.fingerprint)


def parse_startup_line(line: str, found: Startup) -> None:
    """Fill ``found`` from one line of startup output (JSON object or human text)."""
    text = line.strip()
    if text.startswith("{"):
        try:
            announced = json.loads(text)
        except ValueError:
            announced = None
        if isinstance(announced, dict):
            url = announced.get("base_url") or announced.get("url")
            ca = announced.get("ca_path") or announced.get("ca")
            fp = announced.get("server_key_fingerprint") or announced.get("fingerprint")
            if isinstance(url, str) and _URL_RE.match(url):
                found.base_url = url.rstrip("/")
            if isinstance(ca, str):
                found.ca_path = Path(ca)
            if isinstance(fp, str) and _FINGERPRINT_RE.fullmatch(fp):
                found.fingerprint = fp
            return
    url = _URL_RE.search(text)
    if url and found.base_url is None and int(url.group(1)) != 0:
        found.base_url = url.group(0)
    fingerprint = _FINGERPRINT_RE.search(text)
    if fingerprint and found.fingerprint is None:
        found.fingerprint = fingerprint.group(0)
    if "CA" in text or "ca_path" in text.lower():
        pem = _PEM_PATH_RE.search(text)
        if pem and found.ca_path is None:
            found.ca_path = Path(pem.group(1))


def default_server_command() -> list[str]:
    override = os.environ.get(SERVER_CMD_ENV)
    if override:
        return shlex.split(override)
    script = Path(sys.executable).with_name("nomyo-native")
    launcher = [str(script)] if script.exists() else [shutil.which("nomyo-native") or ""]
    if not launcher[0]:
        raise EndpointStartError("the nomyo-native command is not installed (make build)")
    return [
        *launcher,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--tls-self-signed",
        "--tpm",
        "none",
    ]


def spki_fingerprint(pem: bytes) -> str:
    key = serialization.load_pem_public_key(pem)
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


@dataclass
class EndpointProcess:
    """A running endpoint process; use as a context manager."""

    command: list[str] = field(default_factory=default_server_command)
    base_url: str = ""
    ca_path: Path = Path()
    fingerprint: str = ""
    _proc: subprocess.Popen[str] | None = None
    _output: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=60))
    _drain: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def output_tail(self) -> str:
        return "".join(self._output)

    def start(self) -> EndpointProcess:
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        found = Startup()
        lines: collections.deque[str] = collections.deque()
        ready = threading.Event()

        def drain() -> None:
            # Keeps reading after startup so a chatty endpoint never blocks on a full pipe.
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                self._output.append(line)
                if not ready.is_set():
                    lines.append(line)
            ready.set()

        self._drain = threading.Thread(target=drain, name="endpoint-output", daemon=True)
        self._drain.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not found.complete():
            while lines:
                parse_startup_line(lines.popleft(), found)
            if found.complete():
                break
            if self._proc.poll() is not None:
                self._fail(f"the endpoint exited with status {self._proc.returncode}")
            if time.monotonic() > deadline:
                self._fail("the endpoint did not announce URL, CA and fingerprint in time")
            time.sleep(0.05)
        ready.set()
        assert found.base_url and found.ca_path and found.fingerprint
        self.base_url, self.ca_path, self.fingerprint = (
            found.base_url,
            found.ca_path,
            found.fingerprint,
        )
        self._wait_serving(deadline)
        return self

    def _wait_serving(self, deadline: float) -> None:
        """Poll the key endpoint over verified TLS; the key must match the announced print."""
        context = ssl.create_default_context(cafile=str(self.ca_path))
        last_error = ""
        while time.monotonic() < deadline:
            try:
                response = httpx2.get(f"{self.base_url}/pki/public_key", verify=context, timeout=10)
            except httpx2.TransportError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(0.1)
                continue
            if response.status_code != 200:
                self._fail(f"GET /pki/public_key answered {response.status_code}")
            served = spki_fingerprint(response.content)
            if served != self.fingerprint:
                self._fail(f"served key {served} differs from announced {self.fingerprint}")
            return
        self._fail(f"the endpoint never answered over TLS ({last_error})")

    def _fail(self, why: str) -> None:
        tail = self.output_tail()
        self.stop()
        raise EndpointStartError(f"{why}; command {self.command}; output:\n{tail}")

    def cpu_seconds(self) -> float:
        """User + system CPU of the endpoint process so far (from /proc)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        # Fields 14 and 15 of stat(5) (utime, stime) are at 11 and 12 after the command name.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=15)

    def __enter__(self) -> EndpointProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def write_trust_bundle(ca_path: Path, target: Path) -> Path:
    """certifi's bundle plus the test CA: the trust store of a user's machine that trusts us."""
    target.write_bytes(
        Path(certifi.where()).read_bytes().rstrip(b"\n") + b"\n" + ca_path.read_bytes()
    )
    return target
