"""Modal screens of the dashboard: key help and the speaker rename prompt."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

HELP = """\
[b]Keys[/b]
  [b]q[/b]       quit
  [b]space[/b]   pause / resume scrolling (data keeps arriving)
  [b]c[/b]       clear captions and the activity timeline
  [b]s[/b]       save the transcript (speakers and times) to a text file
  [b]r[/b]       rename the selected speaker (↑/↓ select it in Speakers)
  [b]t[/b]       show / hide caption timestamps (stream time)
  [b]?[/b]       this help   [b]tab[/b] move focus   [b]esc[/b] close

[b]Captions[/b]: final text in each speaker's colour; the dimmed line
  after it is the partial text, replaced by the next final segment.
[b]Speaker activity[/b]: settled diarization of the last {window:g} s;
  █ active in most of the cell, ▄ in part of it; the overlap row marks
  overlapping speech; ▶ marks the current speakers.
[b]Speakers[/b]: talk time and share, turns, last seen (stream time) and
  Sim, the cosine similarity of the latest x-vector to the centroid.
[b]Status[/b]: connection, input level (dBFS), RTF (< 1 keeps up), lag
  (s of audio not analysed yet), skipped windows, input overflows,
  dropped messages, model ids.
  [black on yellow] DEMO MODELS [/] the server runs the small demo checkpoints
  (trained on synthetic espeak-ng speech only): on human voices the
  output is not meaningful.

Server: {url}"""


class HelpScreen(ModalScreen[None]):
    """Key bindings and a legend of the panes; any of esc, ? or q closes it."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def __init__(self, url: str, window_s: float) -> None:
        super().__init__()
        self._text = HELP.format(url=escape(url), window=window_s)

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(self._text, id="help-text")

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


class RenameScreen(ModalScreen[str | None]):
    """Asks for a speaker's new name; dismisses with the stripped name, or ``None`` on
    escape or an empty entry."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, speaker: str, name: str | None) -> None:
        super().__init__()
        self.speaker = speaker
        self.name_now = name

    def compose(self) -> ComposeResult:
        with Vertical(id="rename-box"):
            now = f" (now {self.name_now})" if self.name_now else ""
            yield Label(f"Rename {self.speaker}{now}: enter to send, esc to cancel")
            yield Input(value=self.name_now or "", placeholder="name", max_length=64, id="rename-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        name = event.value.strip()
        self.dismiss(name or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
