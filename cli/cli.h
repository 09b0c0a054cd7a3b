/* cli — the g4 command: one function per subcommand, dispatched by main.c.
 * Each returns the process exit code: 0 ok, 1 failure, 2 usage. */
#ifndef G4_CLI_H
#define G4_CLI_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "g4_plan.h"
#include "g4_topo.h"

int cli_inspect(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_detokenize(int argc, char **argv);
int cli_chat_template(int argc, char **argv);
int cli_up(int argc, char **argv);
int cli_plan(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_chat(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_down(int argc, char **argv);
int cli_swap(int argc, char **argv);
int cli_keygen(int argc, char **argv);
int cli_parse_output(int argc, char **argv);
int cli_encode(int argc, char **argv);
int cli_quantize(int argc, char **argv);

/* The placement `g4 plan` prints and the default stack follows: model's
 * layers over topo_desc's NUMA nodes (NULL: this machine, as the daemons
 * see it), n_shards stages (0: one per node), KV caches for n_slots
 * sequences of n_ctx positions (plan defaults: CLI_PLAN_*). Reads the GGUF's
 * header only. 0, or -1 with why. */
#define CLI_PLAN_CTX 4096
#define CLI_PLAN_SLOTS 16
#define CLI_PLAN_UBATCH 512
typedef struct cli_plan {
    int n_layer, n_nodes;
    uint64_t kv_seq_full, kv_seq_swa; /* KV bytes of one sequence: full-attention, sliding-window layers */
    int swa_cells;                    /* cells a sliding layer keeps (window + ubatch), 0 without */
    g4_topo_node_t nodes[G4_PLAN_MAX];
    g4_plan_t plan; /* stages[i].node indexes nodes, or devs with devices */
    /* with devices (cli_plan_devices): the list, in chain order */
    int n_devs;
    g4_plan_device_t devs[G4_PLAN_MAX];
    char dev_name[G4_PLAN_MAX][16]; /* "cuda:0", "cpu" */
    int dev_given[G4_PLAN_MAX];     /* its memory was given (cuda:1=24G), not measured */
} cli_plan_t;
int cli_plan_make(const char *model, const char *topo_desc, int n_shards, int n_ctx, int n_slots, cli_plan_t *out,
                  char *why, size_t why_size);
/* The same over devices, a list such as "cuda:0,cuda:1,cpu" in chain order
 * (g4_plan_devices): a GPU's memory is what the runtime says is free less a
 * reserve for its scratch (CLI_PLAN_GPU_RESERVE), or given after '='
 * ("cuda:1=24G": planning for a device this machine lacks); the CPU's is
 * the memory available. 0, or -1 with why. */
#define CLI_PLAN_GPU_RESERVE ((uint64_t)1 << 30)
int cli_plan_devices(const char *model, const char *devices, int n_ctx, int n_slots, cli_plan_t *out, char *why,
                     size_t why_size);
/* The prefix cache each of n_shards shards gets by default (their --cache-mb
 * from g4 up / serve / run / chat): a quarter of the memory available beside
 * the plan's weights and KV caches, shared equally; 0 when nothing is left. */
uint64_t cli_plan_cache_bytes(const cli_plan_t *cp, int n_shards);
/* Before anything is loaded: does one sequence of n_ctx positions (0: the
 * default) fit beside the weights on this machine? Prints why not, with the
 * numbers, and returns 1; 0 when it fits or the header cannot tell. */
int cli_plan_check_fits(const char *model, int n_shards, int n_ctx);
/* --slots when only --ctx is given: the default total of positions
 * (CLI_PLAN_SLOTS x CLI_PLAN_CTX) in sequences of n_ctx, 1 .. CLI_PLAN_SLOTS */
int cli_plan_default_slots(int n_ctx);

/* Prints "error: <msg>" on stderr (one line); with --json the first such
 * message is also kept for cli_json_finish. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- --json and errors (cli_util.c) ----
 * With --json a failing command says why on stdout as well, as one object
 * {"error": {"message", "type": "usage" | "failure" | "interrupted", "code": EXIT}},
 * so a script that parses stdout always gets JSON. main.c turns the mode on
 * when --json is among a command's options. */
void cli_json_errors_on(void);
/* A command's own --json reply that goes with a failure (status: nothing is
 * up; plan: it does not fit) carries the error in it: adds "error" to obj
 * (message: the first cli_error, else msg, then also said on stderr) and
 * marks the error as reported. */
void cli_json_add_error(cJSON *obj, const char *msg, int exit_code);
/* main.c, after cmd returned rc: the error object on stdout when rc != 0 in
 * --json mode and the command did not report it itself. */
void cli_json_finish(const char *cmd, int rc);
/* Python-repr-like shortest round-trip text for a double ("1e-06", "30.0"). */
void cli_fmt_double(char *buf, size_t size, double v);
/* Whole file as a NUL-terminated buffer (caller g4_free()s); NULL + errno on failure. */
char *cli_read_file(const char *path, size_t *len);
/* The input of a -p TEXT | -f FILE command: the file's bytes (in *owned, to
 * g4_free) or the text, its length in *len; NULL after printing why. */
const char *cli_input(const char *file, const char *text, size_t *len, char **owned);
/* A JSON string literal (quotes included) for s[0..n), NUL bytes and all;
 * for cJSON_AddRawToObject (caller g4_free()s). */
char *cli_json_quote(const char *s, size_t n);
/* Python repr of a byte string (single quotes, escapes). */
void cli_print_pyrepr(FILE *out, const char *s, size_t n);

#endif
