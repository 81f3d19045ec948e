"""Command-line assembly: options to configs, defaults that matter for safety."""

import pytest

from wavlm_live.cli import app
from wavlm_live.cli import CliError, UsageError, build_parser, main
from wavlm_live.engine.bus import EventBus
from wavlm_live.engine.engine import Engine, EngineConfig


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_server_refuses_browser_origins_unless_allowed():
    assert app.server_config(parse("serve")).allowed_origins == ()
    cfg = app.server_config(parse("serve", "--allow-origin", "http://localhost:3000"))
    assert cfg.allowed_origins == ("http://localhost:3000",)
    assert cfg.host == "127.0.0.1"


def test_window_and_hop_options_reach_the_engine_config():
    cfg = app.engine_config(parse("run", "--window", "3", "--hop", "0.5"), demo=False, realtime=True)
    assert (cfg.window, cfg.hop) == (3.0, 0.5)
    cfg = app.engine_config(parse("run", "--window", "1.5"), demo=False, realtime=True)
    assert (cfg.window, cfg.hop) == (1.5, 1.0)  # --window alone changes only the window
    assert cfg.ring_seconds == cfg.buffer_seconds + cfg.window + 2 * cfg.hop
    assert "the hop stays 1 s" in " ".join(build_parser()._subparsers._group_actions[0].choices["run"].format_help().split())


def test_a_window_too_short_for_the_hop_is_a_usage_error(capsys):
    app.check_analysis_options(parse("run", "--window", "1.5"))  # 1 s hop, 0.5 s overlap: fine
    for argv in (["--window", "1"], ["--window", "0.8"], ["--window", "2", "--hop", "2"]):
        with pytest.raises(UsageError, match="--hop") as exc:
            app.check_analysis_options(parse("run", *argv))
        assert exc.value.code == 2
    # through the command line: exit status 2 and one line, before any model is loaded
    assert main(["transcribe", "missing.wav", "--window", "1", "--ctc-model", "no/such-model"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--window 1 s is too short for the default hop of 1 s" in err


def test_max_speakers_option_reaches_the_engine_and_is_validated(capsys):
    assert app.engine_config(parse("run"), demo=False, realtime=True).max_speakers is None
    cfg = app.engine_config(parse("eval", "folder", "--max-speakers", "2"), demo=False, realtime=False)
    assert cfg.max_speakers == 2
    for bad in ("0", "two"):
        with pytest.raises(SystemExit) as exc:
            main(["run", "--max-speakers", bad])
        assert exc.value.code == 2
        assert "max-speakers" in capsys.readouterr().err


def test_disabling_every_task_is_a_clear_error():
    args = parse("run", "--no-captions", "--no-diarization", "--no-embeddings")
    with pytest.raises(CliError, match="disabled"):
        app.model_sources(args, demo=False)


def test_bad_option_values_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--port", "70000"])
    assert exc.value.code == 2
    assert "port" in capsys.readouterr().err


def test_unexpected_errors_are_one_line(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("something broke")

    import wavlm_live.cli.commands as commands

    monkeypatch.setattr(commands, "dispatch", boom)
    assert main(["devices"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "something broke" in err and "Traceback" not in err


def test_demo_checkpoints_are_flagged_however_they_are_named(tmp_path):
    args = parse("run", "--ctc-model", str(app.demo_dir() / "captions"), "--no-diarization", "--no-embeddings")
    models = app.load_models(args, demo=False)
    assert models.demo and models.ids == {"captions": "demo/captions"}
    assert models.captions.name == "demo/captions (WavLM)"  # the hello names the family
    assert not app.is_demo_checkpoint(tmp_path)


def test_hello_names_the_family_of_wav2vec2_and_hubert_checkpoints(tmp_path):
    from tests.model.hub_layouts import write_checkpoint

    write_checkpoint(tmp_path / "ru", "xls-r-300m-ru")
    write_checkpoint(tmp_path / "sd", "wav2vec2-base-superb-sd")
    write_checkpoint(tmp_path / "sv", "wav2vec2-base-superb-sv")
    args = parse("run", "--ctc-model", str(tmp_path / "ru"), "--diarization-model", str(tmp_path / "sd"),
                 "--embedding-model", str(tmp_path / "sv"))
    models = app.load_models(args, demo=False)
    engine = Engine(EngineConfig(realtime=False), EventBus(), captions=models.captions,
                    diarization=models.diarization, embeddings=models.embeddings)
    assert engine.hello()["models"] == {"captions": f"{tmp_path / 'ru'} (Wav2Vec2)",
                                        "diarization": f"{tmp_path / 'sd'} (Wav2Vec2)",
                                        "embeddings": f"{tmp_path / 'sv'} (Wav2Vec2)"}
    write_checkpoint(tmp_path / "hu", "hubert-large-ls960-ft")
    args = parse("run", "--ctc-model", str(tmp_path / "hu"), "--no-diarization", "--no-embeddings")
    assert app.load_models(args, demo=False).captions.name == f"{tmp_path / 'hu'} (HuBERT)"


def test_language_model_is_attached_from_the_checkpoint_or_lm_option(tiny_checkpoints, tmp_path):
    import shutil

    from wavlm_live.model.lm import BeamSettings, CTCBeamDecoder, build_arpa

    ckpt = shutil.copytree(tiny_checkpoints["captions"], tmp_path / "ctc")
    base = ("run", "--ctc-model", str(ckpt), "--no-diarization", "--no-embeddings")
    assert app.load_models(parse(*base), demo=False).captions.final_decoder is None  # no language_model/
    (ckpt / "language_model").mkdir()
    build_arpa(["a cat sat"], ckpt / "language_model" / "lm.arpa.gz", order=2)
    (ckpt / "language_model" / "attrs.json").write_text('{"alpha": 0.7, "beam_width": 8}')
    decoder = app.load_models(parse(*base), demo=False).captions.final_decoder
    assert isinstance(decoder, CTCBeamDecoder) and decoder.settings.alpha == 0.7 and decoder.settings.beam_width == 8
    assert decoder.lm.words == ("a", "cat", "sat")
    assert decoder.describe() == "beam search (width 8, 2-gram LM of 3 words (lm.arpa.gz), alpha 0.7, beta 1.5)"
    models = app.load_models(parse(*base), demo=False)
    engine = Engine(EngineConfig(realtime=False), EventBus(), captions=models.captions)
    assert engine.hello()["captions_decoder"] == decoder.describe()  # told to subscribers
    greedy = app.load_models(parse(*base, "--no-lm"), demo=False).captions
    assert greedy.final_decoder is None and greedy.decoding == "greedy"
    other = tmp_path / "other.arpa"
    build_arpa(["the dog ran"], other, order=2)
    decoder = app.load_models(parse(*base, "--lm", str(other)), demo=False).captions.final_decoder
    assert set(decoder.lm.words) == {"the", "dog", "ran"} and decoder.settings == BeamSettings()  # defaults
    with pytest.raises(CliError, match="--no-lm"):
        app.load_models(parse(*base, "--lm", str(tmp_path / "missing.arpa")), demo=False)
    with pytest.raises(CliError, match="contradict"):
        app.load_models(parse(*base, "--lm", str(other), "--no-lm"), demo=False)


def test_demo_captions_decode_with_their_language_model():
    args = parse("demo", "--no-diarization", "--no-embeddings")
    decoder = app.load_models(args, demo=True).captions.final_decoder
    assert decoder is not None and decoder.lm.order >= 2 and decoder.lm.vocabulary_size > 10000
