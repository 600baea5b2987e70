"""Seeded malformed requests for every endpoint of the API, and what a clean answer to each must look like
(tests/jobs/test_serve.py sends them to the real app over HTTP).

A case is raw bytes plus headers, so bodies no JSON encoder writes are included: truncated or non-JSON text,
NaN / 1e400, lone surrogates, deep nesting, the wrong Content-Type, none at all, oversized bodies. `allowed`
is the set of statuses that are a correct answer: 4xx alone for what must be refused; a few well-typed bodies
of unknown ids may be answered (an unknown user is cold start, 200). Generated ids never hold "/", so any
absolute path in an answer came from the server.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

REFUSED = frozenset(range(400, 500))
JSON = {"content-type": "application/json"}
KNOWN_USER, KNOWN_ITEM = "user_0000001", "item_0000001"


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: bytes
    headers: dict = field(default_factory=lambda: dict(JSON))
    allowed: frozenset = REFUSED
    why: str = ""


def text(rng: random.Random, n: int) -> str:
    """Random unicode without '/' or surrogates (valid text; the lone-surrogate cases are written raw)."""
    pools = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x4e00, 0x4fff), (0x1f300, 0x1f64f), (0x0, 0x1f)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(pools)
        ch = chr(rng.randint(lo, hi))
        out.append("_" if ch == "/" else ch)
    return "".join(out)


def wrong_values(rng: random.Random) -> list:
    """JSON values of every type, edge numbers included; none of them a valid string id, list or k."""
    return [None, True, False, 0, -1, 5.0, 3.5, 10 ** 30, -(10 ** 30), "5", "", [], {}, [None], {"a": 1},
            [[KNOWN_ITEM]], rng.randint(-10 ** 6, 10 ** 6), rng.random()]


def random_wrong(rng: random.Random, depth: int = 0):
    """A random JSON value that is neither a string nor a list of strings (so wrong for every field)."""
    kind = rng.choice(["int", "float", "bool", "null", "dict", "mixed_list"] if depth < 4 else ["int", "null"])
    if kind == "int":
        return rng.choice([rng.randint(-10 ** 9, 10 ** 9), -(2 ** 63), 2 ** 64])
    if kind == "float":
        return rng.uniform(-1e300, 1e300)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "dict":
        return {text(rng, rng.randint(1, 6)): random_wrong(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if kind == "mixed_list":
        return [text(rng, 3)] * rng.randint(0, 2) + [random_wrong(rng, depth + 1) for _ in range(rng.randint(1, 3))]
    return None


def raw(obj) -> bytes:
    """obj as a UTF-8 JSON body (\\u escapes only where UTF-8 cannot hold the text: lone surrogates)."""
    try:
        return json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj).encode("utf-8")


# Per endpoint: a valid body, the fields that must be strings / lists of strings / integers.
ENDPOINTS = {
    "/v1/recommend": ({"user_id": KNOWN_USER, "k": 3}, ["user_id"], ["history"], ["k"]),
    "/v1/ctr": ({"user_id": KNOWN_USER, "item_ids": [KNOWN_ITEM]}, ["user_id"], ["item_ids"], []),
    "/v1/explain": ({"user_id": KNOWN_USER, "item_id": KNOWN_ITEM}, ["user_id", "item_id"], [], []),
}


def valid_value(name: str, value, ints: list[str], lists: list[str], max_k: int) -> bool:
    """Whether `value` is a correct value of the field (such cases are left out: they may be answered)."""
    if name in ints:
        return type(value) is int and 1 <= value <= max_k
    if name == "history":   # null and [] are a valid (absent / empty) history
        return value is None or value == [] or isinstance(value, list) and all(type(v) is str and v for v in value)
    if name in lists:
        return isinstance(value, list) and bool(value) and all(type(v) is str and v for v in value)
    return type(value) is str and bool(value)


def typed_cases(rng: random.Random, path: str, max_k: int, n_random: int) -> list[Case]:
    """Each field given every wrong JSON type (and n_random random ones); k out of range; ids too long or
    empty; lists too long."""
    valid, strings, lists, ints = ENDPOINTS[path]
    cases = []
    for name in strings + lists + ints:
        for value in wrong_values(rng):
            if not valid_value(name, value, ints, lists, max_k):
                cases.append(Case("POST", path, raw({**valid, name: value}), why=f"{name}={value!r}"))
    for _ in range(n_random):
        name, value = rng.choice(strings + lists + ints), random_wrong(rng)
        if not valid_value(name, value, ints, lists, max_k):
            cases.append(Case("POST", path, raw({**valid, name: value}), why=f"random {name}={value!r}"[:80]))
    for name in strings:
        cases.append(Case("POST", path, raw({**valid, name: "x" * 257}), why=f"{name} too long"))
    for name in lists:
        cases.append(Case("POST", path, raw({**valid, name: [KNOWN_ITEM, 7]}), why=f"{name} holds a number"))
        cases.append(Case("POST", path, raw({**valid, name: [KNOWN_ITEM] * 300}), why=f"{name} over the limit"))
        cases.append(Case("POST", path, raw({**valid, name: ["x" * 300]}), why=f"{name} id too long"))
    return cases


def shape_cases(rng: random.Random, path: str) -> list[Case]:
    """Missing and extra fields, other top-level JSON values, unknown ids."""
    valid, strings, lists, _ = ENDPOINTS[path]
    cases = [Case("POST", path, raw(value), why=f"top level {value!r}")
             for value in ([], [valid], "text", 7, 1.5, True, None)]
    for name in list(valid):
        rest = {k: v for k, v in valid.items() if k != name}
        if not (path == "/v1/recommend" and name == "k"):   # k has a default
            cases.append(Case("POST", path, raw(rest), why=f"without {name}"))
    for _ in range(4):
        extra = text(rng, rng.randint(1, 12)) or "x"
        if extra not in valid:
            value = rng.choice(wrong_values(rng))
            cases.append(Case("POST", path, raw({**valid, extra: value}), why=f"extra {extra!r}"))
    unknown = text(rng, rng.randint(1, 40))
    if path == "/v1/recommend":   # an unknown user is cold start, an answer; unknown history items are not
        cases.append(Case("POST", path, raw({"user_id": unknown or "u", "k": 2}), allowed=REFUSED | {200},
                          why="unknown unicode user"))
        cases.append(Case("POST", path, raw({"history": [unknown or "x"], "k": 2}), why="unknown history item"))
    if lists:
        cases.append(Case("POST", path, raw({**valid, lists[0]: [unknown or "x"]}), why="unknown item"))
    if path == "/v1/explain":
        cases.append(Case("POST", path, raw({**valid, "item_id": unknown or "x"}), why="unknown item"))
    for name in strings:
        cases.append(Case("POST", path, raw({**valid, name: "\ud800"}), why=f"{name} lone surrogate"))
    return cases


def text_cases(rng: random.Random, path: str, max_body_bytes: int) -> list[Case]:
    """Bytes that are not (acceptable) JSON, the wrong Content-Type, oversized and deeply nested bodies."""
    valid = json.dumps(ENDPOINTS[path][0]).encode()
    cut = rng.randint(1, len(valid) - 1)
    bodies = [b"", b" ", b"{", b"}", b"null", b"{'user_id': 'u'}", valid[:cut], valid + b"garbage", b"\xff\xfe\x00",
              bytes(rng.randrange(256) for _ in range(64)), b'{"user_id": NaN}', b'{"k": 1e400, "user_id": "u"}',
              b'{"user_id": "\\ud800"}', b"[" * 5000 + b"]" * 5000,
              b'{"user_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
              b"{" * 50_000]
    cases = [Case("POST", path, body, why=f"text {body[:24]!r}") for body in bodies]
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        cases.append(Case("POST", path, valid, headers={"content-type": content_type}, why=content_type))
    cases.append(Case("POST", path, valid, headers={}, why="no content type"))
    padding = b" " * (max_body_bytes + 1 - len(valid))
    cases.append(Case("POST", path, valid + padding, why="valid JSON one byte over max_body_bytes"))
    cases.append(Case("POST", path, b'{"user_id": "' + b"x" * (3 * max_body_bytes) + b'"}', why="3x max_body_bytes"))
    cases.append(Case("GET", path, b"", headers={}, why="GET on a POST endpoint"))
    return cases


def cases(seed: int, max_body_bytes: int, max_k: int, n_random: int = 80) -> list[Case]:
    """Every generated case for every endpoint, in a seeded order (max_body_bytes, max_k: the app's config)."""
    rng = random.Random(seed)
    out = []
    for path in ENDPOINTS:
        out += typed_cases(rng, path, max_k, n_random) + shape_cases(rng, path) + text_cases(rng, path, max_body_bytes)
    out += [Case("POST", path, b"{}", why=f"POST {path}") for path in ("/healthz", "/readyz")]
    out.append(Case("POST", "/v1/nowhere", b"{}", why="no such endpoint"))
    rng.shuffle(out)
    return out
