/*
 * xsave_bench: cycles of user-mode XSAVE, XSAVEOPT, XSAVEC and XRSTOR on this CPU, per component
 * set, and its xstate layout (CPUID leaf 0xD). Built by `fputrace calibrate` on first use.
 *
 *   xsave_bench RUNS [SETS] [HIDE] [ASSUME]     comma lists of sse,avx,avx512,amx
 *
 * Component sets are cumulative, as tasks use them: sse (x87 + SSE), avx (+ YMM upper halves),
 * avx512 (+ opmask, ZMM_Hi256, Hi16_ZMM), amx (+ TILECFG, TILEDATA, after the kernel granted
 * ARCH_REQ_XCOMP_PERM). Before every timed instruction the registers of the set are written
 * (real SSE/AVX/AVX-512 writes, tiles loaded with LDTILECFG/TILELOADD), and afterwards XINUSE
 * (XGETBV with ECX=1, where CPUID.(0xD,1):EAX[2] has it) and the XSTATE_BV the save wrote are
 * read back, so the output says which components really were live in every timed run.
 *
 * Saves use the kernel's request mask (XCR0 without TILEDATA, which Linux keeps out of a task's
 * buffer until the task asks for AMX), so init components are skipped exactly as in the kernel's
 * XSAVES. XRSTOR is timed twice: from what XSAVEC wrote (compacted, like the kernel's XRSTORS)
 * and from what XSAVE wrote (standard format, the kernel's XRSTOR without XSAVES).
 *
 * Timing: rdtsc between lfences, rdtscp + lfence after, around 8 back-to-back instructions (a
 * VM's TSC can advance in steps of ~24 ticks, too coarse for one); an empty timed region is
 * measured the same way (the overhead, subtracted by the caller, who also divides by 8). RUNS
 * samples per instruction and set, taken in 8 interleaved rounds so that a burst of load on a
 * shared machine hits every set alike. TSC ticks: on a VM, the host's reference cycles. Prints one JSON object; exit status 3: no XSAVE (CPUID.1:ECX.OSXSAVE).
 * HIDE makes the program treat a feature as absent (testing the paths of CPUs without it);
 * ASSUME skips the CPUID check of a set, so that the next checks (XCR0, the kernel's AMX
 * permission) give their own answer on a CPU without it: a set is only measured if all pass.
 * Build with -DXB_NO_AMX where the compiler cannot assemble AMX instructions.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef XB_NO_AMX
#include <immintrin.h>
#endif

#define ARCH_GET_XCOMP_SUPP 0x1021
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#define ROUNDS 8
#define PER_REGION 8             /* instructions per timed region (the TSC of a VM may tick in 24s) */
#define REPEAT(x) do { x; x; x; x; x; x; x; x; } while (0)

enum { SET_SSE, SET_AVX, SET_AVX512, SET_AMX, NSETS };
static const char *set_name[NSETS] = {"sse", "avx", "avx512", "amx"};
static const uint64_t set_group[NSETS] = {0x3, 0x4, 0xe0, 0x60000};  /* XCR0 bits of each group */

enum { OP_NONE, OP_XSAVE, OP_XSAVEOPT, OP_XSAVEC, OP_XRSTOR_C, OP_XRSTOR_STD, NOPS };
static const char *op_name[NOPS] = {"overhead", "xsave", "xsaveopt", "xsavec", "xrstor_compacted",
                                    "xrstor_standard"};

static uint8_t area_std[65536] __attribute__((aligned(64)));   /* XSAVE / XSAVEOPT output */
static uint8_t area_c[65536] __attribute__((aligned(64)));     /* XSAVEC output */
static uint8_t area_init[65536] __attribute__((aligned(64)));  /* XSTATE_BV 0: all init */
static int has_xgetbv1;
static int bv_op = OP_XSAVE;       /* the save whose XSTATE_BV is read back: XSAVEC where present */

static inline uint64_t tsc_begin(void) {
    uint32_t lo, hi;
    __asm__ volatile("lfence\n\trdtsc\n\tlfence" : "=a"(lo), "=d"(hi) :: "memory");
    return ((uint64_t)hi << 32) | lo;
}
static inline uint64_t tsc_end(void) {
    uint32_t lo, hi, aux;
    __asm__ volatile("rdtscp\n\tlfence" : "=a"(lo), "=d"(hi), "=c"(aux) :: "memory");
    return ((uint64_t)hi << 32) | lo;
}
static inline uint64_t xgetbv(uint32_t idx) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(idx));
    return ((uint64_t)hi << 32) | lo;
}
static inline uint64_t xinuse(void) { return has_xgetbv1 ? xgetbv(1) : 0; }
static inline uint64_t xstate_bv(const uint8_t *area) { return *(const uint64_t *)(area + 512); }

/* Every component back to its init state (XRSTOR of a header with XSTATE_BV = 0). */
static void reset_to_init(uint64_t rfbm) {
    __asm__ volatile("xrstor64 %0" :: "m"(area_init), "a"((uint32_t)rfbm),
                     "d"((uint32_t)(rfbm >> 32)) : "memory");
}

/* ---- register writers: each makes its group non-init with real instructions ---- */
static void dirty_sse(void) {
    double x = 1.2345;
    __asm__ volatile("fldl %0\n\tfstp %%st(0)" :: "m"(x));           /* x87 in use */
    __asm__ volatile("pcmpeqd %%xmm7, %%xmm7" ::: "xmm7");            /* XMM non-zero */
}
/* Plain inline asm, no target attributes: gcc would end an AVX function with VZEROUPPER, which
 * puts the upper halves back into their init state. The compiler itself never uses these
 * registers here, so only the SSE names need declaring as clobbered. */
static void dirty_avx(void) {
    /* YMM upper half all-ones: VCMPPS with predicate TRUE is AVX (VPCMPEQD on YMM is AVX2) */
    __asm__ volatile("vcmpps $0x0f, %%ymm6, %%ymm6, %%ymm6" ::: "xmm6");
}
static void dirty_avx512(void) {
    __asm__ volatile("kxnorw %%k1, %%k1, %%k1\n\t"                     /* opmask */
                     "vpternlogd $0xff, %%zmm5, %%zmm5, %%zmm5\n\t"    /* ZMM_Hi256 */
                     "vpternlogd $0xff, %%zmm20, %%zmm20, %%zmm20"     /* Hi16_ZMM */
                     ::: "xmm5");
}
#ifndef XB_NO_AMX
static struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed, aligned(64))) tilecfg;
static uint8_t tile_src[16 * 64] __attribute__((aligned(64)));

__attribute__((target("amx-tile"))) static void dirty_amx(void) {
    _tile_loadconfig(&tilecfg);                       /* TILECFG: palette 1, 8 tiles 16x64 B */
    _tile_loadd(0, tile_src, 64); _tile_loadd(1, tile_src, 64);
    _tile_loadd(2, tile_src, 64); _tile_loadd(3, tile_src, 64);
    _tile_loadd(4, tile_src, 64); _tile_loadd(5, tile_src, 64);
    _tile_loadd(6, tile_src, 64); _tile_loadd(7, tile_src, 64);   /* TILEDATA: 8 KiB live */
}
#endif

static void dirty(uint64_t live) {
    dirty_sse();
    if (live & set_group[SET_AVX]) dirty_avx();
    if (live & set_group[SET_AVX512]) dirty_avx512();
#ifndef XB_NO_AMX
    if (live & set_group[SET_AMX]) dirty_amx();
#endif
}

struct result {
    int ok;
    char why[256];
    uint64_t live, rfbm;
    uint64_t inuse_and, inuse_or, bv_and, bv_or;    /* over every timed run */
    uint64_t *samples[NOPS];
    int n[NOPS];
};

static void timed(int op, struct result *r, int count) {
    uint32_t lo = (uint32_t)r->rfbm, hi = (uint32_t)(r->rfbm >> 32);
    if (op == OP_XRSTOR_C) {               /* the area to restore: this set live, nothing else */
        dirty(r->live);
        __asm__ volatile("xsavec64 %0" : "+m"(area_c) : "a"(lo), "d"(hi));
    } else if (op == OP_XRSTOR_STD) {
        dirty(r->live);
        __asm__ volatile("xsave64 %0" : "+m"(area_std) : "a"(lo), "d"(hi));
    }
    for (int i = 0; i < count; i++) {
        if (op != OP_XRSTOR_C && op != OP_XRSTOR_STD) dirty(r->live);
        uint64_t before = xinuse();
        uint64_t t0 = tsc_begin();
        switch (op) {
        case OP_XSAVE: REPEAT(__asm__ volatile("xsave64 %0" : "+m"(area_std) : "a"(lo), "d"(hi))); break;
        case OP_XSAVEOPT: REPEAT(__asm__ volatile("xsaveopt64 %0" : "+m"(area_std) : "a"(lo), "d"(hi))); break;
        case OP_XSAVEC: REPEAT(__asm__ volatile("xsavec64 %0" : "+m"(area_c) : "a"(lo), "d"(hi))); break;
        case OP_XRSTOR_C: REPEAT(__asm__ volatile("xrstor64 %0" :: "m"(area_c), "a"(lo), "d"(hi))); break;
        case OP_XRSTOR_STD: REPEAT(__asm__ volatile("xrstor64 %0" :: "m"(area_std), "a"(lo), "d"(hi))); break;
        default: break;
        }
        uint64_t t = tsc_end() - t0;
        r->samples[op][r->n[op]++] = t;
        if (op == OP_NONE) continue;
        /* live during the instruction: in use before a save, in use after a restore */
        uint64_t inuse = (op == OP_XRSTOR_C || op == OP_XRSTOR_STD) ? xinuse() : before;
        r->inuse_and &= inuse;
        r->inuse_or |= inuse;
        if (op == bv_op) {
            uint64_t bv = xstate_bv(op == OP_XSAVEC ? area_c : area_std);
            r->bv_and &= bv;
            r->bv_or |= bv;
        }
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int in_list(const char *list, const char *name) {
    if (!list) return 0;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

/* Ask the kernel for AMX; returns 0 or writes the reason. */
static int request_amx(char *why, size_t len) {
    uint64_t supp = 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_SUPP, &supp) != 0) {
        snprintf(why, len, "the kernel has no dynamic xfeatures: arch_prctl(ARCH_GET_XCOMP_SUPP) "
                 "failed: %s (errno %d; Linux < 5.16?)", strerror(errno), errno);
        return -1;
    }
    if (!((supp >> XFEATURE_XTILEDATA) & 1)) {
        snprintf(why, len, "the kernel does not offer AMX: ARCH_GET_XCOMP_SUPP = 0x%llx lacks "
                 "XTILEDATA (bit 18)", (unsigned long long)supp);
        return -1;
    }
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        snprintf(why, len, "the kernel refused AMX: arch_prctl(ARCH_REQ_XCOMP_PERM, "
                 "XFEATURE_XTILEDATA=18) failed: %s (errno %d)", strerror(errno), errno);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 5000;
    const char *want = argc > 2 && argv[2][0] ? argv[2] : NULL;
    const char *hide = argc > 3 && argv[3][0] ? argv[3] : NULL;
    const char *assume = argc > 4 && argv[4][0] ? argv[4] : NULL;
    if (runs < 16) runs = 16;
    unsigned a, b, c, d, a7 = 0, b7 = 0, c7 = 0, d7 = 0;
    __cpuid(1, a, b, c, d);
    if (!(c & (1u << 26)) || !(c & (1u << 27))) {
        fprintf(stderr, "xsave_bench: CPU/OS without XSAVE (CPUID.1:ECX XSAVE=%d OSXSAVE=%d)\n",
                !!(c & (1u << 26)), !!(c & (1u << 27)));
        return 3;
    }
    int cpu_avx = !!(c & (1u << 28));
    unsigned maxleaf = __get_cpuid_max(0, 0);
    if (maxleaf >= 7) __cpuid_count(7, 0, a7, b7, c7, d7);
    int cpu_avx512f = !!(b7 & (1u << 16)), cpu_amx = !!(d7 & (1u << 24));
    uint64_t xcr0 = xgetbv(0);
    unsigned s1a, s1b, s1c, s1d, s0a, s0b, s0c, s0d;
    __cpuid_count(0xD, 1, s1a, s1b, s1c, s1d);
    __cpuid_count(0xD, 0, s0a, s0b, s0c, s0d);
    int has_opt = s1a & 1, has_c = (s1a >> 1) & 1, has_s = (s1a >> 3) & 1;
    has_xgetbv1 = (s1a >> 2) & 1;
    bv_op = has_c ? OP_XSAVEC : has_opt ? OP_XSAVEOPT : OP_XSAVE;

    /* the kernel's request mask for a task that has not asked for AMX */
    uint64_t base_rfbm = xcr0 & ~(1ull << XFEATURE_XTILEDATA);
    memset(area_init, 0, sizeof(area_init));
    *(uint32_t *)(area_init + 24) = 0x1f80;          /* MXCSR: default, exceptions masked */

    struct result res[NSETS];
    memset(res, 0, sizeof(res));
    uint64_t live = 0;
    for (int s = 0; s < NSETS; s++) {
        struct result *r = &res[s];
        const char *hidden = in_list(hide, set_name[s]) ? ": hidden by FPUTRACE_CALIBRATE_HIDE" : "";
        int cpuid_ok = in_list(assume, set_name[s]) ||
                       (s == SET_AVX ? cpu_avx : s == SET_AVX512 ? cpu_avx512f : s == SET_AMX ? cpu_amx : 1);
        r->ok = 0;
        if (want && !in_list(want, set_name[s]))
            snprintf(r->why, sizeof(r->why), "not requested (--sets %s)", want);
        else if (s == SET_AVX && (!cpuid_ok || *hidden))
            snprintf(r->why, sizeof(r->why), "CPU has no AVX (CPUID.1:ECX[28] = 0%s)", hidden);
        else if (s == SET_AVX512 && (!cpuid_ok || *hidden))
            snprintf(r->why, sizeof(r->why),
                     "CPU has no AVX-512 (CPUID.(EAX=7,ECX=0):EBX[16] AVX512F = 0%s)", hidden);
        else if (s == SET_AMX && (!cpuid_ok || *hidden))
            snprintf(r->why, sizeof(r->why),
                     "CPU has no AMX (CPUID.(EAX=7,ECX=0):EDX[24] AMX-TILE = 0%s)", hidden);
        else if ((xcr0 & set_group[s]) != set_group[s])
            snprintf(r->why, sizeof(r->why), "the OS has not enabled the %s state: XCR0 0x%llx "
                     "lacks 0x%llx", set_name[s], (unsigned long long)xcr0,
                     (unsigned long long)(set_group[s] & ~xcr0));
#ifdef XB_NO_AMX
        else if (s == SET_AMX)
            snprintf(r->why, sizeof(r->why), "the compiler could not build AMX instructions "
                     "(benchmark built with -DXB_NO_AMX)");
#endif
        else if (s == SET_AMX && request_amx(r->why, sizeof(r->why)) != 0)
            ;
        else
            r->ok = 1;
        if (!r->ok) continue;
        live |= set_group[s];
        r->live = live;
        r->rfbm = s == SET_AMX ? xcr0 : base_rfbm;
        r->inuse_and = r->bv_and = ~0ull;
        for (int op = 0; op < NOPS; op++) {
            r->samples[op] = malloc(sizeof(uint64_t) * (size_t)runs);
            if (!r->samples[op]) return 1;
        }
    }
    uint64_t reset_rfbm = res[SET_AMX].ok ? xcr0 : base_rfbm;
#ifndef XB_NO_AMX
    tilecfg.palette = 1;
    for (int t = 0; t < 8; t++) { tilecfg.colsb[t] = 64; tilecfg.rows[t] = 16; }
    for (int i = 0; i < (int)sizeof(tile_src); i++) tile_src[i] = (uint8_t)(i * 7 + 1);
    if (res[SET_AMX].ok) dirty(res[SET_AMX].live);   /* first touch: the kernel grows the buffer */
#endif

    for (int round = 0; round < ROUNDS; round++) {
        int count = runs / ROUNDS + (round < runs % ROUNDS);
        for (int s = 0; s < NSETS; s++) {
            if (!res[s].ok) continue;
            for (int op = 0; op < NOPS; op++) {
                if ((op == OP_XSAVEOPT && !has_opt) || ((op == OP_XSAVEC || op == OP_XRSTOR_C) && !has_c))
                    continue;
                reset_to_init(reset_rfbm);          /* nothing of another set stays live */
                timed(op, &res[s], count);
            }
        }
    }
    reset_to_init(reset_rfbm);

    printf("{\"runs\": %d, \"rounds\": %d, \"per_region\": %d, \"xcr0\": %llu, \"xsave_area_bytes\": %u, "
           "\"xsavec_area_bytes\": %u,\n \"cpu\": {\"avx\": %d, \"avx512f\": %d, \"amx_tile\": %d, "
           "\"xsaveopt\": %d, \"xsavec\": %d, \"xsaves\": %d, \"xgetbv1\": %d},\n",
           runs, ROUNDS, PER_REGION, (unsigned long long)xcr0, s0b, s1b, cpu_avx, cpu_avx512f, cpu_amx,
           has_opt, has_c, has_s, has_xgetbv1);
    printf(" \"features\": [");
    int first = 1;
    for (int bit = 0; bit < 64; bit++) {
        if (!((xcr0 >> bit) & 1)) continue;
        unsigned fa = 0, fb = 0, fc = 0, fd = 0;
        if (bit >= 2) __cpuid_count(0xD, bit, fa, fb, fc, fd);
        else { fa = bit == 0 ? 160 : 256; fb = bit == 0 ? 0 : 160; }
        printf("%s{\"bit\": %d, \"size_bytes\": %u, \"offset\": %u, \"align64\": %d}",
               first ? "" : ", ", bit, fa, fb, (fc >> 1) & 1);
        first = 0;
    }
    printf("],\n \"sets\": [");
    first = 1;
    for (int s = 0; s < NSETS; s++) {
        struct result *r = &res[s];
        printf("%s\n  {\"name\": \"%s\", ", first ? "" : ",", set_name[s]);
        first = 0;
        if (!r->ok) {
            printf("\"reason\": \"%s\"}", r->why);
            continue;
        }
        printf("\"live\": %llu, \"rfbm\": %llu, \"xinuse_all_runs\": %lld, \"xinuse_any_run\": %lld, "
               "\"xstate_bv_all_runs\": %llu, \"xstate_bv_any_run\": %llu, \"cycles\": {",
               (unsigned long long)r->live, (unsigned long long)r->rfbm,
               has_xgetbv1 ? (long long)r->inuse_and : -1LL, has_xgetbv1 ? (long long)r->inuse_or : -1LL,
               (unsigned long long)r->bv_and, (unsigned long long)r->bv_or);
        int f2 = 1;
        for (int op = 0; op < NOPS; op++) {
            if (!r->n[op]) continue;
            qsort(r->samples[op], r->n[op], sizeof(uint64_t), cmp_u64);
            printf("%s\"%s\": {\"min\": %llu, \"median\": %llu}", f2 ? "" : ", ", op_name[op],
                   (unsigned long long)r->samples[op][0],
                   (unsigned long long)r->samples[op][r->n[op] / 2]);
            f2 = 0;
        }
        printf("}}");
    }
    printf("]}\n");
    return 0;
}
