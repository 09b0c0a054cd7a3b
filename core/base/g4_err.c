/* g4_err — status codes and error records. See g4_err.h. */
#include "g4_err.h"

#include <stdio.h>
#include <string.h>

#include "g4_log.h"

static const char *const s_names[G4_ERR_COUNT] = {
    "OK", "NOMEM", "IO", "FORMAT", "PROTO", "RANGE",
    "STATE", "TIMEOUT", "AGAIN", "UNAVAILABLE", "CANCELLED",
};
static const char *const s_texts[G4_ERR_COUNT] = {
    "ok", "out of memory", "I/O error", "format error", "protocol error",
    "out of range", "invalid state", "timed out", "try again", "unavailable",
    "cancelled",
};

const char *g4_strerror(int rc)
{
    if (rc > 0 || rc <= -G4_ERR_COUNT) return "unknown error";
    return s_texts[-rc];
}

const char *g4_err_name(int rc)
{
    if (rc > 0 || rc <= -G4_ERR_COUNT) return "UNKNOWN";
    return s_names[-rc];
}

int g4_err_setv(g4_err_t *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        /* keep it one line */
        for (char *p = err->msg; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
    }
    return code;
}

int g4_err_set(g4_err_t *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g4_err_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

void g4_err_clear(g4_err_t *err)
{
    if (err) {
        err->code = G4_OK;
        err->msg[0] = '\0';
    }
}

void g4_assert_fail(const char *expr, const char *file, int line)
{
    g4_log_write(G4_LOG_ERROR, "assert", "%s:%d: assertion failed: %s", file, line, expr);
    __builtin_trap();
}
