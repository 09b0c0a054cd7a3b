/* g4_unit — the unit test runner: one table of named tests.
 *   g4_unit               runs all
 *   g4_unit --test gguf   runs one (ctest registers each by name)
 * Prints "N passed, N failed, N skipped"; exit 0 only if none failed
 * (77 when the single selected test skipped). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "g4_test.h"

int g4_test_failures;

#ifdef G4_UNIT_EMU /* g4_unit_emu: the device pass on the CUDA host emulation (core/cuda/g4_cuda_emu.c) */
#define G4_TESTS(X) X(cuda_model)
#else
#define G4_TESTS(X) \
    X(dtype)        \
    X(quant)        \
    X(quant_llama)  \
    X(gguf)         \
    X(gguf_hostile) \
    X(gguf_testdata) \
    X(kernels)      \
    X(matmul)       \
    X(base)          \
    X(model)        \
    X(attn)         \
    X(prefix)       \
    X(plan)         \
    X(sched_batch)  \
    X(sched_stop)   \
    X(sched_prefix) \
    X(cuda_ops)     \
    X(cuda_none)    \
    X(cuda_quant)   \
    X(cuda_mm)      \
    X(cuda_model)
#endif

#define DECL(name) int test_##name(void);
G4_TESTS(DECL)

typedef struct {
    const char *name;
    int (*fn)(void);
} test_entry_t;

#define ENTRY(name) {#name, test_##name},
static const test_entry_t s_tests[] = {G4_TESTS(ENTRY)};

const char *g4_test_testdata(void)
{
    static char buf[4096];
    const char *env = getenv("G4_TESTDATA");
    if (env && *env) snprintf(buf, sizeof buf, "%s", env);
    else snprintf(buf, sizeof buf, "%s/../shared/testdata", G4_SOURCE_DIR);
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
        printf("SKIP: reference data not found at %s (set G4_TESTDATA)\n", buf);
        return NULL;
    }
    return buf;
}

const char *g4_test_datadir(void) { return G4_SOURCE_DIR "/tests/data"; }

uint64_t g4_test_rand(uint64_t *s)
{
    uint64_t x = *s += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

float g4_test_randf(uint64_t *s) { return (float)((double)(g4_test_rand(s) >> 11) / 4503599627370496.0 - 1.0); }

float g4_test_randn(uint64_t *s)
{
    double u1 = ((double)(g4_test_rand(s) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(g4_test_rand(s) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--test") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--list")) {
            for (size_t k = 0; k < sizeof s_tests / sizeof s_tests[0]; k++) printf("%s\n", s_tests[k].name);
            return 0;
        } else {
            fprintf(stderr, "usage: g4_unit [--test NAME] [--list]\n");
            return 2;
        }
    }
    int passed = 0, failed = 0, skipped = 0, found = 0, last = 0;
    for (size_t k = 0; k < sizeof s_tests / sizeof s_tests[0]; k++) {
        if (only && strcmp(only, s_tests[k].name)) continue;
        found = 1;
        g4_test_failures = 0;
        int rc = s_tests[k].fn();
        if (rc == G4_TEST_SKIP && g4_test_failures == 0) {
            printf("SKIP %s\n", s_tests[k].name);
            skipped++;
        } else if (rc == 0 && g4_test_failures == 0) {
            printf("PASS %s\n", s_tests[k].name);
            passed++;
        } else {
            printf("FAIL %s (%d failed checks)\n", s_tests[k].name, g4_test_failures);
            failed++;
        }
        last = rc;
    }
    if (!found) {
        fprintf(stderr, "no test named '%s' (see --list)\n", only);
        return 2;
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    if (failed) return 1;
    if (only && skipped) return last;
    return 0;
}
