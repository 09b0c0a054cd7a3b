/* Tests of core/base: errors, options table, allocation failure hook. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_cfg.h"
#include "g4_err.h"
#include "g4_test.h"

typedef struct {
    int64_t threads;
    double temp;
    char *listen;
    int verbose;
} s_cfg_t;

static const g4_cfg_opt_t s_opts[] = {
    {"threads", G4_CFG_INT, offsetof(s_cfg_t, threads), "4", 1, 256, 0, "compute threads"},
    {"temp", G4_CFG_DOUBLE, offsetof(s_cfg_t, temp), "0.8", 0, 10, 1, "temperature"},
    {"listen", G4_CFG_STRING, offsetof(s_cfg_t, listen), "ipc://x", 1, 0, 0, "endpoint"},
    {"verbose", G4_CFG_BOOL, offsetof(s_cfg_t, verbose), NULL, 1, 0, 1, "log more"},
};
#define N_OPTS (sizeof s_opts / sizeof s_opts[0])

int test_base(void)
{
    g4_err_t err;
    CHECK(g4_err_set(&err, G4_ERR_FORMAT, "x %d\ny", 3) == G4_ERR_FORMAT);
    CHECK(strcmp(err.msg, "x 3 y") == 0); /* one line */
    CHECK(strcmp(g4_err_name(G4_ERR_TIMEOUT), "TIMEOUT") == 0);
    CHECK(strcmp(g4_strerror(12345), "unknown error") == 0);

    s_cfg_t c;
    memset(&c, 0, sizeof c);
    REQUIRE(g4_cfg_defaults(s_opts, N_OPTS, &c, &err) == G4_OK);
    CHECK(c.threads == 4 && c.temp == 0.8 && c.listen && !strcmp(c.listen, "ipc://x") && !c.verbose);
    char *argv[] = {"prog", "--threads", "8", "--temp=0.5", "pos1", "--verbose", "--listen", "tcp://*:5"};
    const char *pos[4];
    int n_pos = 4;
    REQUIRE(g4_cfg_parse_args(s_opts, N_OPTS, &c, 8, argv, 1, pos, &n_pos, &err) == G4_OK);
    CHECK(c.threads == 8 && c.temp == 0.5 && c.verbose && !strcmp(c.listen, "tcp://*:5"));
    CHECK(n_pos == 1 && !strcmp(pos[0], "pos1"));
    char *bad1[] = {"prog", "--threads", "999"};
    CHECK(g4_cfg_parse_args(s_opts, N_OPTS, &c, 3, bad1, 1, NULL, NULL, &err) == G4_ERR_RANGE);
    CHECK(strstr(err.msg, "threads") != NULL);
    char *bad2[] = {"prog", "--nope", "1"};
    CHECK(g4_cfg_parse_args(s_opts, N_OPTS, &c, 3, bad2, 1, NULL, NULL, &err) == G4_ERR_RANGE);
    char *bad3[] = {"prog", "--temp", "abc"};
    CHECK(g4_cfg_parse_args(s_opts, N_OPTS, &c, 3, bad3, 1, NULL, NULL, &err) == G4_ERR_RANGE);
    char *neg[] = {"prog", "--no-verbose"};
    CHECK(g4_cfg_parse_args(s_opts, N_OPTS, &c, 2, neg, 1, NULL, NULL, &err) == G4_OK && !c.verbose);
    g4_cfg_fini(s_opts, N_OPTS, &c);
    CHECK(c.listen == NULL);

    /* allocation failure hook */
    g4_alloc_fail_at(2);
    void *a = g4_malloc(8), *b = g4_malloc(8), *d = g4_malloc(8);
    CHECK(a != NULL && b == NULL && d != NULL);
    g4_free(a);
    g4_free(d);
    g4_alloc_fail_at(0);
    CHECK(g4_calloc(SIZE_MAX / 2, 4) == NULL); /* overflow checked */
    return 0;
}
