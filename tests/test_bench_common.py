"""The benches' reading of what else ran on the machine (bench/common.py), which says whether a run was on
a quiet machine where a load average cannot (it counts the bench's own threads)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

BENCH_COMMON = Path(__file__).resolve().parents[1] / "bench" / "common.py"
_spec = importlib.util.spec_from_file_location("bench_common", BENCH_COMMON)
assert _spec is not None and _spec.loader is not None
common = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = common  # dataclasses look their module up there
_spec.loader.exec_module(common)


def test_cpu_times_reads_busy_and_steal_from_proc_stat(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    tick = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal guest guest_nice; idle and iowait are not busy
    stat.write_text(
        f"cpu  {100 * tick} {20 * tick} {30 * tick} {999 * tick} {5 * tick} 0 0 {11 * tick} 0 0\n"
    )
    times = common.cpu_times(stat)
    assert times is not None
    assert times.busy == 150.0
    assert times.steal == 11.0
    assert times.own > 0  # this process has run


def test_cpu_times_is_none_without_proc_stat(tmp_path: Path) -> None:
    assert common.cpu_times(tmp_path / "missing") is None
    (tmp_path / "odd").write_text("intr 1 2 3\n")
    assert common.cpu_times(tmp_path / "odd") is None
    (tmp_path / "odd").write_text("\n")
    assert common.cpu_times(tmp_path / "odd") is None


def test_other_work_is_the_machine_busy_time_less_the_bench_own() -> None:
    start = common.CpuTimes(busy=10.0, steal=0.0, own=1.0, wall=0.0)
    # 10 s on 2 CPUs: the machine was busy 20 s, of which the bench 10 s; the host stole 1 s
    end = common.CpuTimes(busy=30.0, steal=1.0, own=11.0, wall=10.0)
    line = common.other_work(start, end, cpus=2)
    assert "other processes used 50.0% of the machine's CPU time" in line
    assert "steal 5.0%" in line
    alone = common.CpuTimes(busy=20.0, steal=0.0, own=11.0, wall=10.0)  # only the bench ran
    assert "used 0.0%" in common.other_work(start, alone, cpus=2)
    assert "not measured" in common.other_work(None, end)
