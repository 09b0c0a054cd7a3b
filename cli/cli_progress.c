/* cli_progress — see cli_progress.h. */
#include "cli_progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "g4_wire.h"

#define SHOW_AFTER_MS 1000
#define EVERY_MS 200

static cli_progress_t *s_active; /* the line on screen, erased by cli_progress_clear_any */

void cli_progress_init(cli_progress_t *p, const char *what, const char *unit, int enabled)
{
    memset(p, 0, sizeof *p);
    const char *off = getenv("G4_NO_PROGRESS");
    p->enabled = enabled && isatty(STDERR_FILENO) && !(off && *off && strcmp(off, "0"));
    p->what = what, p->unit = unit;
    p->t0_ms = g4_wire_now_ms();
}

void cli_progress_restart(cli_progress_t *p) { p->t0_ms = g4_wire_now_ms(); }

static int s_due(cli_progress_t *p, uint64_t now)
{
    if (!p->enabled || now - p->t0_ms < SHOW_AFTER_MS || (p->shown && now - p->last_ms < EVERY_MS)) return 0;
    p->last_ms = now;
    return 1;
}

static void s_put(cli_progress_t *p, const char *line)
{
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
    p->shown = 1;
    s_active = p;
}

void cli_progress_update(cli_progress_t *p, double done, double total)
{
    const uint64_t now = g4_wire_now_ms();
    if (!s_due(p, now)) return;
    const double s = (now - p->t0_ms) / 1000.0, rate = s > 0 ? done / s : 0;
    char line[160];
    int n = snprintf(line, sizeof line, "%s: %.0f", p->what, done);
    if (total > 0) n += snprintf(line + n, sizeof line - (size_t)n, "/%.0f %s (%.0f%%)", total, p->unit, 100.0 * done / total);
    else n += snprintf(line + n, sizeof line - (size_t)n, " %s", p->unit);
    n += snprintf(line + n, sizeof line - (size_t)n, ", %.1f %s/s", rate, p->unit);
    if (total > 0 && rate > 0 && done < total)
        snprintf(line + n, sizeof line - (size_t)n, ", ETA %.0f s", (total - done) / rate);
    else
        snprintf(line + n, sizeof line - (size_t)n, ", %.0f s", s);
    s_put(p, line);
}

void cli_progress_text(cli_progress_t *p, const char *text)
{
    const uint64_t now = g4_wire_now_ms();
    if (!s_due(p, now)) return;
    char line[200];
    snprintf(line, sizeof line, "%s: %s (%.0f s)", p->what, text, (now - p->t0_ms) / 1000.0);
    s_put(p, line);
}

void cli_progress_clear(cli_progress_t *p)
{
    if (s_active == p) s_active = NULL;
    if (!p->shown) return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    p->shown = 0;
}

void cli_progress_clear_any(void)
{
    if (s_active) cli_progress_clear(s_active);
}

void cli_progress_summary(int n_prompt, int n_gen, double prefill_ms, double decode_ms, int force)
{
    if (!force && (!isatty(2) || getenv("G4_NO_PROGRESS"))) return;
    cli_progress_clear_any();
    /* decode steps: the generated ids after the first, which the prefill makes */
    fprintf(stderr, "%d prompt tokens, prefill %.1f tok/s, %d tokens at %.1f tok/s, first token after %.2f s\n",
            n_prompt, prefill_ms > 0 ? n_prompt / (prefill_ms / 1e3) : 0, n_gen,
            n_gen > 1 && decode_ms > 0 ? (n_gen - 1) / (decode_ms / 1e3) : 0, prefill_ms / 1e3);
}
