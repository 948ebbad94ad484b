"""Cheap local checks: jailbreak / prompt-injection signals and moderation word lists.

Both are first lines of defence, meant to catch the blatant cases at no cost; configure a
``model`` on the check to have a judge look at what they let through. The lists are short
on purpose (high precision); extend moderation with ``blocklist``.
"""

from __future__ import annotations

import re

__all__ = ["MODERATION_TERMS", "jailbreak_signals", "moderation_hits"]

_I = re.IGNORECASE
_PREV = r"(?:all\s+|any\s+|the\s+|your\s+|my\s+|of\s+)*(?:previous|prior|above|earlier|preceding|original|system|initial)"
_RULES = r"(?:instructions?|rules|prompts?|directions|guidelines|context|messages?|constraints)"

# (signal name, weight, pattern). A weight of 1 is enough to fail at the default threshold.
_JAILBREAK: list[tuple[str, float, re.Pattern[str]]] = [
    ("override_instructions", 1.0,
     re.compile(rf"\b(?:ignore|disregard|forget|override|skip|bypass)\s+{_PREV}\s+{_RULES}", _I)),
    ("override_instructions", 1.0,
     re.compile(r"\b(?:ignore|disregard|forget)\s+(?:everything|all)\s+(?:you\s+were\s+told|above|before)", _I)),
    ("reveal_system_prompt", 1.0,
     re.compile(r"\b(?:reveal|show|print|repeat|output|leak|tell\s+me|what\s+(?:is|are))\s+(?:me\s+)?(?:your|the)\s+"
                r"(?:system|hidden|secret|initial|original)\s+(?:prompt|instructions|message)", _I)),
    ("persona_without_rules", 1.0,
     re.compile(r"\b(?:you\s+are\s+now|act\s+as|pretend\s+(?:to\s+be|you\s+are)|roleplay\s+as)\b[^.\n]{0,60}"
                r"\b(?:DAN|unfiltered|uncensored|unrestricted|jailbroken|no\s+(?:rules|restrictions|limits|filters))", _I)),
    ("do_anything_now", 1.0, re.compile(r"\bdo\s+anything\s+now\b|\bDAN\s+mode\b", _I)),
    ("bypass_safety", 1.0,
     re.compile(r"\b(?:bypass|disable|turn\s+off|ignore)\s+(?:your\s+|the\s+|all\s+)*(?:safety|content\s+)?"
                r"(?:filters?|guardrails|safeguards|restrictions|policies|censorship)", _I)),
    ("developer_mode", 0.6, re.compile(r"\b(?:developer|god|debug)\s+mode\b", _I)),
    ("no_restrictions", 0.6,
     re.compile(r"\bwithout\s+(?:any\s+)?(?:restrictions|filters|limitations|rules|censorship|guidelines)\b", _I)),
    ("fake_role_marker", 0.8,
     re.compile(r"<\|?(?:im_start|system|endoftext)\|?>|\[/?INST\]|^\s*#{2,}\s*(?:system|instruction)|"
                r"^\s*(?:system|assistant)\s*:", _I | re.MULTILINE)),
    ("new_instructions", 0.5, re.compile(r"\b(?:new|updated|real)\s+instructions\s*:|\bfrom\s+now\s+on\b", _I)),
    ("jailbreak_word", 0.5, re.compile(r"\bjail\s*break", _I)),
    ("encoded_payload", 0.3, re.compile(r"[A-Za-z0-9+/]{80,}={0,2}")),
]


def jailbreak_signals(text: str) -> tuple[float, list[str]]:
    """The heuristic score of ``text`` and the signals that matched (each counted once)."""
    names: list[str] = []
    score = 0.0
    for name, weight, pattern in _JAILBREAK:
        if name not in names and pattern.search(text):
            names.append(name)
            score += weight
    return score, names


MODERATION_TERMS: dict[str, tuple[str, ...]] = {
    "violence": ("i will kill you", "i'm going to kill", "kill them all", "shoot up the", "murder you",
                 "stab you", "massacre", "behead", "blow up the", "beat you to death"),
    "self_harm": ("kill myself", "end my life", "suicide", "self-harm", "self harm", "cut myself",
                  "want to die", "hurt myself"),
    "hate": ("subhuman", "inferior race", "exterminate them", "ethnic cleansing", "should all die",
             "vermin people"),
    "sexual": ("porn", "explicit sex", "sexual content", "nude photos", "nudes"),
    "harassment": ("you are worthless", "you're worthless", "you idiot", "you moron", "shut up, you",
                   "i know where you live", "nobody likes you"),
    "illicit": ("make a bomb", "build a bomb", "make meth", "cook meth", "buy cocaine", "untraceable gun",
                "launder money", "stolen credit card", "credit card dumps"),
}


def moderation_hits(text: str, categories: list[str], blocklist: list[str]) -> dict[str, list[str]]:
    """Category -> terms of its list found in ``text`` (whole words, case-insensitive); the
    ``blocklist`` terms come under ``blocklist``."""
    lowered = text.lower()
    hits: dict[str, list[str]] = {}
    lists = [(c, MODERATION_TERMS[c]) for c in categories] + [("blocklist", tuple(blocklist))]
    for category, terms in lists:
        for term in terms:
            if re.search(rf"(?<!\w){re.escape(term.lower())}(?!\w)", lowered):
                hits.setdefault(category, []).append(term)
    return hits
