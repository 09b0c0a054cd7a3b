/* cli_progress — one self-rewriting status line on stderr for long waits
 * (a prefill of thousands of tokens, a model load): done / total, rate, ETA.
 * Shown only when stderr is a terminal (pipes, logs and --json stay clean),
 * only once the wait has lasted a second, at most a few times a second, and
 * erased before anything else is printed. */
#ifndef CLI_PROGRESS_H
#define CLI_PROGRESS_H

#include <stdint.h>

typedef struct cli_progress {
    int enabled, shown;
    uint64_t t0_ms, last_ms;
    const char *what, *unit;
} cli_progress_t;

/* what: "prefill", unit: "tokens". enabled: the caller's wish (e.g. !json);
 * the line also needs stderr to be a terminal and $G4_NO_PROGRESS unset. */
void cli_progress_init(cli_progress_t *p, const char *what, const char *unit, int enabled);
/* Restarts the clock (e.g. when the prefill itself begins). */
void cli_progress_restart(cli_progress_t *p);
/* done of total units so far (total 0: unknown). */
void cli_progress_update(cli_progress_t *p, double done, double total);
/* A free-form line instead of the counts ("2 of 3 daemons ready"). */
void cli_progress_text(cli_progress_t *p, const char *text);
/* Erases the line (call before printing anything else). */
void cli_progress_clear(cli_progress_t *p);
/* Erases whichever line is on screen (cli_error calls it). */
void cli_progress_clear_any(void);

/* The one-line summary after a generation, on stderr when it is a terminal
 * or with force (--verbose): "12 prompt tokens, prefill 340.2 tok/s, 32 tokens
 * at 25.1 tok/s, first token after 0.12 s". Times in milliseconds. */
void cli_progress_summary(int n_prompt, int n_gen, double prefill_ms, double decode_ms, int force);

#endif
