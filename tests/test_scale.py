"""Scale-out embedding: Ray Data actors, and shards that several machines run side by side."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from imgsim.cli.commands import main
from imgsim.core.config import ExtractConfig
from imgsim.embed.scale import ShardError, in_shard, parse_shard
from imgsim.embed.update import update_index
from imgsim.store import open_store


@pytest.fixture
def workdir(make_workdir) -> Path:
    work = make_workdir()
    (work.parent / "data" / "broken_001.png").write_bytes(b"not an image")
    return work


def config(work: Path, **values: object) -> ExtractConfig:
    return ExtractConfig(
        data_dir=str(work.parent / "data"), output_dir=str(work),
        model_path=str(work / "triplet_base_final.pt"), workers=1, **values,  # type: ignore[arg-type]
    )  # fmt: skip


def vectors(work: Path) -> dict[str, np.ndarray]:
    with open_store(work) as store:
        return {n: v for names, vs in store.iter_vectors() for n, v in zip(names, vs, strict=True)}


def test_shards_are_disjoint_and_cover_everything() -> None:
    names = [f"img_{i:05d}.jpg" for i in range(3000)]
    owners = [[k for k in range(1, 6) if in_shard(n, (k, 5))] for n in names]
    assert all(len(o) == 1 for o in owners)
    sizes = np.bincount([o[0] for o in owners])[1:]
    assert sizes.min() > 500  # roughly even
    assert parse_shard("2/8") == (2, 8) and parse_shard("") is None
    for bad in ("0/3", "4/3", "a/b", "3"):
        with pytest.raises(ShardError, match="K/N"):
            parse_shard(bad)


def test_n_shards_build_the_same_index_as_one_run(workdir: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    whole.mkdir()
    shutil.copy(workdir / "triplet_base_final.pt", whole)
    update_index(config(whole), update=False, progress=False)
    for k in (1, 2, 3):  # three "machines", one store
        update_index(config(workdir, shard=f"{k}/3"), progress=False)
    one, sharded = vectors(whole), vectors(workdir)
    assert set(one) == set(sharded) and len(one) == 24
    assert all(np.allclose(one[n], sharded[n], atol=1e-5) for n in one)
    (workdir.parent / "data" / "circle_00001.png").unlink()
    owner = next(k for k in (1, 2, 3) if in_shard("circle_00001.png", (k, 3)))
    other = owner % 3 + 1
    assert update_index(config(workdir, shard=f"{other}/3"), progress=False).removed == 0
    assert update_index(config(workdir, shard=f"{owner}/3"), progress=False).removed == 1


def test_ray_engine_matches_the_single_process_result(workdir: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    local = tmp_path / "local"
    local.mkdir()
    shutil.copy(workdir / "triplet_base_final.pt", local)
    update_index(config(local), update=False, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code = main([
            "index", "--engine", "ray", "--concurrency", "2", "--data",
            str(workdir.parent / "data"), "--workdir", str(workdir),
        ])  # fmt: skip
    finally:
        ray.shutdown()
    assert code == 0
    one, distributed = vectors(local), vectors(workdir)
    assert set(one) == set(distributed) and len(one) == 24  # the broken file skipped
    assert all(np.allclose(one[n], distributed[n], atol=1e-5) for n in one)
