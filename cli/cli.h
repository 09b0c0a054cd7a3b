/* cli — the g4 command: one function per subcommand, dispatched by main.c.
 * Each returns the process exit code: 0 ok, 1 failure, 2 usage. */
#ifndef G4_CLI_H
#define G4_CLI_H

#include <stdio.h>

int cli_inspect(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_detokenize(int argc, char **argv);
int cli_chat_template(int argc, char **argv);
int cli_up(int argc, char **argv);
int cli_plan(int argc, char **argv);
int cli_bench(int argc, char **argv);
/* Layer boundaries for n shards (cli_stack.c). */
int cli_split_layers(const char *model, int n_shards, int *bounds, int max_bounds, char *err, size_t err_size);
int cli_chat(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_down(int argc, char **argv);
int cli_swap(int argc, char **argv);
int cli_keygen(int argc, char **argv);
int cli_parse_output(int argc, char **argv);
int cli_encode(int argc, char **argv);
int cli_quantize(int argc, char **argv);

/* Prints "error: <msg>" on stderr (one line). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Python-repr-like shortest round-trip text for a double ("1e-06", "30.0"). */
void cli_fmt_double(char *buf, size_t size, double v);
/* Whole file as a NUL-terminated buffer (caller g4_free()s); NULL + errno on failure. */
char *cli_read_file(const char *path, size_t *len);
/* A JSON string literal (quotes included) for s[0..n), NUL bytes and all;
 * for cJSON_AddRawToObject (caller g4_free()s). */
char *cli_json_quote(const char *s, size_t n);
/* Python repr of a byte string (single quotes, escapes). */
void cli_print_pyrepr(FILE *out, const char *s, size_t n);

#endif
