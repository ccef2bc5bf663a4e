"""Text splicing of stack files: inserting/removing whole block entries by line keeps neighbouring comments
where they were (ruamel attaches a comment to the *preceding* node: a structural delete would drop the next key's
comment)."""

from __future__ import annotations

from collections.abc import Sequence


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _entry_end(lines: Sequence[str], start: int, col: int, dash_children: bool) -> int:
    """End (exclusive) of the block entry starting on `start` at column `col`.

    Deeper-indented comments belong to the entry; comments at or left of `col` introduce what follows.
    """
    end = start + 1
    for j in range(start + 1, len(lines)):
        text = lines[j].strip()
        if not text:
            continue
        ind = _indent(lines[j])
        if text.startswith("#"):
            if ind > col:
                end = j + 1
            continue
        if ind > col or (dash_children and ind == col and text.startswith("-")):
            end = j + 1
            continue
        break
    return end


def _dash_col(line: str, item_col: int) -> int | None:
    """Column of the `- ` introducing a block sequence item whose value starts at `item_col`, if it leads."""
    head = line[:item_col].rstrip()
    if not head.endswith("-") or head[:-1].strip():
        return None
    return len(head) - 1


def _shift(lines: Sequence[str], by: int) -> list[str] | None:
    out = []
    for line in lines:
        if not line.strip():
            out.append(line)
        elif by >= 0:
            out.append(" " * by + line)
        elif line[:-by].strip():
            return None
        else:
            out.append(line[-by:])
    return out
