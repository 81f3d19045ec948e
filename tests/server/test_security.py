"""Handshake checks: bearer token (401), token in URL (400), origin (403), client cap (503)."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from websockets.exceptions import InvalidStatus

TOKEN = "s3cret-t0ken-value"


async def _status(tools, url: str, **kwargs) -> int:
    with pytest.raises(InvalidStatus) as info:
        await tools.Sub.connect(url, **kwargs)
    return info.value.response.status_code


async def test_bearer_token_is_required_and_never_logged(tools, caplog) -> None:
    caplog.set_level(logging.DEBUG)  # websockets logs request lines and headers at DEBUG
    async with tools.running_publisher(token=TOKEN) as (pub, bus):
        with pytest.raises(InvalidStatus) as info:
            await tools.Sub.connect(pub.url)
        assert info.value.response.status_code == 401
        assert info.value.response.headers["WWW-Authenticate"].startswith("Bearer")
        for header in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer "):
            assert await _status(tools, pub.url, additional_headers={"Authorization": header}) == 401
        two = [("Authorization", f"Bearer {TOKEN}"), ("Authorization", f"Bearer {TOKEN}")]
        assert await _status(tools, pub.url, additional_headers=two) == 401
        # a token in the URL is refused even with a valid header: URLs end up in logs
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert await _status(tools, pub.url + f"/?token={TOKEN}", additional_headers=good) == 400
        assert await _status(tools, pub.url + f"/?access_token={TOKEN}") == 400
        assert pub.clients == 0

        sub = await tools.Sub.connect(pub.url, additional_headers={"Authorization": f"bearer {TOKEN}"})
        assert (await sub.recv())["type"] == "hello"
        assert pub.clients == 1
        await sub.close()
    # the server's log (the test client's own websockets.client log shows what it sent)
    server_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("wavlm_live"))
    assert "Authorization: [redacted]" in server_log, "request headers were not logged at all"
    assert "token=[redacted]" not in server_log and "?[redacted]" in server_log
    assert TOKEN not in server_log and TOKEN[:8] not in server_log


async def test_origin_allow_list(tools) -> None:
    async with tools.running_publisher(allowed_origins=("http://localhost:3000",)) as (pub, bus):
        assert await _status(tools, pub.url, origin="http://evil.example") == 403
        assert await _status(tools, pub.url, origin="http://localhost:3000.evil.example") == 403
        ok = await tools.Sub.connect(pub.url, origin="http://localhost:3000")
        no_origin = await tools.Sub.connect(pub.url)
        assert (await ok.recv())["type"] == "hello"
        assert (await no_origin.recv())["type"] == "hello"
        await ok.close()
        await no_origin.close()


async def _until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_client_cap_gives_503_and_leaks_no_slots(tools) -> None:
    cap = 3
    async with tools.running_publisher(max_clients=cap, token=TOKEN) as (pub, bus):
        auth = {"Authorization": f"Bearer {TOKEN}"}
        # refused handshakes take no slot
        for _ in range(5):
            assert await _status(tools, pub.url) == 401
        subs = [await tools.Sub.connect(pub.url, additional_headers=auth) for _ in range(cap)]
        for sub in subs:
            await sub.recv()
        assert pub.clients == cap
        status = await _status(tools, pub.url, additional_headers=auth)
        assert status == 503

        # one leaves: its slot is free again
        await subs.pop().close()
        await _until(lambda: pub.clients == cap - 1)
        subs.append(await tools.Sub.connect(pub.url, additional_headers=auth))
        await subs[-1].recv()

        # abrupt disconnects and a handshake that fails after taking a slot (no key)
        for sub in subs:
            sub.ws.transport.abort()
        raw = await asyncio.to_thread(_broken_handshake, pub.port, TOKEN)
        assert raw.startswith(b"HTTP/1.1 400"), raw[:40]
        await _until(lambda: pub.clients == 0)

        # after all that, exactly `cap` clients fit again
        async def full_house():
            again = []
            try:
                for _ in range(cap):
                    again.append(await tools.Sub.connect(pub.url, additional_headers=auth))
                    await again[-1].recv()
                return again
            except InvalidStatus:
                for sub in again:
                    await sub.close()
                raise
        again = None
        for _ in range(50):  # slots of aborted connections are freed when their sockets close
            try:
                again = await full_house()
                break
            except InvalidStatus:
                await asyncio.sleep(0.05)
        assert again is not None, "slots leaked"
        assert await _status(tools, pub.url, additional_headers=auth) == 503
        for sub in again:
            await sub.close()


def _broken_handshake(port: int, token: str) -> bytes:
    """A websocket upgrade request without Sec-WebSocket-Key: passes the server's checks,
    takes a slot, then fails in the handshake."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Authorization: Bearer {token}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data
