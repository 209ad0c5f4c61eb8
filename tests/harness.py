"""Real things for end-to-end tests: the server as a process, SIPp, baresip, free ports.

Everything runs on loopback with ports the kernel says are free (never
5060-5070). With CI=true a missing peer fails the test instead of skipping
it (`need()`), so a CI machine that lost a package goes red.

Besides the processes (`Server`/`running_server`, SIPp, `Baresip`) it has
the call-flow helpers the end-to-end tests share: SIPp citizens
(`start_caller`: keys as RFC 4733 events, G.711 speech, hang up after a
while or answer the centre's BYE), operator phones played by SIPp
(`sipp_operator_phone`: busy, or answering across our CANCEL), quick
prompts for the no-input path, incident look-ups by caller number, the
DESIGN §4 shape check of the incident JSON, and recording checks (channels,
RMS per second, envelope correlation, prompt code words).
"""

from __future__ import annotations

import contextlib
import functools
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
    takes_calls: bool = True  # False: a supervisor's softphone
    srtp: str = "off"  # [[operator]] srtp: off | optional | mandatory


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
    sip_extra: str = "",
    prompts: Path | None = None,
    supervisor_phone: str = "",
    trunk_extra: str = "",
) -> str:
    """The test configuration; `extra` goes into [ivr] (and may open further tables),
    `sip_extra` into [sip]; `supervisor_phone` is the [[user]] supervisor's sip_user."""
    ops = "\n".join(
        f'[[operator]]\nuser = "{o.user}"\npassword = "{o.password}"\n'
        f"skills = {json.dumps(list(o.skills))}\n"
        f"takes_calls = {'true' if o.takes_calls else 'false'}\n"
        + (f'srtp = "{o.srtp}"\n' if o.srtp != "off" else "")
        for o in operators
    )
    sup_phone = f'sip_user = "{supervisor_phone}"\n' if supervisor_phone else ""
    proxy = f'proxy = "127.0.0.1:{trunk_proxy_port}"\n' if trunk_proxy_port else ""
    if trunk_proxy_port and "qualify_s" not in trunk_extra:
        # A SIPp agency on the proxy port takes only the INVITEs its scenario expects:
        # no qualify OPTIONS to it unless the test asks (issue 16).
        proxy += "qualify_s = 0\n"
    agency_text = "".join(
        f'[[agency]]\nname = "{name}"\nnumber = "{number}"\ntrunk = "t"\nring_timeout_s = 6\n'
        for name, number in agencies or []
    )
    return f"""
[sip]
listen = "127.0.0.1:{sip_port}"
advertise = "127.0.0.1"
trace = true
{sip_extra}
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
prompts = "{prompts or SOUNDS}"
{extra}
[[trunk]]
name = "t"
allow = ["127.0.0.0/8"]
numbers = ["112", "urn:service:sos"]
{proxy}
{trunk_extra}
{ops}
{agency_text}
[[user]]
name = "supervisor"
role = "supervisor"
password = "super-secret"
{sup_phone}
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
    sip_extra: str = ""
    prompts: Path | None = None
    supervisor_phone: str = ""
    trunk_extra: str = ""
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
                sip_extra=self.sip_extra,
                prompts=self.prompts,
                supervisor_phone=self.supervisor_phone,
                trunk_extra=self.trunk_extra,
            )
        )

    def start(self, timeout: float = 30.0) -> None:
        self.write_config()
        self.log_path = self.directory / f"server-{int(time.time() * 1000)}.log"
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
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
    """SIPp in the background; its screen goes to `directory`/sipp.out (a pipe
    nobody reads would fill up and stall SIPp). `start_sipp_in` wraps it more
    conveniently."""
    with (directory / "sipp.out").open("w") as out:
        return subprocess.Popen(
            cmd,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
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
        with (self.directory / "baresip.log").open("wb") as log:
            self.proc = subprocess.Popen(
                ["baresip", "-f", str(self.directory), "-t", str(self.lifetime_s)],
                stdin=subprocess.DEVNULL,
                stdout=log,
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


# --------------------------------------------------------------------------- call-flow helpers


def dtmf_pcap(key: str) -> str:
    """SIPp's capture of one RFC 4733 key press (0-9, *, #)."""
    name = {"*": "star", "#": "pound"}.get(key, key)
    return str(PCAPS / f"dtmf_2833_{name}.pcap")


def dtmf_sequence_pcap(directory: Path, keys: str, *, gap_ms: int = 700) -> Path:
    """One capture of several RFC 4733 key presses, as a phone sends them.

    SIPp's per-key captures all come from one recording (one SSRC, timestamps
    rising from key 0 to key 9), so playing "9" then "1" would send a press
    whose timestamp lies seconds *behind* the previous one — a late packet,
    rightly ignored. This writes one stream instead: one SSRC, sequence
    numbers and timestamps rising across the presses (each press: start with
    the marker bit, updates every 20 ms for 100 ms, the end packet three
    times, RFC 4733 §2.5.1), `gap_ms` apart.
    """
    import struct

    path = directory / f"dtmf-{keys.replace('*', 'star').replace('#', 'pound')}.pcap"
    records = []
    seq, ts, t = 1000, 160_000, 1_700_000_000.0
    ssrc = 0x112112
    for key in keys:
        code = "0123456789*#ABCD".index(key)
        for i in range(8):
            end = i >= 5
            duration = 160 * min(i + 1, 6)
            marker = 0x80 if i == 0 else 0
            rtp = struct.pack("!BBHII", 0x80, marker | 101, seq, ts, ssrc)
            rtp += struct.pack("!BBH", code, (0x80 if end else 0) | 10, duration)
            udp = struct.pack("!HHHH", 40000, 40000, 8 + len(rtp), 0) + rtp
            ip = struct.pack(
                "!BBHHHBBH4s4s",
                0x45,
                0,
                20 + len(udp),
                0,
                0,
                64,
                17,
                0,
                bytes([127, 0, 0, 1]),
                bytes([127, 0, 0, 1]),
            )
            words = struct.unpack("!10H", ip)
            total = sum(words)
            total = (total & 0xFFFF) + (total >> 16)
            ip = ip[:10] + struct.pack("!H", ~total & 0xFFFF) + ip[12:]
            frame = b"\0" * 12 + b"\x08\x00" + ip + udp
            stamp = t + min(i, 5) * 0.02
            records.append(
                struct.pack("<IIII", int(stamp), int(stamp % 1 * 1e6), len(frame), len(frame))
                + frame
            )
            seq += 1
        ts += 160 * (6 + gap_ms // 20)
        t += 0.1 + gap_ms / 1000
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    path.write_bytes(header + b"".join(records))
    return path


def quick_prompts(directory: Path, *, seconds: float = 2.0) -> Path:
    """A copy of sounds/ whose greeting and menu last at most `seconds`.

    The shipped menu plays for ~17 s; a caller who presses nothing would wait
    through it twice. Tests that need the no-input path use this copy.
    """
    need("sox")
    target = directory / "sounds"
    if target.exists():
        return target
    shutil.copytree(SOUNDS, target)
    for lang in ("id", "en"):
        for name in ("greeting", "menu"):
            path = target / lang / f"{name}.wav"
            trimmed = path.with_suffix(".trim.wav")
            subprocess.run(
                ["sox", str(path), "-e", "a-law", str(trimmed), "trim", "0", str(seconds)],
                check=True,
            )
            trimmed.replace(path)
    return target


@dataclass
class SippRun:
    """One SIPp process (a caller, or a phone answering as an operator)."""

    directory: Path
    proc: subprocess.Popen[bytes]
    name: str = "sipp"

    def wait(self, timeout: float = 90.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            message = f"{self.name} still running after {timeout}s:\n{self.logs()}"
            raise AssertionError(message) from None

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def logs(self) -> str:
        screen = self.directory / "sipp.out"
        text = screen.read_text(errors="replace")[-3000:] if screen.exists() else ""
        return f"== {self.name} (rc={self.proc.returncode})\n{text}\n{sipp_logs(self.directory)}"


def start_sipp_in(directory: Path, cmd: list[str], name: str = "sipp") -> SippRun:
    """Start SIPp in its own directory; its screen output goes to sipp.out there
    (a pipe nobody reads would fill up and stall SIPp)."""
    need("sipp")
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "sipp.out").open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=directory, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    return SippRun(directory, proc, name)


def start_caller(
    server: Server,
    directory: Path,
    *,
    caller: str = "081234567890",
    digits: str = "",
    pause_before_ms: int = 300,
    talk_ms: int = 1000,
    audio: bool = False,
    service: str = "112",
) -> SippRun:
    """A SIPp citizen: calls, presses `digits` (RFC 4733), optionally sends
    G.711 speech (SIPp's g711a.pcap, ~8 s), stays `talk_ms`, then hangs up."""
    directory.mkdir(parents=True, exist_ok=True)
    if len(digits) > 1:
        media = [str(dtmf_sequence_pcap(directory, digits))]
    else:
        media = [dtmf_pcap(d) for d in digits]
    if audio:
        media.append(str(PCAPS / "g711a.pcap"))
    directory.mkdir(parents=True, exist_ok=True)
    scenario = caller_scenario(
        directory, caller=caller, pause_before_ms=pause_before_ms, media=media, talk_ms=talk_ms
    )
    # -aa: the centre's in-dialog OPTIONS (a silent caller's liveness probe) get 200.
    cmd = sipp_command(
        server.sip_port, scenario=str(scenario), service=service, timeout_s=120, extra=["-aa"]
    )
    return start_sipp_in(directory, cmd, name=f"caller {caller}")


def incident_of(server: Server, caller: str) -> dict[str, Any] | None:
    """The newest incident of `caller` (by the number it called from), or None."""
    rows = server.sql(
        "SELECT id FROM incidents WHERE caller = ? ORDER BY arrived_at DESC LIMIT 1", caller
    )
    return server.incident(rows[0][0]) if rows else None


def incident_status(server: Server, caller: str) -> str | None:
    rows = server.sql(
        "SELECT status FROM incidents WHERE caller = ? ORDER BY arrived_at DESC LIMIT 1", caller
    )
    return str(rows[0][0]) if rows else None


def event_kinds(incident: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in incident["events"]]


def events_of(incident: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in incident["events"] if e["kind"] == kind]


ISO_UTC = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$"


def check_incident_json(incident: dict[str, Any]) -> None:
    """The DESIGN §4 shape of `incidents show ID --json` (values are the tests' business)."""
    import re

    for key in (
        "id",
        "caller",
        "category",
        "status",
        "operator",
        "arrived_at",
        "operator_answered_at",
        "ended_at",
        "recordings",
        "events",
    ):
        assert key in incident, f"incident JSON lacks {key!r}: {sorted(incident)}"
    assert incident["category"] in ("medical", "fire", "disaster", "police", "unknown")
    assert incident["status"] in ("active", "completed", "abandoned", "interrupted")
    for key in ("arrived_at", "operator_answered_at", "ended_at"):
        value = incident[key]
        assert value is None or re.match(ISO_UTC, value), f"{key}={value!r} is not ISO 8601 UTC"
    assert incident["arrived_at"] is not None
    for rec in incident["recordings"]:
        assert {"path", "sha256", "channels", "duration_s"} <= set(rec), rec
        assert re.fullmatch(r"[0-9a-f]{64}", rec["sha256"] or ""), rec
    for event in incident["events"]:
        assert {"at", "kind", "detail"} <= set(event), event
        assert re.match(ISO_UTC, event["at"]), event


def iso_seconds(value: str) -> float:
    """An ISO 8601 UTC timestamp of the incident JSON as POSIX seconds."""
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------- audio checks


def recording_channels(path: Path) -> tuple[bytes, bytes, Any]:
    """(left, right, codec) G.711 code words of a stereo incident recording."""
    from callcenter112.media.recorder import read_wav

    audio = read_wav(path)
    assert audio.channels == 2, f"{path} has {audio.channels} channel(s)"
    return audio.channel(0), audio.channel(1), audio.codec


def linear(codec: Any, payload: bytes) -> bytes:
    """16-bit PCM of G.711 code words."""
    from callcenter112.media.g711 import decode

    return decode(codec, payload)


def rms_per_second(pcm: bytes) -> list[float]:
    """RMS of each second of 8 kHz 16-bit PCM."""
    import array
    import math

    samples = array.array("h", pcm)
    out = []
    for start in range(0, len(samples) - 7999, 8000):
        chunk = samples[start : start + 8000]
        out.append(math.sqrt(sum(s * s for s in chunk) / len(chunk)))
    return out


def envelope(pcm: bytes, frame: int = 160) -> list[float]:
    """Mean absolute amplitude of each 20 ms frame (a cheap speech fingerprint)."""
    import array

    samples = array.array("h", pcm)
    return [
        sum(abs(s) for s in samples[i : i + frame]) / frame
        for i in range(0, len(samples) - frame + 1, frame)
    ]


def best_correlation(signal: list[float], reference: list[float]) -> float:
    """Highest Pearson correlation of `reference` against any stretch of `signal`."""
    import math

    n = len(reference)
    if n < 2 or len(signal) < n:
        return 0.0
    mean_r = sum(reference) / n
    ref = [r - mean_r for r in reference]
    norm_r = math.sqrt(sum(r * r for r in ref))
    best = 0.0
    for lag in range(len(signal) - n + 1):
        window = signal[lag : lag + n]
        mean_w = sum(window) / n
        num = sum((w - mean_w) * r for w, r in zip(window, ref, strict=True))
        norm_w = math.sqrt(sum((w - mean_w) ** 2 for w in window))
        if norm_w > 0 and norm_r > 0:
            best = max(best, num / (norm_w * norm_r))
    return best


@functools.cache
def _shipped_prompts() -> Any:
    from callcenter112.media.prompts import PromptLibrary

    return PromptLibrary.load(SOUNDS)


def prompt_frames(name: str, language: str | None, codec: Any) -> bytes:
    """The exact code words the server sends for a shipped prompt (sounds/)."""
    return b"".join(_shipped_prompts().get(name, language or "id", codec).frames)


# --------------------------------------------------------------------------- operators


def sipp_operator_phone(
    server: Server,
    directory: Path,
    *,
    user: str,
    password: str,
    scenario: str = "operator_busy.xml",
    calls: int = 20,
) -> SippRun:
    """An operator's phone played by SIPp: a UAS running `scenario` for each
    offer, registered (digest) by a second, short SIPp run whose Contact names
    the UAS port. Returns the UAS; `kill()` it when done."""
    need("sipp")
    phone_port = free_port()
    phone = start_sipp_in(
        directory / "phone",
        [
            "sipp",
            "-sf",
            str(SCENARIOS / scenario),
            "-s",
            user,
            "-i",
            "127.0.0.1",
            "-p",
            str(phone_port),
            "-mp",
            str(free_range(4)[0]),
            "-m",
            str(calls),
            "-aa",  # qualify OPTIONS get 200
            "-nostdin",
            "-trace_err",
            "-trace_msg",
        ],
        name=f"{user}'s phone ({scenario})",
    )
    register = start_sipp_in(
        directory / "register",
        [
            "sipp",
            f"127.0.0.1:{server.sip_port}",
            "-sf",
            str(SCENARIOS / "operator_register.xml"),
            "-s",
            user,
            "-ap",
            password,
            "-key",
            "phone_port",
            str(phone_port),
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "-m",
            "1",
            "-timeout",
            "20s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ],
        name=f"{user} registers",
    )
    if register.wait(30) != 0:
        phone.kill()
        raise AssertionError(register.logs())
    return phone


def operator_states(server: Server, user: str) -> list[tuple[str, str | None]]:
    """The operator's state history (operator_states table), oldest first."""
    return [
        (str(state), reason)
        for state, reason in server.sql(
            "SELECT state, reason FROM operator_states WHERE operator = ? ORDER BY at, id", user
        )
    ]


def sip_trace(server: Server, direction: str, first_line: str, port: int) -> list[dict[str, Any]]:
    """SIP messages the server sent ("sip_out") or got ("sip_in") to/from a
    loopback port whose first line starts with `first_line`."""
    return [
        e
        for e in server.events(direction)
        if e.get("peer", "").endswith(f":{port}") and e.get("first_line", "").startswith(first_line)
    ]


def talking_to(server: Server, caller: str, operator: str) -> bool:
    """The caller's newest incident is active and bridged to `operator`."""
    rows = server.sql(
        "SELECT operator, operator_answered_at, status FROM incidents WHERE caller = ?"
        " ORDER BY arrived_at DESC LIMIT 1",
        caller,
    )
    return (
        bool(rows) and rows[0][0] == operator and rows[0][1] is not None and rows[0][2] == "active"
    )


# --------------------------------------------------------------------------- web console


class WebSession:
    """A signed-in browser-less session on the server's web console (httpx)."""

    def __init__(self, server: Server, user: str, password: str) -> None:
        import re

        import httpx

        self.client = httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}", timeout=15)
        page = self.client.get("/login")
        match = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
        assert match, page.text[:500]
        r = self.client.post(
            "/login", data={"login_csrf": match.group(1), "user": user, "password": password}
        )
        assert r.status_code in (200, 303), (r.status_code, r.text[:300])
        home = self.client.get("/console" if user.startswith("op") else "/wallboard")
        token = re.search(r'name="csrf-token" content="([^"]+)"', home.text)
        assert token, home.text[:500]
        self.csrf = token.group(1)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.post(path, json=body or {}, headers={"X-CSRF-Token": self.csrf})

    def get(self, path: str) -> Any:
        return self.client.get(path)

    def close(self) -> None:
        self.client.close()
