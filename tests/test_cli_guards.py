"""Command-line guards of the reliability issue: absurd numbers are usage errors (exit 2,
one line) before anything starts; an empty token never turns authentication off; a
server that other machines can reach without a token says so; a relative model path that
does not exist is not taken for a Hub id."""

from __future__ import annotations

import pytest

from wavlm_live.cli import main
from wavlm_live.cli.app import is_loopback, warn_if_exposed
from wavlm_live.model.checkpoint import ModelLoadError, load_pretrained


@pytest.mark.parametrize("argv", [
    ["transcribe", "x.wav", "--window", "inf"],
    ["transcribe", "x.wav", "--window", "1e9"],
    ["transcribe", "x.wav", "--hop", "nan"],
    ["transcribe", "x.wav", "--threads", "-4"],
    ["transcribe", "x.wav", "--threads", "0"],
    ["run", "--speed", "1e-300"],
    ["send", "x.wav", "--speed", "0"],
])
def test_absurd_numbers_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "expected" in err and "Traceback" not in err


@pytest.mark.parametrize("env, argv, named", [
    ({"WAVLM_LIVE_TOKEN": ""}, ["serve", "--demo"], "WAVLM_LIVE_TOKEN"),
    ({"WAVLM_LIVE_TOKEN": "  "}, ["serve", "--demo"], "WAVLM_LIVE_TOKEN"),
    ({}, ["serve", "--demo", "--token", ""], "--token"),
    ({"WAVLM_LIVE_CONTROL_TOKEN": ""}, ["serve", "--demo"], "WAVLM_LIVE_CONTROL_TOKEN"),
])
def test_an_empty_token_is_refused(env, argv, named, monkeypatch, capsys):
    for key in ("WAVLM_LIVE_TOKEN", "WAVLM_LIVE_CONTROL_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and "empty" in err


def test_a_token_from_the_environment_is_used(monkeypatch):
    import argparse

    from wavlm_live.cli.main import _tokens_from_env

    monkeypatch.setenv("WAVLM_LIVE_TOKEN", "s3cret")
    monkeypatch.delenv("WAVLM_LIVE_CONTROL_TOKEN", raising=False)
    args = argparse.Namespace(token=None, control_token=None)
    _tokens_from_env(args)
    assert (args.token, args.control_token) == ("s3cret", None)


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True),
                                            ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                            ("192.168.1.5", False), ("example.org", False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def test_an_exposed_server_without_a_token_warns(capsys):
    import argparse

    warn_if_exposed(argparse.Namespace(host="0.0.0.0", token=None))
    assert "--host 0.0.0.0" in capsys.readouterr().err
    warn_if_exposed(argparse.Namespace(host="0.0.0.0", token="t"))
    warn_if_exposed(argparse.Namespace(host="127.0.0.1", token=None))
    assert capsys.readouterr().err == ""


def test_a_missing_relative_folder_is_not_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"model folder 'models/x' does not exist.*taken as a path"):
        load_pretrained("models/x")


def test_the_analysis_options_are_read_once_into_a_frozen_object():
    import dataclasses

    from wavlm_live.cli import DEFAULT_MODELS, build_parser
    from wavlm_live.cli.options import AnalysisOptions

    args = build_parser().parse_args(["transcribe", "x.wav", "--ctc-model", "my/ctc", "--no-diarization",
                                      "--window", "3", "--enroll", "Ann=a.wav", "--no-vad", "--top-k", "2"])
    opts = AnalysisOptions.of(args)
    assert opts.models["captions"] == "my/ctc" and opts.models["embeddings"] == DEFAULT_MODELS["embeddings"]
    assert "classification" not in opts.models  # only when named
    assert not opts.enabled("diarization") and opts.enabled("captions")
    assert (opts.window, opts.hop, opts.vad, opts.enroll, opts.top_k) == (3.0, None, False, ("Ann=a.wav",), 2)
    assert AnalysisOptions.of(opts) is opts
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.window = 5.0
    # a command without analysis options (tui) gets the defaults
    tui = AnalysisOptions.of(build_parser().parse_args(["tui"]))
    assert tui.vad and tui.window is None and tui.models == {k: DEFAULT_MODELS[k] for k in
                                                             ("captions", "diarization", "embeddings")}


def test_default_schedule_is_per_task_and_window_or_hop_make_it_uniform():
    from wavlm_live.cli.app import engine_config
    from wavlm_live.cli.defaults import DEFAULT_TASK_WINDOWS
    from wavlm_live.cli.options import AnalysisOptions
    from wavlm_live.engine.engine import TaskWindow

    def windows(**kw):
        return engine_config(AnalysisOptions(models={}, **kw), demo=False, realtime=False).task_windows

    assert windows() == {t: TaskWindow(*wh) for t, wh in DEFAULT_TASK_WINDOWS.items()}
    assert windows(window=3.0) == {} and windows(hop=0.5) == {}  # one schedule for every task
    assert windows(captions_hop=0.25) == {"captions": TaskWindow(DEFAULT_TASK_WINDOWS["captions"][0], 0.25),
                                          "diarization": TaskWindow(*DEFAULT_TASK_WINDOWS["diarization"])}
    assert windows(hop=0.5, diarization_hop=1.0) == {"diarization": TaskWindow(4.0, 1.0)}


def test_default_caption_window_has_more_context_but_no_later_finals_than_2s():
    """The default captions window (3 s, chosen for CER in docs/engine.md "Schedules") keeps
    the right context of a 2 s / 0.5 s window, so its frames settle no later."""
    from wavlm_live.cli.app import engine_config
    from wavlm_live.cli.options import AnalysisOptions
    from wavlm_live.engine.windows import WindowPlan

    captions = engine_config(AnalysisOptions(models={}), demo=False, realtime=False).task_windows["captions"]
    plan = WindowPlan(captions.window, captions.hop, captions.right_context)
    short = WindowPlan(2.0, 0.5)
    assert captions.window == 3.0 and captions.hop == 0.5
    assert plan.right_frames == short.right_frames
    # every settled frame of the default plan has more left context than the 2 s plan gives
    assert plan.left_frames > short.left_frames


def test_help_names_the_per_task_defaults(capsys):
    from wavlm_live.cli import build_parser
    from wavlm_live.cli.defaults import DEFAULT_TASK_WINDOWS

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["eval", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for task, (window, hop, *_) in DEFAULT_TASK_WINDOWS.items():
        assert f"the {task} task's own window in seconds (default: {window:g}, or --window" in text
        assert f"the {task} task's own hop in seconds (default: {hop:g}, or --hop" in text


@pytest.mark.parametrize("argv, option", [
    (["--captions-window", "0.4"], "--captions-window"),
    (["--diarization-window", "1", "--diarization-hop", "2"], "--diarization-hop"),
])
def test_a_task_window_too_short_for_its_hop_is_a_usage_error(argv, option, tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    assert main(["transcribe", str(wav), "--demo", *argv]) == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err
