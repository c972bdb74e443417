"""data.hub: a dataset's configuration, revision and own splits, offline on a local dataset repo.

The dataset is a local dir in the Hub's repo layout (README.md with a `configs:` list and data files,
no loading script), which `datasets.load_dataset(path, name)` reads offline exactly as it reads a Hub
repo. Its text is the real Debian package descriptions of tests/fixtures/finetune/classify.csv.
"""

from __future__ import annotations

import csv
import json
import os
import socket
from pathlib import Path

import pytest
import yaml

from hfllm.errors import InputError
from hfllm.hub import check_hub_reachable

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "finetune" / "classify.csv"
SECTIONS = ["games", "mail", "science", "sound"]
README = """---
configs:
- config_name: sections
  default: true
  data_files:
  - split: train
    path: sections/train.jsonl
  - split: dev
    path: sections/dev.jsonl
  - split: test
    path: sections/test.jsonl
- config_name: summaries
  data_files:
  - split: train
    path: summaries/train.jsonl
dataset_info:
- config_name: sections
  features:
  - name: text
    dtype: string
  - name: label
    dtype:
      class_label:
        names:
          '0': games
          '1': mail
          '2': science
          '3': sound
---
# Debian package descriptions by section (test fixture)

Two configurations: `sections` (full descriptions, class ids, train/dev/test) and `summaries`
(the one-line summary only, section names as text, one train split).
"""


@pytest.fixture(scope="module")
def dataset_repo(tmp_path_factory) -> Path:
    """Return a local dataset repo with two configurations (the layout of a Hub dataset repo)."""
    root = tmp_path_factory.mktemp("hub-dataset")
    with open(FIXTURE, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    parts = {"train": rows[:160], "dev": rows[160:200], "test": rows[200:240]}
    for split, part in parts.items():
        _jsonl(
            root / "sections" / f"{split}.jsonl",
            [{"text": r["text"], "label": SECTIONS.index(r["label"])} for r in part],
        )
    summaries = [{"text": r["text"].split(". ")[0], "label": r["label"]} for r in rows[:200]]
    _jsonl(root / "summaries" / "train.jsonl", summaries)
    (root / "README.md").write_text(README, encoding="utf-8")
    return root


def _jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _config(tmp_path: Path, data: dict, name: str = "cfg.yaml") -> Path:
    config = {
        "kind": "preprocess",
        "data": data,
        "tokenizer": {"train": {"vocab_size": 300}},
        "packing": {"mode": "supervised", "max_length": 32},
        "split": {"validation": 0.1, "test": 0.1},
        "output_dir": str(tmp_path / "out"),
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_a_configurations_own_splits_map_to_ours(cli, tmp_path, dataset_repo):
    hub = {
        "path": str(dataset_repo),
        "name": "sections",
        "splits": {"train": "train", "validation": "dev", "test": "test"},
    }
    result = cli("preprocess", "--config", _config(tmp_path, {"hub": hub}))
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.json
    assert out["splits"] == {"train": 160, "validation": 40, "test": 40}  # given, nothing carved
    assert sorted(out["label2id"]) == SECTIONS  # class ids came back as their names
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [
        (i["split"], i["hub"]["name"], i["hub"]["split"], i["documents"]) for i in manifest["inputs"]
    ] == [
        ("train", "sections", "train", 160),
        ("validation", "sections", "dev", 40),
        ("test", "sections", "test", 40),
    ]
    again = cli("preprocess", "--config", _config(tmp_path, {"hub": hub}))
    assert again.returncode == 0 and again.json["status"] == "cached"


def test_the_other_configuration_and_a_carved_split(cli, tmp_path, dataset_repo):
    hub = {"path": str(dataset_repo), "name": "summaries", "splits": {"train": "train"}}
    result = cli("preprocess", "--config", _config(tmp_path, {"hub": hub}))
    assert result.returncode == 0, result.stderr[-2000:]
    splits = result.json["splits"]
    assert sum(splits.values()) == 200 and splits["validation"] == splits["test"] == 20
    assert sorted(result.json["label2id"]) == SECTIONS


@pytest.mark.parametrize(
    ("hub", "expected"),
    [
        (
            {"name": "sections", "splits": {"train": "train", "validation": "validation"}},
            "has no split 'validation'; it has: train, dev, test",
        ),
        ({"name": "section"}, "set data.hub.name"),
    ],
    ids=["split", "configuration"],
)
def test_a_missing_split_or_configuration_fails_before_any_work(cli, tmp_path, dataset_repo, hub, expected):
    result = cli("preprocess", "--config", _config(tmp_path, {"hub": {"path": str(dataset_repo), **hub}}))
    assert result.returncode == 3 and expected in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and result.stdout == "" and not (tmp_path / "out").exists()


def test_offline_a_hub_name_fails_before_any_work_saying_what_to_do(cli, tmp_path):
    hub = {"path": "hfllm-test/no-such-dataset", "name": "x", "splits": {"train": "train"}}
    result = cli("preprocess", "--config", _config(tmp_path, {"hub": hub}))
    assert result.returncode == 3, result.stderr[-2000:]
    assert "hfllm-test/no-such-dataset (x): not a local dir, and offline" in result.stderr
    assert "give a local dataset dir" in result.stderr and "unset HF_HUB_OFFLINE" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == "" and not (tmp_path / "out").exists()


def test_offline_a_hub_name_in_data_files_says_the_same(cli, tmp_path):
    result = cli("preprocess", "--config", _config(tmp_path, {"files": ["hfllm-test/no-such-dataset"]}))
    assert result.returncode == 3 and "not a local dir, and offline" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "out").exists()


@pytest.fixture
def silent_endpoint():
    """Return the address of a server that accepts connections and never answers (a dead proxy, a black hole)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_unreachable_hub_is_refused_with_what_to_do(silent_endpoint, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", silent_endpoint)
    with pytest.raises(InputError) as err:
        check_hub_reachable("glue", timeout=0.5)
    text = str(err.value)
    assert (
        f"'glue' is not a local dir, and the Hugging Face Hub at {silent_endpoint} cannot be reached" in text
    )
    assert "set HF_HUB_OFFLINE=1 and give a local dir, or check the network" in text


@pytest.mark.parametrize("status", [200, 401, 404, 502])
def test_only_the_hubs_own_answer_counts(monkeypatch, status):
    """The Hub's front page answers 200 (401 when private); a 404 or 502 comes from a proxy or portal."""
    import http.server
    import threading

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        if status in (200, 401):
            check_hub_reachable("glue", timeout=5)
        else:
            with pytest.raises(InputError, match=f"it answered HTTP {status}"):
                check_hub_reachable("glue", timeout=5)
    finally:
        server.shutdown()


def test_cli_with_no_network_fails_fast_naming_the_fix(cli, tmp_path, silent_endpoint, monkeypatch):
    """HF_HUB_OFFLINE unset and the Hub silent: one bounded try (REACH_SECONDS), no library retries."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    monkeypatch.setattr(os, "environ", {**env, "HF_ENDPOINT": silent_endpoint})
    hub = {"path": "glue", "name": "sst2", "splits": {"train": "train"}}
    result = cli("preprocess", "--config", _config(tmp_path, {"hub": hub}), timeout=120)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "cannot be reached to fetch it" in result.stderr
    assert "set HF_HUB_OFFLINE=1 and give a local dir, or check the network" in result.stderr
    assert not (tmp_path / "out").exists()


def test_hub_and_pooled_files_do_not_mix(cli, tmp_path, dataset_repo):
    config = _config(tmp_path, {"hub": {"path": str(dataset_repo)}, "files": [str(FIXTURE)]})
    result = cli("config", "validate", config)
    assert result.returncode == 2 and "data.hub gives its own splits" in result.stderr


@pytest.mark.parametrize("command", ["predict", "finetune"])
def test_a_hub_model_name_with_no_network_fails_fast_naming_the_fix(
    command, cli, tmp_path, silent_endpoint, monkeypatch
):
    """The model loader makes the same one bounded check as datasets (issue 13 point 7)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    monkeypatch.setattr(os, "environ", {**env, "HF_ENDPOINT": silent_endpoint})
    if command == "predict":
        result = cli("predict", "--model", "bert-base-uncased", input="a line\n", timeout=120)
    else:
        config = tmp_path / "ft.yaml"
        config.write_text(
            f"kind: finetune\nmodel: {{name_or_path: bert-base-uncased}}\ndata: {{files: {FIXTURE}}}\n"
        )
        result = cli("finetune", "--config", config, "--output-dir", tmp_path / "run", timeout=120)
    assert result.returncode == 3, result.stderr[-2000:]
    assert (
        "the Hugging Face Hub at" in result.stderr
        and "'bert-base-uncased' is not a local dir" in result.stderr
    )
    assert "set HF_HUB_OFFLINE=1 and give a local dir, or check the network" in result.stderr
    assert not (tmp_path / "run").exists()
