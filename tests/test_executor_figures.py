"""Per-node figures: kept per map in the work folder, summed per stage for stats.json."""

from pathlib import Path

from unimed_data.executor_figures import Figures, collect, forget, save


def test_figures_are_summed_per_stage_and_node_over_the_maps_kept(tmp_path: Path):
    first, second = Figures("ray"), Figures("ray", retries=1)
    first.ran("node-a", "10.0.0.1", 1.25)
    first.ran("node-b", "10.0.0.2", 2.0)
    second.died("node-b", "10.0.0.2")
    second.ran("node-a", "10.0.0.1", 0.5)
    save(tmp_path, "convert chexpert", first)
    save(tmp_path, "convert odir/5k", second)  # any desc makes a file name
    save(tmp_path, "shard train", Figures("ray", crashed=1))
    assert collect(tmp_path) == {
        "kind": "ray",
        "stages": {
            "convert": {
                "nodes": {
                    "node-a": {"ip": "10.0.0.1", "tasks": 2, "seconds": 1.75, "died": 0},
                    "node-b": {"ip": "10.0.0.2", "tasks": 1, "seconds": 2.0, "died": 1},
                },
                "retries": 1,
                "crashed": 0,
            },
            "shard": {"nodes": {}, "retries": 0, "crashed": 1},
        },
    }


def test_a_map_run_again_replaces_its_figures_and_a_forgotten_one_has_none(tmp_path: Path):
    old, new = Figures("ray"), Figures("ray")
    old.ran("node-a", "10.0.0.1", 9.0)
    new.ran("node-b", "10.0.0.2", 1.0)
    save(tmp_path, "convert demo", old)
    save(tmp_path, "convert demo", new)
    assert list(collect(tmp_path)["stages"]["convert"]["nodes"]) == ["node-b"]
    forget(tmp_path, "convert demo")
    assert collect(tmp_path) is None


def test_no_folder_means_no_figures(tmp_path: Path):
    assert collect(tmp_path / "absent") is None
