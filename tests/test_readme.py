"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})


def _marked_blocks(text: str) -> dict[str, str]:
    """The code blocks after ``<!-- user-model: NAME -->`` markers, by NAME."""
    return dict(re.findall(r"<!-- user-model: (\S+) -->\n```\w+\n(.*?)```", text, flags=re.S))


def test_readme_user_model_example_runs(tmp_path, monkeypatch, capsys):
    """The README's own-model example, as written: a model in a local file, a weights file, and
    the distill, resume, evaluate and audit commands, here in a fresh directory on the CPU."""
    import json
    import shlex
    import subprocess
    import sys

    import torch

    from infodistill.cli import main

    blocks = _marked_blocks(README.read_text())
    assert set(blocks) == {"my_models.py", "distill-mine.yaml", "commands"}
    (tmp_path / "my_models.py").write_text(blocks["my_models.py"])
    (tmp_path / "distill-mine.yaml").write_text(blocks["distill-mine.yaml"])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # run.device: auto -> the CPU here
    torch.set_num_threads(1)
    lines = blocks["commands"].replace("\\\n", " ").splitlines()
    commands = [shlex.split(line, comments=True) for line in lines]
    commands = [c for c in commands if c]
    assert [c[:2] for c in commands] == [
        ["python", "-c"],
        ["infodistill", "distill"],
        ["infodistill", "distill"],
        ["infodistill", "evaluate"],
        ["infodistill", "audit"],
    ]
    done = subprocess.run([sys.executable, *commands[0][1:]], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    outputs = []
    for command in commands[1:]:
        assert main(command[1:]) == 0, capsys.readouterr().err
        outputs.append(capsys.readouterr().out)
    log = [json.loads(line) for line in (tmp_path / "runs" / "mine" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]  # the --resume rerun found the run finished
    assert f"accuracy             {log[-1]['test']['accuracy']:.4f}" in outputs[2]
    # the audit read the teacher from the weights file and the student from the run, at both stages
    assert "teacher.pt" in outputs[3] and "runs/mine" in outputs[3]
    assert "block1" in outputs[3] and "block2" in outputs[3]
