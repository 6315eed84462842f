"""Bytes per save with AVX, AVX-512 and AMX state live, recorded live on this host (SPEC 5.5).

A C workload built here keeps one component set live across blocking pipe reads: two processes
pinned to one CPU ping-pong N bytes and write the registers of their set (AMX: LDTILECFG and
TILELOADD of 8 tiles, through the AMX intrinsics, gcc -mamx-tile) before every read, so each
switch-out save the kernel makes holds that state. It is recorded with `fputrace record` beside an
SSE-only pair; the saves' xfeatures must show the set, and fputrace's bytes per task must be
exactly 576 + the CPUID leaf 0xD sizes of each save's live components (read by the workload with
its own CPUID, not fputrace's), supervisor ones included: on this AMD EPYC host every save also
carries CET user state (bit 11, 16 bytes), so an SSE-only save moves 592 bytes and an AVX one 848.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from fputrace.capture import xstate
from fputrace.events import XsaveCause
from tests.conftest import run_fputrace

pytestmark = [pytest.mark.live]

WORKLOAD = r"""
#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <immintrin.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed, aligned(64))) cfg = {.palette = 1};
static uint8_t src[1024] __attribute__((aligned(64)));
static int set;   /* 0 sse, 1 avx, 2 avx512, 3 amx */
static int with_avx, with_avx512;   /* amx: on top of the AVX/AVX-512 state the OS enabled */

static uint8_t init_area[4096] __attribute__((aligned(64)));   /* XSTATE_BV 0: init state */

/* Plain asm for SSE/AVX/AVX-512 (a compiled AVX function would end in VZEROUPPER). The SSE-only
 * process first puts AVX and AVX-512 state back to init with XRSTOR: glibc's string functions
 * use YMM16-31 on AVX-512 machines, and nothing else clears those. */
static void make_live(void) {
    if (set == 0)
        __asm__ volatile("xrstor64 %0" :: "m"(init_area), "a"(0xe4), "d"(0));
    __asm__ volatile("pcmpeqd %%xmm7, %%xmm7" ::: "xmm7");
    if (with_avx) __asm__ volatile("vcmpps $0x0f, %%ymm6, %%ymm6, %%ymm6" ::: "xmm6");   /* AVX, not AVX2 */
    if (with_avx512) __asm__ volatile("kxnorw %%k1, %%k1, %%k1\n\t"
                                      "vpternlogd $0xff, %%zmm5, %%zmm5, %%zmm5\n\t"
                                      "vpternlogd $0xff, %%zmm20, %%zmm20, %%zmm20" ::: "xmm5");
    if (set >= 3) {
        _tile_loadconfig(&cfg);
        _tile_loadd(0, src, 64); _tile_loadd(1, src, 64); _tile_loadd(2, src, 64);
        _tile_loadd(3, src, 64); _tile_loadd(4, src, 64); _tile_loadd(5, src, 64);
        _tile_loadd(6, src, 64); _tile_loadd(7, src, 64);
    }
}

static void pin(int cpu) {
    cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s); sched_setaffinity(0, sizeof(s), &s);
}

int main(int argc, char **argv) {
    const char *names[] = {"sse", "avx", "avx512", "amx"};
    for (set = 0; set < 4 && strcmp(argv[1], names[set]); set++) ;
    int n = atoi(argv[2]), cpu = atoi(argv[3]);
    *(uint32_t *)(init_area + 24) = 0x1f80;     /* MXCSR (XRSTOR loads it with AVX): default */
    unsigned xcr0;                              /* AMX does not imply AVX-512 (cpuid-deps.c) */
    __asm__ volatile("xgetbv" : "=a"(xcr0) : "c"(0) : "edx");
    with_avx = set == 1 || set == 2 || (set == 3 && (xcr0 & 0x4));
    with_avx512 = set == 2 || (set == 3 && (xcr0 & 0xe0) == 0xe0);
    if (set == 3) {
        for (int t = 0; t < 8; t++) { cfg.colsb[t] = 64; cfg.rows[t] = 16; }
        memset(src, 0x5a, sizeof src);   /* all-zero tiles are TILEDATA's init state (SDM 13.6) */
        if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */)) {
            printf("the kernel refused AMX: arch_prctl(ARCH_REQ_XCOMP_PERM, 18): %s\n", strerror(errno));
            return 77;
        }
    }
    /* CPUID leaf 0xD sizes, for the test to check fputrace against */
    printf("{\"sizes\": {");
    for (int bit = 2; bit < 19; bit++) {
        unsigned a, b, c, d;
        __cpuid_count(0xD, bit, a, b, c, d);
        printf("%s\"%d\": %u", bit > 2 ? ", " : "", bit, a);
    }
    int ab[2], ba[2];
    if (pipe(ab) || pipe(ba)) return 1;
    pin(cpu);
    fflush(stdout);
    pid_t child = fork();
    char c = 'x';
    if (child == 0) {
        for (int i = 0; i < n; i++) {
            make_live();
            if (read(ab[0], &c, 1) != 1) return 1;   /* blocks: switch-out save with the set live */
            make_live();
            if (write(ba[1], &c, 1) != 1) return 1;
        }
        return 0;
    }
    for (int i = 0; i < n; i++) {
        make_live();
        if (write(ab[1], &c, 1) != 1) return 1;
        if (read(ba[0], &c, 1) != 1) return 1;
    }
    waitpid(child, NULL, 0);
    printf("}, \"pids\": [%d, %d]}\n", getpid(), child);
    return 0;
}
"""

GROUP = {"sse": 0, "avx": 0x4, "avx512": 0xE0, "amx": 0x60000}
LARGER = {"sse": 0x600E4}
LABEL = {"avx": "AVX", "avx512": "AVX-512", "amx": "AMX"}


def _flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


# the CPUID bit of each set, and the flag the kernel lists for it in /proc/cpuinfo
CPUID_BIT = {"avx": ("CPUID.(EAX=1):ECX[28] AVX", 1, 0, 2, 28, "avx"),
             "avx512": ("CPUID.(EAX=7,ECX=0):EBX[16] AVX512F", 7, 0, 1, 16, "avx512f"),
             "amx": ("CPUID.(EAX=7,ECX=0):EDX[24] AMX-TILE", 7, 0, 3, 24, "amx_tile")}


def _need_cpu(set_name: str) -> None:
    """Skip, saying which is missing: the CPU's feature (CPUID, read here), or the kernel's
    support for it (the flag /proc/cpuinfo lists: clearcpuid=, or a kernel without it)."""
    if set_name not in CPUID_BIT:
        return
    what, leaf, sub, reg, bit, flag = CPUID_BIT[set_name]
    regs = xstate.cpuid(leaf, sub)
    listed = flag in _flags()
    if regs is not None and not regs[reg] >> bit & 1:
        pytest.skip(f"this CPU has no {LABEL[set_name]} ({what} = 0); {LABEL[set_name]} saves cannot happen here")
    if not listed:
        cpu = "" if regs is None else f"the CPU has it ({what} = 1), but "
        pytest.skip(f"{cpu}the kernel does not list {flag} in /proc/cpuinfo (not enabled: clearcpuid=, or a "
                    f"kernel without {LABEL[set_name]} support); {LABEL[set_name]} saves cannot happen here")


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    cc = shutil.which("gcc")
    if not cc:
        pytest.skip("no gcc to build the AMX/AVX-512 workload (apt-get install gcc)")
    d = tmp_path_factory.mktemp("xstate")
    src, exe = d / "xstate_pingpong.c", d / "xstate_pingpong"
    src.write_text(WORKLOAD)
    res = subprocess.run([cc, "-O2", "-mamx-tile", "-o", str(exe), str(src)], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    return exe


def _bytes_expected(xfeatures, sizes: dict[int, int], enabled: int) -> int:
    """576 + CPUID sizes of the live extended components (the model's rule for xfeatures 0:
    the task's last known value, else every enabled component)."""
    total, last = 0, enabled
    for xf in xfeatures:
        x = int(xf) & enabled or last
        last = x
        total += 576 + sum(sizes.get(b, 0) for b in range(2, 64) if x >> b & 1)
    return total


@pytest.mark.slow
@pytest.mark.parametrize("set_name", ["avx", "avx512", "amx"])
def test_bytes_per_save_follow_the_live_components(set_name, workload, need_bcc, tmp_path):
    _need_cpu(set_name)
    n, cpu = 2000, sorted(os.sched_getaffinity(0))[-1]
    big_out, sse_out, fpt = tmp_path / "big.json", tmp_path / "sse.json", tmp_path / "x.fpt"
    # permission first: a kernel that refuses AMX is a skip with its words, not a failure
    probe = subprocess.run([str(workload), set_name, "1", str(cpu)], capture_output=True, text=True)
    if probe.returncode == 77:
        pytest.skip(probe.stdout.strip())
    assert probe.returncode == 0, probe.stdout + probe.stderr
    res = run_fputrace("record", "-q", "-o", str(fpt), "--", "sh", "-c",
                       f"{workload} {set_name} {n} {cpu} > {big_out} & "
                       f"{workload} sse {n} {cpu} > {sse_out}; wait", timeout=180)
    assert res.returncode == 0, res.stderr
    big, sse = json.loads(big_out.read_text()), json.loads(sse_out.read_text())
    sizes = {int(k): v for k, v in big["sizes"].items()}

    import fputrace
    tr = fputrace.load(fpt)
    rec_sizes = {f["bit"]: f["size_bytes"] for f in tr.meta["xstate"]["features"]}
    enabled = int(tr.meta["xstate"].get("mask") or tr.meta["xstate"]["xcr0"])
    for bit in range(2, 19):
        if enabled >> bit & 1:
            assert rec_sizes[bit] == sizes[bit], (bit, rec_sizes, sizes)   # fputrace's layout = CPUID
    ev = tr.events
    per_task = tr.report().per_task.set_index("tid")
    per_save = {}
    for name, pids in ((set_name, big["pids"]), ("sse", sse["pids"])):
        group, larger = GROUP[name], LARGER.get(name, 0)
        saves = moved = 0
        for tid in pids:
            mine = ev[(ev.tid == tid) & (ev.kind == "XSAVE")]
            switch = mine[(mine.a1 == XsaveCause.SWITCH) & ~mine.inferred]
            assert len(switch) >= 0.9 * n, (name, tid, len(switch))
            xf = switch.a0.to_numpy().astype(np.uint64)
            if group:      # the set was live at (nearly) every switch-out
                assert (xf & np.uint64(group) == np.uint64(group)).mean() > 0.95, (name, tid)
            else:          # SSE only: no AVX, AVX-512 or tile state
                assert (xf & np.uint64(larger) == 0).mean() > 0.95, (name, tid)
            row = per_task.loc[tid]
            assert row.xsave == len(mine)
            assert row.xsave_bytes == _bytes_expected(mine.a0.to_numpy(), sizes, enabled), (name, tid)
            assert row.bytes_per_xsave == round(row.xsave_bytes / row.xsave, 1)
            if group:
                assert LABEL[name] in row.components.split("+"), row.components
            saves, moved = saves + row.xsave, moved + row.xsave_bytes
        per_save[name] = moved / saves
    # the big set's tasks come first when the report lists the largest live state first (unless
    # the SSE-only ones had AVX-512 state live at start-up, from glibc, before their loop)
    rep = tr.report()
    cls = rep.per_task.set_index("tid").xstate_class
    if set_name == "amx" or all(cls[t] == "sse" for t in sse["pids"]):
        order = list(rep.filtered(sort="components").tid)
        assert max(order.index(t) for t in big["pids"]) < min(order.index(t) for t in sse["pids"])
    extra = sum(sizes[b] for b in range(2, 19) if GROUP[set_name] >> b & 1)
    # the big set's saves move (about) its components' size more than the SSE-only ones
    assert per_save[set_name] - per_save["sse"] > 0.9 * extra, per_save
    print(f"bytes per save: {set_name} {per_save[set_name]:.0f}, sse {per_save['sse']:.0f}")
