/* g4_log — see g4_log.h. */
#include "g4_log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "g4_clock.h"

static g4_log_sink_fn s_sink;
static void *s_sink_user;
static volatile int s_level = G4_LOG_WARN;
static const char *s_ident = "g4";
static pthread_mutex_t s_mutex = PTHREAD_MUTEX_INITIALIZER;

void g4_log_set_sink(g4_log_sink_fn fn, void *user)
{
    pthread_mutex_lock(&s_mutex);
    s_sink = fn;
    s_sink_user = user;
    pthread_mutex_unlock(&s_mutex);
}

void g4_log_set_level(g4_log_level_t level) { s_level = (int)level; }
g4_log_level_t g4_log_get_level(void) { return (g4_log_level_t)s_level; }
void g4_log_set_ident(const char *ident) { s_ident = ident ? ident : "g4"; }
int g4_log_enabled(g4_log_level_t level) { return (int)level <= s_level; }

int g4_log_parse_level(const char *s, g4_log_level_t *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (g4_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

void g4_log_writev(g4_log_level_t level, const char *module, const char *fmt, va_list ap)
{
    if (!g4_log_enabled(level)) return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    pthread_mutex_lock(&s_mutex);
    if (s_sink) {
        s_sink(s_sink_user, level, module, msg);
    } else {
        char ts[32];
        g4_clock_wall_iso(ts, sizeof ts);
        static const char lv[] = "EWID";
        fprintf(stderr, "%s %s[%d] %c %s: %s\n", ts, s_ident, (int)getpid(), lv[level], module, msg);
        fflush(stderr);
    }
    pthread_mutex_unlock(&s_mutex);
}

void g4_log_write(g4_log_level_t level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g4_log_writev(level, module, fmt, ap);
    va_end(ap);
}
