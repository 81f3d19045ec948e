"""TLS for the websocket server and its clients (``wss://``, the page over ``https://``):
the ``ssl`` contexts and a one-line reason for a failed TLS handshake. Standard library
only: every ``connect`` of the package takes its ``ssl`` argument from
:func:`client_context`, the server its own from :func:`server_context`."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

__all__ = ["client_context", "describe_tls_error", "server_context"]


def _encrypted_key() -> bytes:
    raise ValueError("the private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)")


def server_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """A server context serving the PEM certificate (chain) ``certfile`` with the private
    key ``keyfile`` (``None``: the key is in ``certfile`` too).

    Raises:
        ValueError: a file cannot be read, is not a PEM certificate/key, the key is
            encrypted, or the key does not match the certificate (one line naming the files).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile, password=_encrypted_key)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"the private key in {keyfile or certfile} does not match the certificate in {certfile}") from None
        files = f"{certfile} and {keyfile}" if keyfile else certfile
        raise ValueError(f"cannot load a PEM certificate and private key from {files} ({exc.reason or exc})") from None
    except OSError as exc:
        raise ValueError(f"cannot read {exc.filename or certfile}: {exc.strerror or exc}") from None
    return context


def client_context(url: str, cafile: str | None = None, *, check_hostname: bool = True) -> ssl.SSLContext | None:
    """The ``ssl`` argument for connecting to ``url``: ``None`` for ``ws://``; for
    ``wss://`` a context that verifies the server's certificate against ``cafile`` (PEM:
    the CA that signed it, or the server's certificate itself) or, without ``cafile``,
    against the system's trust store. ``check_hostname=False`` accepts a certificate that
    does not name the URL's host (for a process's own server on loopback only).

    Raises:
        ValueError: ``cafile`` given for a URL that is not ``wss://``, or it cannot be
            read or holds no PEM certificate.
    """
    if not isinstance(url, str) or urlsplit(url).scheme.lower() != "wss":
        if cafile is not None:
            raise ValueError(f"a CA file is for wss:// URLs, got {url!r}")
        return None
    try:
        context = ssl.create_default_context(cafile=cafile)
    except ssl.SSLError as exc:
        raise ValueError(f"no PEM certificate in {cafile} ({exc.reason or exc})") from None
    except OSError as exc:
        raise ValueError(f"cannot read {cafile}: {exc.strerror or exc}") from None
    if cafile is not None:
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the server's own certificate may be the anchor
    context.check_hostname = check_hostname
    return context


def describe_tls_error(exc: BaseException, url: str | None = None) -> str | None:
    """One line saying why a TLS handshake failed, ``None`` when ``exc`` is no TLS
    failure: an untrusted certificate or one for another host (with what to do); for a
    ``wss://`` ``url``, a server that speaks no TLS (it resets the connection); for a
    ``ws://`` ``url``, a server that answered the HTTP request with no HTTP (websockets'
    ``InvalidMessage``: a TLS server reading plain text does that)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = (exc.verify_message or exc.reason or str(exc)).rstrip(".")
        return (f"TLS certificate refused: {reason} "
                "(give the server's certificate or CA with --cafile, and a host it names)")
    if (isinstance(url, str) and urlsplit(url).scheme.lower() == "ws"
            and type(exc).__name__ == "InvalidMessage"):  # websockets.exceptions, not imported by the core
        return ("the server gave no HTTP answer; if it serves TLS (--certfile), connect with wss:// "
                "(and --cafile for its certificate)")
    plain = isinstance(url, str) and urlsplit(url).scheme.lower() == "wss" and isinstance(exc, ConnectionResetError)
    if isinstance(exc, ssl.SSLError) or plain:
        reason = getattr(exc, "reason", None) or "the server reset the connection"
        return f"TLS handshake failed ({reason}); is the server serving wss://, not ws://?"
    return None
