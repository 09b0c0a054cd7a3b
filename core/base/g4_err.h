/* g4_err — status codes and a caller-owned error record.
 *
 * Every fallible call in libg4core returns an int status (G4_OK or a negative
 * G4_ERR_*) and, where the failure can come from outside the program, fills a
 * caller-owned g4_err_t (may be NULL). The same codes travel in the wire
 * protocol's Error message, so a client sees what the daemon saw.
 * Library code never exits, aborts or prints. */
#ifndef G4_ERR_H
#define G4_ERR_H

#include <stdarg.h>

enum {
    G4_OK = 0,
    G4_ERR_NOMEM = -1,       /* allocation failed                          */
    G4_ERR_IO = -2,          /* OS-level read/write/open/mmap failure      */
    G4_ERR_FORMAT = -3,      /* malformed input data (file, message, text) */
    G4_ERR_PROTO = -4,       /* protocol violation or version mismatch     */
    G4_ERR_RANGE = -5,       /* value out of range / bad argument          */
    G4_ERR_STATE = -6,       /* call not valid in the current state        */
    G4_ERR_TIMEOUT = -7,     /* deadline passed                            */
    G4_ERR_AGAIN = -8,       /* try again later (queue full, busy)         */
    G4_ERR_UNAVAILABLE = -9, /* a peer or resource is not there            */
    G4_ERR_CANCELLED = -10,  /* cancelled by the caller                    */
};
#define G4_ERR_COUNT 11

#define G4_ERR_MSG_MAX 256

typedef struct g4_err {
    int code;                  /* G4_OK or G4_ERR_*                 */
    char msg[G4_ERR_MSG_MAX];  /* one line, no trailing newline     */
} g4_err_t;

/* Short fixed name of a status code ("format error", ...). Never NULL. */
const char *g4_strerror(int rc);

/* Symbolic name of a status code ("FORMAT", "NOMEM", ...). Never NULL. */
const char *g4_err_name(int rc);

/* Records code + formatted message in *err (if err != NULL) and returns code,
 * so a failure is one line: return g4_err_set(err, G4_ERR_FORMAT, "...", ...); */
int g4_err_set(g4_err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int g4_err_setv(g4_err_t *err, int code, const char *fmt, va_list ap);

/* Resets *err to G4_OK with an empty message. */
void g4_err_clear(g4_err_t *err);

/* Always-on invariant check for our own logic (never for input data).
 * On failure it reports through the log and traps: an invariant violation is
 * a bug, not an input error. */
void g4_assert_fail(const char *expr, const char *file, int line);
#define G4_ASSERT(x) ((x) ? (void)0 : g4_assert_fail(#x, __FILE__, __LINE__))
#ifdef NDEBUG
#define G4_DASSERT(x) ((void)0)
#else
#define G4_DASSERT(x) G4_ASSERT(x)
#endif
/* Defensive checks: assert in debug builds, still take the safe branch in release. */
#ifdef NDEBUG
#define G4_ALWAYS(x) (x)
#define G4_NEVER(x) (x)
#else
#define G4_ALWAYS(x) ((x) ? 1 : (g4_assert_fail(#x, __FILE__, __LINE__), 0))
#define G4_NEVER(x) ((x) ? (g4_assert_fail(#x, __FILE__, __LINE__), 1) : 0)
#endif

#endif
