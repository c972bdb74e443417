"""hfllm generate: greedy equals Transformers' generate, seeded sampling, stop strings, order under batching,
bad lines, long prompts, chat templates, and line-by-line answers on a live pipe."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import run_cli

from hfllm.errors import InputError
from hfllm.inference.generate import Generator, Prompt, Settings, run_generate

PROMPTS = [
    "Command-line tool to",
    "Library for",
    "GNU R package for the analysis of",
    "X.Org X server",
    "Python module to parse",
    "A",
    "Documentation for the",
]


def generate(model_dir: Path, lines: list[str], **kwargs) -> list[dict]:
    """Run generate in this process on `lines`; return the output records."""
    source = kwargs.pop("source", None)
    out = io.StringIO()
    batch_size = kwargs.pop("batch_size", 4)
    strict = kwargs.pop("strict", False)
    if source is None:
        source = Path(kwargs.pop("tmp")) / "prompts.txt"
        source.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    run_generate(model_dir, str(source), Settings(**kwargs), batch_size=batch_size, strict=strict, out=out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_equals_transformers_generate_one_prompt_at_a_time(causal_model, tmp_path, penalty):
    """Also with a repetition penalty (the generative demo uses 1.2), applied per row of a padded batch."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ours = generate(
        causal_model, PROMPTS, tmp=tmp_path, max_new_tokens=12, batch_size=4, repetition_penalty=penalty
    )
    model = AutoModelForCausalLM.from_pretrained(str(causal_model)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(causal_model))
    for record, prompt in zip(ours, PROMPTS, strict=True):
        ids = tokenizer(prompt, return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=12, do_sample=False, repetition_penalty=penalty)
        new = out[0, ids["input_ids"].shape[1] :]
        assert record["completion"] == tokenizer.decode(new, skip_special_tokens=True), prompt
        assert record["new_tokens"] == len(new) and record["finish_reason"] == "length"
    if penalty != 1.0:  # the penalty reached the model: some completion differs from plain greedy
        plain = generate(causal_model, PROMPTS, tmp=tmp_path, max_new_tokens=12, batch_size=4)
        assert [r["completion"] for r in plain] != [r["completion"] for r in ours]


def test_order_and_results_do_not_depend_on_the_batch_size(causal_model, tmp_path):
    one = generate(causal_model, PROMPTS, tmp=tmp_path, max_new_tokens=8, batch_size=1)
    three = generate(causal_model, PROMPTS, tmp=tmp_path, max_new_tokens=8, batch_size=3)
    assert [r["line"] for r in three] == list(range(1, len(PROMPTS) + 1))
    assert [r["completion"] for r in one] == [r["completion"] for r in three]


def test_the_same_seed_gives_the_same_samples_whatever_the_batching(causal_model, tmp_path):
    settings = {
        "tmp": tmp_path,
        "max_new_tokens": 10,
        "sample": True,
        "temperature": 1.5,
        "top_k": 50,
        "top_p": 0.95,
    }
    first = generate(causal_model, PROMPTS, seed=7, batch_size=4, **settings)
    again = generate(causal_model, PROMPTS, seed=7, batch_size=2, **settings)
    other = generate(causal_model, PROMPTS, seed=8, batch_size=4, **settings)
    greedy = generate(causal_model, PROMPTS, tmp=tmp_path, max_new_tokens=10)
    assert first == again
    assert first != other and first != greedy


def test_stop_strings_end_a_completion_without_the_stop_string(causal_model, tmp_path):
    plain = generate(causal_model, PROMPTS, tmp=tmp_path, max_new_tokens=16)
    # stop strings taken from the completions (not from the middle of a UTF-8 sequence, shown as U+FFFD)
    chosen = [(p, r) for p, r in zip(PROMPTS, plain, strict=True) if "\ufffd" not in r["completion"][:8]][:3]
    prompts, plain = [p for p, _ in chosen], [r for _, r in chosen]
    stops = [r["completion"][4:7] for r in plain]
    assert len(stops) == 3
    stopped = generate(causal_model, prompts, tmp=tmp_path, max_new_tokens=16, stop=stops)
    for before, after in zip(plain, stopped, strict=True):
        cut = min(p for p in (before["completion"].find(s) for s in stops) if p >= 0)
        assert after["completion"] == before["completion"][:cut] and after["finish_reason"] == "stop"
        assert after["new_tokens"] < 16


def test_finish_reasons_from_the_tokens_generated(causal_model):
    generator = Generator(causal_model, Settings(max_new_tokens=4, stop=["zz"]), batch_size=1)
    tok, eos = generator.tokenizer, generator.tokenizer.eos_token_id
    word = tok("Library", add_special_tokens=False)["input_ids"]
    item = Prompt(1, text="x", id="a")
    assert generator.record(item, word + [eos, eos]) == {
        "line": 1,
        "id": "a",
        "completion": "Library",
        "new_tokens": len(word) + 1,
        "finish_reason": "eos",
    }
    assert generator.record(item, word)["finish_reason"] == "length"
    stop = tok("Libzz more", add_special_tokens=False)["input_ids"]
    record = generator.record(item, stop + [eos])
    assert record["finish_reason"] == "stop" and record["completion"] == "Lib"


def test_bad_lines_are_skipped_with_their_number_or_end_a_strict_run_after_earlier_output(
    causal_model, tmp_path
):
    lines = 'Library for\n{"prompt": "Command-line tool", "id": 9}\n\n{broken\n{"text": "x"}\nA\n'
    result = run_cli("generate", "-m", causal_model, "--max-new-tokens", "4", input=lines)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 6] and records[1]["id"] == 9
    for number, why in ((3, "empty line"), (4, "not valid JSON"), (5, '"prompt"')):
        assert f"<stdin>:{number}: skipped:" in result.stderr and why in result.stderr
    strict = run_cli("generate", "-m", causal_model, "--max-new-tokens", "4", "--strict", input=lines)
    assert strict.returncode == 3 and "Traceback" not in strict.stderr
    assert "<stdin>:3: empty line" in strict.stderr
    assert [json.loads(line)["line"] for line in strict.stdout.splitlines()] == [1, 2]


def test_a_prompt_longer_than_the_context_keeps_its_last_tokens_or_fails_under_strict(causal_model, tmp_path):
    long = " ".join(["word"] * 200)  # the model's context is 64 tokens
    records = generate(causal_model, [long, "Library for"], tmp=tmp_path, max_new_tokens=8)
    assert [r["line"] for r in records] == [1, 2] and records[0]["new_tokens"] == 8
    with pytest.raises(InputError, match=r"prompts.txt:1: the prompt has \d+ tokens"):
        generate(causal_model, [long], tmp=tmp_path, max_new_tokens=8, strict=True)


def test_chats_and_plain_prompts_use_the_saved_chat_template(causal_build, tmp_path):
    from hfllm.data.chat import render_chat, setup_chat_template

    model_dir = causal_build.causal_model_dir(tmp_path / "chat-model")
    tokenizer = causal_build.bpe_tokenizer("gpt2")
    setup_chat_template(tokenizer, "plain", "test")
    tokenizer.save_pretrained(str(model_dir))
    generator = Generator(model_dir, Settings(max_new_tokens=4), batch_size=2)
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is grep?"}]
    expected = tokenizer(render_chat(tokenizer, chat, True), add_special_tokens=False)["input_ids"]
    assert generator.prompt_ids(Prompt(1, messages=chat)) == expected
    as_user = tokenizer(render_chat(tokenizer, chat[1:], True), add_special_tokens=False)["input_ids"]
    assert generator.prompt_ids(Prompt(1, text="What is grep?")) == as_user
    plain = Generator(model_dir, Settings(max_new_tokens=4, chat="never"), batch_size=2)
    assert plain.prompt_ids(Prompt(1, text="What is grep?")) == tokenizer("What is grep?")["input_ids"]


def test_a_chat_for_a_model_without_template_is_a_bad_line(causal_model, tmp_path):
    line = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(InputError, match=r"prompts.txt:1: a `messages` chat needs a chat template"):
        generate(causal_model, [line], tmp=tmp_path, strict=True)


def test_stream_prints_the_text_of_one_prompt(causal_model, tmp_path):
    from hfllm.errors import ConfigError

    record = generate(causal_model, ["Library for"], tmp=tmp_path, max_new_tokens=6)[0]
    text_out = run_cli(
        "generate", "-m", causal_model, "-p", "Library for", "--max-new-tokens", "6", "--stream"
    )
    assert text_out.returncode == 0, text_out.stderr
    assert text_out.stdout == record["completion"] + "\n"
    two = tmp_path / "two.txt"
    two.write_text("a\nb\n")
    with pytest.raises(ConfigError, match="exactly one prompt"):
        run_generate(causal_model, str(two), Settings(max_new_tokens=4), stream=True, out=io.StringIO())
