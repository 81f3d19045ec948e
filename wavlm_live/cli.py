"""The ``wavlm-live`` command line: argument parsing and the one place that reads the
environment. Heavy modules (torch, Textual, websockets) are imported by the subcommand
that needs them."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from wavlm_live import __version__

DEFAULT_MODELS = {
    "captions": "patrickvonplaten/wavlm-libri-clean-100h-base-plus",
    "diarization": "microsoft/wavlm-base-plus-sd",
    "embeddings": "microsoft/wavlm-base-plus-sv",
}
"""Public checkpoints used when no model option is given (Hugging Face Hub ids)."""

TOKEN_ENV = "WAVLM_LIVE_TOKEN"
"""Environment variable holding the websocket bearer token (so it stays out of ``ps``)."""

EPILOG = """\
examples:
  wavlm-live demo                               # bundled recording and demo models, no network
  wavlm-live run --input mic                    # live from the default microphone
  wavlm-live run --input talk.flac --speed 2    # replay a file at twice real time
  wavlm-live serve --input mic --port 8765      # headless websocket publisher
  wavlm-live tui ws://127.0.0.1:8765            # dashboard for a running server
  wavlm-live listen ws://127.0.0.1:8765         # print captions with speakers
  wavlm-live transcribe talk.wav -o out/talk    # offline: JSONL, SRT, WebVTT, RTTM
  wavlm-live devices                            # list microphones
"""


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be within 0..65535, got {value}")
    return value


def _add_model_options(p: argparse.ArgumentParser, demo: bool = False) -> None:
    g = p.add_argument_group("models")
    if not demo:
        g.add_argument("--ctc-model", metavar="ID|DIR", default=DEFAULT_MODELS["captions"],
                       help="captions checkpoint: Hub id or local folder (default: %(default)s)")
        g.add_argument("--diarization-model", metavar="ID|DIR", default=DEFAULT_MODELS["diarization"],
                       help="diarization checkpoint (default: %(default)s)")
        g.add_argument("--embedding-model", metavar="ID|DIR", default=DEFAULT_MODELS["embeddings"],
                       help="speaker-embedding checkpoint (default: %(default)s)")
    g.add_argument("--lm", metavar="DIR|FILE", default=None,
                   help="word n-gram language model for the captions' beam search (KenLM): an .arpa(.gz) or KenLM "
                        "binary .bin file, or a Hub language_model/ folder (attrs.json, unigrams.txt, the model) "
                        "(default: the captions checkpoint's language_model/ folder, if any)")
    g.add_argument("--no-lm", action="store_true", help="greedy CTC decoding even when a language model is available")
    g.add_argument("--no-captions", action="store_true", help="disable CTC captions")
    g.add_argument("--no-diarization", action="store_true", help="disable diarization")
    g.add_argument("--no-embeddings", action="store_true", help="disable speaker embeddings")
    g.add_argument("--compute", choices=["auto", "cpu", "cuda"], default="auto",
                   help="device to run the models on (default: %(default)s: CUDA when available)")
    g.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="model precision (default: %(default)s: bfloat16 where the hardware supports it)")
    g.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for the models (default: torch's choice)")
    a = p.add_argument_group("analysis")
    a.add_argument("--window", type=_positive_float, default=None, metavar="SEC", help="analysis window in seconds (default: 4)")
    a.add_argument("--hop", type=_positive_float, default=None, metavar="SEC", help="seconds between results (default: 1)")
    a.add_argument("--speaker-threshold", type=float, default=None, metavar="COS",
                   help="cosine similarity for an x-vector to join a known speaker (default: the model's, 0.86 for the public -sv model)")
    a.add_argument("--max-speakers", type=_positive_int, default=None, metavar="N",
                   help="never create more than N speakers; a voice that matches nobody joins the closest (default: no limit)")
    a.add_argument("--enroll", action="append", default=[], metavar="NAME=FILE",
                   help="name a speaker from a reference recording (repeatable)")


def _add_input_options(p: argparse.ArgumentParser, demo: bool = False) -> None:
    g = p.add_argument_group("input")
    if not demo:
        g.add_argument("--input", default="mic", metavar="mic|PATH", help="'mic' or an audio file (default: %(default)s)")
        g.add_argument("--input-device", default=None, metavar="INDEX|NAME", help="microphone by index or name substring (see 'wavlm-live devices')")
    g.add_argument("--speed", type=_positive_float, default=1.0, help="file replay speed, 1 = real time (default: %(default)s)")
    g.add_argument("--loop", action="store_true", help="replay the file forever")


def _add_server_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    g.add_argument("--port", type=_port, default=8765, help="websocket port, 0 = any free port (default: %(default)s)")
    g.add_argument("--token", default=None, help=f"require this bearer token from clients (or set {TOKEN_ENV})")
    g.add_argument("--allow-origin", action="append", default=None, metavar="ORIGIN", help="allow browser pages from this Origin (repeatable); by default no browser page may connect")
    g.add_argument("--max-clients", type=int, default=32, help="concurrent clients (default: %(default)s)")
    g.add_argument("--jsonl", default=None, metavar="PATH", help="also append every event to this JSON Lines file")


def build_parser() -> argparse.ArgumentParser:
    """The ``wavlm-live`` argument parser (subcommands run, serve, demo, tui, listen,
    transcribe, eval, devices, bench)."""
    parser = argparse.ArgumentParser(
        prog="wavlm-live",
        description="Streaming WavLM speech analysis: live captions, who spoke when, and speaker embeddings, "
        "served over websockets to a terminal dashboard.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wavlm-live {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="capture, analyse, serve and open the dashboard (default)",
                       description="Capture audio, analyse it, publish results over websockets and show the dashboard.")
    _add_input_options(p)
    _add_model_options(p)
    _add_server_options(p)
    p.add_argument("--no-tui", action="store_true", help="print captions instead of opening the dashboard")

    p = sub.add_parser("serve", help="headless websocket publisher",
                       description="Capture and analyse audio and publish the results over websockets until SIGINT/SIGTERM.")
    _add_input_options(p)
    _add_model_options(p)
    _add_server_options(p)
    p.add_argument("--exit-at-end", action="store_true", help="exit when a file input ends (default: keep serving)")
    p.add_argument("--wait-client", action="store_true", help="start the input only when the first client has connected")

    p = sub.add_parser("demo", help="run the app on the bundled recording with the bundled demo models (no network)",
                       description="Run the whole app on a bundled synthetic conversation with the bundled demo checkpoints. "
                       "The demo models are small and only understand synthetic (espeak-ng) speech.")
    _add_input_options(p, demo=True)
    p.add_argument("--input", default=None, metavar="mic|PATH", help="another input instead of the bundled recording")
    p.add_argument("--input-device", default=None, metavar="INDEX|NAME", help="microphone by index or name substring")
    _add_model_options(p, demo=True)
    _add_server_options(p)
    p.add_argument("--no-tui", action="store_true", help="print captions instead of opening the dashboard")

    p = sub.add_parser("tui", help="dashboard for a running server", description="Open the dashboard for a wavlm-live websocket URL.")
    p.add_argument("url", nargs="?", default="ws://127.0.0.1:8765", help="server URL (default: %(default)s)")
    p.add_argument("--token", default=None, help=f"bearer token (or set {TOKEN_ENV})")

    p = sub.add_parser("listen", help="print captions and speakers from a running server",
                       description="Subscribe to a wavlm-live server and print final captions with speaker labels.")
    p.add_argument("url", nargs="?", default="ws://127.0.0.1:8765", help="server URL (default: %(default)s)")
    p.add_argument("--token", default=None, help=f"bearer token (or set {TOKEN_ENV})")

    p = sub.add_parser("transcribe", help="analyse a file offline: JSONL, SRT, WebVTT, RTTM",
                       description="Run the streaming pipeline over a whole file as fast as the machine allows and write the results.")
    p.add_argument("file", help="audio file (anything soundfile reads: WAV, FLAC, OGG...)")
    p.add_argument("-o", "--output", default=None, metavar="STEM", help="output path without extension (default: next to the input)")
    p.add_argument("--formats", default="jsonl,srt,vtt,rttm,txt", help="comma-separated subset of jsonl,srt,vtt,rttm,txt (default: %(default)s)")
    p.add_argument("--demo", action="store_true", help="use the bundled demo models")
    _add_model_options(p)

    p = sub.add_parser("eval", help="measure CER/WER, DER and EER through the streaming pipeline",
                       description="Run the streaming pipeline over a folder of clips with references "
                       "(NAME.txt transcripts, NAME.rttm diarization, trials.txt verification pairs) and print the metrics.")
    p.add_argument("folder", help="evaluation folder (see docs/demo-models.md for the layout)")
    p.add_argument("--demo", action="store_true", help="use the bundled demo models")
    p.add_argument("--collar", type=float, default=0.25, help="DER collar in seconds (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_model_options(p)

    p = sub.add_parser("devices", help="list audio input devices", description="List the audio input devices PortAudio sees.")

    p = sub.add_parser("bench", help="measure the pipeline's real-time factor on this machine",
                       description="Run the offline pipeline over an audio file and print the real-time factor per task.")
    p.add_argument("file", nargs="?", default=None, help="audio file (default: the bundled demo recording)")
    p.add_argument("--demo", action="store_true", help="use the bundled demo models")
    _add_model_options(p)
    return parser


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wavlm-live`` console script; returns the exit status
    (0 success, 1 runtime failure, 2 usage or input error, 130 interrupted)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version", "-v", "-vv", "--verbose"):
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run", *argv])
    _configure_logging(args.verbose)
    if getattr(args, "token", None) is None and hasattr(args, "token"):
        args.token = os.environ.get(TOKEN_ENV) or None
    from wavlm_live import app  # noqa: PLC0415 - keeps --help fast

    try:
        return app.dispatch(args)
    except CliError as exc:
        print(f"wavlm-live: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wavlm-live: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        logging.getLogger("wavlm_live").debug("unexpected error", exc_info=True)
        hint = "" if args.verbose >= 2 else " (run with -vv for the traceback)"
        print(f"wavlm-live: unexpected error: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
