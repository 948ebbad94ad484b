"""Text-similarity metrics, each from its well-known implementation.

=============  ==================================================================
fuzzy_match    ``rapidfuzz.fuzz.ratio / 100`` (normalised Indel similarity)
bleu           NLTK ``sentence_bleu``: uniform 1–4-gram weights, Chen & Cherry
               smoothing method 1 (so a short answer with no 4-gram match is not 0)
gleu           NLTK ``sentence_gleu`` (Google BLEU, 1–4-grams)
meteor         NLTK ``meteor_score`` (exact, stem and WordNet-synonym matches)
rouge_1..5, l  Google's ``rouge-score``, F-measure, no stemming
cosine         cosine of two embeddings from a Keel embedder (default ``minilm``)
=============  ==================================================================

BLEU, GLEU and METEOR see words split by :func:`tokenize` (runs of word
characters, and each punctuation mark), the same split NLTK's
``wordpunct_tokenize`` makes; they need no downloaded tokenizer data.

METEOR's synonym stage needs WordNet. NLTK cannot download it at run time here,
so Keel looks for WordNet 3.0 in this order: the ``KEEL_WORDNET_DIR`` directory,
NLTK's own data path (``nltk.download("wordnet")``), and ``/usr/share/wordnet``
(Debian/Ubuntu ``apt-get install wordnet-base``). With none of them, METEOR runs
with exact and stem matches only; :func:`wordnet_source` says which applies.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["METRICS", "cosine_similarity", "score", "tokenize", "wordnet_source"]

_TOKEN = re.compile(r"\w+|[^\w\s]+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def fuzzy_match(hypothesis: str, reference: str) -> float:
    from rapidfuzz import fuzz

    return fuzz.ratio(hypothesis, reference) / 100.0


def bleu(hypothesis: str, reference: str) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    hyp, ref = tokenize(hypothesis), tokenize(reference)
    if not hyp or not ref:
        return float(hyp == ref)
    return float(sentence_bleu([ref], hyp, smoothing_function=SmoothingFunction().method1))


def gleu(hypothesis: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu

    hyp, ref = tokenize(hypothesis), tokenize(reference)
    if not hyp or not ref:
        return float(hyp == ref)
    return float(sentence_gleu([ref], hyp))


class _NoWordNet:
    """Stands in for WordNet when it is not installed: no synonyms, so METEOR uses
    exact and stem matches only."""

    def synsets(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


@functools.lru_cache(maxsize=1)
def _wordnet() -> tuple[Any, str]:
    candidates: list[Path] = []
    if os.environ.get("KEEL_WORDNET_DIR"):
        candidates.append(Path(os.environ["KEEL_WORDNET_DIR"]))
    try:
        import nltk.data

        for base in nltk.data.path:
            candidates.append(Path(base) / "corpora" / "wordnet")
    except ImportError:  # pragma: no cover - nltk is a dependency
        pass
    candidates.append(Path("/usr/share/wordnet"))
    for candidate in candidates:
        path = candidate
        if (path / "data.noun").is_file():
            try:
                if not (path / "lexnames").is_file():
                    path = _with_lexnames(path)
                from nltk.corpus.reader.wordnet import WordNetCorpusReader

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "multilingual functions are not available"
                    reader = WordNetCorpusReader(str(path), None)
                reader.synsets("dog")  # fail here, not mid-run, if the files are damaged
                return reader, str(candidate)
            except Exception:
                continue
    return _NoWordNet(), "none (exact and stem matches only)"


_LEXNAMES = ["adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl"]
_SYNTACTIC_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def _with_lexnames(path: Path) -> Path:
    """Debian's ``wordnet-base`` ships WordNet 3.0 without the ``lexnames`` file NLTK's
    reader wants. That file is the fixed list of the 45 lexicographer files, so Keel
    writes it beside copies of the real files (28 MB, once) in its cache, under an
    ``nltk_data`` root that it adds to NLTK's search path (NLTK reads only there)."""
    import shutil

    import nltk.data
    import platformdirs

    root = Path(platformdirs.user_cache_dir("keel", appauthor=False)) / "nltk_data"
    shim = root / "corpora" / "wordnet"
    shim.mkdir(parents=True, exist_ok=True)
    for f in path.iterdir():
        target = shim / f.name
        if f.is_file() and not (target.exists() and target.stat().st_size == f.stat().st_size):
            target.unlink(missing_ok=True)
            shutil.copyfile(f, target)  # NLTK refuses symlinks and hard links out of its roots
    lexnames = "".join(
        f"{i:02d}\t{name}\t{_SYNTACTIC_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(_LEXNAMES)
    )
    (shim / "lexnames").write_text(lexnames)
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    return shim


def wordnet_source() -> str:
    """Where METEOR's WordNet comes from, or ``"none (...)"``."""
    return _wordnet()[1]


_meteor_lock = __import__("threading").Lock()


def meteor(hypothesis: str, reference: str) -> float:
    from nltk.translate.meteor_score import meteor_score

    hyp, ref = tokenize(hypothesis), tokenize(reference)
    if not hyp or not ref:
        return float(hyp == ref)
    wordnet, _ = _wordnet()
    # NLTK's WordNet reader loads lazily and is not thread-safe while it does.
    with _meteor_lock:
        return float(meteor_score([ref], hyp, wordnet=wordnet))


@functools.lru_cache(maxsize=8)
def _rouge_scorer(kind: str) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=False)


def _rouge(kind: str) -> Callable[[str, str], float]:
    def metric(hypothesis: str, reference: str) -> float:
        # rouge-score's signature is score(target, prediction).
        return float(_rouge_scorer(kind).score(reference, hypothesis)[kind].fmeasure)

    metric.__name__ = kind
    return metric


def cosine_similarity(hypothesis: str, reference: str, *, embedder: str = "minilm") -> float:
    """Cosine of the two texts' embeddings (Keel embedders return unit vectors)."""
    from keel.context.embedders import get_embedder

    vectors = get_embedder(embedder).embed([hypothesis, reference])
    return float(max(-1.0, min(1.0, float(vectors[0] @ vectors[1]))))


METRICS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": fuzzy_match,
    "bleu": bleu,
    "gleu": gleu,
    "meteor": meteor,
    **{f"rouge_{n}": _rouge(f"rouge{n}") for n in range(1, 6)},
    "rouge_l": _rouge("rougeL"),
}
"""Every metric but ``cosine`` (which needs an embedder), by OpenAI's metric name."""


def score(metric: str, hypothesis: str, reference: str, *, embedder: str = "minilm") -> float:
    """The metric's value for ``hypothesis`` against ``reference``, in [0, 1] (cosine: [-1, 1])."""
    if metric == "cosine":
        return cosine_similarity(hypothesis, reference, embedder=embedder)
    return METRICS[metric](hypothesis, reference)
