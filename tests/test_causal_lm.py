"""Causal-LM building blocks: packed documents kept apart per model family, the collator, the loss per token
of the whole step, evaluation metrics, the unigram baseline, the model builder and a stock-loadable model/."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hfllm.tasks.causal_lm import (
    IGNORE_INDEX,
    CausalLMCollator,
    causal_eval_outputs,
    causal_lm_loss,
    causal_metrics,
    causal_unigram_perplexity,
    documents_isolated,
    position_ids_for,
)

EOS = 1


@pytest.fixture(scope="module")
def gpt2_tok(causal_build):
    from hfllm.data.causal import ensure_pad_token

    tokenizer = causal_build.bpe_tokenizer("gpt2")
    ensure_pad_token(tokenizer)
    return tokenizer


def test_position_ids_restart_after_each_eos():
    assert position_ids_for(np.array([5, 6, EOS, 7, 8, 9, EOS, 4]), EOS).tolist() == [0, 1, 2, 0, 1, 2, 3, 0]


def test_collator_resets_positions_drops_cross_document_labels_and_pads_with_ignore():
    collator = CausalLMCollator(pad_token_id=0, eos_token_id=EOS)
    batch = collator([{"input_ids": [5, 6, EOS, 7, 8]}, {"input_ids": [9, EOS, 3]}])
    assert "attention_mask" not in batch  # a mask would hide the packing from Transformers
    assert batch["input_ids"].tolist() == [[5, 6, EOS, 7, 8], [9, EOS, 3, 0, 0]]
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 0, 1]
    # token 7 starts a document: predicting it from the previous one is not learned
    assert batch["labels"].tolist() == [[-100, 6, EOS, -100, 8], [-100, EOS, -100, -100, -100]]


def test_collator_keeps_instruction_labels_and_packed_positions():
    collator = CausalLMCollator(pad_token_id=0, eos_token_id=EOS)
    packed = {"input_ids": [4, 5, 6, 7], "labels": [-100, -100, 6, 7], "position_ids": [0, 1, 0, 1]}
    plain = {"input_ids": [4, 5, 6], "labels": [-100, 5, 6]}
    batch = collator([packed, plain])
    assert batch["labels"].tolist() == [[-100, -100, -100, 7], [-100, 5, 6, -100]]
    assert batch["position_ids"].tolist()[0] == [0, 1, 0, 1]
    no_reset = CausalLMCollator(pad_token_id=0, eos_token_id=EOS, reset_at_eos=False)
    assert "position_ids" not in no_reset([{"input_ids": [5, EOS, 6]}])


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2", "mistral"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_documents_do_not_see_each_other(family, attention, gpt2_tok, causal_build):
    """A token's logits do not change when the previous document in its block changes (train mode too)."""
    model = causal_build.tiny_causal_model(gpt2_tok, family)
    model.config._attn_implementation = attention
    eos = gpt2_tok.eos_token_id
    second = [20, 21, 22, 23, 24]
    collator = CausalLMCollator(gpt2_tok.pad_token_id, eos)
    batch = collator(
        [{"input_ids": [5, 6, 7, eos] + second}, {"input_ids": [9, 10, 11, 12, 13, 14, eos] + second}]
    )
    alone = model(input_ids=torch.tensor([second]), use_cache=False).logits[0]
    for mode in ("eval", "train"):
        getattr(model, mode)()
        with torch.no_grad():
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
        torch.testing.assert_close(logits[0, 4:9], logits[1, 7:12], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits[0, 4:9], alone, atol=1e-5, rtol=1e-5)
    assert documents_isolated(model, eos) is True


def test_opt_does_not_keep_packed_documents_apart(gpt2_tok, causal_build):
    # OPT builds its mask without the position ids: the docs say so, and the probe finds it.
    assert documents_isolated(causal_build.tiny_causal_model(gpt2_tok, "opt"), gpt2_tok.eos_token_id) is False


def test_loss_matches_the_model_and_is_normalised_by_the_tokens_of_the_whole_step(gpt2_tok, causal_build):
    model = causal_build.tiny_causal_model(gpt2_tok, "gpt2")
    collator = CausalLMCollator(gpt2_tok.pad_token_id, reset_at_eos=False)
    rows = [{"input_ids": list(range(10, 10 + n))} for n in (12, 7, 9, 5)]
    batch = collator(rows)
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], use_cache=False)
        own = model(input_ids=batch["input_ids"], labels=batch["labels"], use_cache=False).loss
        ours = causal_lm_loss(out, batch["labels"])
        torch.testing.assert_close(ours, own)
        # two half-batches with the step's token count add up to the whole batch's loss
        halves = [collator(rows[:2]), collator(rows[2:])]
        step_tokens = sum(int((h["labels"][:, 1:] != IGNORE_INDEX).sum()) for h in halves)
        parts = [
            causal_lm_loss(model(input_ids=h["input_ids"], use_cache=False), h["labels"], step_tokens)
            for h in halves
        ]
    torch.testing.assert_close(parts[0] + parts[1], ours)


def test_eval_outputs_and_metrics_count_every_labelled_token_once():
    logits = torch.zeros(2, 4, 6)
    logits[0, 0, 3] = logits[0, 1, 2] = logits[1, 0, 5] = 10.0
    labels = torch.tensor([[-100, 3, 4, -100], [-100, 1, -100, -100]])
    nll, count, correct = causal_eval_outputs(logits, labels)
    assert count.tolist() == [2, 1] and correct.tolist() == [1, 0]

    class Pred:
        predictions = (nll.numpy(), count.numpy(), correct.numpy())

    metrics = causal_metrics(Pred)
    assert metrics["tokens"] == 3 and metrics["next_token_accuracy"] == pytest.approx(1 / 3)
    assert metrics["token_loss"] == pytest.approx(float(nll.sum()) / 3)
    assert metrics["perplexity"] == pytest.approx(np.exp(metrics["token_loss"]))


def test_unigram_baseline_counts_eos_but_not_padding():
    from datasets import Dataset

    train = Dataset.from_dict({"input_ids": [[2, 3, 3, EOS], [3, 2, EOS, 0]]})
    valid = Dataset.from_dict({"input_ids": [[3, 3, EOS, 0]]})
    ppl = causal_unigram_perplexity(train, valid, vocab_size=5, skip_ids=[0])
    counts = np.array([0, 2, 2, 3, 0])
    probs = (counts + 1) / (counts.sum() + 5)
    expected = np.exp(-(2 * np.log(probs[3]) + np.log(probs[EOS])) / 3)
    assert ppl == pytest.approx(expected)


def test_model_type_check_names_the_problem_without_importing_torch():
    code = (
        "import sys; from hfllm.models.causal import objective_problem as p;"
        "print(repr([p('bert','causal'), p('gpt2','causal'), p('gpt2','masked'), p('llama','causal'), p('gtp2','causal')]));"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    bert, gpt2, gpt2_masked, llama, typo = eval(out[0])
    assert "objective causal needs a causal-LM model type" in bert and "bert is masked" in bert
    assert gpt2 is None and llama is None
    assert "gpt2 is causal" in gpt2_masked
    assert "did you mean 'gpt2'" in typo
    assert out[1] == "False"


def test_builder_takes_vocabulary_special_ids_and_positions_from_tokenizer_and_data(gpt2_tok):
    from hfllm.errors import ConfigError
    from hfllm.models.causal import build_causal_model

    model = build_causal_model(
        "llama",
        {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
        gpt2_tok,
        max_length=96,
    )
    config = model.config
    assert config.vocab_size == len(gpt2_tok) and config.max_position_embeddings == 96
    assert config.eos_token_id == gpt2_tok.eos_token_id and config.pad_token_id == gpt2_tok.pad_token_id
    with pytest.raises(ConfigError, match="bert is masked"):
        build_causal_model("bert", {}, gpt2_tok, 64)


def test_saved_model_loads_with_stock_classes_and_generates_through_a_pipeline(tmp_path, causal_build):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    model_dir = causal_build.causal_model_dir(tmp_path / "model", "llama", style="llama")
    assert json.loads((model_dir / "generation_config.json").read_text())["pad_token_id"] is not None
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    out = generator("Command-line tool to", max_new_tokens=6, do_sample=False)
    assert out[0]["generated_text"].startswith("Command-line tool to")
    assert len(tokenizer(out[0]["generated_text"])["input_ids"]) > len(
        tokenizer("Command-line tool to")["input_ids"]
    )


def test_fit_embeddings_grows_the_model_for_added_chat_tokens(gpt2_tok, causal_build):
    from hfllm.data.chat import setup_chat_template
    from hfllm.models.causal import fit_embeddings

    model = causal_build.tiny_causal_model(gpt2_tok, "gpt2")
    tokenizer = causal_build.bpe_tokenizer("gpt2")
    info = setup_chat_template(tokenizer, "chatml", "test")
    assert info == {"name": "chatml", "added_tokens": ["<|im_start|>", "<|im_end|>"]}
    assert fit_embeddings(model, tokenizer) == 2
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert fit_embeddings(model, tokenizer) == 0
