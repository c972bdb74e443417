"""A batched map over an Arrow file in worker processes that Ctrl-C stops cleanly.

datasets' own `map(num_proc=N)` waits on a Manager queue; a SIGINT that lands inside that wait can
leave it hung (seen here). These workers ignore SIGINT, the parent owns it and terminates the pool,
and each worker writes its own contiguous shard, so the output keeps the input order.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

SHARDS_PER_PROCESS = 4  # more shards than workers: finer progress, better balance


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_shard(task: tuple) -> str:
    """Map `fn` over rows [start, end) of the Arrow file and write them with the new columns; return the path."""
    from datasets import Dataset
    from datasets.arrow_writer import ArrowWriter

    source, start, end, out, fn, kwargs, features, batch_size = task
    dataset = Dataset.from_file(source)
    writer = ArrowWriter(features=features, path=out)
    try:
        for offset in range(start, end, batch_size):
            batch = dataset[offset : min(offset + batch_size, end)]
            writer.write_batch({**batch, **fn(batch, **kwargs)})
        writer.finalize()
    finally:
        writer.close()
    return out


def map_arrow(
    source: Path,
    fn: Callable[..., dict[str, list]],
    kwargs: dict[str, Any],
    features,
    processes: int,
    work: Path,
    name: str,
    batch_size: int,
):
    """Return a Dataset of the rows of Arrow file `source` with the columns `fn(batch, **kwargs)` adds."""
    from datasets import Dataset, concatenate_datasets

    from hfllm.output import progress

    rows = len(Dataset.from_file(str(source)))
    shards = max(1, min(processes * SHARDS_PER_PROCESS, -(-rows // batch_size))) if processes > 1 else 1
    bounds = [rows * i // shards for i in range(shards + 1)]
    tasks = [
        (
            str(source),
            bounds[i],
            bounds[i + 1],
            str(work / f"{name}-{i:05d}.arrow"),
            fn,
            kwargs,
            features,
            batch_size,
        )
        for i in range(shards)
    ]
    bar = progress(rows, name)
    try:
        if shards == 1:
            paths = [_run_shard(tasks[0])]
        else:
            paths = _run_pool(tasks, processes, bar, bounds)
    finally:
        bar.close()
    if len(paths) == 1:
        return Dataset.from_file(paths[0])
    return concatenate_datasets([Dataset.from_file(p) for p in paths])


def _run_pool(tasks: list[tuple], processes: int, bar, bounds: list[int]) -> list[str]:
    import multiprocessing

    pool = multiprocessing.get_context().Pool(processes, initializer=_ignore_sigint)
    try:
        paths = []
        for i, path in enumerate(pool.imap(_run_shard, tasks)):
            paths.append(path)
            bar.update(bounds[i + 1] - bounds[i])
        pool.close()
        return paths
    finally:
        pool.terminate()
        pool.join()
