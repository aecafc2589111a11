"""Every code block of the README and of the docs site runs, or says why not.

The conventions (docs/writing-docs.md, *Code blocks*):

* every fence names its language: ``python`` and ``bash`` blocks are run; ``yaml`` and ``toml``
  blocks are configs, loaded and checked by the project's own config loader; ``text`` and ``json``
  blocks are output or synopses and are not run;
* ``python`` blocks run in a fresh interpreter each, ``bash`` blocks command by command
  (``infodistill ...`` in this process through ``cli.main``, ``python ...`` as a subprocess); the
  blocks of one page run in order in one scratch directory holding ``configs/``, so a page's later
  block may use what an earlier one wrote (a teacher run, a file);
* an HTML comment on the line before a fence steers the test (invisible on the site):
  ``<!-- docs-test: skip REASON -->`` does not run the block (kept to a few, each with its reason:
  a GPU, CIFAR, another machine, hours, package installs); ``<!-- docs-test: tiny -->`` runs the
  block's training commands with the tiny settings of :data:`TINY` appended (a block that trains
  must carry ``tiny`` or ``skip``); ``<!-- docs-test: file NAME -->`` writes the block to NAME in
  the scratch directory (a module, a config) instead of running it (a config is also checked).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LANGUAGES = {"python", "bash", "yaml", "toml", "text", "json"}
#: skipped blocks allowed in all: keep them few (each names its reason)
MAX_SKIPPED = 8

#: Appended to a ``tiny`` block's commands, by verb: one epoch on a few hundred examples.
TINY: dict[tuple[str, ...], list[str]] = {
    ("train-teacher",): ["optim.epochs=1", "data.train_subset=256", "data.test_subset=256"],
    ("distill",): ["optim.epochs=1", "data.train_subset=256", "data.test_subset=256", "pid.n_samples=256"],
    ("reproduce", "rid"): [
        "--seeds", "0", "--epochs", "1", "--teacher-epochs", "1", "--set", "methods=[baseline, kd]",
        "--set", "teacher_train_subset=256", "--set", "student_train_subset=128",
        "--set", "test_subset=256", "--set", "pid_layers=last", "--set", "pid_boot=2",
        "--set", "pid_samples=256",
    ],
    ("reproduce", "fidelity"): [
        "--seeds", "0", "--epochs", "1", "--teacher-epochs", "1", "--set", "ensembles=[1]",
        "--set", "taus=[1.0]", "--set", "data_settings=[]", "--set", "lambdas=[0.5]",
        "--set", "train_subset=256", "--set", "test_subset=256",
    ],
    ("reproduce", "progressive"): [
        "--seeds", "0", "--epochs", "1", "--teacher-epochs", "2", "--set", "n=6", "--set", "k=2",
        "--set", "train_size=256", "--set", "test_size=128", "--set", "probe_size=256",
        "--set", "teacher_hidden=16", "--set", "student_hidden=8",
    ],
    ("audit",): ["--n", "300", "--boot", "5"],
}
TRAINING_VERBS = {"train-teacher", "distill", "reproduce"}

_FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_MARK = re.compile(r"<!-- docs-test: (skip|tiny|file)\b\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    mark: str | None  # skip, tiny, file or None
    arg: str  # the skip's reason or the file's name

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    out = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = _MARK.search(before)
        out.append(Block(page, line, m.group(1), m.group(2), *(mark.groups() if mark else (None, ""))))
    return out


ALL = [b for page in PAGES for b in blocks(page)]


def test_every_block_is_tagged_and_few_are_skipped():
    untagged = [b.where for b in ALL if b.lang not in LANGUAGES]
    assert not untagged, f"fences without a known language ({sorted(LANGUAGES)}): {untagged}"
    skipped = [b for b in ALL if b.mark == "skip"]
    assert all(len(b.arg) > 10 for b in skipped), "every skip states its reason"
    assert len(skipped) <= MAX_SKIPPED, [f"{b.where}: {b.arg}" for b in skipped]
    for b in ALL:
        if b.lang == "bash" and b.mark is None:
            verbs = {c[1] for c in commands(b.code) if c[:1] == ["infodistill"] and len(c) > 1}
            assert not verbs & TRAINING_VERBS, f"{b.where} trains: mark it tiny (or skip, with a reason)"
        if b.mark == "file":
            assert b.arg and "/" not in b.arg, f"{b.where}: file NAME"


def test_readme_is_the_entrance():
    """At most 15 KB, and no measured timings or commit ids (docs/benchmarks.md and
    docs/reproducibility.md hold those)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.encode()) <= 15 * 1024
    assert not re.findall(r"\b\d+ min\b|\b\d+(?:\.\d+)? ?(?:s|ms)\b", text), "a timing in the README"
    commit_id = r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b"
    assert not re.findall(commit_id, text), "a commit id in the README"


def commands(code: str) -> list[list[str]]:
    """A bash block's commands as argv lists: continuations joined, comments dropped, ``&&`` split."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            out.append(words[:cut])
            words = words[cut + 1 :]
    return [c for c in out if c]


def _tiny(argv: list[str]) -> list[str]:
    for key in sorted(TINY, key=len, reverse=True):
        if tuple(argv[: len(key)]) == key:
            return argv + TINY[key]
    return argv


def _env() -> dict[str, str]:
    src = str(Path(__import__("infodistill").__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def _check_config(b: Block, path: Path) -> None:
    """A config block loads through the project's loader (unknown keys, wrong types: an error)."""
    from infodistill.training.config import DistillConfig, TeacherTrainConfig, load_config

    if b.lang == "yaml":
        import yaml

        keys = set(yaml.safe_load(b.code) or {})
    else:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10: the backport (a test extra)
            import tomli as tomllib

        keys = set(tomllib.loads(b.code))
    # train-teacher's config has a model; distill's a student and a teacher
    load_config(TeacherTrainConfig if "model" in keys else DistillConfig, path)


def _run_block(b: Block, work: Path, capsys) -> None:
    from infodistill.cli import main

    if b.lang in ("yaml", "toml"):
        path = work / (b.arg if b.mark == "file" else f"block-{b.line}.{b.lang}")
        path.write_text(b.code)
        _check_config(b, path)
        return
    if b.mark == "file":
        (work / b.arg).write_text(b.code)
        return
    if b.lang == "python":
        done = subprocess.run(
            [sys.executable, "-c", b.code], cwd=work, env=_env(), capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{b.where}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        return
    assert b.lang == "bash"
    for argv in commands(b.code):
        if argv[:3] == ["python", "-m", "infodistill"]:
            argv = ["infodistill", *argv[3:]]
        if argv[0] == "infodistill":
            args = _tiny(argv[1:]) if b.mark == "tiny" else argv[1:]
            status = main(args)
            err = capsys.readouterr().err
            assert status == 0, f"{b.where}: {shlex.join(argv)} exited {status}: {err[-2000:]}"
        elif argv[0] == "python":
            done = subprocess.run(
                [sys.executable, *argv[1:]], cwd=work, env=_env(), capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, f"{b.where}: {shlex.join(argv)}:\n{done.stderr[-4000:]}"
        else:
            pytest.fail(f"{b.where}: {argv[0]!r} is not run by this test; mark the block skip, with a reason")


def _to_run(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.mark != "skip" and b.lang not in ("text", "json")]


@pytest.mark.parametrize("page", [p for p in PAGES if _to_run(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_page_code_blocks_run(page, tmp_path, monkeypatch, capsys):
    import torch

    todo = _to_run(page)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # run.device: auto -> the CPU
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for b in todo:
            _run_block(b, tmp_path, capsys)
    finally:
        torch.set_num_threads(threads)


def _file_blocks(page: Path) -> dict[str, str]:
    return {b.arg: b.code for b in blocks(page) if b.mark == "file"}


def test_own_model_example_does_what_it_says(tmp_path, monkeypatch, capsys):
    """docs/distillation.md's own-model example, as written: a model in a local file, a weights
    file, and the distill, resume, evaluate and audit commands, in a fresh directory on the CPU;
    beyond running, the resume finds the run finished and the audit reads both models."""
    import json

    import torch

    from infodistill.cli import main

    page = ROOT / "docs" / "distillation.md"
    files = _file_blocks(page)
    assert set(files) >= {"my_models.py", "distill-mine.yaml"}
    (command_block,) = [b for b in blocks(page) if b.lang == "bash" and "distill-mine.yaml" in b.code]
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    torch.set_num_threads(1)
    cmds = commands(command_block.code)
    assert [c[:2] for c in cmds] == [
        ["python", "-c"],
        ["infodistill", "distill"],
        ["infodistill", "distill"],
        ["infodistill", "evaluate"],
        ["infodistill", "audit"],
    ]
    done = subprocess.run(
        [sys.executable, *cmds[0][1:]], cwd=tmp_path, env=_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    outputs = []
    for command in cmds[1:]:
        assert main(command[1:]) == 0, capsys.readouterr().err
        outputs.append(capsys.readouterr().out)
    log = [json.loads(line) for line in (tmp_path / "runs" / "mine" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]  # the --resume rerun found the run finished
    assert f"accuracy             {log[-1]['test']['accuracy']:.4f}" in outputs[2]
    # the audit read the teacher from the weights file and the student from the run, at both stages
    assert "teacher.pt" in outputs[3] and "runs/mine" in outputs[3]
    assert "block1" in outputs[3] and "block2" in outputs[3]
