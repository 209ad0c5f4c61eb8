"""An SRTP operator leg on real loopback sockets (net/media.py + rtp/srtp.py).

The phone's packets are SRTP; the recording and the relay to the caller's
plain-RTP leg get the original G.711 bits, the phone gets SRTP back, and a
packet that fails authentication is dropped as a bad packet.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from pathlib import Path

from callcenter112.media.g711 import Codec
from callcenter112.media.recorder import read_wav
from callcenter112.net.media import MediaEngine
from callcenter112.net.rtp_transport import RtpSocketPool
from callcenter112.rtp.srtp import CryptoAttribute, SrtpContext
from harness import free_range

PCMA = 8
SUITE = "AES_CM_128_HMAC_SHA1_80"


def rtp(seq: int, payload: bytes, ssrc: int = 0x0FE4A70) -> bytes:
    return struct.pack("!BBHII", 0x80, PCMA, seq, 1000 + 160 * seq, ssrc) + payload


def udp_peer() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    return s


async def until(condition: object, what: str) -> None:
    assert callable(condition)
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def test_srtp_leg_records_and_relays_the_original_bits(tmp_path: Path) -> None:
    centre_key = CryptoAttribute.generate(tag=1, suite=SUITE, key_and_salt=os.urandom(30))
    phone_key = CryptoAttribute.generate(tag=1, suite=SUITE, key_and_salt=os.urandom(30))
    phone_srtp = SrtpContext(local=phone_key, remote=centre_key)
    phone, caller_phone = udp_peer(), udp_peer()
    pool = RtpSocketPool("127.0.0.1", free_range(2), preopen=2)
    await pool.start()
    engine = MediaEngine(pool, cname_host="127.0.0.1")
    try:
        operator = await engine.open_leg("operator")
        caller = await engine.open_leg("caller")
        for leg, peer in ((operator, phone), (caller, caller_phone)):
            leg.configure(
                codec=Codec.PCMA, payload_type=PCMA, dtmf_pt=None, remote=peer.getsockname()
            )
        operator.srtp = SrtpContext(local=centre_key, remote=phone_key)
        recorder = engine.open_recorder(tmp_path / "rec.wav", Codec.PCMA)
        operator.attach_recorder(recorder)
        operator.relay_with(caller)
        here = ("127.0.0.1", operator.local_port)
        payloads = [bytes((n * 7 + i) % 256 for i in range(160)) for n in range(20)]
        for seq, payload in enumerate(payloads):
            phone.sendto(phone_srtp.protect(rtp(seq, payload)), here)
        # A forged packet (one bit flipped) is dropped, not heard or recorded.
        forged = bytearray(phone_srtp.protect(rtp(20, bytes(160))))
        forged[30] ^= 1
        phone.sendto(bytes(forged), here)
        await until(lambda: operator.bad_packets == 1, "the forged packet refused")
        assert operator.incoming.packets == 20
        relayed = [caller_phone.recv(2048)[12:] for _ in payloads]
        assert relayed == payloads  # plain RTP to the caller, the original bits
        # Our own frames go to the phone protected.
        operator.send_frame(b"\xd5" * 160)
        wire = phone.recv(2048)
        assert wire[12:172] != b"\xd5" * 160
        assert phone_srtp.unprotect(wire)[12:] == b"\xd5" * 160
        info = await engine.close_recorder(recorder)
    finally:
        engine.stop()
        await pool.close()
        phone.close()
        caller_phone.close()
    audio = read_wav(info.path)
    heard = audio.channel(0) + audio.channel(1)
    assert b"".join(payloads) in heard  # the phone's audio, bit-exact, decrypted
