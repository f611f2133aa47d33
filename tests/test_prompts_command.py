"""`unimed-data prompts`: an LLM's per-class prompt ensembles written into an eval set, through the
caption backend, against the loopback OpenAI-compatible server with the real `openai` SDK."""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import run_cli
from tests.llm_server import FakeOpenAI, Fault, FaultPlan, captions_json, user_texts

KEY = "sk-prompts-test-key-0123456789"
CLASSES = ["normal", "pneumonia"]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", KEY)


@pytest.fixture(scope="module")
def written_set(tmp_path_factory) -> Path:
    """An X-ray eval set as `unimed-data evalset` writes it: two classes, three images each."""
    base = tmp_path_factory.mktemp("evalset")
    for value, name in enumerate(CLASSES):
        (base / "tree" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (64, 64), color=40 + 150 * value + 9 * i).save(base / "tree" / name / f"{i}.png")
    args = ["evalset", "--from-folder", base / "tree", "--modality", "xray", "--workers", "1"]
    result = run_cli(*args, "--out", base / "set")
    assert result.exit_code == 0, result.output
    return base / "set"


@pytest.fixture
def evalset(written_set: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(written_set, tmp_path / "set"))


def prompts_args(server: FakeOpenAI, evalset: Path, *extra) -> list:
    return [
        "prompts",
        evalset,
        "--captioner",
        "openai",
        "--base-url",
        server.base_url,
        "--model",
        "med-llm",
        "--api-key-env",
        "MY_LLM_KEY",
        *extra,
    ]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_n_prompts_per_class_are_written_and_a_rerun_costs_no_call(evalset: Path, written_set: Path):
    info_before = json.loads((evalset / "info.json").read_text())
    with FakeOpenAI(api_key=KEY) as server:
        result = run_cli(*prompts_args(server, evalset, "--per-class", "4"))
        assert result.exit_code == 0, result.output
        assert server.completions_ok() == 2 and "LLM: 2 calls" in result.output
        sent = {text for r in server.chat_requests() for text in user_texts(r.body)}
        assert all("COUNT: 4" in text for text in sent)
        assert {"Class: normal" in t for t in sent} == {True, False}  # one request per class
        written = snapshot(evalset)
        prompts = json.loads((evalset / "prompts.json").read_text())
        assert list(prompts) == CLASSES
        for name, ensemble in prompts.items():
            assert len(ensemble) == len(set(ensemble)) == 4 and all(name in p for p in ensemble)
        info = json.loads((evalset / "info.json").read_text())
        assert info == {**info_before, "prompt_source": info["prompt_source"]}
        assert info["prompt_source"]["source"] == "llm:med-llm"
        assert info["prompt_source"]["template"] == "llm/class_prompts.j2"
        assert info["prompt_source"]["per_class"] == 4

        calls = len(server.requests)
        again = run_cli(*prompts_args(server, evalset, "--per-class", "4"))
        assert again.exit_code == 0 and "LLM: 0 calls" in again.output and "2 cache hits" in again.output
        # `evalset` rewrites the set (and its template prompts); the cache inside it survives
        tree = written_set.parent / "tree"
        rewrite = ["evalset", "--from-folder", tree, "--modality", "xray", "--workers", "1", "--out", evalset]
        assert run_cli(*rewrite).exit_code == 0
        assert json.loads((evalset / "prompts.json").read_text()) != prompts
        assert run_cli(*prompts_args(server, evalset, "--per-class", "4")).exit_code == 0
        assert len(server.requests) == calls and snapshot(evalset) == written
    for name, data in snapshot(evalset).items():
        assert KEY.encode() not in data, name


def test_invalid_answers_are_asked_again_and_a_class_that_stays_invalid_writes_nothing(evalset: Path):
    before = (evalset / "prompts.json").read_bytes()
    plan = FaultPlan(
        by_prompt={
            "Class: pneumonia": [
                Fault.content(captions_json(["Pneumonia: patchy opacity."] * 3)),
                Fault.content(captions_json(["Pneumonia with consolidation.", "Air bronchograms."])),
            ],
            "Class: normal": [
                Fault.content(captions_json(["Clear lungs.", "", "Sharp costophrenic angles."])),
                Fault.content("not JSON at all"),
                Fault.content(captions_json(["Normal chest."])),
            ],
        }
    )
    with FakeOpenAI(faults=plan, api_key=KEY) as server:
        failed = run_cli(*prompts_args(server, evalset, "--per-class", "3"))
        assert failed.exit_code == 1
        assert "class normal: invalid answer after 3 attempts: expected 3 captions, got 1" in failed.output
        assert "1 of 2 classes got no valid prompts; prompts.json is left as it was" in failed.output
        assert "6 calls" in failed.output and "5 invalid answers re-asked, 1 failed" in failed.output
        assert (evalset / "prompts.json").read_bytes() == before
        asked = [user_texts(r.body) for r in server.chat_requests("Class: pneumonia")]
        assert asked[1][-1] == "That answer is invalid: duplicate captions. Answer again, only the JSON."
        assert asked[2][-1].startswith("That answer is invalid: expected 3 captions, got 2.")

        server.clear_requests()
        fixed = run_cli(*prompts_args(server, evalset, "--per-class", "3"))
        assert fixed.exit_code == 0, fixed.output
        assert server.completions_ok() == 1 and server.completions_ok("Class: normal") == 1
    prompts = json.loads((evalset / "prompts.json").read_text())
    assert [len(p) for p in prompts.values()] == [3, 3]


def test_a_raw_class_id_in_a_prompt_is_refused_and_readable_names_are_asked(evalset: Path):
    (evalset / "classnames.txt").write_text("no_finding\nPneumonia_Bacterial\n")
    info = json.loads((evalset / "info.json").read_text())
    info["readable_names"] = {"no_finding": "normal", "Pneumonia_Bacterial": "bacterial pneumonia"}
    (evalset / "info.json").write_text(json.dumps(info))
    leak = captions_json(["Pneumonia_Bacterial with lobar opacity.", "Consolidation.", "Air bronchograms."])
    plan = FaultPlan(by_prompt={"Class: bacterial pneumonia": [Fault.content(leak)]})
    with FakeOpenAI(faults=plan, api_key=KEY) as server:
        result = run_cli(*prompts_args(server, evalset, "--per-class", "3"))
        assert result.exit_code == 0, result.output
        retry = user_texts(server.chat_requests("Class: bacterial pneumonia")[1].body)[-1]
        assert "leaks a label id: 'Pneumonia_Bacterial'" in retry
    prompts = json.loads((evalset / "prompts.json").read_text())
    assert list(prompts) == ["no_finding", "Pneumonia_Bacterial"]
    assert not any("Pneumonia_Bacterial" in p for p in prompts["Pneumonia_Bacterial"])


def test_dry_run_prints_every_prompt_and_the_calls_and_writes_nothing(evalset: Path):
    before = snapshot(evalset)
    args = ["prompts", evalset, "--model", "med-llm", "--base-url", "http://127.0.0.1:9/v1", "--dry-run"]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout[: result.stdout.index("\n}") + 2])
    assert plan["calls"] == plan["units"] == 2 and plan["cached"] == 0
    assert result.stdout.count("--- user ---") == 2 and "COUNT: 10" in result.stdout
    assert "Class: pneumonia" in result.stdout and "Other classes of the task: normal" in result.stdout
    assert snapshot(evalset) == before and not (evalset / ".llm-cache").exists()
    with FakeOpenAI(api_key=KEY) as server:
        assert run_cli(*prompts_args(server, evalset)).exit_code == 0
    cached = run_cli(*args)
    plan = json.loads(cached.stdout[: cached.stdout.index("\n}") + 2])
    assert plan["calls"] == 0 and plan["cached"] == 2 and "--- user ---" not in cached.stdout


@pytest.mark.parametrize(
    ("change", "extra", "message"),
    [
        ("missing", [], "no such folder"),
        ("empty", [], "not an evaluation set"),
        ("no classnames", [], "no classnames.txt"),
        ("retrieval", [], "a retrieval set has no classes"),
        (None, ["--captioner", "template"], "--captioner template: only openai writes prompts"),
    ],
)
def test_bad_input_is_one_error_line(evalset: Path, tmp_path: Path, change, extra, message):
    target = evalset
    if change == "missing":
        target = tmp_path / "nowhere"
    elif change == "empty":
        target = tmp_path / "empty"
        target.mkdir()
    elif change == "no classnames":
        (evalset / "classnames.txt").unlink()
    elif change == "retrieval":
        (evalset / "dataset_type.txt").write_text("retrieval\n")
    result = run_cli("prompts", target, "--model", "m", "--base-url", "http://127.0.0.1:9/v1", *extra)
    assert result.exit_code == 2
    [line] = result.output.splitlines()
    assert line.startswith("error: ") and message in line


def test_no_model_or_no_key_is_one_error_line(evalset: Path, monkeypatch):
    no_model = run_cli("prompts", evalset)
    assert no_model.exit_code == 2 and no_model.output.startswith("error: --model is needed")
    monkeypatch.delenv("MY_LLM_KEY")
    with FakeOpenAI() as server:
        no_key = run_cli(*prompts_args(server, evalset))
        assert no_key.exit_code == 2 and "MY_LLM_KEY" in no_key.output and not server.requests


def test_a_refused_key_never_shows_and_nothing_is_written(evalset: Path):
    before = snapshot(evalset)
    with FakeOpenAI(api_key="the-right-key") as server:
        refused = run_cli(*prompts_args(server, evalset))
    assert refused.exit_code == 2 and "HTTP 401" in refused.output
    assert KEY not in refused.output and "0123456789" not in refused.output
    after = snapshot(evalset)
    assert {name: data for name, data in after.items() if not name.startswith(".llm-cache")} == before
    assert not any(KEY.encode() in data for data in after.values())


def test_the_evaluator_scores_zero_shot_with_the_written_prompts(evalset: Path, tmp_path: Path):
    pytest.importorskip("open_clip", reason="needs the `train` extra")
    from unimed_train.eval.encode import ModelSpec, load_model
    from unimed_train.eval.runner import _Context, prepare_evalset, zeroshot_scores

    from tests.tiny_models import tiny_local_dir

    built = load_model(ModelSpec("tiny", pretrained=tiny_local_dir(tmp_path / "model")))
    opts = {"batch_size": 8, "workers": 0, "device": "cpu", "precision": "fp32"}
    templated = prepare_evalset(evalset)
    before, targets = zeroshot_scores(_Context(built, templated, opts))
    with FakeOpenAI(api_key=KEY) as server:
        assert run_cli(*prompts_args(server, evalset, "--per-class", "3")).exit_code == 0
    prompted = prepare_evalset(evalset)
    written = json.loads((evalset / "prompts.json").read_text())
    assert prompted.prompt_ensembles() == [written[name] for name in CLASSES]
    assert prompted.prompt_ensembles() != templated.prompt_ensembles()
    after, same_targets = zeroshot_scores(_Context(built, prompted, opts))
    assert (targets == same_targets).all() and before.shape == after.shape
    assert abs(before - after).max() > 1e-3  # the class embeddings are the LLM prompts' now
