"""Who may use the app, and who asks: the login list, the admin, the start-up notes about both.

Beyond localhost (``--host 0.0.0.0``, ``--share``) the login page of ``--auth`` / ``--auth-file``
is the only gate. Handlers tell users apart by :func:`requester`: the logged-in user, else the
page's Gradio session (one per page load). The admin is the first user of the login list, or
everyone when the app is local-only without logins. Nothing here imports Gradio.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gradio as gr

    from .settings import Settings

Credentials = list[tuple[str, str]]


def _pair(text: str, where: str) -> tuple[str, str]:
    """``(user, password)`` of ``user:password``; the message says where and what, never the password."""
    if ":" not in text:
        raise ValueError(f"{where}: no ':' (expected user:password)")
    user, password = (part.strip() for part in text.split(":", 1))
    if not user:
        raise ValueError(f"{where}: empty user name (expected user:password)")
    if not password:
        raise ValueError(f"{where}: empty password for user {user!r}")
    return user, password


def read_credentials(entries: Iterable[str] = (), auth_file: str | os.PathLike | None = None) -> Credentials:
    """The ``(user, password)`` pairs of ``entries`` (``--auth``) then of ``auth_file``, in order.

    Args:
        entries: ``user:password`` texts; the password may contain ``:``.
        auth_file: A file of ``user:password`` lines; blank lines and ``#`` comments are skipped.

    Returns:
        The pairs (the first user is the admin); empty when neither is given.

    Raises:
        ValueError: a malformed entry, a user listed twice, an unreadable or empty file. The
            message is one line and names the entry, never its password.
    """
    pairs = [_pair(text, f"--auth (or SSFNET_AUTH) entry {i}") for i, text in enumerate(entries, 1)]
    if auth_file is not None:
        where = f"--auth-file (or SSFNET_AUTH_FILE) {auth_file}"
        try:
            text = Path(auth_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else "not a UTF-8 text file"
            raise ValueError(f"{where}: cannot read it ({reason})") from None
        lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
        found = [_pair(line, f"{where} line {n}") for n, line in lines if line and not line.startswith("#")]
        if not found:
            raise ValueError(f"{where}: no user:password lines in it")
        pairs += found
    seen = set()
    for user, _ in pairs:
        if user in seen:
            raise ValueError(f"user {user!r} is listed twice in --auth / --auth-file")
        seen.add(user)
    return pairs


def requester(request: gr.Request | None) -> str | None:
    """Who sends ``request``: ``user <name>`` when logged in, else ``page <session hash>``; None if unknown."""
    if request is None:
        return None
    if getattr(request, "username", None):
        return f"user {request.username}"
    session = getattr(request, "session_hash", None)
    return f"page {session}" if session else None


class Access:
    """Who is the admin of an app of ``settings`` (its login list is read once, here).

    Raises:
        ValueError: the login list is malformed (see :func:`read_credentials`).
    """

    def __init__(self, settings: Settings) -> None:
        users = settings.credentials()
        self.logins = bool(users)
        self.admin = users[0][0] if users else None
        # Local-only without logins: whoever uses the app sits at this machine.
        self.everyone_admin = settings.local_only and not users

    def draft_owner(self, request: gr.Request | None) -> str | None:
        """Whose drafts ``request``'s unsaved work goes to: None for the drafts every user shares.

        With logins each user has their own; an app that serves other machines without logins
        keeps them per page (a browser tab, an API client); only a local-only app without logins,
        used by whoever sits at this machine (maybe in several tabs), shares them. Unsaved work
        of one user must never be offered to another.
        """
        if self.everyone_admin:
            return None
        who = requester(request)
        if who is None or (self.logins and not who.startswith("user ")):
            return "nobody"  # unknown: drafts that nobody else finds
        return who

    def is_admin(self, request: gr.Request | None) -> bool:
        if self.everyone_admin:
            return True
        return self.admin is not None and getattr(request, "username", None) == self.admin


def startup_notes(settings: Settings) -> list[str]:
    """One line per thing the operator should know about who can reach the app and what they may do."""
    notes = []
    if settings.local_only:
        return notes
    where = "a public share link" if settings.share else f"--host {settings.host}"
    if not settings.credentials():
        notes.append(
            f"the app serves other machines ({where}) without a login: anyone who reaches it can use it; "
            "add --auth user:password (or --auth-file FILE, SSFNET_AUTH, SSFNET_AUTH_FILE)"
        )
    if settings.finetune and not settings.finetune_remote:
        notes.append(
            f"the fine-tuning panel is off because the app serves other machines ({where}); "
            "--finetune-remote (SSFNET_FINETUNE_REMOTE=1) offers it to them"
        )
    return notes
