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
