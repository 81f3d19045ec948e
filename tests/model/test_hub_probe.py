"""The quick network check before the first Hub download: a real listening socket is
reachable, a closed port is not (loopback only: no traffic leaves this machine)."""

import socket

from wavlm_live.model.checkpoint import hub_unreachable


def test_a_listening_endpoint_is_reachable_and_a_closed_one_is_not():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert hub_unreachable(f"http://127.0.0.1:{port}") is None
    reason = hub_unreachable(f"http://127.0.0.1:{port}")  # closed now (cached per endpoint string)
    assert reason is None  # the cache keeps the first answer for the process
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    reason = hub_unreachable(f"https://127.0.0.1:{closed}/")
    assert reason is not None and reason.startswith(f"cannot connect to 127.0.0.1:{closed}")


def test_a_malformed_endpoint_is_a_reason_too():
    assert hub_unreachable("not a url") == "'not a url' is not a URL"
