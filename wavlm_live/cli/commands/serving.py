"""``run``, ``demo``, ``serve``, ``send``, ``tui`` and ``listen``: live analysis, the
server, and the clients of a server."""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from typing import Any

from wavlm_live.timegrid import SAMPLE_RATE

from ..app import (DEMO_TASK_FOLDERS, FatalWatch, Pipeline, ServerThread, _served, _url, demo_recording,
                   open_source, serve_failure, server_config)
from ..errors import EXIT_FAILURE, CliError, UsageError


def cmd_run(args: argparse.Namespace, demo: bool = False) -> int:
    """``run`` and ``demo``: capture, analyse, serve, and show the dashboard (or print
    captions when ``--no-tui`` or not on a terminal). Returns the exit status."""
    spec = args.input
    if demo and spec is None:
        spec = str(demo_recording())
    config = server_config(args)
    host, engine, source, jsonl = _served(args, demo, spec)
    assert engine is not None and source is not None
    watch = FatalWatch()
    engine.bus.subscribe(watch)
    host.start()
    server = ServerThread(engine.bus, engine.hello(), engine, config, sessions=host)
    try:
        url = _url(args.host, server.start())
    except BaseException:
        host.stop()
        raise
    local = _own_server_ssl(url, config)
    pipeline = Pipeline(engine, source, host)
    use_tui = not args.no_tui and sys.stdin.isatty() and sys.stdout.isatty()
    print(f"wavlm-live: {source.describe()} -> {url}" + (" (demo models)" if demo else ""), file=sys.stderr)
    try:
        pipeline.start()
        if use_tui:
            from wavlm_live.tui import run_dashboard  # noqa: PLC0415

            # the local dashboard may rename (r): it gets the control token if there is one
            status = run_dashboard(url, getattr(args, "control_token", None) or args.token, ssl=local)
        else:
            from wavlm_live.server import listen  # noqa: PLC0415

            status = asyncio.run(listen(url, token=args.token, ssl=local))
    except KeyboardInterrupt:
        status = 130
    finally:
        pipeline.stop(timeout=5.0)
        server.stop()
        host.stop()
        if jsonl is not None:
            jsonl.close()
    if status == 0 and watch.event is not None:
        raise CliError(f"the input stopped ({watch.event.code} error): {watch.event.message}")
    return status


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: headless server until SIGINT/SIGTERM (or the end of a file with
    ``--exit-at-end``): client audio sessions on the shared models, plus the server's own
    ``--input`` if given. On a signal every client is closed with 1001 and the exit status
    is 0. When the input stops with a fatal error the clients get ``error`` and ``end``
    (late joiners in their snapshot), one line goes to stderr and the exit status is 1:
    at once with ``--exit-at-end`` (or when the analysis itself died), else when the
    server is stopped (it keeps serving sessions meanwhile)."""
    import signal  # noqa: PLC0415

    if args.exit_at_end and args.input is None:
        raise UsageError("--exit-at-end needs --input (a file whose end ends the server)")
    if args.wait_client and args.input is None:
        raise UsageError("--wait-client needs --input (the input that waits for the first client)")
    config = server_config(args)
    host, engine, source, jsonl = _served(args, args.demo, args.input)
    watch = FatalWatch()
    if engine is not None:
        engine.bus.subscribe(watch)
    failure = None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    host.start()
    server = ServerThread(engine.bus if engine else None, (engine or host.template()).hello(), engine,
                          config, sessions=host)
    pipeline = Pipeline(engine, source, host) if engine is not None else None
    try:
        url = _url(args.host, server.start())
        what = source.describe() if source is not None else "client sessions"
        demo_note = " (demo models)" if host.demo else ""
        print(f"wavlm-live: serving {what} on {url}{demo_note}; browser page at "
              f"http{url[2:]}/", file=sys.stderr, flush=True)  # ws:// -> http://, wss:// -> https://
        if args.wait_client and pipeline is not None:
            while not stop.is_set() and not server.first_client.is_set():
                stop.wait(0.05)
        if not stop.is_set() and pipeline is not None:
            pipeline.start()
        while not stop.is_set():
            if failure is None and (failure := serve_failure(engine, watch, host)) is not None:
                print(f"wavlm-live: {failure}", file=sys.stderr, flush=True)
            if failure is not None and (args.exit_at_end or host.scheduler.error is not None):
                break  # the clients have the error and end: they get them before the close
            if args.exit_at_end and engine is not None and engine.finished.is_set():
                break  # stopping the server first sends what was published
            stop.wait(0.1)
    finally:
        server.stop()
        if pipeline is not None:
            pipeline.stop(timeout=5.0)
        host.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if jsonl is not None:
            jsonl.close()
    if failure is None and (failure := serve_failure(engine, watch, host)) is not None:
        print(f"wavlm-live: {failure}", file=sys.stderr, flush=True)  # stopped before the poll saw it
    return EXIT_FAILURE if failure is not None else 0


def cmd_tui(args: argparse.Namespace) -> int:
    """``tui URL``: the dashboard only."""
    from wavlm_live.tui import run_dashboard  # noqa: PLC0415

    return run_dashboard(args.url, args.token, session=args.session, ssl=_client_ssl(args))


def _own_server_ssl(url: str, config: Any) -> Any:
    """The ``ssl`` context of this process's own clients (the dashboard or ``listen`` of
    ``run``/``demo``) for its TLS server: trusting its ``--certfile`` whatever host names
    it holds, since they connect to this machine; ``None`` without TLS."""
    from wavlm_live.tls import client_context  # noqa: PLC0415

    return client_context(url, config.certfile, check_hostname=False) if config.certfile else None


def _client_ssl(args: argparse.Namespace) -> Any:
    """The ``ssl`` context for ``args.url`` and ``--cafile`` (``None`` for ``ws://``).

    Raises:
        UsageError: ``--cafile`` with a ``ws://`` URL, or a ``--cafile`` that cannot be read.
    """
    from wavlm_live.tls import client_context  # noqa: PLC0415

    try:
        return client_context(args.url, args.cafile)
    except ValueError as exc:
        raise UsageError(f"--cafile: {exc}") from None


def cmd_send(args: argparse.Namespace) -> int:
    """``send FILE|mic URL``: stream audio into a session of a running server and print
    its results (or show them in the dashboard with ``--tui``). Exit status 0 when the
    session ended normally, 1 when the server refused or ended it with an error."""
    tasks = None
    if args.tasks:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        unknown = [t for t in tasks if t not in DEMO_TASK_FOLDERS]
        if unknown or not tasks:
            raise UsageError(f"unknown task(s) {', '.join(unknown) or '(none)'}; "
                             f"choose from {','.join(DEMO_TASK_FOLDERS)}")
    options: dict[str, Any] = {"token": args.token, "tasks": tasks, "speaker_threshold": args.speaker_threshold,
                               "ssl": _client_ssl(args)}
    if args.input != "mic":
        from wavlm_live.audio import AudioError, FileSource  # noqa: PLC0415

        try:
            FileSource(args.input, speed=None).describe()  # a bad file fails here, in one line
        except AudioError as exc:
            raise CliError(str(exc)) from None
    if args.tui:
        return _send_with_dashboard(args, options)
    return asyncio.run(_send(args, options, print))


async def _send(args: argparse.Namespace, options: dict[str, Any], print_fn: Any,
                on_started: Any = None, stop: threading.Event | None = None) -> int:
    """Stream ``args.input`` and print the results with the ``listen`` printer."""
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI  # noqa: PLC0415

    from wavlm_live.client import SessionError, open_session, send_file  # noqa: PLC0415
    from wavlm_live.server.client import Printer  # noqa: PLC0415
    from wavlm_live.tls import describe_tls_error  # noqa: PLC0415

    printer = Printer(print_fn, partials=print_fn is print and sys.stdout.isatty())
    failed = False
    stats: dict[str, Any] = {}
    try:
        if args.input == "mic":
            messages = _send_microphone(args, options, open_session, stop)
        else:
            messages = send_file(args.url, args.input, speed=args.speed, live=args.live, **options)
        async for msg in messages:
            if msg["type"] == "started":
                printer.line(f"session {msg['session']} started ({', '.join(msg['tasks'])}; "
                             f"window {msg['window']:g} s, hop {msg['hop']:g} s)")
                if on_started is not None:
                    on_started(msg["session"])
                continue
            failed |= msg.get("type") == "error" and bool(msg.get("fatal"))
            if msg["type"] == "stats":
                stats = msg
            printer.handle(msg)
        if stats:
            printer.line(f"{stats['windows_analysed']} windows analysed, {stats['windows_skipped']} skipped "
                         f"(RTF {stats['rtf']})")
    except SessionError as exc:
        print_fn(f"wavlm-live: the server refused the session: {exc}")
        return 1
    except InvalidStatus as exc:
        print_fn(f"wavlm-live: cannot connect to {args.url}: HTTP {exc.response.status_code}")
        return 1
    except InvalidURI:
        print_fn(f"wavlm-live: not a websocket URL: {args.url!r} (expected ws://host:port or wss://host:port)")
        return 2
    except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
        if (tls := describe_tls_error(exc, args.url)) is not None:
            print_fn(f"wavlm-live: cannot connect to {args.url}: {tls}")
            return 1
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        print_fn(f"wavlm-live: cannot stream to {args.url}: {detail}")
        return 1
    return 1 if failed else 0


async def _send_microphone(args: argparse.Namespace, options: dict[str, Any], open_session: Any,
                           stop: threading.Event | None) -> Any:
    """Messages of a live session fed from the local microphone until Ctrl-C (or ``stop``)."""
    source = open_source("mic", args.input_device, 1.0, False)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=200)

    def sink(block: Any) -> None:  # audio thread: hand over, never block
        def put() -> None:
            if not queue.full():
                queue.put_nowait(block)
        loop.call_soon_threadsafe(put)

    async with open_session(args.url, sample_rate=SAMPLE_RATE, channels=1, format="f32le", live=True, **options) as session:
        yield session.started
        source.start(sink)

        async def pump() -> None:
            try:
                while not (stop is not None and stop.is_set()) and not source.finished.is_set():
                    try:
                        block = await asyncio.wait_for(queue.get(), 0.2)
                    except TimeoutError:
                        continue
                    await session.send(block)
            finally:
                source.stop()
                await session.stop()

        task = asyncio.create_task(pump())
        try:
            async for msg in session:
                yield msg
        finally:
            task.cancel()
            source.stop()


def _send_with_dashboard(args: argparse.Namespace, options: dict[str, Any]) -> int:
    """``send --tui``: the sender in a thread, the dashboard watching its session."""
    from wavlm_live.tui import run_dashboard  # noqa: PLC0415

    started = threading.Event()
    stop = threading.Event()
    result: dict[str, Any] = {}
    lines: list[str] = []

    def on_started(session_id: str) -> None:
        result["session"] = session_id
        started.set()

    def worker() -> None:
        result["status"] = asyncio.run(_send(args, options, lambda *a, **k: lines.append(" ".join(map(str, a))),
                                             on_started, stop))
        started.set()

    thread = threading.Thread(target=worker, name="wavlm-live-send", daemon=True)
    thread.start()
    started.wait()
    if "session" not in result:
        thread.join(5)
        for line in lines:
            print(line, file=sys.stderr)
        return int(result.get("status", 1))
    status = run_dashboard(args.url, args.token, session=result["session"], ssl=options["ssl"])
    stop.set()
    thread.join(10)
    return status or int(result.get("status", 0))


def cmd_listen(args: argparse.Namespace) -> int:
    """``listen URL``: print captions and speakers."""
    from wavlm_live.server import listen  # noqa: PLC0415

    return asyncio.run(listen(args.url, token=args.token, ssl=_client_ssl(args)))
