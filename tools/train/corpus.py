"""The training corpus: English documentation that Debian packages install on this machine.

A fixed, sorted list of files (package, path, reader) makes the corpus reproducible. Each file is
read and cleaned to plain text, then split into paragraphs. Held-out split: the last 5% (by bytes)
of each file's paragraphs, cut at a paragraph boundary. Duplicate paragraphs (GNU manuals repeat
copyright notices, the licences share clauses) are kept once in training, and held-out paragraphs
that also occur in training are dropped, so the held-out text is unseen text.
"""
import ast
import gzip
import hashlib
import re

from sources import SOURCES

# (package, path, reader): sorted by path. `dpkg -S PATH` names the package.

HELDOUT_FRACTION = 0.05

# Info nodes that are indexes, code tables or licence appendices: indexes and tables are not prose,
# and every GNU manual carries the same licence (the licences come once, from common-licenses).
_SKIP_NODE = re.compile(r"index|licen[cs]e|copying|GNU (L?GPL|FDL)|Available Packages|Codes$", re.I)
_MENU_ENTRY = re.compile(r"^\* [^:]+::|^\* .+:\s+[^.]*\.\s*(\(line +\d+\))?\s*$")
_NOTE = re.compile(r"\*[Nn]ote[ \n]+([^:]+?)::|\*[Nn]ote[ \n]+([^:]+?):[^.,)]*[.,]?")
_UNDERLINE = re.compile(r"^\s*[*=\-.]{3,}\s*$")
_TYPOGRAPHY = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                             "\u00a0": " ", "\u2002": " ", "\u2003": " ", "\u2009": " ",
                             "\u2013": "-", "\u2014": "--", "\u2212": "-", "\f": "",
                             "\x7f": ""})


def read_bytes(path):
    raw = open(path, "rb").read()
    return gzip.decompress(raw) if path.endswith(".gz") else raw


def normalise(text):
    """Moderate clean-up: ASCII quotes and dashes, tabs to spaces, no control characters, no
    trailing spaces, at most one blank line in a row. Indentation stays (examples, lists)."""
    text = text.replace("\r\n", "\n").translate(_TYPOGRAPHY).expandtabs(8)
    text = "".join(c for c in text if c == "\n" or c >= " ")
    lines = [ln.rstrip() for ln in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def read_info(path):
    """GNU info: nodes without headers, menus, underlines, indexes and licence nodes."""
    text = read_bytes(path).decode("utf-8", errors="replace")
    kept = []
    for node in text.split("\x1f")[1:]:
        node = node.lstrip("\n")
        head, _, body = node.partition("\n")
        name = re.search(r"Node: ([^,\n]+)", head)
        if not head.startswith("File:") or not name or _SKIP_NODE.search(name.group(1)):
            continue
        lines, in_menu_entry = [], False
        for ln in body.split("\n"):
            if ln.startswith("* Menu:") or _MENU_ENTRY.match(ln):
                in_menu_entry = True
                continue
            if in_menu_entry and ln.startswith(" " * 16) and ln.strip():
                continue  # wrapped description of a menu entry
            in_menu_entry = False
            if not _UNDERLINE.match(ln):
                lines.append(ln)
        body = _NOTE.sub(lambda m: m.group(1) or m.group(2), "\n".join(lines))
        kept.append(body)
    return "\n\n".join(kept)


def read_vim_help(path):
    """Vim help: no title and modelines, *tags* dropped, |links| and example markers unwrapped."""
    lines = read_bytes(path).decode("utf-8", errors="replace").split("\n")[1:]
    out = []
    for ln in lines:
        if re.match(r"\s*vim:.*:\s*$", ln) or _UNDERLINE.match(ln) or ln.strip() == "<":
            continue
        ln = re.sub(r"\*[^\s*|]+\*", "", ln)
        ln = re.sub(r"\|([^\s|]+)\|", r"\1", ln)
        ln = re.sub(r"^<(?=\s)", "", ln)
        ln = re.sub(r"(^|\s)[>~]$", "", ln.rstrip())  # example start, column heading
        out.append(ln)
    return "\n".join(out)


def read_pydoc_topics(path):
    """The Python language reference topics (a dict literal in topics.py), in key order."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and stmt.targets[0].id == "topics":
            topics = ast.literal_eval(stmt.value)
            return "\n\n".join(topics[k] for k in sorted(topics))
    raise ValueError(f"{path}: no topics dict")


def read_plain(path):
    return read_bytes(path).decode("utf-8", errors="replace")


READERS = {"info": read_info, "pydoc_topics": read_pydoc_topics, "plain": read_plain,
           "vim_help": read_vim_help}


def paragraphs(text):
    return [p for p in normalise(text).split("\n\n") if p.strip()]


def _key(p):
    return " ".join(p.split())


def build(sources=SOURCES, fraction=HELDOUT_FRACTION):
    """Returns (train_docs, heldout_docs, stats); one document per source file."""
    per_file = []
    for package, path, reader in sources:
        raw = read_bytes(path)
        paras = paragraphs(READERS[reader](path))
        total = sum(len(p.encode()) + 2 for p in paras)
        cut, tail = len(paras), 0  # the tail holding `fraction` of the bytes is held out
        while cut > 1 and tail < fraction * total:
            cut -= 1
            tail += len(paras[cut].encode()) + 2
        per_file.append((package, path, len(raw), paras[:cut], paras[cut:]))
    seen = set()
    train_docs, files = [], []
    for package, path, raw_bytes, train_paras, _ in per_file:
        kept = []
        for p in train_paras:
            if _key(p) not in seen:
                seen.add(_key(p))
                kept.append(p)
        doc = "\n\n".join(kept)
        train_docs.append(doc)
        files.append({"package": package, "path": path, "raw_bytes": raw_bytes,
                      "train_bytes": len(doc.encode()), "heldout_bytes": 0})
    heldout_docs = []
    for (_, _, _, _, tail), info in zip(per_file, files):
        kept = []
        for p in tail:
            if _key(p) not in seen:
                seen.add(_key(p))
                kept.append(p)
        if kept:
            doc = "\n\n".join(kept)
            heldout_docs.append(doc)
            info["heldout_bytes"] = len(doc.encode())
    train_docs = [d for d in train_docs if d]
    train_bytes = sum(f["train_bytes"] for f in files)
    stats = {"files": files, "heldout_rule": f"last {fraction:.0%} of each file's paragraphs "
             "(by bytes, at a paragraph boundary); paragraphs seen in training dropped",
             "train_bytes": train_bytes, "heldout_bytes": sum(f["heldout_bytes"] for f in files),
             "train_sha256": hashlib.sha256("\x00".join(train_docs).encode()).hexdigest()}
    return train_docs, heldout_docs, stats
