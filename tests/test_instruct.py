"""Instruction data (task causal-lm): labels on responses only, chat templates (own, chatml, plain), the
same prompt text in preprocess and generate, optional packing, and the config that finetune builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfllm.config.schemas.preprocess import PreprocessConfig
from hfllm.data.chat import TEMPLATES, assistant_spans, parse_messages, render_chat, setup_chat_template
from hfllm.data.datadir import open_data_dir
from hfllm.data.instruct import IGNORE_INDEX, encode_chat, prompt_text
from hfllm.data.pipeline import run_preprocess
from hfllm.errors import InputError

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is grep?"},
    {"role": "assistant", "content": "A tool to search text."},
    {"role": "user", "content": "And sed?"},
    {"role": "assistant", "content": "A stream editor."},
]


@pytest.fixture
def tokenizer(causal_build):
    return causal_build.bpe_tokenizer("gpt2")


def config(tmp_path: Path, files, tokenizer_dir=None, **top) -> PreprocessConfig:
    body = {
        "task": "causal-lm",
        "data": {"files": [str(f) for f in files]},
        "packing": {"max_length": 96},
        "split": {"validation": 0.1, "test": 0.0},
        "num_proc": 1,
        "output_dir": str(tmp_path / "data"),
        **top,
    }
    body["tokenizer"] = (
        {"name_or_path": str(tokenizer_dir)} if tokenizer_dir else {"train": {"vocab_size": 500}}
    )
    return PreprocessConfig.model_validate(body)


@pytest.mark.parametrize("template", ["chatml", "plain"])
def test_prompt_tokens_carry_the_ignore_label_and_responses_do_not(template, tokenizer):
    setup_chat_template(tokenizer, template, "test")
    row = encode_chat(tokenizer, CHAT, max_length=512)
    ids, labels = row["input_ids"], row["labels"]
    learned = tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX])
    ignored = tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label == IGNORE_INDEX])
    assert "A tool to search text." in learned and "A stream editor." in learned
    for prompt in ("Be brief.", "What is grep?", "And sed?"):
        assert prompt in ignored and prompt not in learned
    assert all(label in (IGNORE_INDEX, i) for i, label in zip(ids, labels, strict=True))
    end = "<|im_end|>" if template == "chatml" else tokenizer.eos_token  # the model learns to stop
    assert learned.count(end) == 2


def test_generate_prompts_with_the_text_that_opens_the_training_example(tokenizer):
    setup_chat_template(tokenizer, "chatml", "test")
    chat = [{"role": "user", "content": "Describe gzip."}, {"role": "assistant", "content": "A compressor."}]
    text, spans = assistant_spans(tokenizer, chat)
    prompt = prompt_text(tokenizer, chat)
    assert text[: spans[0][0]] == prompt == render_chat(tokenizer, chat[:1], add_generation_prompt=True)
    row = encode_chat(tokenizer, chat, 512)
    first = next(i for i, label in enumerate(row["labels"]) if label != IGNORE_INDEX)
    assert row["input_ids"][:first] == tokenizer(prompt, add_special_tokens=False)["input_ids"]


def test_chat_template_choice(tokenizer):
    own = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tokenizer.chat_template = own
    assert setup_chat_template(tokenizer, "auto", "t") == {"name": "own", "added_tokens": []}
    assert tokenizer.chat_template == own
    size = len(tokenizer)
    assert setup_chat_template(tokenizer, "plain", "t")["added_tokens"] == [] and len(tokenizer) == size
    assert tokenizer.chat_template == TEMPLATES["plain"][0]
    tokenizer.chat_template = None
    with pytest.raises(InputError, match="no chat template"):
        setup_chat_template(tokenizer, "own", "t")
    assert setup_chat_template(tokenizer, "auto", "t")["name"] == "chatml"


def test_templates_that_rewrite_earlier_turns_are_refused(tokenizer):
    # renders only the last message: turn i's text is not a prefix of the whole chat's
    tokenizer.chat_template = "{{ messages[-1]['content'] }}{% if add_generation_prompt %}>{% endif %}"
    with pytest.raises(ValueError, match="turn by turn"):
        assistant_spans(tokenizer, CHAT)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[]", "non-empty list"),
        ([{"role": "bot", "content": "x"}], "role 'bot'"),
        ([{"role": "user"}], "not a {role, content}"),
        ([{"role": "user", "content": 3}], "must be a string"),
        ("{not json", "not a list"),
    ],
)
def test_bad_chats_say_what_is_wrong(value, message):
    with pytest.raises(ValueError, match=message):
        parse_messages(value)


def test_preprocess_instruction_data_with_chatml_records_the_template(tmp_path, causal_build):
    from transformers import AutoTokenizer

    files = [causal_build.instruction_file(tmp_path / "inst.jsonl")]
    source = causal_build.tokenizer_dir(tmp_path / "tok")
    result = run_preprocess(config(tmp_path, files, source))
    data = open_data_dir(tmp_path / "data")
    manifest = data.manifest
    assert (
        result["objective"] == "supervised"
        and manifest["task"] == "causal-lm"
        and manifest["mode"] == "supervised"
    )
    assert manifest["chat"]["name"] == "chatml" and manifest["chat"]["added_tokens"] == [
        "<|im_start|>",
        "<|im_end|>",
    ]
    original = AutoTokenizer.from_pretrained(str(source))
    from hfllm.data.datadir import tokenizer_fingerprint

    assert manifest["chat"]["source_fingerprint"] == tokenizer_fingerprint(original)
    saved = AutoTokenizer.from_pretrained(str(tmp_path / "data" / "tokenizer"))
    assert saved.chat_template == TEMPLATES["chatml"][0] and len(saved) == len(original) + 2
    train = data.load_splits()["train"]
    assert set(train.column_names) == {"input_ids", "labels"}
    for row in train:
        labels = row["labels"]
        assert labels[0] == IGNORE_INDEX and any(label != IGNORE_INDEX for label in labels)
    assert manifest["counts"]["label_tokens"] > 0


def test_packing_puts_whole_examples_in_rows_with_restarting_positions(tmp_path, causal_build):
    files = [causal_build.instruction_file(tmp_path / "inst.jsonl")]
    run_preprocess(
        config(
            tmp_path,
            files,
            causal_build.tokenizer_dir(tmp_path / "tok"),
            packing={"max_length": 512, "pack_examples": True},
        )
    )
    data = open_data_dir(tmp_path / "data")
    train = data.load_splits()["train"]
    assert set(train.column_names) == {"input_ids", "labels", "position_ids"}
    starts = sum(row["position_ids"].count(0) for row in train)
    assert len(train) < starts  # several examples share a row
    for row in train:
        assert len(row["input_ids"]) <= 512 and row["position_ids"][0] == 0
        assert len(row["labels"]) == len(row["input_ids"]) == len(row["position_ids"])


def test_plain_template_adds_no_tokens_and_ends_responses_with_eos(tmp_path, causal_build):
    files = [causal_build.instruction_file(tmp_path / "inst.jsonl")]
    source = causal_build.tokenizer_dir(tmp_path / "tok")
    run_preprocess(config(tmp_path, files, source, chat_template="plain", packing={"max_length": 512}))
    data = open_data_dir(tmp_path / "data")
    from hfllm.data.datadir import tokenizer_fingerprint

    assert data.manifest["chat"]["added_tokens"] == []
    assert data.manifest["tokenizer"]["fingerprint"] == data.manifest["chat"]["source_fingerprint"]
    tokenizer = data.load_tokenizer()
    row = data.load_splits()["train"][0]
    learned = [i for i, label in zip(row["input_ids"], row["labels"], strict=True) if label != IGNORE_INDEX]
    assert tokenizer.eos_token_id in learned
    assert tokenizer_fingerprint(tokenizer) == data.manifest["tokenizer"]["fingerprint"]


def test_rows_without_a_response_name_file_and_line(tmp_path, causal_build):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"prompt": "hi", "response": "there"}) + "\n" + json.dumps({"prompt": "only"}) + "\n"
    )
    with pytest.raises(InputError) as err:
        run_preprocess(config(tmp_path, [bad]))
    assert f"{bad}: line 2" in str(err.value) and "'response'" in str(err.value)


def test_task_causal_lm_implies_supervised_mode_and_bpe():
    cfg = PreprocessConfig.model_validate({"task": "causal-lm"})
    assert cfg.packing.mode == "supervised" and cfg.tokenizer.train.type == "bpe"
    with pytest.raises(ValueError, match="pack_examples needs task: causal-lm"):
        PreprocessConfig.model_validate({"packing": {"mode": "supervised", "pack_examples": True}})
    with pytest.raises(ValueError, match="needs packing.mode: supervised"):
        PreprocessConfig.model_validate({"task": "causal-lm", "packing": {"mode": "group"}})


def test_finetune_raw_file_path_builds_a_valid_instruction_preprocess_config(tmp_path):
    from types import SimpleNamespace

    from hfllm.data.labelled import preprocess_config

    data = SimpleNamespace(
        files=["inst.jsonl"],
        text_column="text",
        label_column="label",
        text_pair_column=None,
        max_length=256,
        preprocess={"chat_template": "plain", "packing": {"pack_examples": True}},
    )
    finetune = SimpleNamespace(task="causal-lm", data=data, label_all_tokens=False, problem_type=None)
    mapping = preprocess_config(finetune, "model-dir", tmp_path / "data")
    cfg = PreprocessConfig.model_validate(mapping)
    assert cfg.task == "causal-lm" and cfg.chat_template == "plain" and cfg.packing.pack_examples
    assert cfg.tokenizer.name_or_path == "model-dir" and cfg.packing.max_length == 256


def test_instruction_data_matches_the_model_tokenizer_it_was_made_from(tmp_path, causal_build):
    from transformers import AutoTokenizer

    from hfllm.data.instruct import check_instruction_tokenizer

    files = [causal_build.instruction_file(tmp_path / "inst.jsonl")]
    source = causal_build.tokenizer_dir(tmp_path / "tok")
    run_preprocess(config(tmp_path, files, source))  # chatml: two tokens added
    data = open_data_dir(tmp_path / "data")
    check_instruction_tokenizer(AutoTokenizer.from_pretrained(str(source)), data, str(source))
    other = causal_build.tokenizer_dir(tmp_path / "other", "llama")
    with pytest.raises(InputError, match="another tokenizer"):
        check_instruction_tokenizer(AutoTokenizer.from_pretrained(str(other)), data, str(other))
