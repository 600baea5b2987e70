"""How every error answer of the API looks: JSON {"detail": message}, a Retry-After header when waiting helps
(loading, overloaded), and no absolute server path in the message.

Messages about the client's input name the field and the value (reasonrec.serving.online.BadRequest); messages
about the server (a failed load, a missing CTR tool, an internal error) come from exceptions whose text often
holds the artifact paths of this machine: `redact` keeps the last component of such a path (enough to tell which
file), the full text stays in the replica's log.
"""

from __future__ import annotations

import json
import re

JSON_HEADERS = [(b"content-type", b"application/json")]

# An absolute POSIX path (two or more components) or a URI with a path (s3://bucket/key, file:///x): the prefix
# before the last component is what redact removes.
_PATH = re.compile(r"(?<![\w.~-])(?:[a-z][a-z0-9+.-]*://[^\s'\"/]*)?(?:/[^\s'\"/,;:()\[\]{}]+){2,}")


def redact(text: str) -> str:
    """text with every absolute path or URI shortened to '…/<last component>'."""
    return _PATH.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def problem_body(detail: str) -> bytes:
    """The error body, {"detail": ...}, as bytes for a raw ASGI answer (FastAPI's JSONResponse elsewhere)."""
    return json.dumps({"detail": detail}).encode()


def retry_headers(status: int, retry_after_s: int | None) -> dict[str, str] | None:
    """Retry-After for a 503 that clears by itself (loading, a full queue); none for other statuses."""
    if status != 503 or retry_after_s is None:
        return None
    return {"Retry-After": str(retry_after_s)}
