"""The CPU budget two apps share: the rule on its own, then two real engines splitting the cores."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from webapp.engine.cpu_share import CpuShare


def pair(path: Path, cores: int) -> tuple[CpuShare, CpuShare]:
    return CpuShare(path, member=0, members=2, cores=cores), CpuShare(path, member=1, members=2, cores=cores)


def test_a_busy_app_alone_takes_every_core_and_two_busy_apps_split_them(tmp_path: Path) -> None:
    office, character = pair(tmp_path / "share", cores=2)
    assert office.threads(busy=True) == 2, "the other app is idle"
    assert character.threads(busy=True) == 1
    assert office.threads(busy=True) == 1
    character.threads(busy=False)
    assert office.threads(busy=True) == 2, "the other app went idle"


def test_odd_cores_go_to_the_first_app_and_nobody_gets_none(tmp_path: Path) -> None:
    office, character = pair(tmp_path / "three", cores=3)
    office.threads(busy=True)
    assert (character.threads(busy=True), office.threads(busy=True)) == (1, 2)
    one, two = pair(tmp_path / "one", cores=1)
    one.threads(busy=True)
    assert (two.threads(busy=True), one.threads(busy=True)) == (1, 1)


def test_an_app_that_died_busy_stops_counting(tmp_path: Path) -> None:
    path = tmp_path / "share"
    code = (
        "import sys; from pathlib import Path; from webapp.engine.cpu_share import CpuShare\n"
        "CpuShare(Path(sys.argv[1]), member=1, members=2, cores=2).threads(busy=True)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=Path(__file__).parents[2])
    office = CpuShare(path, member=0, members=2, cores=2)
    # Within STALE_S of its last step it still counts (a long step looks the same) ...
    assert office.threads(busy=True) == 1
    # ... after that, its process is gone, so it no longer does.
    with path.open("r+b") as file:
        pid, busy, stamp = struct.unpack_from("<qqd", file.read(48), 24)
        file.seek(24)
        file.write(struct.pack("<qqd", pid, busy, stamp - 60))
    assert office.threads(busy=True) == 2


def test_members_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"member 2 is not in 0\.\.1"):
        CpuShare(tmp_path / "share", member=2, members=2, cores=2)


@pytest.mark.slow
def test_two_real_engines_split_the_cores_only_while_both_are_busy(tmp_path: Path) -> None:
    from tests.engine.test_batching import request_make, spec_make
    from webapp.engine.llama import LlamaEngine

    path = tmp_path / "share"
    office = LlamaEngine(spec_make(slots=2), cpu_share=CpuShare(path, member=0, members=2, cores=2))
    character = LlamaEngine(spec_make(slots=2), cpu_share=CpuShare(path, member=1, members=2, cores=2))
    try:
        office.submit(request_make("Alone, name three colors.", 16)).result()
        alone = office.stats().steps_by_threads
        both = [e.submit(request_make(f"Together, question {i}.", 48)) for i in range(2) for e in (office, character)]
        for handle in both:
            handle.result()
        shared = [dict(e.stats().steps_by_threads) for e in (office, character)]
    finally:
        office.close()
        character.close()
    assert [threads for threads, _ in alone] == [2], "alone: every step on both cores"
    assert all(steps.get(1, 0) > 10 for steps in shared), f"both busy: one core each ({shared})"
