"""The stage contract: declarations order the stages and give each command its options; tasks
reach any executor as picklable units; a dry run writes nothing."""

import pickle
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.test_stage_convert import setup as convert_setup
from tests.test_stage_shard import make_captioned
from unimed_data.executor import LocalExecutor
from unimed_data.imaging import ConvertOptions
from unimed_data.stages.convert import convert_dataset
from unimed_data.stages.order import STAGES, upstream, writer_of
from unimed_data.stages.shard import shard_datasets
from unimed_data.stages.shard_options import ShardOptions
from unimed_data.workspace import Workspace


def test_each_stage_reads_what_an_earlier_stage_writes():
    names = [stage.name for stage in STAGES]
    assert names == ["ingest", "convert", "caption", "dedupe", "shard"]
    for position, stage in enumerate(STAGES):
        if stage.reads:
            assert names.index(writer_of(stage.reads[0]).name) < position
    assert [s.name for s in upstream(STAGES[-1])] == ["ingest", "convert", "caption", "dedupe"]


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_each_stage_command_takes_the_options_its_stage_declares(stage):
    from typer.main import get_command

    from unimed_data.cli import app

    command = get_command(app).commands[stage.name]
    options = {p.name for p in command.params if p.param_type_name == "option"}
    build = {p.name for p in get_command(app).commands["build"].params if p.param_type_name == "option"}
    source = {"out", "recipe", "root", "strict", "demo", "from_folder", "modality", "license", "force"}
    source |= {"executor", "ray_address"}  # where a stage's tasks run
    assert options == source | set(stage.options) and options <= build
    assert command.help.startswith(stage.help)


class PicklingExecutor:
    """Runs each task in this process after a round trip through pickle, as a remote worker would."""

    def __init__(self):
        self.tasks = 0

    def map(self, fn, tasks, *, desc, total=None, on_crash=None):
        for task in tasks:
            self.tasks += 1
            yield pickle.loads(pickle.dumps(fn))(pickle.loads(pickle.dumps(task)))


def test_convert_and_shard_tasks_run_on_any_executor_with_the_same_output(tmp_path: Path):
    outputs = []
    for name, executor in (("local", LocalExecutor(2)), ("pickled", PicklingExecutor())):
        (tmp_path / name).mkdir()
        ws, _ = convert_setup(tmp_path / name)
        convert_dataset(ws, "mixed", ConvertOptions(max_side=64), executor=executor, chunk_rows=2)
        shard_ws = Workspace(tmp_path / name / "shards")
        make_captioned(shard_ws, "chest", 30)
        shard_datasets(shard_ws, ["chest"], ShardOptions(shard_size=4), executor=executor)
        chunks = sorted(p.relative_to(ws.out) for p in ws.images("mixed").glob("*.tar"))
        tars = sorted(shard_ws.out.glob("*/*.tar"))
        outputs.append(([(p, (ws.out / p).read_bytes()) for p in chunks], [t.read_bytes() for t in tars]))
    assert outputs[0] == outputs[1] and outputs[0][0] and outputs[0][1]
    chunks = len(list(ws.images("mixed").glob("*.parquet")))
    assert executor.tasks == chunks + len(outputs[0][1])  # one task per slice of records, one per shard


@pytest.mark.parametrize(
    "captioner",
    [[], ["--captioner", "openai", "--llm-base-url", "http://127.0.0.1:9/v1", "--llm-model", "m"]],
)
def test_a_dry_run_writes_nothing(tmp_path: Path, captioner: list[str]):
    out = tmp_path / "out"
    result = run_cli("build", "--demo", "--out", out, "--dry-run", *captioner)
    assert result.exit_code == 0, result.output
    assert '"units"' in result.stdout and not out.exists()
