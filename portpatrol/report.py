"""The report file (--report FILE): a JSON summary per target, written whole or not at all.

It writes through the command line's own writers (`print_out`, `say`), which decide what a
failing standard output or standard error does to the exit status."""

from __future__ import annotations

import os

from portpatrol.errors import SetupError

TYPE_CHECKING = False  # typing and collections.abc cost ~2 ms to import; only mypy needs their names
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from portpatrol.runner import Progress


def writable(path: str) -> bool:
    """Whether FILE can be written: checked before the wait, not after a wait of minutes."""
    if not path or os.path.isdir(path):
        return False
    if os.path.exists(path):
        return os.access(path, os.W_OK)
    folder = os.path.dirname(path) or "."
    return os.path.isdir(folder) and os.access(folder, os.W_OK)


def write(
    path: str,
    progress: Sequence[Progress],
    status: int,
    *,
    print_out: Callable[[str], None],
    say: Callable[[str], None],
) -> bool:
    """Writes the report to `path` (`-`: standard output, by `print_out`); False, with a line
    (by `say`), when it cannot."""
    import json

    from portpatrol.text import mask_tokens

    def entry(item: Progress) -> dict[str, object]:
        target = item.target
        ready = item.ready_after is not None  # an earlier attempt's error is not a ready target's state
        error = None if item.last_error is None or ready else mask_tokens(item.last_error, target.secrets)
        # As the logs: the name is ours (from the address as written), the address and the peer's
        # words are where a secret can be.
        return {
            "name": target.name,
            "type": target.kind.value,
            "address": mask_tokens(target.address, target.secrets),
            "ready": item.ready_after is not None,
            "attempts": item.attempts,
            "time_to_ready": None if item.ready_after is None else round(item.ready_after, 3),
            "last_error": error,
        }

    summary = {
        "ready": status == 0,  # the wait's exit status: 0 is every target ready
        "exit_status": status,
        "targets": [entry(p) for p in progress],
    }
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    if path == "-":
        try:
            print_out(text)
        except (SetupError, BrokenPipeError):
            return False
        return True
    # A new file renamed onto FILE: a reader sees the old report or the new one, never half of one.
    # Beside the file a symbolic link points to, so the link stays and the rename stays in one folder.
    real = os.path.realpath(path)
    temporary = os.path.join(os.path.dirname(real), f".{os.path.basename(real)}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask decides, as open()
        try:
            with open(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(temporary, real)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as error:
        from portpatrol.text import cut, mask_secrets, printable

        shown = printable(cut(mask_secrets(path), 200))
        say(f"portpatrol: --report {shown}: cannot write: {error.strerror or error}")
        return False
    return True
