"""Error text that may leave the process: no server paths, no stack traces.

Load errors name the broken file (an operator has to find it), but a client or a scraper must
not learn the server's directory layout. A file inside the model repository is named relative
to it (`cifar10/backbone.safetensors`); any other absolute path is cut to `…/<file name>`.
The server log keeps the full text.
"""

from __future__ import annotations

import re
from pathlib import Path

# An absolute path that starts a token: not the `/json` of `application/json`.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s/'\"`:,;()\[\]]+/)*([^\s/'\"`:,;()\[\]]+)")
MAX_LENGTH = 500  # a public message is one readable line, whatever the exception held


def public_message(exc: BaseException, model_dir: Path) -> str:
    """`Type: message` with paths made repository-relative and trimmed to one line."""
    text = f"{type(exc).__name__}: {exc}"
    return scrub_paths(text, model_dir)


def scrub_paths(text: str, model_dir: Path) -> str:
    for root in _spellings(model_dir):
        text = text.replace(root + "/", "").replace(root, "<DYNALAY_MODEL_DIR>")
    text = _ABSOLUTE_PATH.sub(lambda m: f"…/{m.group(1)}", text)
    line = " ".join(text.split())
    return line if len(line) <= MAX_LENGTH else line[: MAX_LENGTH - 1] + "…"


def _spellings(model_dir: Path) -> list[str]:
    # Longest first: the resolved absolute form contains the relative one.
    forms = {str(model_dir), str(model_dir.absolute()), str(model_dir.resolve())}
    return sorted((f for f in forms if f not in ("", ".", "/")), key=len, reverse=True)
