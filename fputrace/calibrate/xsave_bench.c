/*
 * xsave_bench: cycles of user-mode XSAVE, XSAVEOPT, XSAVEC and XRSTOR on this CPU, and its xstate
 * layout (CPUID leaf 0xD). Built by `fputrace calibrate` with the system C compiler on first use.
 *
 * Method: every enabled user component is made non-init (x87, SSE, AVX dirtied; PKRU as the OS left
 * it), then each instruction is timed RUNS times with rdtscp/lfence fences; the cost of an empty
 * timed region (same fences) is measured the same way and subtracted. Prints one JSON object with
 * min and median per instruction (TSC ticks: on a VM these are the host's reference cycles).
 * Exit status 3: the CPU or OS does not expose XSAVE (CPUID.1:ECX.OSXSAVE = 0).
 */
#include <cpuid.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t area[65536] __attribute__((aligned(64)));
static uint8_t area2[65536] __attribute__((aligned(64)));

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
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
static void dirty_regs(int avx) {
    double x = 1.2345;
    __asm__ volatile("fldl %0\n\tfstp %%st(0)" :: "m"(x));            /* x87 in use */
    __asm__ volatile("pcmpeqd %%xmm7, %%xmm7" ::: "xmm7");             /* SSE non-init */
    if (avx)
        __asm__ volatile("vpcmpeqd %%ymm6, %%ymm6, %%ymm6" ::: "xmm6");  /* upper AVX halves */
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

enum { OP_NONE, OP_XSAVE, OP_XSAVEOPT, OP_XSAVEC, OP_XRSTOR };

static void run(int op, uint64_t mask, int runs, int avx, uint64_t *out) {
    uint32_t lo = (uint32_t)mask, hi = (uint32_t)(mask >> 32);
    for (int i = 0; i < runs; i++) {
        dirty_regs(avx);
        uint64_t t0 = tsc_begin();
        switch (op) {
        case OP_XSAVE: __asm__ volatile("xsave64 %0" : "+m"(area) : "a"(lo), "d"(hi)); break;
        case OP_XSAVEOPT: __asm__ volatile("xsaveopt64 %0" : "+m"(area) : "a"(lo), "d"(hi)); break;
        case OP_XSAVEC: __asm__ volatile("xsavec64 %0" : "+m"(area2) : "a"(lo), "d"(hi)); break;
        case OP_XRSTOR: __asm__ volatile("xrstor64 %0" :: "m"(area), "a"(lo), "d"(hi)); break;
        default: break;
        }
        out[i] = tsc_end() - t0;
    }
    qsort(out, runs, sizeof(uint64_t), cmp_u64);
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 2000;
    if (runs < 10) runs = 10;
    unsigned a, b, c, d;
    __cpuid(1, a, b, c, d);
    if (!(c & (1u << 26)) || !(c & (1u << 27))) {
        fprintf(stderr, "xsave_bench: CPU/OS without XSAVE (CPUID.1:ECX XSAVE=%d OSXSAVE=%d)\n",
                !!(c & (1u << 26)), !!(c & (1u << 27)));
        return 3;
    }
    int avx = !!(c & (1u << 28));
    uint64_t xcr0 = xgetbv0();
    unsigned sub1a, sub1b, sub1c, sub1d;
    __cpuid_count(0xD, 1, sub1a, sub1b, sub1c, sub1d);
    int has_opt = sub1a & 1, has_c = (sub1a >> 1) & 1, has_s = (sub1a >> 3) & 1;
    unsigned d0a, d0b, d0c, d0d;
    __cpuid_count(0xD, 0, d0a, d0b, d0c, d0d);
    uint64_t *buf = malloc(sizeof(uint64_t) * runs);
    if (!buf) return 1;

    memset(area, 0, sizeof(area));
    dirty_regs(avx);
    __asm__ volatile("xsave64 %0" : "+m"(area) : "a"((uint32_t)xcr0), "d"((uint32_t)(xcr0 >> 32)));

    printf("{\"runs\": %d, \"xcr0\": %llu, \"xsave_area_bytes\": %u, \"xsaves_supported\": %s,\n",
           runs, (unsigned long long)xcr0, d0b, has_s ? "true" : "false");
    printf(" \"features\": [");
    int first = 1;
    for (int bit = 0; bit < 64; bit++) {
        if (!((xcr0 >> bit) & 1)) continue;
        unsigned fa = 0, fb = 0, fc = 0, fd = 0;
        if (bit >= 2) __cpuid_count(0xD, bit, fa, fb, fc, fd);
        else { fa = bit == 0 ? 160 : 256; fb = bit == 0 ? 0 : 160; }
        printf("%s{\"bit\": %d, \"size_bytes\": %u, \"offset\": %u}", first ? "" : ", ", bit, fa, fb);
        first = 0;
    }
    printf("],\n \"cycles\": {");
    static const char *names[] = {"overhead", "xsave", "xsaveopt", "xsavec", "xrstor"};
    int ops[] = {OP_NONE, OP_XSAVE, OP_XSAVEOPT, OP_XSAVEC, OP_XRSTOR};
    int ok[] = {1, 1, has_opt, has_c, 1};
    for (int k = 0; k < 5; k++) {
        if (!ok[k]) { printf("%s\"%s\": null", k ? ", " : "", names[k]); continue; }
        run(ops[k], xcr0, runs, avx, buf);
        printf("%s\"%s\": {\"min\": %llu, \"median\": %llu}", k ? ", " : "", names[k],
               (unsigned long long)buf[0], (unsigned long long)buf[runs / 2]);
    }
    printf("}}\n");
    free(buf);
    return 0;
}
