"""Executors: the local pool keeps task order, and drops figures a cluster run left for its map."""

from pathlib import Path

from unimed_data.executor import LocalExecutor, make_executor
from unimed_data.executor_figures import Figures, collect, save


def square(n: int) -> int:
    return n * n


def test_the_local_executor_returns_results_in_task_order():
    for workers in (1, 2):
        assert list(LocalExecutor(workers).map(square, range(20), desc="squares")) == [
            n * n for n in range(20)
        ]


def test_a_local_map_run_again_drops_the_cluster_figures_of_that_map_only(tmp_path: Path):
    for desc in ("convert a", "convert b"):
        save(tmp_path, desc, Figures("ray"))
    executor = make_executor("local", workers=1, address=None, figures=tmp_path)
    assert list(executor.map(square, [3], desc="convert a")) == [9]
    executor.close()
    assert [path.name for path in tmp_path.iterdir()] == ["convert_b.json"]
    assert collect(tmp_path)["kind"] == "ray"
