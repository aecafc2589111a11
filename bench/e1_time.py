"""Where an E1 preset's time goes: the whole command, the teacher, the runs' training and the PID
tracker's share (targets on the 2-core machine, cores free: a quick preset <= 5 minutes, the
tracker <= 30 % of its wall time).

    python bench/e1_time.py [--preset quick-mnist1d] [--set KEY=VALUE ...] [--json PATH]

Runs ``infodistill.experiments.rid.run_rid`` on the preset in a fresh folder (nothing is reused;
``--out`` keeps it, with its report)
and reads every run's log: ``seconds`` per epoch (training, test evaluation and the PID tracker),
``extra_seconds`` (the tracker alone, written on the epochs it measures). What the logs do not
hold (start-up, data loading, building the runs, the report) is the rest of the wall time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from infodistill.cli.reproduce import parse_settings
from infodistill.experiments.common import apply_settings
from infodistill.experiments.rid import PRESETS, check_method_param, run_rid
from infodistill.training.rundir import read_log

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # loaded by path (the tests): bench/ is not on sys.path then
    sys.path.insert(0, str(HERE))
import benchkit  # noqa: E402

#: the targets of the speed issue, for the quick presets on the 2-core machine
TARGET_WALL_S = 300.0
TARGET_TRACKER_SHARE = 0.30


def time_preset(preset, out: Path) -> dict:
    """Run ``preset`` into ``out`` and split its wall time by what the run logs say."""
    t0 = time.perf_counter()
    run_rid(preset, out, progress=False)
    wall = time.perf_counter() - t0
    teacher = sum(r.get("seconds", 0.0) for r in read_log(out / "teacher" / "log.jsonl"))
    runs, epochs, tracker = 0, 0.0, 0.0
    for log in sorted(out.glob("*-s*/log.jsonl")):
        records = read_log(log)
        runs += 1
        epochs += sum(r.get("seconds", 0.0) for r in records)
        tracker += sum(r.get("extra_seconds", 0.0) for r in records)
    return {
        "preset": preset.name,
        "runs": runs,
        "wall_s": wall,
        "teacher_s": teacher,
        "run_epochs_s": epochs,
        "tracker_s": tracker,
        "training_s": epochs - tracker,
        "rest_s": wall - teacher - epochs,
        "tracker_share": tracker / wall,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick-mnist1d", choices=sorted(PRESETS))
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="as `reproduce rid --set`"
    )
    ap.add_argument("--json", default=None, help="also save the measurement as JSON")
    ap.add_argument(
        "--out", default=None, help="run into this new folder and keep it (default: a temporary one)"
    )
    args = ap.parse_args(argv)
    info = benchkit.machine_info()
    print(benchkit.machine_line(info), flush=True)
    preset = apply_settings(PRESETS[args.preset], parse_settings(args.set), check_method_param)
    if args.out is not None and Path(args.out).exists():
        print(f"bench/e1_time.py: error: --out {args.out} exists; the time is measured from nothing")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        m = time_preset(preset, Path(args.out) if args.out else Path(tmp) / "e1")
    rows = [
        ["whole command", benchkit.fmt_s(m["wall_s"]), "100 %"],
        ["teacher training", benchkit.fmt_s(m["teacher_s"]), f"{100 * m['teacher_s'] / m['wall_s']:.0f} %"],
        [
            f"{m['runs']} runs: training + test",
            benchkit.fmt_s(m["training_s"]),
            f"{100 * m['training_s'] / m['wall_s']:.0f} %",
        ],
        [
            f"{m['runs']} runs: PID tracker",
            benchkit.fmt_s(m["tracker_s"]),
            f"{100 * m['tracker_share']:.0f} %",
        ],
        [
            "start-up, data, building runs, report",
            benchkit.fmt_s(m["rest_s"]),
            f"{100 * m['rest_s'] / m['wall_s']:.0f} %",
        ],
    ]
    print(f"preset {m['preset']} ({m['runs']} runs)")
    print(benchkit.md_table(["part", "time", "share of wall"], rows, ["---", "---:", "---:"]))
    wall_ok, share_ok = m["wall_s"] <= TARGET_WALL_S, m["tracker_share"] <= TARGET_TRACKER_SHARE
    print(
        f"target wall <= {TARGET_WALL_S:.0f} s: {'yes' if wall_ok else 'NO'}; "
        f"tracker <= {100 * TARGET_TRACKER_SHARE:.0f} %: {'yes' if share_ok else 'NO'}"
    )
    if args.json:
        benchkit.write_json(args.json, {"machine": info, **m, "sets": args.set})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
