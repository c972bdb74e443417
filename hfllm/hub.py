"""The Hugging Face Hub as a network place: offline mode, its address, and one bounded reachability check.

Used before anything asks the Hub for a dataset or a model by name, so that no network fails in
seconds with what to do, not after huggingface_hub's retries (about 50 s).
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request

from hfllm.errors import InputError

REACH_SECONDS = 5.0  # one try, bounded (DNS included)
TRUE = ("1", "ON", "YES", "TRUE")


def hub_offline(datasets: bool = True) -> bool:
    """Return whether HF_HUB_OFFLINE (or, for datasets, HF_DATASETS_OFFLINE) asks for no network."""
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if datasets else ("HF_HUB_OFFLINE",)
    return any(os.environ.get(v, "").upper() in TRUE for v in names)


def hub_endpoint() -> str:
    """Return the Hub's address (HF_ENDPOINT, or https://huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def check_hub_reachable(name: str, what: str = "dataset", timeout: float = REACH_SECONDS) -> None:
    """Return when the Hub answers within `timeout` seconds; otherwise raise InputError saying what to do.

    The Hub's front page answers 200; 401 (a private endpoint) counts too. Any other status comes
    from something in between (a proxy, a captive portal) and counts as unreachable. DNS lookups are
    bounded too, by running the request in a thread. Offline mode (HF_HUB_OFFLINE) is refused here
    as well: a Hub name cannot be fetched then.
    """
    if hub_offline(datasets=what == "dataset"):
        raise InputError(
            f"{what} {name!r} is not a local dir, and HF_HUB_OFFLINE is set",
            "give a local dir, or unset HF_HUB_OFFLINE on a machine that can reach the Hugging Face Hub",
        )
    endpoint = hub_endpoint()
    outcome: list[BaseException | None] = []

    def request() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
            outcome.append(None)
        except urllib.error.HTTPError as exc:
            outcome.append(None if exc.code == 401 else ConnectionError(f"it answered HTTP {exc.code}"))
        except Exception as exc:  # URLError, timeouts, refused connections, bad addresses
            outcome.append(exc)

    thread = threading.Thread(target=request, daemon=True)
    thread.start()
    thread.join(timeout)
    problem = outcome[0] if outcome else TimeoutError(f"no answer within {timeout:g} s")
    if problem is not None:
        reason = getattr(problem, "reason", problem)
        raise InputError(
            f"{name!r} is not a local dir, and the Hugging Face Hub at {endpoint} cannot be reached to "
            f"fetch it as a {what} ({reason})",
            "set HF_HUB_OFFLINE=1 and give a local dir, or check the network (and HF_ENDPOINT / HTTPS_PROXY)",
        )
