"""Issue 16's tables on both engines: configuration versions and SIP captures."""

from __future__ import annotations

from typing import Any

import pytest

from callcenter112.config_source import sha256_text
from callcenter112.sip.capture import CapturedMessage, mask_secrets, read_pcap, to_pcap

pytest_plugins = ("pg_support", "store_engines")


async def test_config_versions_number_on_and_read_back(store: Any) -> None:
    assert await store.list_config_versions() == []
    first = await store.add_config_version(
        text="a = 1\n", origin="file", file_sha256=sha256_text("a = 1\n"), actor="system", at=1.0
    )
    second = await store.add_config_version(
        text="a = 2\n", origin="web", file_sha256=first.file_sha256, actor="tel1", at=2.0
    )
    assert (first.version, second.version) == (1, 2)
    newest = await store.list_config_versions()
    assert [v.version for v in newest] == [2, 1]
    assert newest[0] == second
    assert await store.get_config_version(1) == first
    assert await store.get_config_version(9) is None


async def test_config_version_origin_is_checked(store: Any, stores: Any) -> None:
    raw = stores.raw()
    with pytest.raises(raw.integrity_error):
        raw.execute(
            "INSERT INTO config_versions (version, text, origin, file_sha256, actor, at)"
            " VALUES (7, '', 'mail', '', 'x', 0)"
        )


async def test_sip_messages_keep_order_masked_and_make_the_same_pcap(store: Any) -> None:
    invite = (
        b'INVITE sip:112@10.0.0.1 SIP/2.0\r\nAuthorization: Digest username="op1",'
        b' response="0123456789abcdef"\r\nContent-Length: 0\r\n\r\n'
    )
    messages = [
        CapturedMessage(
            at=100.0 + i,
            direction="in" if i % 2 == 0 else "out",
            local=("127.0.0.1", 5060),
            remote=("::1", 40000 + i) if i == 2 else ("127.0.0.2", 40000 + i),
            transport="udp",
            leg=leg,
            data=mask_secrets(invite if i == 0 else f"SIP/2.0 200 OK\r\nX: {i}\r\n\r\n".encode()),
        )
        for i, leg in enumerate(("caller", "caller", "operator:op1", "agency:damkar"))
    ]
    await store.add_sip_messages("20261207-0001", messages[:2])
    await store.add_sip_messages("20261207-0001", messages[2:])
    await store.add_sip_messages("20261207-0002", messages[:1])
    back = await store.sip_messages("20261207-0001")
    assert back == messages
    assert b"0123456789abcdef" not in back[0].data
    assert await store.sip_messages("20261207-0009") == []
    assert len(read_pcap(to_pcap(back))) == len(messages)
