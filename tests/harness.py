"""Real things for end-to-end tests: the server as a process, SIPp, baresip, free ports.

Everything runs on loopback with ports the kernel says are free (never
5060-5070). With CI=true a missing peer fails the test instead of skipping
it (`need()`), so a CI machine that lost a package goes red.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = Path(__file__).resolve().parent / "sipp"
PCAPS = Path("/usr/share/sip-tester")
SOUNDS = ROOT / "sounds"
PYTHON = sys.executable
IN_CI = os.environ.get("CI") == "true"


def need(*tools: str) -> None:
    """Skip when a peer is missing — or fail, under CI=true."""
    for tool in tools:
        if shutil.which(tool) is None:
            message = f"test peer {tool!r} is not installed (scripts/test installs it)"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)


# --------------------------------------------------------------------------- ports

_used_ports: set[int] = set()


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1, above 20000, not 5060-5070."""
    for _ in range(200):
        port = random.randint(20000, 60000)
        if port in _used_ports:
            continue
        try:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u,
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t,
            ):
                u.bind(("127.0.0.1", port))
                t.bind(("127.0.0.1", port))
        except OSError:
            continue
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port")


def free_range(pairs: int) -> tuple[int, int]:
    """An even-aligned UDP port range with `pairs` RTP/RTCP pairs, all free now."""
    for _ in range(200):
        lo = random.randrange(30000, 60000 - 2 * pairs, 2)
        ports = range(lo, lo + 2 * pairs)
        if any(p in _used_ports for p in ports):
            continue
        socks = []
        try:
            for p in ports:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        _used_ports.update(ports)
        return lo, lo + 2 * pairs - 1
    raise RuntimeError("no free port range")


# --------------------------------------------------------------------------- the server


@dataclass
class Operator:
    user: str
    password: str
    skills: tuple[str, ...] = ("medical", "fire", "disaster", "police")


def config_text(
    *,
    sip_port: int,
    web_port: int,
    rtp: tuple[int, int],
    data: Path,
    operators: list[Operator],
    extra: str = "",
    trunk_proxy_port: int | None = None,
    agencies: list[tuple[str, str]] | None = None,
) -> str:
    ops = "\n".join(
        f'[[operator]]\nuser = "{o.user}"\npassword = "{o.password}"\n'
        f"skills = {json.dumps(list(o.skills))}\n"
        for o in operators
    )
    proxy = f'proxy = "127.0.0.1:{trunk_proxy_port}"\n' if trunk_proxy_port else ""
    agency_text = "".join(
        f'[[agency]]\nname = "{name}"\nnumber = "{number}"\ntrunk = "t"\nring_timeout_s = 6\n'
        for name, number in agencies or []
    )
    return f"""
[sip]
listen = "127.0.0.1:{sip_port}"
advertise = "127.0.0.1"
trace = true
[rtp]
ports = "{rtp[0]}-{rtp[1]}"
preopen = 8
[storage]
database = "{data / "db.sqlite3"}"
recordings = "{data / "recordings"}"
[web]
listen = "127.0.0.1:{web_port}"
city_areas = "{ROOT / "config" / "ambon-areas.toml"}"
[ivr]
prompts = "{SOUNDS}"
{extra}
[[trunk]]
name = "t"
allow = ["127.0.0.0/8"]
numbers = ["112", "urn:service:sos"]
{proxy}
{ops}
{agency_text}
[[user]]
name = "supervisor"
role = "supervisor"
password = "super-secret"
[[user]]
name = "auditor"
role = "auditor"
password = "audit-secret"
[[user]]
name = "admin"
role = "admin"
password = "admin-secret"
"""


@dataclass
class Server:
    """callcenter112 running as a child process on free loopback ports."""

    directory: Path
    operators: list[Operator] = field(default_factory=lambda: [Operator("op1", "secret1")])
    extra: str = ""
    agencies: list[tuple[str, str]] | None = None
    trunk_proxy_port: int | None = None
    sip_port: int = 0
    web_port: int = 0
    rtp: tuple[int, int] = (0, 0)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def config_path(self) -> Path:
        return self.directory / "callcenter112.toml"

    @property
    def database(self) -> Path:
        return self.directory / "data" / "db.sqlite3"

    @property
    def recordings(self) -> Path:
        return self.directory / "data" / "recordings"

    def write_config(self) -> None:
        if not self.sip_port:
            self.sip_port = free_port()
            self.web_port = free_port()
            self.rtp = free_range(40)
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            config_text(
                sip_port=self.sip_port,
                web_port=self.web_port,
                rtp=self.rtp,
                data=self.directory / "data",
                operators=self.operators,
                extra=self.extra,
                trunk_proxy_port=self.trunk_proxy_port,
                agencies=self.agencies,
            )
        )

    def start(self, timeout: float = 30.0) -> None:
        self.write_config()
        self.log_path = self.directory / f"server-{int(time.time() * 1000)}.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "callcenter112", "serve", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.output()}")
            if any(e.get("event") == "ready" for e in self.events()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.output().splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if kind is None or event.get("event") == kind:
                out.append(event)
        return out

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "callcenter112", *args, "--config", str(self.config_path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def incident(self, incident_id: str) -> dict[str, Any]:
        result = self.cli("incidents", "show", incident_id, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def incidents(self) -> list[dict[str, Any]]:
        """Every incident, oldest first, with legs, events and recordings."""
        result = self.cli("incidents", "list", "--json", "--limit", "1000")
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        return [self.incident(r["id"]) for r in reversed(rows)]

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)) as db:
            return db.execute(query, args).fetchall()


@contextlib.contextmanager
def running_server(directory: Path, **kwargs: Any) -> Iterator[Server]:
    server = Server(directory, **kwargs)
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            server.kill()


def wait_until(condition: Any, timeout: float = 20.0, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(interval)


# --------------------------------------------------------------------------- SIPp


def sipp_command(
    server_port: int,
    *,
    scenario: str | None = None,
    builtin: str | None = None,
    service: str = "112",
    calls: int = 1,
    local_port: int | None = None,
    media_port: int | None = None,
    extra: list[str] | None = None,
    timeout_s: int = 60,
    directory: Path | None = None,
) -> list[str]:
    cmd = ["sipp", f"127.0.0.1:{server_port}"]
    if scenario is not None:
        cmd += ["-sf", str(SCENARIOS / scenario)]
    elif builtin is not None:
        cmd += ["-sn", builtin]
    cmd += [
        "-s",
        service,
        "-i",
        "127.0.0.1",
        "-p",
        str(local_port or free_port()),
        "-mp",
        str(media_port or free_range(4)[0]),
        "-m",
        str(calls),
        "-timeout",
        f"{timeout_s}s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-trace_msg",
    ]
    return cmd + (extra or [])


def run_sipp(
    cmd: list[str], directory: Path, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, check=False, cwd=directory, capture_output=True, text=True, timeout=timeout
    )


def start_sipp(cmd: list[str], directory: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cmd, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def sipp_logs(directory: Path) -> str:
    out = []
    for f in sorted(directory.glob("*_messages.log")) + sorted(directory.glob("*_errors.log")):
        out.append(f"== {f.name}\n{f.read_text(errors='replace')[-6000:]}")
    return "\n".join(out)


# --------------------------------------------------------------------------- baresip


class Baresip:
    """baresip as an operator softphone, driven over its ctrl_tcp socket (DESIGN §6)."""

    def __init__(
        self,
        directory: Path,
        *,
        user: str,
        password: str,
        server_port: int,
        audio: Path | None = None,
        answermode: str = "auto",
        transport: str = "udp",
        lifetime_s: int = 300,
    ) -> None:
        self.directory = directory
        self.user = user
        self.sip_port = free_port()
        self.ctrl_port = free_port()
        self.audio = audio or operator_voice()
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.record_dir = directory / "rx"
        self.record_dir.mkdir(exist_ok=True)
        params = f";transport={transport}" if transport == "tcp" else ""
        (directory / "config").write_text(
            f"sip_listen 127.0.0.1:{self.sip_port}\n"
            "net_interface 127.0.0.1\n"
            "module_path /usr/lib/baresip/modules\n"
            "module g711.so\nmodule aufile.so\nmodule aubridge.so\nmodule sndfile.so\n"
            "module account.so\nmodule menu.so\nmodule ctrl_tcp.so\n"
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}\n"
            f"audio_source aufile,{self.audio}\n"
            "audio_player aubridge,nil\n"
            f"snd_path {self.record_dir}\n"
            "audio_path /usr/share/baresip\n"
            "rtp_stats yes\n"
        )
        (directory / "accounts").write_text(
            f"<sip:{user}@127.0.0.1:{server_port}{params}>;auth_pass={password};"
            f"answermode={answermode};regint=60;audio_codecs=PCMU,PCMA\n"
        )
        self.lifetime_s = lifetime_s
        self._token = 0

    def start(self) -> None:
        self.log = (self.directory / "baresip.log").open("wb")
        self.proc = subprocess.Popen(
            ["baresip", "-f", str(self.directory), "-t", str(self.lifetime_s)],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )
        wait_until(self._ctrl_up, 15, what="baresip ctrl_tcp")

    def _ctrl_up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=0.5):
                return True
        except OSError:
            return False

    def output(self) -> str:
        return (self.directory / "baresip.log").read_text(errors="replace")

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """One ctrl_tcp command (netstring-framed JSON); returns its response object."""
        self._token += 1
        token = str(self._token)
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        with socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=timeout) as s:
            s.sendall(str(len(body)).encode() + b":" + body + b",")
            buf = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while b":" in buf:
                    head, _, rest = buf.partition(b":")
                    if not head.isdigit() or len(rest) < int(head) + 1:
                        break
                    n = int(head)
                    message = json.loads(rest[:n])
                    buf = rest[n + 1 :]
                    if message.get("response") and message.get("token") == token:
                        return message  # type: ignore[no-any-return]
        raise TimeoutError(f"baresip did not answer {command}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # unregisters on the way out
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def baresip_operator(directory: Path, **kwargs: Any) -> Iterator[Baresip]:
    need("baresip")
    phone = Baresip(directory, **kwargs)
    phone.start()
    try:
        yield phone
    finally:
        phone.stop()


def operator_online(server: Server, user: str) -> bool:
    return any(
        e.get("event") == "presence"
        and e.get("user") == user
        and e.get("kind") == "OperatorRegistered"
        for e in server.events()
    )


def caller_scenario(
    directory: Path,
    *,
    caller: str = "081234567890",
    pause_before_ms: int = 1500,
    media: list[str] | None = None,
    talk_ms: int = 1000,
    name: str = "caller.xml",
) -> Path:
    """Render tests/sipp/caller.xml.in: `media` is a list of pcap files to play in order."""
    actions = []
    for pcap in media or []:
        actions.append(
            f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n'
            '  <pause milliseconds="600"/>'
        )
    text = (
        (SCENARIOS / "caller.xml.in")
        .read_text()
        .replace("@CALLER@", caller)
        .replace("@PAUSE_BEFORE_MS@", str(pause_before_ms))
        .replace("@MEDIA@", "\n".join(actions))
        .replace("@TALK_MS@", str(talk_ms))
    )
    path = directory / name
    path.write_text(text)
    return path


def operator_voice() -> Path:
    """A 16-bit PCM WAV for baresip's aufile source (it refuses G.711 WAVs)."""
    path = Path(os.environ.get("TMPDIR", "/tmp")) / "callcenter112-operator-voice.wav"
    if not path.exists():
        need("sox")
        subprocess.run(
            ["sox", str(SOUNDS / "en" / "menu.wav"), "-e", "signed-integer", "-b", "16", str(path)],
            check=True,
        )
    return path
