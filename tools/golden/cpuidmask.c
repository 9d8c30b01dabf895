/* Copied from research/ort-scripts/cpuidmask.c. cpuidmask.py (next to this file; used by
 * tools/golden/gen_onnx.py and tools/bench/peers.py --emulate) compiles it at run time
 * (gcc -O2 -shared -fPIC) into a temporary directory and loads it with ctypes before numpy, torch or
 * onnxruntime are imported. */
/* CPUID-faulting shim: makes CPUID trap (ARCH_SET_CPUID, needs the cpuid_fault
 * CPU flag) and answers it with the real values minus selected ISA feature bits,
 * so that libraries dispatching on CPUID (MLAS) pick lower-ISA kernels.
 * Usage (Python): ctypes.CDLL(path).cpuidmask_enable(mode) BEFORE importing onnxruntime.
 * mode 0 = no masking (still trapping), 1 = AVX2 only (no AVX-512, no VNNI),
 * 2 = AVX2 + AVX-VNNI, 3 = AVX-512 Core (F/CD/BW/DQ/VL) without any VNNI,
 * 4 = AVX-512 + AVX512-VNNI but no AVX-VNNI (Cascade Lake like),
 * 5 = no AVX2 / FMA / AVX-512 (AVX1 + SSE4.2 only: MLAS baseline SSE kernels). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#ifndef ARCH_GET_CPUID
#define ARCH_GET_CPUID 0x1011
#define ARCH_SET_CPUID 0x1012
#endif

static volatile int g_mode = 0;
static volatile long g_count = 0;

#define BIT(n) (1u << (n))

static void mask(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
    (void)a;
    int m = g_mode;
    if (m == 0) return;
    if (leaf == 7 && sub == 0) {
        uint32_t avx512_ebx = BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31);
        uint32_t avx512_core_keep = BIT(16) | BIT(17) | BIT(28) | BIT(30) | BIT(31); /* F DQ CD BW VL */
        /* ECX: 1 VBMI, 6 VBMI2, 11 AVX512_VNNI, 12 BITALG, 14 VPOPCNTDQ */
        uint32_t avx512_ecx = BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14);
        /* EDX: 2 4VNNIW, 3 4FMAPS, 8 VP2INTERSECT, 22 AMX-BF16, 23 AVX512_FP16, 24 AMX-TILE, 25 AMX-INT8 */
        uint32_t avx512_edx = BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25);
        if (m == 5) *b &= ~BIT(5); /* AVX2 */
        if (m == 1 || m == 2 || m == 5) {
            *b &= ~avx512_ebx; *c &= ~avx512_ecx; *d &= ~avx512_edx;
        } else if (m == 3) {
            *b &= ~(avx512_ebx & ~avx512_core_keep); *c &= ~avx512_ecx; *d &= ~avx512_edx;
        } else if (m == 4) {
            *b &= ~(avx512_ebx & ~avx512_core_keep); *c &= ~(avx512_ecx & ~BIT(11)); *d &= ~avx512_edx;
        }
    } else if (leaf == 1 && m == 5) {
        *c &= ~BIT(12); /* FMA */
    } else if (leaf == 7 && sub == 1) {
        /* EAX: 4 AVX-VNNI, 5 AVX512_BF16, 21 AMX-FP16, 23 AVX-IFMA;
           EDX: 4 AVX-VNNI-INT8, 5 AVX-NE-CONVERT, 8 AMX-COMPLEX, 10 AVX-VNNI-INT16, 19 AVX10 */
        uint32_t ea = BIT(5) | BIT(21) | BIT(23);
        if (m != 2) ea |= BIT(4);
        *a &= ~ea;
        *d &= ~(BIT(4) | BIT(5) | BIT(8) | BIT(10) | BIT(19));
    } else if (leaf == 0x24 || leaf == 0x1d || leaf == 0x1e) {
        *a = *b = *c = *d = 0; /* AVX10 / AMX palette leaves */
    }
}

static void handler(int sig, siginfo_t *si, void *ucv) {
    (void)sig; (void)si;
    ucontext_t *uc = (ucontext_t *)ucv;
    greg_t *g = uc->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)g[REG_RIP];
    if (ip[0] == 0x0f && ip[1] == 0xa2) {
        uint32_t leaf = (uint32_t)g[REG_RAX], sub = (uint32_t)g[REG_RCX];
        uint32_t a, b, c, d;
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
        __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(sub));
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
        mask(leaf, sub, &a, &b, &c, &d);
        g[REG_RAX] = a; g[REG_RBX] = b; g[REG_RCX] = c; g[REG_RDX] = d;
        g[REG_RIP] += 2;
        g_count++;
        return;
    }
    /* a genuine fault: restore default action, the instruction re-faults and the process dies */
    struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = SIG_DFL;
    sigaction(SIGSEGV, &sa, 0);
}

int cpuidmask_enable(int mode) {
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler; sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    if (sigaction(SIGSEGV, &sa, 0)) return -1;
    g_mode = mode;
    return (int)syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0); /* 0 = make CPUID fault */
}
long cpuidmask_count(void) { return g_count; }
void cpuidmask_query(uint32_t leaf, uint32_t sub, uint32_t out[4]) {
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(sub));
    out[0] = a; out[1] = b; out[2] = c; out[3] = d;
}
