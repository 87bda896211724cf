"""The README's examples, run as tests, and the links of the README and of docs/.

Marking convention: a fenced code block of README.md is run when the line right before its
opening fence is the HTML comment ``<!-- test: python -->`` or ``<!-- test: shell -->``
(invisible on the rendered page). Unmarked blocks are not run.

- ``python`` blocks are executed with :func:`exec` in a namespace that holds the session's
  ``spark`` (the fixture of ``tests/conftest.py``), as a reader pastes them after creating a
  SparkSession. What the block defines (``rmse``, ``model``, ``top``, ...) is then checked.
- ``shell`` blocks hold commands ``python jobs/NAME.py ...`` (a trailing backslash continues a
  line, ``#`` starts a comment). Each command runs with :mod:`subprocess` from the repository
  root, with two substitutions: ``python`` becomes :data:`sys.executable` (the interpreter
  running the tests), and the value of ``--out`` becomes a directory of the same base name
  under pytest's ``tmp_path``, so that an example never writes into the checkout.

Links: every relative Markdown link (``[text](target)``, ``![alt](target)``) outside code in
README.md and docs/*.md must name an existing file inside the repository, and a
``#fragment`` an existing heading of that file; no link may point to ``../shared``. Nor may
the pages name machine paths (``/work/``, ``/tmp/``); ``../shared`` (the test-data location)
appears only in the README's "Tests" section.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

MARK = re.compile(r"^<!--\s*test:\s*(python|shell)\s*-->\s*$")
FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def marked_blocks(path: Path = README) -> list[tuple[str, str]]:
    """``(kind, code)`` of every fenced block whose opening fence follows a test mark."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        mark = MARK.match(lines[i].strip())
        if mark and i + 1 < len(lines) and FENCE.match(lines[i + 1]):
            fence = FENCE.match(lines[i + 1]).group(1)
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith(fence))
            blocks.append((mark.group(1), "\n".join(lines[i + 2:end]) + "\n"))
            i = end
        i += 1
    return blocks


def blocks_of(kind: str) -> list[str]:
    return [code for k, code in marked_blocks() if k == kind]


def commands(code: str) -> list[list[str]]:
    """The commands of a shell block, tokenized, comments and continuations resolved."""
    joined = re.sub(r"\\\n", " ", code)
    return [argv for line in joined.splitlines()
            if (argv := shlex.split(line, comments=True))]


def substituted(argv: list[str], out_root: Path) -> tuple[list[str], Path]:
    """The command as the test runs it (module docstring), and its output directory."""
    assert argv[0] == "python" and argv[1].startswith("jobs/"), \
        f"a tested shell example must run `python jobs/...`, got {shlex.join(argv)}"
    assert "--out" in argv, f"a tested job example must name its --out: {shlex.join(argv)}"
    argv = [sys.executable, *argv[1:]]
    at = argv.index("--out") + 1
    out = out_root / Path(argv[at]).name
    argv[at] = str(out)
    return argv, out


def flag(argv: list[str], name: str, default: str) -> str:
    return argv[argv.index(name) + 1] if name in argv else default


def outside_code(text: str, inline: bool = False) -> list[str]:
    """The page's lines outside fenced blocks, with inline code removed (kept, without its
    backticks, when ``inline``)."""
    kept, fence = [], None
    for line in text.splitlines():
        opening = FENCE.match(line.lstrip())
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None and line.lstrip().startswith(fence):
            fence = None
        elif fence is None:
            kept.append(line.replace("`", "") if inline else INLINE_CODE.sub("", line))
    return kept


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a page: lower case, punctuation dropped, spaces to
    hyphens, repeated anchors numbered."""
    seen: Counter[str] = Counter()
    found = set()
    for line in outside_code(path.read_text(encoding="utf-8"), inline=True):
        heading = HEADING.match(line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(2).strip().lower()).replace(" ", "-")
        found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return found


def test_readme_marks_its_examples():
    kinds = Counter(kind for kind, _ in marked_blocks())
    assert kinds["python"] == 1, kinds
    assert kinds["shell"] >= 1, kinds


def test_readme_job_example(tmp_path):
    runs = [cmd for code in blocks_of("shell") for cmd in commands(code)]
    assert runs
    for argv in runs:
        argv, out = substituted(argv, tmp_path)
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]

        model = out / "model"
        assert (model / "_COMPLETE").is_file()
        assert any((model / "user_factors").glob("*.parquet"))
        assert any((model / "item_factors").glob("*.parquet"))
        meta = json.loads((model / "metadata.json").read_text())
        assert meta["rank"] == int(flag(argv, "--rank", "10"))
        history = meta["history"]
        assert len(history) == int(flag(argv, "--iterations", "10"))
        objective = [entry["objective"] for entry in history]
        assert all(b <= a * (1 + 1e-9) for a, b in zip(objective, objective[1:])), objective
        counts = meta["counts"]
        assert counts["read"] == counts["used"] + counts["rejected"] + counts["merged"] > 0

        test_rmse = re.search(r"^test RMSE\s+(\S+)\s+\(model\)$", done.stdout, re.M)
        assert test_rmse, done.stdout
        assert math.isfinite(float(test_rmse.group(1))) and 0 < float(test_rmse.group(1)) < 4
        assert re.search(r"^rows: \d+ read = \d+ used \+ \d+ rejected \+ \d+ merged$",
                         done.stdout, re.M), done.stdout
        shown = re.findall(r"^user \S+: top unseen items ", done.stdout, re.M)
        assert len(shown) == int(flag(argv, "--show", "0"))


def test_readme_estimator_example(spark, capsys):
    (code,) = blocks_of("python")
    namespace = {"spark": spark, "__name__": "readme_example"}
    exec(compile(code, "README.md (python example)", "exec"), namespace)

    rmse = namespace["rmse"]
    assert math.isfinite(rmse) and 0 < rmse < 4  # the sample's ratings are 1-5
    assert re.search(r"^test RMSE \d+\.\d{4}$", capsys.readouterr().out, re.M)
    model, training = namespace["model"], namespace["training"]
    assert model.rank == 10

    predictions = namespace["predictions"].select("prediction").toPandas()["prediction"]
    assert len(predictions) > 0 and predictions.map(math.isfinite).all()

    seen = {(r.userId, r.movieId) for r in training.select("userId", "movieId").collect()}
    users = {user for user, _ in seen}
    top = namespace["top"].collect()
    assert {row.userId for row in top} == users
    for row in top:
        recs = row.recommendations
        assert 0 < len(recs) <= 5
        scores = [rec.rating for rec in recs]
        assert all(math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True)
        assert not any((row.userId, rec.movieId) in seen for rec in recs)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_inside_the_repository(page):
    broken = []
    for line in outside_code(page.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            if "../shared" in target:
                broken.append(f"{target}: leaves the repository")
                continue
            path, _, fragment = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.is_relative_to(ROOT):
                broken.append(f"{target}: leaves the repository")
            elif not file.is_file():
                broken.append(f"{target}: no such file")
            elif fragment and file.suffix == ".md" and fragment not in anchors(file):
                broken.append(f"{target}: no heading #{fragment} in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_machine_paths(page):
    text = page.read_text(encoding="utf-8")
    for path in ("/work/", "/tmp/"):
        assert path not in text, f"{page.relative_to(ROOT)} names the machine path {path}"
    allowed = ""
    if page == README:
        tests = re.search(r"^## Tests\n(.*?)(?=^## )", text, re.M | re.S)
        allowed = tests.group(1) if tests else ""
    assert text.count("../shared") == allowed.count("../shared"), \
        f"{page.relative_to(ROOT)} names ../shared outside the README's test-data note"
