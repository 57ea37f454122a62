"""The CPU bfloat16 rule, read from /proc/cpuinfo."""

from __future__ import annotations

from contract.signature import cpu_flags, native_bfloat16


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_bfloat16_is_native_only_with_avx512_bf16_or_amx():
    assert native_bfloat16(frozenset({"avx2", "avx512_bf16"}))
    assert native_bfloat16(frozenset({"amx_bf16", "amx_tile"}))
    assert not native_bfloat16(frozenset({"avx2", "avx512f"}))
