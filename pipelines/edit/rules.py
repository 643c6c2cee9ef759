"""Does an edit instruction target the garment? The rule that decides whether garment pixels are re-composited.

After a Kontext edit, the garment's pixels are pasted back from the image being edited (bit-identical
inside its eroded mask), because the garment is the product and Kontext redraws everything it sees. That
would undo an edit *of the garment* ("make the shirt red"), so the rule is:

**An instruction targets the garment when one of its clauses names a garment word and does not ask to keep
it.** In detail:

1. the instruction is split into clauses at ``, ; . : !`` and at the words ``and``, ``but``, ``while``,
   ``then``;
2. a clause names a garment word when it contains, as a whole word (any case, plural ``s``/``es``
   allowed), a word of `garment_words()` (every phrase of the garment segmentation presets: shirt, t-shirt,
   top, dress, jeans, jacket...; and generic words: garment, clothes, outfit, fabric, sleeve, collar,
   print, logo...) or a word of the product's own ``prompts.garment`` / ``title`` that is one of them.
   ``top`` does not count in ``top of`` / ``on top`` (a position, not a garment);
3. a clause asks to keep it when it contains a keep word (`KEEP_WORDS`: keep, preserve, unchanged,
   untouched, same, "don't change", "do not change", intact);
4. the instruction targets the garment when some clause names a garment word without a keep word.

Examples: "marble floor" → no; "make the model smile" → no (targets the person); "change the shirt to
red" → yes; "evening light, keep the dress unchanged" → no. The edit flow's ``--garment keep`` / ``release``
overrides the rule (``auto``, the default, applies it). Person words (`PERSON_WORDS`: face, smile, hair,
pose, expression...) are reported too: on a photo whose kept subject is a whole person, a person edit
keeps only what the person wears.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pipelines.errors import InputError

GENERIC_GARMENT_WORDS = (
    "garment", "clothes", "clothing", "outfit", "apparel", "fabric", "textile", "print", "logo", "pattern",
    "sleeve", "collar", "neckline", "hem", "pocket", "button", "zipper", "zip", "waistband", "tee", "tank top",
    "cardigan", "jumper", "vest", "suit", "polo", "tunic", "blazer", "trouser", "denim", "scarf", "hat", "cap",
)
PERSON_WORDS = (
    "model", "person", "woman", "man", "face", "smile", "smiling", "hair", "hairstyle", "eyes", "expression",
    "makeup", "make-up", "pose", "skin", "arm", "hand", "head", "lips", "beard", "gaze",
)
KEEP_WORDS = ("keep", "keeping", "preserve", "preserving", "unchanged", "untouched", "same", "intact",
              "don't change", "do not change", "dont change", "without changing", "leave")
POLICIES = ("auto", "keep", "release")
_CLAUSE_SPLIT = re.compile(r"[,;.:!?\n]|\b(?:and|but|while|then)\b", re.IGNORECASE)


def _preset_words() -> tuple[str, ...]:
    from pipelines.segmentation.prompts import PRESETS

    words: list[str] = []
    for name in ("upper", "lower", "dress", "outerwear", "shoes", "bag"):
        preset = PRESETS.get(name)
        if preset is not None:
            words += list(preset.phrases)
    return tuple(words)


def garment_words() -> tuple[str, ...]:
    """Every word that names a garment (the segmentation presets' phrases and `GENERIC_GARMENT_WORDS`)."""
    return tuple(dict.fromkeys(w.lower() for w in (*_preset_words(), *GENERIC_GARMENT_WORDS)))


def _word_re(word: str) -> re.Pattern:
    return re.compile(r"(?<![\w-])" + re.escape(word) + r"(?:s|es)?(?![\w-])", re.IGNORECASE)


@dataclass(frozen=True)
class InstructionTarget:
    """What an instruction is about.

    Attributes:
        garment (`bool`): it targets the garment (by the rule of the module docstring).
        person (`bool`): it names the person (face, smile, hair...).
        matched (`list[str]`): the garment words found in clauses without a keep word.
        kept (`list[str]`): garment words found in clauses with a keep word.
        person_words (`list[str]`): the person words found.
    """

    garment: bool
    person: bool
    matched: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    person_words: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"targets_garment": self.garment, "targets_person": self.person, "garment_words": self.matched,
                "kept_garment_words": self.kept, "person_words": self.person_words}


def classify_instruction(instruction: str, *, extra_garment_words: tuple[str, ...] = ()) -> InstructionTarget:
    """Apply the rule of the module docstring to ``instruction``.

    Args:
        instruction (`str`): the edit instruction.
        extra_garment_words (`tuple[str, ...]`, *optional*): the product's own garment words
            (see `product_garment_words`).

    Raises:
        `InputError`: an empty instruction.
    """
    if not isinstance(instruction, str) or not instruction.strip():
        raise InputError("the edit instruction is empty", key="instruction")
    words = tuple(dict.fromkeys((*garment_words(), *(w.lower() for w in extra_garment_words))))
    matched, kept, person = [], [], []
    for clause in _CLAUSE_SPLIT.split(instruction):
        if not clause or not clause.strip():
            continue
        low = clause.lower()
        keep = any(_word_re(k).search(low) if " " not in k and "'" not in k else k in low for k in KEEP_WORDS)
        for w in words:
            for m in _word_re(w).finditer(low):
                if w == "top" and (low[m.end():].lstrip().startswith("of") or low[:m.start()].rstrip().endswith("on")):
                    continue
                (kept if keep else matched).append(w)
                break
        person += [w for w in PERSON_WORDS if _word_re(w).search(low)]
    matched, kept, person = (list(dict.fromkeys(x)) for x in (matched, kept, person))
    return InstructionTarget(garment=bool(matched), person=bool(person), matched=matched, kept=kept,
                             person_words=person)


def product_garment_words(title: str | None, garment_prompt: str | None) -> tuple[str, ...]:
    """The words of a product's title and ``prompts.garment`` that name a garment (e.g. ``"Navy tee"`` → tee)."""
    known = set(garment_words())
    out = []
    for text in (title, garment_prompt):
        for w in re.findall(r"[\w-]+", (text or "").lower()):
            base = w[:-2] if w.endswith("es") and w[:-2] in known else w[:-1] if w.endswith("s") and w[:-1] in known else w
            if base in known:
                out.append(base)
    return tuple(dict.fromkeys(out))


def recomposite_garment(policy: str, target: InstructionTarget) -> bool:
    """Whether to paste the garment's pixels back after the edit: ``keep`` → yes, ``release`` → no,
    ``auto`` → unless the instruction targets the garment."""
    if policy not in POLICIES:
        raise InputError(f"garment policy must be one of {', '.join(POLICIES)}, got {policy!r}", key="garment")
    if policy == "keep":
        return True
    if policy == "release":
        return False
    return not target.garment
