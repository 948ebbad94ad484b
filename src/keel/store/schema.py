"""What a store's recorded migrations say about it, the same on both backends.

A store records the name of every migration applied to it (``keel_migrations``). A name
this Keel does not know means a newer Keel migrated the store: its tables may have columns
and meanings this version does not know, so opening it is refused with one line and the fix
(``keel doctor`` says the same), rather than writing rows the newer Keel would misread.
"""

from __future__ import annotations

from collections.abc import Iterable

from keel.errors import StoreError
from keel.store.migrations import MIGRATIONS

__all__ = ["newer_store_error", "unknown_migrations"]


def unknown_migrations(applied: Iterable[str]) -> list[str]:
    """Applied migrations this Keel does not know, in the order they were applied."""
    known = {m.name for m in MIGRATIONS}
    return [name for name in applied if name not in known]


def newer_store_error(where: str, unknown: list[str]) -> StoreError:
    from keel import __version__

    shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
    return StoreError(
        f"the store {where} was migrated by a newer Keel (migration{'s' if len(unknown) > 1 else ''} "
        f"{shown} unknown to Keel {__version__})",
        hint="upgrade Keel here to the version that migrated it (pip install -U keel), or point "
             "KEEL_STORE_URL / KEEL_HOME at another store",
    )
