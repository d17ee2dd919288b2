"""Label names that travel with published weights.

AudioSet's 527 classes ship as package data: ``assets/audioset_class_labels_indices.csv``
is the ontology's published table ``class_labels_indices.csv`` (index, mid, display name),
the output order of the PANNs and AST AudioSet heads. Models that name their outputs by
mid instead (BEATs' ``label_dict``: output index -> mid) are named through
:func:`names_for_mids`, so a head whose order differs from the table's can never be
labelled by position by mistake.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Mapping, Sequence
from importlib import resources

from audioclf.errors import CheckpointError

AUDIOSET_LABELS_FILE = "audioset_class_labels_indices.csv"
AUDIOSET_NUM_CLASSES = 527


@functools.lru_cache(maxsize=1)
def audioset_table() -> tuple[tuple[str, str], ...]:
    """``((mid, display_name), ...)`` in ``class_labels_indices.csv`` order (527 rows)."""
    text = resources.files("audioclf.models").joinpath("assets", AUDIOSET_LABELS_FILE).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    table = tuple((r["mid"], r["display_name"]) for r in sorted(rows, key=lambda r: int(r["index"])))
    if len(table) != AUDIOSET_NUM_CLASSES or [int(r["index"]) for r in rows] != list(range(len(rows))):
        raise RuntimeError(f"package data {AUDIOSET_LABELS_FILE} is damaged: expected indices 0..526")
    return table


def audioset_names() -> list[str]:
    """The 527 AudioSet display names in the published output order."""
    return [name for _, name in audioset_table()]


def audioset_mids() -> list[str]:
    """The 527 AudioSet mids (``/m/09x0r`` ...) in the published output order."""
    return [mid for mid, _ in audioset_table()]


def names_for_mids(mids: Sequence[str], *, source: str = "checkpoint") -> list[str]:
    """Display names of AudioSet ``mids`` (in the given order); an unknown mid is an error."""
    by_mid = dict(audioset_table())
    unknown = [m for m in mids if m not in by_mid]
    if unknown:
        raise CheckpointError(f"{source}: labels {unknown[:5]} are not AudioSet mids (of class_labels_indices.csv)")
    return [by_mid[m] for m in mids]


def names_from_label_dict(label_dict: Mapping[int, str], num_classes: int, *, source: str = "checkpoint") -> list[str]:
    """Output names of a head named by a BEATs-style ``label_dict`` (output index -> mid).

    The dict must cover every output index exactly once: ``0 .. num_classes - 1``.
    """
    try:
        index = {int(k): str(v) for k, v in label_dict.items()}
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: label_dict must map output indices to AudioSet mids ({err})") from err
    if sorted(index) != list(range(num_classes)):
        raise CheckpointError(
            f"{source}: label_dict covers {len(index)} indices, the head has {num_classes} outputs "
            f"(expected exactly the indices 0..{num_classes - 1})"
        )
    return names_for_mids([index[i] for i in range(num_classes)], source=source)


def names_from_tokens(tokens: Sequence[str]) -> list[str]:
    """AudioSet display names for ESPnet tokens (display names with spaces as underscores and
    quotes dropped, as ESPnet's AS-20K recipe writes them); a token that is not one stays as is."""
    by_token = {name.replace('"', "").strip().replace(" ", "_"): name for _, name in audioset_table()}
    return [by_token.get(t, t) for t in tokens]
