/* cli_supervise — keeping a stack's daemons alive (see cli_stack.h).
 *
 * The stack's starter is the parent of every daemon, so it learns of a death
 * from waitpid and starts the daemon again with its command line: on a thread
 * of `g4 run` / `g4 chat` / `g4 serve` for their own stack, in a detached
 * supervisor process for `g4 up`. The scheduler does the rest: a restarted
 * shard registers for its layers, the requests it had are re-prefilled; a
 * restarted tokenizer or encoder gets the calls that were lost. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "cli_stack.h"
#include "g4_alloc.h"
#include "g4_daemon.h"
#include "g4_log.h"
#include "g4_wire.h"

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 8000
#define STABLE_MS 60000  /* running this long: the backoff starts over */
#define LIMIT 5          /* restarts in WINDOW_MS before giving up */
#define WINDOW_MS 120000

struct cli_supervisor {
    pthread_t th;
    atomic_int stop;
};

static uint64_t s_backoff(int k)
{
    uint64_t ms = BACKOFF_MIN_MS;
    for (int i = 0; i < k && ms < BACKOFF_MAX_MS; i++) ms *= 2;
    return ms < BACKOFF_MAX_MS ? ms : BACKOFF_MAX_MS;
}

int cli_stack_supervise(cli_stack_t *st)
{
    const uint64_t now = g4_wire_now_ms();
    int n_restarted = 0;
    for (int i = 0; i < st->n; i++) {
        if (st->given_up[i]) continue;
        if (st->pid[i] > 0) {
            int status;
            const pid_t r = waitpid(st->pid[i], &status, WNOHANG);
            if (r != st->pid[i]) continue;
            st->pid[i] = 0;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) { /* asked to stop (SIGTERM, a swap) */
                st->given_up[i] = 1;
                continue;
            }
            if (now - st->started_ms[i] > STABLE_MS) st->restarts[i] = 0;
            if (st->restarts[i] >= LIMIT) {
                g4_log_error("supervise", "%s died again (%s %d): %d restarts in %d s, not restarting it", st->name[i],
                             WIFSIGNALED(status) ? "signal" : "exit status",
                             WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), LIMIT, WINDOW_MS / 1000);
                st->given_up[i] = 1;
                continue;
            }
            st->restart_at_ms[i] = now + s_backoff(st->restarts[i]);
            g4_log_warn("supervise", "%s died (%s %d); restarting it in %.2f s (restart %d)", st->name[i],
                        WIFSIGNALED(status) ? "signal" : "exit status",
                        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                        (st->restart_at_ms[i] - now) / 1000.0, st->restarts[i] + 1);
        }
        if (st->pid[i] == 0 && now >= st->restart_at_ms[i]) {
            st->restarts[i]++;
            if (cli_stack_respawn(st, i) == 0) {
                n_restarted++;
                g4_log_info("supervise", "%s restarted, pid %d", st->name[i], (int)st->pid[i]);
            } else {
                st->restart_at_ms[i] = now + s_backoff(st->restarts[i]);
            }
        }
    }
    return n_restarted;
}

static void *s_thread(void *arg)
{
    cli_stack_t *st = arg;
    while (!atomic_load(&st->sup->stop)) {
        cli_stack_supervise(st);
        usleep(50000);
    }
    return NULL;
}

int cli_stack_supervise_start(cli_stack_t *st)
{
    if (st->sup) return 0;
    st->sup = g4_calloc(1, sizeof *st->sup);
    if (!st->sup) return -1;
    if (pthread_create(&st->sup->th, NULL, s_thread, st)) {
        g4_free(st->sup);
        st->sup = NULL;
        return -1;
    }
    return 0;
}

void cli_stack_supervise_stop(cli_stack_t *st)
{
    if (!st->sup) return;
    atomic_store(&st->sup->stop, 1);
    pthread_join(st->sup->th, NULL);
    g4_free(st->sup);
    st->sup = NULL;
}

int cli_stack_supervise_loop(cli_stack_t *st, const cli_stack_opts_t *o)
{
    g4_daemon_signals(); /* SIGTERM / SIGINT: g4_daemon_stop */
    signal(SIGHUP, SIG_IGN);
    cli_stack_write_state(st, o, getpid());
    g4_log_info("supervise", "supervising %d daemons in %s", st->n, st->dir);
    while (!g4_daemon_stop) {
        if (cli_stack_supervise(st)) cli_stack_write_state(st, o, getpid());
        usleep(50000);
    }
    g4_log_info("supervise", "stopping the stack");
    cli_stack_stop(st);
    char path[300];
    snprintf(path, sizeof path, "%s/stack.json", st->dir);
    unlink(path);
    return 0;
}
