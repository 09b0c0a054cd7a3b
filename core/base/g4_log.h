/* g4_log — leveled logging through a sink the program sets.
 *
 * Library code never prints; it logs. The default sink writes one line per
 * event to stderr:  2025-06-01T10:22:03.412Z shardd[4121] I model: text
 * Daemons set their identity with g4_log_set_ident(); tests can capture lines
 * with their own sink. The level is checked before formatting. */
#ifndef G4_LOG_H
#define G4_LOG_H

#include <stdarg.h>

typedef enum g4_log_level {
    G4_LOG_ERROR = 0,
    G4_LOG_WARN = 1,
    G4_LOG_INFO = 2,
    G4_LOG_DEBUG = 3,
} g4_log_level_t;

/* A sink receives the level, the module and the formatted message (no newline). */
typedef void (*g4_log_sink_fn)(void *user, g4_log_level_t level, const char *module, const char *msg);

void g4_log_set_sink(g4_log_sink_fn fn, void *user); /* NULL restores stderr */
void g4_log_set_level(g4_log_level_t level);
g4_log_level_t g4_log_get_level(void);
/* Parses "error|warn|info|debug"; returns 0 on success, -1 otherwise. */
int g4_log_parse_level(const char *s, g4_log_level_t *out);
/* Program name shown in default lines (borrowed pointer, keep it alive). */
void g4_log_set_ident(const char *ident);
int g4_log_enabled(g4_log_level_t level);

void g4_log_write(g4_log_level_t level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void g4_log_writev(g4_log_level_t level, const char *module, const char *fmt, va_list ap);

#define g4_log_error(mod, ...) g4_log_write(G4_LOG_ERROR, mod, __VA_ARGS__)
#define g4_log_warn(mod, ...) \
    do { if (g4_log_enabled(G4_LOG_WARN)) g4_log_write(G4_LOG_WARN, mod, __VA_ARGS__); } while (0)
#define g4_log_info(mod, ...) \
    do { if (g4_log_enabled(G4_LOG_INFO)) g4_log_write(G4_LOG_INFO, mod, __VA_ARGS__); } while (0)
#define g4_log_debug(mod, ...) \
    do { if (g4_log_enabled(G4_LOG_DEBUG)) g4_log_write(G4_LOG_DEBUG, mod, __VA_ARGS__); } while (0)

#endif
