"""The lab's pure parts, without booting anything: the bpftrace program and its parser, the
README table renderer, the dependency walk of the kernel fetcher, the initramfs module order."""
from __future__ import annotations

from tests.vmlab import kernels, lab, report
from tests.vmlab.guest import bpftrace_prog


def test_bpftrace_program_counts_per_process_and_syscalls():
    prog = bpftrace_prog.program(list(bpftrace_prog.FUNCS), list(bpftrace_prog.TRACEPOINTS))
    for f in bpftrace_prog.FUNCS:
        assert f'kprobe:{f} {{ @c[pid, "{f}"] = count();' in prog
    assert "tracepoint:raw_syscalls:sys_exit /@kfpu[tid]/" in prog
    assert bpftrace_prog.READY in prog
    # without kernel_fpu_begin_mask there is nothing to mark syscalls with
    assert "raw_syscalls" not in bpftrace_prog.program(["kernel_fpu_end"], [])


def test_bpftrace_output_parser():
    out = """Attaching 9 probes...
BPFTRACE-READY
@c[236, kernel_fpu_begin_mask]: 1800
@c[236, tp:x86_fpu_regs_activated]: 638
@c[7, syscalls_with_kfpu]: 3

@other[1]: 5
"""
    assert bpftrace_prog.parse(out) == {236: {"kernel_fpu_begin_mask": 1800, "tp:x86_fpu_regs_activated": 638},
                                        7: {"syscalls_with_kfpu": 3}}


def _row(mode, workload, **kw):
    base = {"mode": mode, "workload": workload, "pid": 1, "fpt_xsave_switch": 5, "fpt_xsave_kfpu": 2,
            "fpt_xsave_kfpu_inferred": 1, "fpt_kfpu_begin_inferred": 1, "bt_tp_activated": 3,
            "bt_tp_deactivated": 5, "bt_syscalls_with_kfpu": 2, "model_xsave": 7, "model_xrstor": 3,
            "model_kfpu_sections": 2, "model_kfpu_sections_inferred": 0, "model_avoidable_xrstor": 0}
    for f in lab.EXACT_PAIRS:
        base[f"fpt_{f}"] = base[f"bt_{f}"] = 10
    base.update(kw)
    return base


def test_report_renders_every_row_and_marks_differences():
    res = {"kernel": {"label": "6.1", "release": "6.1.0-56-amd64", "package_version": "6.1.192-2",
                      "returncode": 0, "reason": "", "guest_wall_s": 300.0, "accel": "tcg"},
           "rows": [_row("fentry", "sha256"), _row("kprobe", "sha256", fpt_xrstor=9),
                    _row("tracepoint", "sha256")],
           "modes": {"fentry": {"attach": {"kfpu_begin": "fentry:kernel_fpu_begin_mask"},
                                "meta": {"tif_need_fpu_load_bit": 14}},
                     "kprobe": {"error": "no recording (boom)"}}}
    text = report.render({"6.1": res})
    assert "| 6.1 | fentry | sha256 | 10 / 10 | 10 / 10 | 10 / 10 | 10 / 10 |" in text
    assert "9 / 10 (-1)" in text                   # a mismatch is visible in the table
    assert "| 6.1 | sha256 | 10 / 10 | 5 / 5 | 2 | 2 | 100% | 1 / 2 | 7 / 10 |" in text
    assert "fentry:kernel_fpu_begin_mask" in text and "no recording (boom)" in text


def test_kernel_package_closure_follows_only_this_build(monkeypatch):
    deps = {"linux-image-7.2.13+deb14-amd64": "linux-base-7.2.13+deb14-amd64 (= 1), dracut | initramfs-tools, "
                                              "linux-modules-7.2.13+deb14-amd64 (= 1)",
            "linux-headers-7.2.13+deb14-amd64": "gcc-16-for-host, linux-headers-7.2.13+deb14-common (= 1), "
                                                "linux-kbuild-7.2.13+deb14",
            "linux-base-7.2.13+deb14-amd64": "", "linux-modules-7.2.13+deb14-amd64": "",
            "linux-headers-7.2.13+deb14-common": "", "linux-kbuild-7.2.13+deb14": "libc6"}

    class FakeApt:
        def show(self, pkg):
            return {"Depends": deps[pkg]} if pkg in deps else {}

    got = kernels.package_closure(FakeApt(), "7.2.13+deb14",
                                  ["linux-image-7.2.13+deb14-amd64", "linux-headers-7.2.13+deb14-amd64"])
    assert sorted(got) == sorted(deps)


def test_dep_names_take_first_alternative_without_versions():
    assert kernels._dep_names("a (>= 1), b | c, d:any") == ["a", "b", "d"]
