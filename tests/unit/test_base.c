/* Tests of core/base: errors, options table (sources and their order,
 * aliases, required and flag-only options, print and reload), allocation
 * failure hook. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "g4_alloc.h"
#include "g4_cfg.h"
#include "g4_err.h"
#include "g4_test.h"

typedef struct {
    int64_t threads;
    double temp;
    char *listen;
    int verbose;
    char *config, *model;
    int help;
} s_cfg_t;

#define S_OPT(t, field) .type = t, .offset = offsetof(s_cfg_t, field)
/* the first N_OPTS for the basics; then a config file, a required option and a command */
static const g4_cfg_opt_t s_opts[] = {
    {"threads", S_OPT(G4_CFG_INT, threads), "4", 1, 256, 0, "compute threads", .env = "G4_TEST_CFG_THREADS",
     .alias = "-t"},
    {"temp", S_OPT(G4_CFG_DOUBLE, temp), "0.8", 0, 10, 1, "temperature"},
    {"listen", S_OPT(G4_CFG_STRING, listen), "ipc://x", 1, 0, 0, "endpoint"},
    {"verbose", S_OPT(G4_CFG_BOOL, verbose), NULL, 1, 0, 1, "log more", .env = "G4_TEST_CFG_VERBOSE"},
    {"model", S_OPT(G4_CFG_STRING, model), NULL, 1, 0, 0, "the GGUF", .alias = "-m", .flags = G4_CFG_REQUIRED},
    {"config", S_OPT(G4_CFG_STRING, config), NULL, 1, 0, 0, "file", .flags = G4_CFG_ARGV_ONLY},
    {"help", S_OPT(G4_CFG_BOOL, help), NULL, 1, 0, 0, "help", .flags = G4_CFG_ARGV_ONLY},
};
#define N_OPTS 4
#define N_OPTS2 (sizeof s_opts / sizeof s_opts[0])

static void s_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* defaults < environment < file < flags; aliases; required; flag-only keys;
 * --print-config output read back */
static int s_test_cfg_sources(void)
{
    g4_err_t err;
    s_cfg_t c;
    char path[] = "/tmp/g4-test-cfg-XXXXXX";
    const int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    unsetenv("G4_TEST_CFG_THREADS"), unsetenv("G4_TEST_CFG_VERBOSE");
    char *a0[] = {"prog", "-m", "m.gguf"};
    REQUIRE(g4_cfg_load(s_opts, N_OPTS2, &c, 3, a0, "config", &err) == G4_OK);
    CHECK(c.threads == 4 && !c.verbose && !strcmp(c.model, "m.gguf")); /* defaults, alias */
    setenv("G4_TEST_CFG_THREADS", "12", 1), setenv("G4_TEST_CFG_VERBOSE", "yes", 1);
    g4_cfg_fini(s_opts, N_OPTS2, &c);
    REQUIRE(g4_cfg_load(s_opts, N_OPTS2, &c, 3, a0, "config", &err) == G4_OK);
    CHECK(c.threads == 12 && c.verbose); /* env over default */
    s_write(path, "# a comment\nthreads 20\nverbose off\n\ntemp 1.5\n");
    char *a1[] = {"prog", "--config", path, "-m", "m.gguf"};
    g4_cfg_fini(s_opts, N_OPTS2, &c);
    REQUIRE(g4_cfg_load(s_opts, N_OPTS2, &c, 5, a1, "config", &err) == G4_OK);
    CHECK(c.threads == 20 && !c.verbose && c.temp == 1.5); /* file over env */
    char *a2[] = {"prog", "--threads", "30", "--config", path, "--model=m.gguf"};
    g4_cfg_fini(s_opts, N_OPTS2, &c);
    REQUIRE(g4_cfg_load(s_opts, N_OPTS2, &c, 6, a2, "config", &err) == G4_OK);
    CHECK(c.threads == 30 && c.temp == 1.5); /* a flag over the file, even one before --config */
    char *a3[] = {"prog", "-t", "7", "--verbose"};
    setenv("G4_TEST_CFG_VERBOSE", "0", 1);
    g4_cfg_fini(s_opts, N_OPTS2, &c);
    REQUIRE(g4_cfg_load(s_opts, N_OPTS2, &c, 4, a3, "config", &err) == G4_OK);
    CHECK(c.threads == 7 && c.verbose);
    CHECK(g4_cfg_check(s_opts, N_OPTS2, &c, &err) == G4_ERR_RANGE && strstr(err.msg, "--model"));
    setenv("G4_TEST_CFG_THREADS", "lots", 1); /* a bad value names its variable */
    g4_cfg_fini(s_opts, N_OPTS2, &c);
    CHECK(g4_cfg_load(s_opts, N_OPTS2, &c, 3, a0, "config", &err) == G4_ERR_RANGE &&
          strstr(err.msg, "$G4_TEST_CFG_THREADS"));
    unsetenv("G4_TEST_CFG_THREADS"), unsetenv("G4_TEST_CFG_VERBOSE");
    s_write(path, "help 1\n"); /* commands are not settings */
    CHECK(g4_cfg_load_file(s_opts, N_OPTS2, &c, path, &err) == G4_ERR_RANGE);
    s_write(path, "nope 1\n");
    CHECK(g4_cfg_load_file(s_opts, N_OPTS2, &c, path, &err) == G4_ERR_RANGE && strstr(err.msg, ":1:"));
    char *a4[] = {"prog", "-t"};
    CHECK(g4_cfg_parse_args(s_opts, N_OPTS2, &c, 2, a4, 1, NULL, NULL, &err) == G4_ERR_RANGE);
    /* what g4_cfg_print writes reads back to the same configuration */
    char *a5[] = {"prog", "-m", "m.gguf", "--temp", "2.25", "--listen", "tcp://*:7"};
    g4_cfg_fini(s_opts, N_OPTS2, &c);
    REQUIRE(g4_cfg_load(s_opts, N_OPTS2, &c, 7, a5, "config", &err) == G4_OK);
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    g4_cfg_print(s_opts, N_OPTS2, &c, f);
    fclose(f);
    s_cfg_t r;
    char *a6[] = {"prog", "--config", path};
    REQUIRE(g4_cfg_load(s_opts, N_OPTS2, &r, 3, a6, "config", &err) == G4_OK);
    CHECK(r.temp == 2.25 && r.threads == 4 && !strcmp(r.listen, "tcp://*:7") && !strcmp(r.model, "m.gguf"));
    g4_cfg_fini(s_opts, N_OPTS2, &r);
    g4_cfg_fini(s_opts, N_OPTS2, &c);
    unlink(path);
    return 0;
}

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
    if (s_test_cfg_sources()) return 1;

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
