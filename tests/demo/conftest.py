"""Shared fixtures: the scripts as modules and a tiny corpus built once per session."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"

SENTENCES = """\
The runners reached the finish line, panting heavily
She sighed sadly when the letter arrived
Exhale when you lift the weight
The chimney exhales a thick smoke
Pepper makes me sneeze every morning
We ascended the mountain before dawn
The children had to be in bed early
The corpse was in an advanced state of decay
The proposal found wide acceptance in town
The shortest distance between two points is a line
The oven is off and the kitchen is cold
The plans for the hall were on file
We assembled in the church basement at noon
He gave me a clip on the ear
Park the car in the yard behind the house
These drugs act slowly but surely
This procedure produces a curious effect
If you hurry you'll catch the post
The aftermath of war was terrible to see
Let's not quibble over pennies, my friend
He usurped my rights without a word
The patient has trouble breathing at night
When you have to hiccup, drink a glass of water
The nurses had to help the patient walk
A branch hung low over the quiet river
I wanted to create an impression of success
Turn and face your partner now, please
Held the ladder steady while he climbed
She was too disorganized to be a good roommate
We must tackle these tasks boldly and soon
"""


def load_script(name: str):
    """Import scripts/NAME.py as a module (scripts/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def corpus_mod():
    return load_script("corpus")


@pytest.fixture(scope="session")
def train_mod():
    return load_script("train_demo")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory, corpus_mod):
    """A corpus of 30 sentences: 5 val, 8 test, 2 val and 2 test variants, ~40 s of training audio."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "sentences.txt").write_text(SENTENCES)
    meta = corpus_mod.build(root / "demo", seed=3, train_hours=40 / 3600, val_utts=12,
                            sentences_file=root / "sentences.txt", n_val_sentences=5, n_test_sentences=8,
                            n_val_variants=2, n_test_variants=2, workers=1, log=lambda *a: None)
    return root / "demo", meta


LID_SENTENCES = """\
k01\ten\tThe cat sleeps under the kitchen table
k01\tde\tDie Katze schläft unter dem Küchentisch
k01\tfr\tLe chat dort sous la table de la cuisine
k02\ten\tWe walked along the river in the evening
k02\tde\tWir gingen am Abend den Fluss entlang
k02\tfr\tNous avons marché le long de la rivière ce soir
k03\ten\tMy brother bought a new bicycle yesterday
k03\tde\tMein Bruder hat gestern ein neues Fahrrad gekauft
k03\tfr\tMon frère a acheté un nouveau vélo hier
k04\ten\tThe bakery opens early on Saturday morning
k04\tde\tDie Bäckerei öffnet am Samstagmorgen früh
k04\tfr\tLa boulangerie ouvre tôt le samedi matin
k05\ten\tPlease close the window before you leave
k05\tde\tBitte schließe das Fenster, bevor du gehst
k05\tfr\tFerme la fenêtre avant de partir, s'il te plaît
k06\ten\tThe children are playing in the garden
k06\tde\tDie Kinder spielen im Garten hinter dem Haus
k06\tfr\tLes enfants jouent dans le jardin derrière la maison
k07\ten\tShe reads the newspaper every single day
k07\tde\tSie liest jeden Tag die Zeitung
k07\tfr\tElle lit le journal tous les jours
k08\ten\tThe train to the coast was very late
k08\tde\tDer Zug an die Küste hatte große Verspätung
k08\tfr\tLe train pour la côte avait beaucoup de retard
k09\ten\tOur neighbours painted their door bright green
k09\tde\tUnsere Nachbarn haben ihre Tür hellgrün gestrichen
k09\tfr\tNos voisins ont peint leur porte en vert clair
k10\ten\tThe soup needs a little more salt
k10\tde\tDie Suppe braucht noch etwas mehr Salz
k10\tfr\tLa soupe a besoin d'un peu plus de sel
k11\tde\tDer Hund wartet geduldig vor der Tür
k11\tfr\tLe chien attend patiemment devant la porte
k12\ten\tThe museum is closed on public holidays
k12\tfr\tLe musée est fermé les jours fériés
"""
"""Hand-written sentences in three languages (KEY<TAB>LANG<TAB>SENTENCE; k11 has no
English, k12 no German)."""


@pytest.fixture(scope="session")
def tiny_lid_corpus(tmp_path_factory, corpus_mod):
    """A language-identification corpus of en/de/fr: 12 keys (2 val, 3 test), 2 val and 2
    test variants, ~60 s of training audio."""
    root = tmp_path_factory.mktemp("lid")
    (root / "sentences.tsv").write_text(LID_SENTENCES, encoding="utf-8")
    meta = corpus_mod.build_lid(root / "lid", seed=1, train_hours=60 / 3600, val_utts=12, languages=["en", "de", "fr"],
                                sentences_file=root / "sentences.tsv", n_val_sentences=2, n_test_sentences=3,
                                n_val_variants=2, n_test_variants=2, workers=1, log=lambda *a: None)
    return root / "lid", meta
