"""TLS: a real server with a certificate generated here (openssl), real wss:// clients
with and without the certificate as their CA, the page over https://, an audio session
over wss://, and the command line's one-line errors for bad certificate options."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from wavlm_live.cli import app, build_parser
from wavlm_live.cli.main import main
from wavlm_live.client import send_file
from wavlm_live.engine.sessions import SessionHost
from wavlm_live.server import Publisher, ServerConfig, listen
from wavlm_live.tls import client_context, server_context

DATA = Path(__file__).resolve().parents[1] / "data"
CLIP = DATA / "sense_and_sensibility_01_austen_64kb-0890.wav"  # 5.3 s
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _self_signed(folder: Path, name: str, subject_alt_name: str | None) -> tuple[Path, Path]:
    cert, key = folder / f"{name}-cert.pem", folder / f"{name}-key.pem"
    extra = ["-addext", f"subjectAltName={subject_alt_name}"] if subject_alt_name else []
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
                    *extra, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """``local``: a self-signed certificate for localhost and 127.0.0.1; ``other``: one
    for another host name only."""
    folder = tmp_path_factory.mktemp("tls")
    return {"local": _self_signed(folder, "localhost", "DNS:localhost,IP:127.0.0.1"),
            "other": _self_signed(folder, "elsewhere.example", "DNS:elsewhere.example")}


def tls_config(certs, which: str = "local", **config) -> dict:
    cert, key = certs[which]
    return {"certfile": str(cert), "keyfile": str(key), **config}


async def test_a_wss_client_with_the_certificate_as_cafile_gets_hello(tools, certs) -> None:
    cafile = str(certs["local"][0])
    async with tools.running_publisher(**tls_config(certs)) as (pub, _bus):
        assert pub.url == f"wss://127.0.0.1:{pub.port}"
        for url in (pub.url, f"wss://localhost:{pub.port}"):
            sub = await tools.Sub.connect(url, ssl=client_context(url, cafile))
            hello = await sub.recv()
            assert hello["type"] == "hello"
            await sub.close()


async def test_a_key_inside_the_certfile_serves_too(tools, certs, tmp_path) -> None:
    cert, key = certs["local"]
    both = tmp_path / "both.pem"
    both.write_bytes(key.read_bytes() + cert.read_bytes())
    async with tools.running_publisher(certfile=str(both)) as (pub, _bus):
        sub = await tools.Sub.connect(pub.url, ssl=client_context(pub.url, str(both)))
        assert (await sub.recv())["type"] == "hello"
        await sub.close()


async def test_untrusted_or_misnamed_certificates_are_refused_in_one_line(tools, certs) -> None:
    async with tools.running_publisher(**tls_config(certs)) as (pub, _bus):
        lines: list[str] = []
        assert await listen(pub.url, print_fn=lines.append) == 1  # the system store does not know it
        assert len(lines) == 1 and "TLS certificate refused" in lines[0] and "--cafile" in lines[0], lines
        assert "self-signed" in lines[0]
        lines.clear()
        plain = f"ws://127.0.0.1:{pub.port}"
        assert await listen(plain, print_fn=lines.append) == 1  # plain websocket to a TLS server
        assert len(lines) == 1 and lines[0].startswith(f"cannot connect to {plain}"), lines
        assert "connect with wss://" in lines[0], lines  # says what to do
    async with tools.running_publisher(**tls_config(certs, "other")) as (pub, _bus):
        lines = []
        assert await listen(pub.url, cafile=str(certs["other"][0]), print_fn=lines.append) == 1
        assert len(lines) == 1 and "TLS certificate refused" in lines[0] and "127.0.0.1" in lines[0], lines


async def test_a_wss_client_to_a_plain_server_is_told_so(tools, certs) -> None:
    async with tools.running_publisher() as (pub, _bus):
        url = f"wss://127.0.0.1:{pub.port}"
        lines: list[str] = []
        assert await listen(url, cafile=str(certs["local"][0]), print_fn=lines.append) == 1
        assert len(lines) == 1 and "TLS handshake failed" in lines[0], lines


async def test_the_page_is_served_over_https_and_connects_with_wss(tools, certs) -> None:
    context = ssl.create_default_context(cafile=str(certs["local"][0]))

    def get(url: str) -> tuple[int, str]:
        with urllib.request.urlopen(url, context=context, timeout=10) as r:  # noqa: S310 - https on loopback
            return r.status, r.read().decode()

    async with tools.running_publisher(**tls_config(certs)) as (pub, _bus):
        base = f"https://127.0.0.1:{pub.port}"
        status, page = await asyncio.to_thread(get, base + "/")
        assert status == 200 and "<html" in page.lower()
        status, script = await asyncio.to_thread(get, base + "/app.js")
        assert status == 200 and '(location.protocol === "https:" ? "wss://" : "ws://")' in script
        status, health = await asyncio.to_thread(get, base + "/healthz")
        assert status == 200 and '"ready"' in health


async def test_an_audio_session_over_wss_gets_captions_and_end(certs) -> None:
    args = build_parser().parse_args(["serve", "--demo", "--dtype", "float32"])
    models = app.load_models(args, demo=True)
    host = SessionHost(app.engine_config(args, models.demo, realtime=True), captions=models.captions,
                       diarization=models.diarization, embeddings=models.embeddings, demo=True)
    host.start()
    try:
        config = ServerConfig(port=0, **tls_config(certs))
        async with Publisher(None, host.template().hello(), None, config, sessions=host) as pub:
            got = [msg async for msg in send_file(pub.url, CLIP, speed=None, cafile=str(certs["local"][0]))]
    finally:
        host.stop()
    assert got[0]["type"] == "started" and got[-1]["type"] == "end"
    assert any(m["type"] == "caption" and m["final"] and m["text"] for m in got)


def test_server_config_checks_the_files(certs, tmp_path) -> None:
    cert, key = certs["local"]
    assert ServerConfig(certfile=str(cert), keyfile=str(key)).scheme == "wss"
    assert ServerConfig().scheme == "ws"
    with pytest.raises(ValueError, match="keyfile needs a certfile"):
        ServerConfig(keyfile=str(key))
    with pytest.raises(ValueError, match="certfile .*missing.pem is not a readable file"):
        ServerConfig(certfile=str(tmp_path / "missing.pem"))
    with pytest.raises(TypeError):
        ServerConfig(certfile=cert)  # type: ignore[arg-type]


def test_server_context_says_what_is_wrong_in_one_line(certs, tmp_path) -> None:
    cert, key = certs["local"]
    other_key = certs["other"][1]
    with pytest.raises(ValueError, match="does not match the certificate") as info:
        server_context(str(cert), str(other_key))
    assert "\n" not in str(info.value)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="cannot load a PEM certificate"):
        server_context(str(garbage), str(key))
    with pytest.raises(ValueError, match="cannot read"):
        server_context(str(tmp_path / "missing.pem"))
    assert server_context(str(cert), str(key)).verify_mode == ssl.CERT_NONE


def test_client_context_follows_the_scheme(certs, tmp_path) -> None:
    cafile = str(certs["local"][0])
    assert client_context("ws://127.0.0.1:8765") is None
    default = client_context("wss://example.org:8765")
    assert default is not None and default.check_hostname and default.verify_mode == ssl.CERT_REQUIRED
    pinned = client_context("wss://127.0.0.1:8765", cafile)
    assert pinned is not None and pinned.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN
    with pytest.raises(ValueError, match="wss://"):
        client_context("ws://127.0.0.1:8765", cafile)
    with pytest.raises(ValueError, match="cannot read"):
        client_context("wss://127.0.0.1:8765", str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="no PEM certificate"):
        client_context("wss://127.0.0.1:8765", str(certs["local"][1]))  # a key, no certificate


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_cli_certificate_options_fail_in_one_line(certs, tmp_path, capsys) -> None:
    cert, key = certs["local"]
    assert main(["serve", "--demo", "--port", "0", "--certfile", str(tmp_path / "missing.pem")]) == 2
    assert "missing.pem is not a readable file" in _one_error_line(capsys)
    assert main(["serve", "--demo", "--port", "0", "--keyfile", str(key)]) == 2
    assert "keyfile needs a certfile" in _one_error_line(capsys)
    assert main(["serve", "--demo", "--port", "0", "--certfile", str(cert), "--keyfile", str(certs["other"][1])]) == 1
    assert "cannot serve TLS" in (line := _one_error_line(capsys)) and "does not match" in line
    assert main(["demo", "--no-tui", "--port", "0", "--certfile", str(key)]) == 1
    assert "cannot serve TLS" in _one_error_line(capsys)


def test_cli_cafile_needs_a_wss_url(certs, capsys) -> None:
    cafile = str(certs["local"][0])
    for argv in (["send", str(CLIP), "ws://127.0.0.1:1", "--cafile", cafile],
                 ["listen", "ws://127.0.0.1:1", "--cafile", cafile],
                 ["tui", "ws://127.0.0.1:1", "--cafile", cafile]):
        assert main(argv) == 2
        assert "--cafile" in (line := _one_error_line(capsys)) and "wss://" in line


@pytest.mark.slow
def test_serve_over_tls_and_send_a_file_with_the_cafile(certs) -> None:
    """The real commands: ``serve --certfile --keyfile`` and ``send FILE wss://... --cafile``;
    ``send`` without the CA fails in one line."""
    cert, key = certs["local"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cli = [sys.executable, "-m", "wavlm_live"]
    server = subprocess.Popen([*cli, "serve", "--demo", "--port", "0", "--certfile", str(cert), "--keyfile", str(key)],
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while "serving" not in line:
            assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
            line = server.stderr.readline()
        url = line.split(" on ", 1)[1].split()[0].rstrip(";")
        assert url.startswith("wss://127.0.0.1:") and f"https://127.0.0.1:{url.rsplit(':', 1)[1]}/" in line
        done = subprocess.run([*cli, "send", str(CLIP), url, "--speed", "20", "--cafile", str(cert)],
                              capture_output=True, text=True, env=env, timeout=180, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "session" in done.stdout and "stream ended" in done.stdout
        refused = subprocess.run([*cli, "send", str(CLIP), url], capture_output=True, text=True, env=env, timeout=60,
                                 check=False)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr + refused.stdout
        out = (refused.stdout + refused.stderr).strip().splitlines()
        assert len(out) == 1 and "TLS certificate refused" in out[0], out
    finally:
        server.terminate()
        server.wait(30)
