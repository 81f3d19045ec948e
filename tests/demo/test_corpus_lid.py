"""scripts/corpus.py's language-identification corpus: sentence filter, gettext catalogs, a tiny build and eval folder."""

import struct
from collections import Counter

import pytest
import soundfile as sf


def write_mo(path, messages):
    """Write a GNU .mo catalog (format per the GNU gettext manual, "The Format of GNU MO
    Files": magic, revision 0, N, offsets of the original and translation tables, an empty
    hash table; keys sorted). `messages` maps msgid -> msgstr; a plural entry is written
    as msgid NUL msgid_plural -> forms joined by NUL, a context as ctx EOT msgid."""
    entries = {"": "Content-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2; plural=(n != 1);\n"}
    entries.update(messages)
    keys = sorted(entries)
    ids = [k.encode("utf-8") for k in keys]
    strs = [entries[k].encode("utf-8") for k in keys]
    n = len(keys)
    header = 7 * 4
    orig_table, trans_table = header, header + 8 * n
    data_start = header + 16 * n
    blob, orig, trans = b"", [], []
    for s in ids:
        orig.append((len(s), data_start + len(blob)))
        blob += s + b"\0"
    for s in strs:
        trans.append((len(s), data_start + len(blob)))
        blob += s + b"\0"
    out = struct.pack("<7I", 0x950412DE, 0, n, orig_table, trans_table, 0, data_start)
    out += b"".join(struct.pack("<2I", *e) for e in orig) + b"".join(struct.pack("<2I", *e) for e in trans)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out + blob)


def test_lid_sentence_filter(corpus_mod):
    usable = corpus_mod.lid_sentence_is_usable
    assert usable("Die Datei kann nicht geöffnet werden")
    assert usable("Impossible d'ouvrir le fichier, désolé.")
    assert usable("Nie można otworzyć pliku")
    assert not usable("%s: ungültige Option")  # format directive
    assert not usable("Datei 12 fehlt im Archiv")  # digits are read as number words
    assert not usable("Fertig")  # too short
    assert not usable("Die GPG Signatur ist ungültig")  # acronym
    assert not usable("a                   all with tty, including other users")  # option-help columns
    assert not usable("siehe /etc/passwd für Details")  # path
    assert not usable("z. B. eine Datei im Verzeichnis")  # abbreviation
    assert corpus_mod.fold_sentence("Cannot open the file.") == corpus_mod.fold_sentence("cannot  open the FILE")


def test_gettext_catalogs_give_aligned_sentences(corpus_mod, tmp_path):
    locale = tmp_path / "locale"
    write_mo(locale / "de" / "LC_MESSAGES" / "alpha.mo", {
        "Cannot open the file": "Datei kann nicht geöffnet werden",
        "%s: invalid option": "%s: ungültige Option",
        "Copy the archive to the disk": "Copy the archive to the disk",  # untranslated
        "one file was removed\0%d files were removed": "eine Datei wurde entfernt\0%d Dateien wurden entfernt",
        "menu\x04Open the selected file now": "Die gewählte Datei jetzt öffnen",
    })
    write_mo(locale / "fr" / "LC_MESSAGES" / "alpha.mo", {"Cannot open the file": "Impossible d'ouvrir le fichier"})
    write_mo(locale / "de" / "LC_MESSAGES" / "beta.mo", {
        "cannot open the file.": "Die Datei lässt sich nicht öffnen",  # the same message again: first domain wins
        "Write the new data to disk": "Datei kann nicht geöffnet werden",  # a sentence already taken
    })
    got = corpus_mod.load_gettext_sentences(["en", "de", "fr"], ("alpha", "beta", "missing"), locale)
    assert got == {
        "cannot open the file": {"de": "Datei kann nicht geöffnet werden", "en": "Cannot open the file",
                                 "fr": "Impossible d'ouvrir le fichier"},
        "open the selected file now": {"de": "Die gewählte Datei jetzt öffnen", "en": "Open the selected file now"},
    }
    assert list(got) == sorted(got)
    with pytest.raises(FileNotFoundError, match="no message catalogs of it"):
        corpus_mod.load_gettext_sentences(["en", "it"], ("alpha",), locale)


def test_lid_sentences_file_and_voices(corpus_mod, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("k1\ten\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.tsv:1"):
        corpus_mod.load_lid_sentences(bad, ["en"])
    only_en = tmp_path / "en.tsv"
    only_en.write_text("k1\ten\tThe cat sleeps under the table\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no usable sentences for de"):
        corpus_mod.load_lid_sentences(only_en, ["en", "de"])
    with pytest.raises(ValueError, match="no espeak-ng voices listed for xx"):
        corpus_mod.lid_speakers(["en", "xx"], [""])
    spk = corpus_mod.lid_speakers(["fr"], ["", "f3"])["fr"]
    assert len(spk) == len(corpus_mod.LID_VOICES["fr"]) * 2 * len(corpus_mod.PITCHES)
    assert {s.voice for s in spk} == set(corpus_mod.LID_VOICES["fr"])


def test_tiny_lid_build_splits_and_contents(tiny_lid_corpus, corpus_mod):
    folder, meta = tiny_lid_corpus
    s, v, texts = meta["sentences"], meta["variants"], meta["texts"]
    assert meta["languages"] == ["en", "de", "fr"] and set(texts) == {f"k{i:02d}" for i in range(1, 13)}
    assert (len(s["val"]), len(s["test"]), len(s["train"])) == (2, 3, 7)
    assert not (set(s["train"]) & set(s["val"]) or set(s["train"]) & set(s["test"]) or set(s["val"]) & set(s["test"]))
    assert not set(v["train"]) & set(v["test"]) and not set(v["val"]) & set(v["test"])
    for split, keys, variants in (("train", s["train"], v["train"]), ("val", s["val"], v["train"]),
                                  ("val_unseen", s["val"], v["val"])):
        uset = corpus_mod.UtteranceSet(folder / split)
        counts = Counter(u["lang"] for u in uset.utts)
        assert set(counts) == {"en", "de", "fr"} and max(counts.values()) - min(counts.values()) <= 1
        for i, u in enumerate(uset.utts):
            spk = corpus_mod.Speaker.parse(u["speaker"])
            assert u["key"] in keys and u["text"] == texts[u["key"]][u["lang"]]
            assert spk.voice in corpus_mod.LID_VOICES[u["lang"]] and spk.variant in variants
            assert 0.5 * 16000 < len(uset.audio(i)) < 8 * 16000
    assert corpus_mod.UtteranceSet(folder / "train").seconds > 40


def test_eval_lid_folder(tiny_lid_corpus, corpus_mod, tmp_path):
    folder, meta = tiny_lid_corpus
    names = corpus_mod.eval_lid(folder, tmp_path / "lid", "unseen", clips_per_language=1, sentences_per_clip=2)
    rows = {r.split("\t")[0]: r.split("\t") for r in (tmp_path / "lid" / "clips.tsv").read_text().splitlines()}
    langs = []
    for name in names:
        label = (tmp_path / "lid" / f"{name}.label").read_text()
        x, sr = sf.read(tmp_path / "lid" / f"{name}.wav")
        assert sr == 16000 and len(x) > 2 * 16000
        _, lang, who, said = rows[name]
        assert label == lang + "\n" and name.startswith(lang + "_")
        assert corpus_mod.Speaker.parse(who).variant in meta["variants"]["test"]
        test_sentences = {meta["texts"][k][lang] for k in meta["sentences"]["test"] if lang in meta["texts"][k]}
        assert set(said.split(" | ")) <= test_sentences and len(said.split(" | ")) == 2
        langs.append(lang)
    assert sorted(langs) == ["de", "en", "fr"]
    with pytest.raises(ValueError, match="exceeds"):
        corpus_mod.eval_lid(folder, tmp_path / "lid2", "seen", clips_per_language=2, sentences_per_clip=2)
    (tmp_path / "english").mkdir()
    (tmp_path / "english" / "meta.json").write_text('{"sentences": {}}')  # a captions corpus has no languages
    with pytest.raises(ValueError, match="not a language-identification corpus"):
        corpus_mod.eval_lid(tmp_path / "english", tmp_path / "x")
