"""Precision choice (hfllm.precision): detection of native bf16, the defaults, and bf16's loss vs fp32."""

from __future__ import annotations

import pytest

from hfllm.precision import CPU_BF16_MIN_HIDDEN, choose_precision, cpu_flags, native_cpu_bf16

SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
COOPER_LAKE = "flags\t\t: fpu sse avx2 avx512f avx512_bf16\n"
EPYC_ROME = "flags\t\t: fpu sse avx2 fma\n"


def test_cpu_flags_are_read_from_cpuinfo_text():
    assert {"amx_bf16", "avx512_bf16", "avx2"} <= cpu_flags(SAPPHIRE_RAPIDS)
    assert cpu_flags("no flags line here") == set()


@pytest.mark.parametrize(
    "cpuinfo, capability, expected",
    [
        (SAPPHIRE_RAPIDS, "AVX512", "amx_bf16"),
        (COOPER_LAKE, "AVX512", "avx512_bf16"),
        (EPYC_ROME, "AVX2", None),
        # The flags say yes but torch's kernels for this build would not use them: no.
        (SAPPHIRE_RAPIDS, "AVX2", None),
        (SAPPHIRE_RAPIDS, "DEFAULT", None),
        # An AVX-512 CPU without the bf16 extension emulates bf16 too.
        ("flags : avx2 avx512f avx512bw\n", "AVX512", None),
    ],
)
def test_native_bf16_needs_both_the_cpu_flag_and_torch_kernels(cpuinfo, capability, expected):
    assert native_cpu_bf16(cpu_flags(cpuinfo), capability) == expected


def test_cpu_defaults_to_bf16_only_when_native_and_wide_enough():
    wide, narrow = CPU_BF16_MIN_HIDDEN, CPU_BF16_MIN_HIDDEN // 2
    chosen = choose_precision({}, wide, cuda=False, native="amx_bf16")
    assert chosen.bf16 and "amx_bf16" in chosen.path
    assert not choose_precision({}, narrow, cuda=False, native="amx_bf16").bf16
    emulated = choose_precision({}, wide, cuda=False, native=None)
    assert not emulated.bf16 and "emulated" in emulated.reason


def test_the_config_wins_over_detection():
    assert not choose_precision({"bf16": False}, 4096, cuda=False, native="amx_bf16").bf16
    assert choose_precision({"bf16": True}, 32, cuda=False, native=None).bf16
    fp16 = choose_precision({"fp16": True}, 4096, cuda=False, native="amx_bf16")
    assert not fp16.bf16 and fp16.path.startswith("fp16")


def test_this_machine_reports_a_path():
    chosen = choose_precision({"use_cpu": True}, 768)
    assert chosen.path.startswith(("bf16", "fp32"))
    assert chosen.bf16 == (native_cpu_bf16() is not None)


def test_bf16_autocast_loss_is_within_tolerance_of_fp32():
    """bf16 autocast keeps fp32 weights; its masked-LM loss stays within 2% of fp32's (measured ~0.3%).

    Runs everywhere: without native bf16 torch emulates it (slower, same rounding), so the tolerance
    holds on any CPU; native_cpu_bf16() only decides whether hfllm uses it by default.
    """
    torch = pytest.importorskip("torch")
    from transformers import AutoConfig, AutoModelForMaskedLM

    from hfllm.tasks.masked_lm import mlm_loss

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "bert",
        vocab_size=500,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
    )
    model = AutoModelForMaskedLM.from_config(config).eval()
    input_ids = torch.randint(5, 500, (8, 64), generator=torch.Generator().manual_seed(1))
    labels = torch.where(
        torch.rand(8, 64, generator=torch.Generator().manual_seed(2)) < 0.15, input_ids, -100
    )
    fp32 = mlm_loss(model(input_ids=input_ids), labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = mlm_loss(model(input_ids=input_ids), labels)
    assert next(model.parameters()).dtype == torch.float32  # master weights stay fp32
    assert abs(float(bf16.detach()) - float(fp32.detach())) / float(fp32.detach()) < 0.02
