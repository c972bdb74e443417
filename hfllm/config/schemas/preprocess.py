"""The `hfllm preprocess` config: inputs, cleaning, splits, tokenizer, packing, output."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from hfllm.config.schemas.base import FileList, Section


class HubSplitsSection(Section):
    """Which of the dataset's own splits becomes each of hfllm's splits."""

    train: str | None = Field("train", description="The dataset's split that becomes train (null: none).")
    validation: str | None = Field(
        None, description="The dataset's split that becomes validation (null: carved from train by split.*)."
    )
    test: str | None = Field(
        None, description="The dataset's split that becomes test (null: carved from train by split.*)."
    )

    @model_validator(mode="after")
    def _some(self) -> HubSplitsSection:
        if self.train is None and self.validation is None and self.test is None:
            raise ValueError("name at least one split: data.hub.splits.train, validation or test")
        return self


class HubSection(Section):
    """A dataset that `datasets.load_dataset(path, name, revision=...)` reads, streamed: on the Hub, or a local dir."""

    path: str = Field(
        description="A Hub dataset (e.g. `glue`, `Salesforce/wikitext`; needs the network, or offline a copy in "
        "the datasets cache) or a local dataset dir (data files, with a README.md `configs:` list for "
        "several configurations)."
    )
    name: str | None = Field(
        None, description="The dataset's configuration (subset), e.g. `sst2` of glue, `wikitext-2-raw-v1`."
    )
    revision: str | None = Field(
        None, description="Branch, tag or commit of the dataset repo; pin it for a run you can repeat."
    )
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None, description="Passed to load_dataset: which files of the repo form which split (rarely needed)."
    )
    splits: HubSplitsSection = Field(
        default_factory=HubSplitsSection,
        description="Our split -> the dataset's split name, e.g. {train: train, validation: validation, test: test}.",
    )


class DataSection(Section):
    """Where the raw text comes from and which columns hold what."""

    files: FileList = Field(
        default_factory=list,
        description="Input files, globs or directories (txt, jsonl/json, csv/tsv, parquet, optionally .gz/.xz/.bz2/.zst), "
        "a `save_to_disk` directory, a Hub dataset name (only when online), or `-` for standard input. "
        "They are split into train/validation/test by `split.*`.",
    )
    train_files: FileList = Field(
        default_factory=list, description="Inputs that form the train split as given."
    )
    validation_files: FileList = Field(
        default_factory=list,
        description="Inputs that form the validation split (else it is carved from train).",
    )
    test_files: FileList = Field(
        default_factory=list, description="Inputs that form the test split (else it is carved from train)."
    )
    format: Literal["auto", "txt", "jsonl", "json", "csv", "tsv", "parquet", "conll", "arrow", "hub"] = Field(
        "auto",
        description="Input format; `auto` goes by the file extension (txt for standard input). conll "
        "(.conll/.iob/.bio): `word ... tag` per line, sentences separated by blank lines (token classification).",
    )
    text_column: str = Field("text", description="Column that holds the text (jsonl, csv, parquet, arrow).")
    text_pair_column: str | None = Field(None, description="Optional second text column (sentence pairs).")
    label_column: str = Field("label", description="Column that holds the label (supervised mode).")
    tokens_column: str = Field("tokens", description="Column of pre-split words (token classification).")
    tags_column: str = Field("tags", description="Column of per-word tags (token classification).")
    label_separator: str | None = Field(
        None,
        description="Split string labels on this to get multi-label examples, e.g. `|` (supervised mode).",
    )
    txt_mode: Literal["line", "paragraph"] = Field(
        "line", description="For .txt: one document per line, or per blank-line separated paragraph."
    )
    encoding_errors: Literal["error", "replace"] = Field(
        "error",
        description="Bytes that are not UTF-8: `error` stops and names file and offset; `replace` "
        "substitutes U+FFFD and counts the documents affected.",
    )
    hub: HubSection | None = Field(
        None,
        description="Read a Hub dataset (or a local dataset repo) with its configuration, revision and splits; "
        "its splits are given splits, like train_files / validation_files / test_files.",
    )
    hub_split: str = Field(
        "train",
        description="Split to read from a saved DatasetDict, or from a Hub name given in `files` (data.hub "
        "maps every split instead).",
    )

    @model_validator(mode="after")
    def _hub_splits_are_given(self) -> Any:
        if self.hub is not None and self.files:
            raise ValueError(
                "data.hub gives its own splits: use data.train_files / validation_files / test_files beside it, "
                "not data.files"
            )
        return self

    prompt_column: str = Field(
        "prompt", description="task causal-lm: column with the prompt (instruction) of a prompt/response row."
    )
    response_column: str = Field(
        "response", description="task causal-lm: column with the response the model learns to give."
    )
    system_column: str | None = Field(
        None, description="task causal-lm: optional column with a system message for prompt/response rows."
    )
    messages_column: str = Field(
        "messages",
        description="task causal-lm: column with a chat, a list of {role, content} (roles system, user, "
        "assistant); a row that has it is read as a chat, else as prompt/response.",
    )


class CleanSection(Section):
    """Cleaning steps, applied in this order; each can be switched off and each is counted.

    Token classification data (pre-split words with tags) is only de-duplicated and checked for
    empty examples: changing the words would break their alignment with the tags.
    """

    html: bool = Field(True, description="Remove HTML tags and unescape entities (&amp; -> &).")
    unicode_normalization: Literal["NFKC", "NFC", "NFKD", "NFD", "none"] = Field(
        "NFKC", description="Unicode normalisation form, or `none`."
    )
    remove_control: bool = Field(True, description="Remove control and zero-width characters.")
    replace_urls: str | None = Field(None, description="Replace URLs with this string (null keeps them).")
    replace_emails: str | None = Field(
        None, description="Replace e-mail addresses with this string (null keeps them)."
    )
    lowercase: bool = Field(False, description="Lowercase the text.")
    collapse_whitespace: bool = Field(
        True, description="Collapse runs of whitespace to one space and strip ends."
    )
    min_chars: int = Field(
        1, ge=0, description="Drop documents shorter than this many characters (after cleaning)."
    )
    max_chars: int | None = Field(None, ge=1, description="Drop documents longer than this many characters.")
    min_words: int = Field(0, ge=0, description="Drop documents with fewer whitespace-separated words.")
    max_words: int | None = Field(None, ge=1, description="Drop documents with more words.")
    dedup: bool = Field(
        True, description="Drop exact duplicates (by hash of the cleaned text), keeping the first."
    )


class SplitSection(Section):
    """Deterministic train/validation/test split, made before the tokenizer is trained."""

    validation: float = Field(0.05, ge=0, lt=1, description="Fraction of documents for validation.")
    test: float = Field(0.05, ge=0, lt=1, description="Fraction of documents for test.")
    seed: int = Field(42, description="Seed of the shuffle that assigns documents to splits.")

    @model_validator(mode="after")
    def _fits(self):
        if self.validation + self.test >= 1:
            raise ValueError("split.validation + split.test must leave something for train (sum < 1)")
        return self


class TokenizerTrainSection(Section):
    """Train a new tokenizer with `tokenizers` on the train split only."""

    type: Literal["wordpiece", "bpe", "unigram"] = Field(
        "wordpiece",
        description="WordPiece (BERT style), byte-level BPE (RoBERTa / GPT-2 style) or Unigram; "
        "objective causal and task causal-lm default to bpe (WordPiece has no end-of-text token).",
    )
    vocab_size: int = Field(16000, ge=8, description="Vocabulary size, special tokens included.")
    min_frequency: int = Field(2, ge=1, description="Minimum count of a merge/piece to enter the vocabulary.")
    lowercase: bool | None = Field(
        None,
        description="Lowercase inside the tokenizer; null: true for wordpiece, false for bpe and unigram.",
    )


class TokenizerSection(Section):
    """Use an existing tokenizer or train one."""

    name_or_path: str | None = Field(
        None, description="An existing tokenizer or model dir (or Hub name when online). Null: train one."
    )
    train: TokenizerTrainSection | None = Field(
        None,
        description="How to train a new tokenizer (on the train split only); the defaults when name_or_path is null.",
    )
    trust_remote_code: bool = Field(False, description="Allow custom tokenizer code from name_or_path.")

    @model_validator(mode="after")
    def _one_source(self):
        if self.name_or_path and self.train is not None:
            raise ValueError(
                "set either tokenizer.name_or_path (use one) or tokenizer.train (train one), not both"
            )
        return self


class PackingSection(Section):
    """How token sequences become training examples."""

    mode: Literal["group", "line", "supervised"] = Field(
        "group",
        description="group: concatenate documents and cut into max_length blocks (pretraining); "
        "line: one example per document, truncated; supervised: keep labels (fine-tuning, and "
        "instruction data for task causal-lm).",
    )
    max_length: int = Field(128, ge=8, description="Tokens per example, special tokens included.")
    remainder: Literal["keep", "drop"] = Field(
        "keep",
        description="group mode: the last short block of each split is kept (padded later by the collator) "
        "or dropped; either way it is counted.",
    )
    label_all_tokens: bool = Field(
        False, description="Token classification: label every sub-token of a word, not only the first."
    )
    pack_examples: bool = Field(
        False,
        description="task causal-lm: put several whole examples into one row of at most max_length tokens "
        "(position_ids restart at each example, so they do not attend to each other where the model "
        "supports it); an example longer than max_length keeps a row of its own, truncated.",
    )


class PreprocessConfig(Section):
    """Root config of `hfllm preprocess`."""

    kind: Literal["preprocess"] = "preprocess"
    data: DataSection = Field(default_factory=DataSection, description="The raw inputs and their columns.")
    clean: CleanSection = Field(default_factory=CleanSection, description="Cleaning steps and filters.")
    split: SplitSection = Field(
        default_factory=SplitSection, description="Train/validation/test ratios and seed."
    )
    tokenizer: TokenizerSection = Field(
        default_factory=TokenizerSection, description="Use an existing tokenizer or train one."
    )
    packing: PackingSection = Field(default_factory=PackingSection, description="How tokens become examples.")
    objective: Literal["masked", "causal"] = Field(
        "masked",
        description="group and line modes: what the examples are for. masked: blocks framed by the "
        "tokenizer's [CLS]/[SEP] (or <s>/</s>) for masked-LM pretraining; causal: every document ends "
        "with the end-of-text token (EOS), blocks are cut from that stream with no framing, for "
        "causal-LM (GPT-style) pretraining. Recorded in manifest.json (supervised data records `supervised`).",
    )
    task: Literal["sequence-classification", "token-classification", "causal-lm"] | None = Field(
        None,
        description="Supervised task; packing.mode supervised defaults to sequence-classification. "
        "causal-lm: instruction data (prompt/response or chat messages) with labels on the responses only; "
        "it implies packing.mode supervised.",
    )
    chat_template: Literal["auto", "own", "chatml", "plain"] = Field(
        "auto",
        description="task causal-lm: how a chat becomes text. own: the tokenizer's chat_template; chatml: "
        "<|im_start|>role ... <|im_end|> (the two tokens are added when missing); plain: `### User:` / "
        "`### Assistant:` headings with the EOS token after each response (no new tokens); auto: own when "
        "the tokenizer has one, else chatml. The template is saved with the data dir's tokenizer, so "
        "`hfllm generate` applies the same one.",
    )
    problem_type: Literal[
        "auto", "single_label_classification", "multi_label_classification", "regression"
    ] = Field(
        "auto",
        description="Sequence classification: auto picks multi-label for list labels, regression for "
        "non-integer numbers, single-label otherwise.",
    )
    num_proc: int | None = Field(
        None, ge=1, description="Processes for cleaning and tokenization; null: all CPU cores (at most 8)."
    )
    batch_size: int = Field(1000, ge=1, description="Documents per batch in cleaning and tokenization.")
    output_dir: str | None = Field(None, description="The data dir to write (or pass --output-dir).")
    strict: bool = Field(
        False,
        description="Refuse data that is only suspicious (classes with fewer than 5 examples, a validation or "
        "test split left empty, problem_type auto choosing regression) instead of warning (or pass --strict).",
    )

    @model_validator(mode="after")
    def _consistent(self):
        if self.task == "causal-lm" and "mode" not in self.packing.model_fields_set:
            self.packing.__dict__["mode"] = "supervised"
        if self.packing.mode == "supervised" and self.task is None:
            self.__dict__["task"] = "sequence-classification"
        if self.task is not None and self.packing.mode != "supervised":
            raise ValueError(f"task {self.task!r} needs packing.mode: supervised")
        if self.packing.pack_examples and self.task != "causal-lm":
            raise ValueError("packing.pack_examples needs task: causal-lm (instruction data)")
        if self.objective == "causal" and self.packing.mode == "supervised" and self.task != "causal-lm":
            raise ValueError(
                "objective causal is for pretraining data (packing.mode group or line); "
                "for instruction data set task: causal-lm"
            )
        generative = self.objective == "causal" or self.task == "causal-lm"
        if self.tokenizer.name_or_path is None and self.tokenizer.train is None:
            self.tokenizer.__dict__["train"] = TokenizerTrainSection(
                type="bpe" if generative else "wordpiece"
            )
        train = self.tokenizer.train
        if generative and train is not None and train.type == "wordpiece":
            if "type" in train.model_fields_set:
                raise ValueError(
                    "tokenizer.train.type wordpiece has no end-of-text token, which causal language "
                    "models need: use bpe (or unigram)"
                )
            train.__dict__["type"] = "bpe"
        return self
