"""Data: readers, cleaning, tokenizer training, packing, splits, and the data dir contract."""
