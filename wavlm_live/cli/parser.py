"""The ``wavlm-live`` argument parser: every subcommand and option, validated as parsed."""

from __future__ import annotations

import argparse

from wavlm_live.version import __version__

from .defaults import CONTROL_TOKEN_ENV, DEFAULT_MODELS, DEFAULT_TASK_WINDOWS, TOKEN_ENV

EPILOG = """\
examples:
  wavlm-live demo                               # bundled recording and demo models, no network
  wavlm-live run --input mic                    # live from the default microphone
  wavlm-live run --input talk.flac --speed 2    # replay a file at twice real time
  wavlm-live serve --input mic --port 8765      # headless websocket publisher
  wavlm-live serve --demo --host 0.0.0.0 --certfile cert.pem --keyfile key.pem   # wss:// and https://
  wavlm-live tui ws://127.0.0.1:8765            # dashboard for a running server
  wavlm-live listen ws://127.0.0.1:8765         # print captions with speakers
  wavlm-live transcribe talk.m4a -o out/talk    # offline: JSONL, SRT, WebVTT, RTTM, TXT
  wavlm-live convert events.jsonl -o out/talk   # subtitles from a --jsonl log
  wavlm-live devices                            # list microphones

exit status: 0 success, 1 failure (unreadable input, model, existing or unwritable
results, connection, no device), 2 usage error, 130 interrupted, 141 output pipe closed
"""


def _bounded(low: float, high: float, what: str = "a number"):
    """An argparse type: a finite number within ``[low, high]`` (so ``inf``, ``nan`` and
    absurd values are usage errors, not crashes later)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not low <= value <= high:  # False for NaN
            raise argparse.ArgumentTypeError(f"expected {what} within [{low:g}, {high:g}], got {text!r}")
        return value

    return parse


def _int_within(low: int, high: int):
    """An argparse type: a whole number within ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number within [{low}, {high}], got {text!r}")
        return value

    return parse


SPEED_RANGE = (0.01, 1000.0)
"""Accepted ``--speed`` values (times real time)."""
WINDOW_RANGE = (0.1, 60.0)
"""Accepted ``--window`` values in seconds."""
HOP_RANGE = (0.02, 60.0)
"""Accepted ``--hop`` values in seconds."""
MAX_THREADS = 1024
"""Largest ``--threads``."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _seconds(low: float, high: float):
    """An argparse type: seconds within ``[low, high]`` (:func:`_bounded`)."""
    return _bounded(low, high, "seconds")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be within 0..65535, got {value}")
    return value


def _add_model_options(p: argparse.ArgumentParser, demo: bool = False, bench: bool = False) -> None:
    g = p.add_argument_group("models")
    if not demo:
        def default(task: str) -> str | None:
            return None if bench else DEFAULT_MODELS[task]

        note = ("the bundled demo model when no model option is given, else " if bench else "") + "%s"
        g.add_argument("--ctc-model", metavar="ID|DIR", default=default("captions"),
                       help="captions checkpoint: Hub id or local folder (default: " + note % DEFAULT_MODELS["captions"] + ")")
        g.add_argument("--diarization-model", metavar="ID|DIR", default=default("diarization"),
                       help="diarization checkpoint (default: " + note % DEFAULT_MODELS["diarization"] + ")")
        g.add_argument("--embedding-model", metavar="ID|DIR", default=default("embeddings"),
                       help="speaker-embedding checkpoint (default: " + note % DEFAULT_MODELS["embeddings"] + ")")
    g.add_argument("--lm", metavar="DIR|FILE", default=None,
                   help="word n-gram language model for the captions' beam search (KenLM): an .arpa(.gz) or KenLM "
                        "binary .bin file, or a Hub language_model/ folder (attrs.json, unigrams.txt, the model) "
                        "(default: the captions checkpoint's language_model/ folder, if any)")
    g.add_argument("--no-lm", action="store_true", help="greedy CTC decoding even when a language model is available")
    g.add_argument("--no-captions", action="store_true", help="disable CTC captions")
    g.add_argument("--no-diarization", action="store_true", help="disable diarization")
    g.add_argument("--no-embeddings", action="store_true", help="disable speaker embeddings")
    if not demo:
        g.add_argument("--classification-model", metavar="ID|DIR", default=None,
                       help="utterance classifier (*ForSequenceClassification: keywords, emotion, language...); "
                            "off unless given")
    g.add_argument("--no-classification", action="store_true", help="disable utterance classification")
    a_cls = p.add_argument_group("classification")
    a_cls.add_argument("--classify", choices=["auto", "turns", "windows"], default=None,
                       help="classify each speaker turn or each window (default: auto: windows for keyword "
                            "spotting or without diarization, turns otherwise)")
    a_cls.add_argument("--top-k", type=_positive_int, default=None, metavar="N",
                       help="classes per classification event (default: 3)")
    g.add_argument("--compute", choices=["auto", "cpu", "cuda"], default="auto",
                   help="device to run the models on (default: %(default)s: CUDA when available)")
    g.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="model precision (default: %(default)s: bfloat16 where the hardware supports it)")
    g.add_argument("--threads", type=_int_within(1, MAX_THREADS), default=None, metavar="N",
                   help="CPU threads for the models (default: torch's choice)")
    a = p.add_argument_group("analysis")
    a.add_argument("--window", type=_seconds(*WINDOW_RANGE), default=None, metavar="SEC",
                   help="analysis window in seconds (default: 4); it changes only the window: the hop stays 1 s "
                        "unless --hop is given, and must be at least 20 ms shorter than the window")
    a.add_argument("--hop", type=_seconds(*HOP_RANGE), default=None, metavar="SEC", help="seconds between results (default: 1)")
    for task in ("captions", "diarization"):
        a.add_argument(f"--{task}-window", type=_seconds(*WINDOW_RANGE), default=None, metavar="SEC",
                       help=f"the {task} task's own window in seconds (default: "
                            f"{DEFAULT_TASK_WINDOWS[task][0]:g}, or --window when --window or --hop is given)")
        a.add_argument(f"--{task}-hop", type=_seconds(*HOP_RANGE), default=None, metavar="SEC",
                       help=f"the {task} task's own hop in seconds (default: "
                            f"{DEFAULT_TASK_WINDOWS[task][1]:g}, or --hop when --window or --hop is given)"
                            + ("; speaker embeddings run on the diarization windows" if task == "diarization" else ""))
    a.add_argument("--embedding-interval", type=_seconds(0, 600), default=None, metavar="SEC",
                   help="with diarization, seconds of solo speech between x-vector passes; a new voice gets "
                        "one at once (default: 0, every diarization window)")
    a.add_argument("--no-vad", action="store_true",
                   help="run the models on every window; by default a voice activity detector (Silero VAD) "
                        "skips the windows without speech, which settle as silence")
    a.add_argument("--speaker-threshold", type=float, default=None, metavar="COS",
                   help="cosine similarity for an x-vector to join a known speaker (default: the model's, 0.86 for the public -sv model)")
    a.add_argument("--max-speakers", type=_positive_int, default=None, metavar="N",
                   help="never create more than N speakers; a voice that matches nobody joins the closest (default: no limit)")
    a.add_argument("--enroll", action="append", default=[], metavar="NAME=FILE",
                   help="name a speaker from a reference recording (repeatable)")


def _add_input_options(p: argparse.ArgumentParser, demo: bool = False, default: str | None = "mic") -> None:
    g = p.add_argument_group("input")
    if not demo:
        g.add_argument("--input", default=default, metavar="mic|PATH",
                       help="'mic' or an audio file" + (" (default: %(default)s)" if default else
                                                         " the server analyses itself (default: none, client sessions only)"))
        g.add_argument("--input-device", default=None, metavar="INDEX|NAME", help="microphone by index or name substring (see 'wavlm-live devices')")
    g.add_argument("--speed", type=_bounded(*SPEED_RANGE, "a speed"), default=1.0,
                   help="file replay speed, 1 = real time, 0.01..1000 (default: %(default)s)")
    g.add_argument("--loop", action="store_true", help="replay the file forever")


def _add_server_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    g.add_argument("--port", type=_port, default=8765, help="websocket port, 0 = any free port (default: %(default)s)")
    g.add_argument("--token", default=None, help=f"require this bearer token from clients (or set {TOKEN_ENV})")
    g.add_argument("--control-token", default=None, metavar="TOKEN",
                   help="renaming the speakers of the server's input needs this bearer token, accepted in place of "
                        f"--token (or set {CONTROL_TOKEN_ENV}; default: anyone connected may rename)")
    g.add_argument("--allow-origin", action="append", default=None, metavar="ORIGIN", help="allow browser pages from this Origin (repeatable); by default no browser page may connect")
    g.add_argument("--certfile", default=None, metavar="PEM",
                   help="serve TLS with this certificate (chain): wss:// websockets and the browser page over "
                        "https://, which browsers on other machines need for the microphone")
    g.add_argument("--keyfile", default=None, metavar="PEM",
                   help="private key of --certfile (default: the key is in the --certfile file too)")
    g.add_argument("--max-clients", type=_positive_int, default=32, help="concurrent clients (default: %(default)s)")
    g.add_argument("--max-clients-per-address", type=_positive_int, default=16, metavar="N",
                   help="concurrent clients from one IP address; behind a proxy set it to --max-clients "
                        "(default: %(default)s)")
    g.add_argument("--max-sessions", type=_count, default=16, metavar="N",
                   help="client audio sessions at once; 0 refuses them (default: %(default)s)")
    g.add_argument("--session-buffer", type=_seconds(1, 3600), default=30.0, metavar="SEC",
                   help="per-session cap on audio waiting for analysis (default: %(default)s)")
    g.add_argument("--session-idle", type=_seconds(0.1, 86400), default=30.0, metavar="SEC",
                   help="end a session that sends no audio for this long (default: %(default)s)")
    g.add_argument("--client-idle", type=_seconds(0.1, 86400), default=30.0, metavar="SEC",
                   help="close a connection that watches nothing (no input, no session) and sends nothing "
                        "for this long (default: %(default)s)")
    g.add_argument("--jsonl", default=None, metavar="PATH", help="also append every event to this JSON Lines file")


def build_parser() -> argparse.ArgumentParser:
    """The ``wavlm-live`` argument parser (subcommands run, serve, demo, tui, listen,
    transcribe, convert, eval, devices, bench)."""
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

    p = sub.add_parser("serve", help="headless server: client audio sessions and/or its own input",
                       description="Serve clients that stream their own audio (websocket sessions, the browser page at /), "
                       "and optionally analyse an input of the server's own (--input), until SIGINT/SIGTERM.")
    _add_input_options(p, default=None)
    p.add_argument("--demo", action="store_true", help="use the bundled demo models (no network)")
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
    p.add_argument("--session", default=None, metavar="ID", help="watch this client session instead of the server's input")
    _add_cafile_option(p)

    p = sub.add_parser("send", help="stream a file or the microphone to a server and show its results",
                       description="Open an audio session on a wavlm-live server, stream a file (at real-time pace, or "
                       "--speed) or the microphone to it, and print the results (or show them in the dashboard with --tui).")
    p.add_argument("input", metavar="FILE|mic", help="an audio file, or 'mic' for the microphone")
    p.add_argument("url", nargs="?", default="ws://127.0.0.1:8765", help="server URL (default: %(default)s)")
    p.add_argument("--token", default=None, help=f"bearer token (or set {TOKEN_ENV})")
    p.add_argument("--input-device", default=None, metavar="INDEX|NAME", help="microphone by index or name substring")
    p.add_argument("--speed", type=_bounded(*SPEED_RANGE, "a speed"), default=1.0,
                   help="file pace, 1 = real time; a file is sent as a paced session, every window analysed (default: %(default)s)")
    p.add_argument("--tasks", default=None, metavar="LIST", help="comma-separated subset of captions,diarization,embeddings")
    p.add_argument("--speaker-threshold", type=float, default=None, metavar="COS", help="this session's speaker threshold")
    p.add_argument("--live", action="store_true",
                   help="send a file as a live session: the server skips windows if it falls behind "
                        "(default for the microphone; a file is paced by default, every window analysed)")
    p.add_argument("--tui", action="store_true", help="show the session in the dashboard")
    _add_cafile_option(p)

    p = sub.add_parser("listen", help="print captions and speakers from a running server",
                       description="Subscribe to a wavlm-live server and print final captions with speaker labels.")
    p.add_argument("url", nargs="?", default="ws://127.0.0.1:8765", help="server URL (default: %(default)s)")
    p.add_argument("--token", default=None, help=f"bearer token (or set {TOKEN_ENV})")
    _add_cafile_option(p)

    p = sub.add_parser("transcribe", help="analyse a file offline: JSONL, SRT, WebVTT, RTTM, TXT",
                       description="Run the streaming pipeline over a whole file as fast as the machine allows and write "
                       "the results: JSONL (STEM.jsonl: every event), SRT and WebVTT (STEM.srt, STEM.vtt: captions with "
                       "speakers), RTTM (STEM.rttm: who spoke when) and TXT (STEM.txt: the plain transcript, also "
                       "printed). Existing results are never overwritten without --force.")
    p.add_argument("file", help="audio or video file (WAV, FLAC, OGG, Opus, MP3, M4A, the sound of MP4/MKV/WebM...)")
    p.add_argument("-o", "--output", default=None, metavar="STEM",
                   help="output path without extension, the format is appended (default: the input without its "
                        "extension: meeting.day1.wav -> meeting.day1.srt)")
    p.add_argument("--formats", default="jsonl,srt,vtt,rttm,txt", help="comma-separated subset of jsonl,srt,vtt,rttm,txt (default: %(default)s)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite results that exist already")
    p.add_argument("--demo", action="store_true", help="use the bundled demo models")
    _add_progress_option(p)
    _add_model_options(p)

    p = sub.add_parser("convert", help="write SRT, WebVTT, RTTM and TXT from a JSON Lines event log",
                       description="Turn the events of a --jsonl log (run, serve, demo) or of transcribe's STEM.jsonl into "
                       "the files transcribe writes, with the same writers: STEM.srt, STEM.vtt, STEM.rttm, STEM.txt. "
                       "Existing files are never overwritten without --force.")
    p.add_argument("events", metavar="EVENTS.jsonl", help="JSON Lines event log")
    p.add_argument("-o", "--output", default=None, metavar="STEM",
                   help="output path without extension (default: the log without .jsonl)")
    p.add_argument("--formats", default="srt,vtt,rttm,txt", help="comma-separated subset of srt,vtt,rttm,txt (default: %(default)s)")
    p.add_argument("--stream", type=_positive_int, default=None, metavar="N",
                   help="a log that several runs appended to holds one stream per run (each ends with an end event): "
                        "convert the N-th (required when there are several)")
    p.add_argument("--file-id", default=None, metavar="ID",
                   help="the RTTM file field, the recording's name (default: the log's name without .jsonl; "
                        "transcribe writes the audio file's name)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite files that exist already")

    p = sub.add_parser("eval", help="measure CER/WER, DER, EER and accuracy through the streaming pipeline",
                       description="Run the streaming pipeline over a folder of clips with references "
                       "(NAME.txt transcripts, NAME.rttm diarization, NAME.label classes, trials.txt verification "
                       "pairs) and print the metrics.")
    p.add_argument("folder", help="evaluation folder (see docs/demo-models.md for the layout)")
    p.add_argument("--demo", action="store_true", help="use the bundled demo models")
    p.add_argument("--collar", type=float, default=0.25, help="DER collar in seconds (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_progress_option(p)
    _add_model_options(p)

    p = sub.add_parser("devices", help="list audio input devices",
                       description="List the audio input devices PortAudio sees; exit status 1 when there is none.")

    p = sub.add_parser("bench", help="measure the pipeline's real-time factor on this machine",
                       description="Run the offline pipeline over an audio file and print, as one JSON object, the "
                       "real-time factor of the whole run and of each task's model. Without a model option it runs the "
                       "bundled demo models (no network needed); give --ctc-model/--diarization-model/--embedding-model "
                       "to measure other checkpoints (the ones not given are then the public defaults).")
    p.add_argument("file", nargs="?", default=None, help="audio file (default: the bundled demo recording)")
    p.add_argument("--demo", action="store_true", help="use the bundled demo models (the default without a model option)")
    _add_model_options(p, bench=True)
    return parser


def _add_cafile_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cafile", default=None, metavar="PEM",
                   help="for a wss:// URL: trust the server certificate signed by this CA, or this very "
                        "(self-signed) certificate (default: the system's trust store)")


def _add_progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress-interval", type=_non_negative_float, default=10.0, metavar="SEC",
                   help="when stderr is not a terminal, print a progress line at most every SEC seconds "
                        "(default: %(default)s; on a terminal a progress bar is drawn instead)")


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value
