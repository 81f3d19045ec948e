"""Subtitle and transcript writers with words of any language: Latin, Cyrillic, Chinese
characters (no spaces between them, two cells each in the cue length limit)."""

from __future__ import annotations

from wavlm_live.engine.writers import ResultCollector, group_cues
from wavlm_live.events import CaptionEvent, Word
from wavlm_live.text import display_width, is_spaceless, join_words, split_word


def words_of(texts, start=0.0, step=0.3, speaker="S1"):
    return [Word(t, round(start + i * step, 3), round(start + i * step + 0.2, 3), speaker) for i, t in enumerate(texts)]


def test_text_helpers():
    assert [is_spaceless(c) for c in "你カなa1я한。"] == [True, True, True, False, False, False, False, True]
    assert split_word("iPhone手机") == [("iPhone", 0, 6), ("手", 6, 7), ("机", 7, 8)]
    assert split_word("привет") == [("привет", 0, 6)]
    assert join_words(["你", "好", "world", "再", "见", ""]) == "你好 world 再见"
    assert join_words(["добрый", "день"]) == "добрый день"
    assert display_width("你好a") == 5 and display_width("é") == 1 and display_width("e\u0301") == 1


def test_chinese_cues_have_no_spaces_and_count_wide_characters_twice():
    chars = list("今天天气很好我们去公园散步吧然后一起吃午饭好不好")  # 24 characters, 48 cells
    cues = group_cues(words_of(chars), max_chars=42, max_seconds=60)
    assert len(cues) == 2
    assert cues[0].text == "".join(chars[:19])  # "S1: " and 19 characters fill the 42 cells
    assert "".join(c.text for c in cues) == "".join(chars)
    assert all(4 + display_width(c.text) <= 42 for c in cues)


def test_collector_writes_srt_vtt_txt_in_the_words_script(tmp_path):
    collector = ResultCollector()
    ru = words_of(["добрый", "день", "всем"], speaker="S1")
    zh = words_of(list("你好世界"), start=2.0, speaker="S2")
    for i, ws in enumerate((ru, zh)):
        collector(CaptionEvent(final=True, segment=i, start=ws[0].start, end=ws[-1].end, text=join_words(w.text for w in ws),
                               words=tuple(ws), speaker=ws[0].speaker))
    paths = collector.write(tmp_path / "out", "out", {"srt", "vtt", "txt"})
    assert [p.name for p in paths] == ["out.srt", "out.txt", "out.vtt"]
    srt = (tmp_path / "out.srt").read_text(encoding="utf-8")
    assert "S1: добрый день всем" in srt and "S2: 你好世界" in srt
    vtt = (tmp_path / "out.vtt").read_text(encoding="utf-8")
    assert "<v S2>你好世界" in vtt and "<v S1>добрый день всем" in vtt
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == "добрый день всем 你好世界\n"
