/* g4_test — the tiny assertion layer of the unit runner (tests/unit/g4_unit.c).
 * A test is `int test_NAME(void)` returning 0 (pass), 77 (skip) or failures. */
#ifndef G4_TEST_H
#define G4_TEST_H

#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

extern int g4_test_failures;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
            g4_test_failures++;                                                       \
        }                                                                             \
    } while (0)

#define CHECKF(cond, ...)                                                             \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
            g4_test_failures++;                                                       \
        }                                                                             \
    } while (0)

#define REQUIRE(cond)                                                                 \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
            return ++g4_test_failures;                                                \
        }                                                                             \
    } while (0)

#define G4_TEST_SKIP 77

/* Directory with the shared reference data (env G4_TESTDATA, default
 * ../shared/testdata next to the source tree), or NULL with a printed
 * SKIP line when it is absent. */
const char *g4_test_testdata(void);
/* Directory of committed fixtures (tests/data). */
const char *g4_test_datadir(void);
/* Deterministic random numbers for tests. */
uint64_t g4_test_rand(uint64_t *state);
float g4_test_randf(uint64_t *state); /* uniform in [-1, 1) */
float g4_test_randn(uint64_t *state); /* standard normal */

#endif
