/* tok_jinja — a Jinja interpreter for the subset chat templates use.
 *
 * Renders a GGUF's tokenizer.chat_template (or any template file) against a
 * JSON context the way transformers' apply_chat_template does with
 * @huggingface/jinja: trim_blocks and lstrip_blocks on, autoescape off,
 * loop controls, macros with keyword arguments, namespaces, the usual filters,
 * tests and Python string/dict/list methods. Undefined values render empty;
 * none renders empty; booleans render as true/false; integral JSON numbers are
 * integers (so 2.0 prints 2), other numbers print in the shortest form that
 * reads back (JavaScript's rules).
 *
 * Errors (syntax, raise_exception(), a type a filter cannot take) come back
 * as G4_ERR_FORMAT with the template line in the message. */
#ifndef TOK_JINJA_H
#define TOK_JINJA_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "g4_err.h"

typedef struct tj_template tj_template_t;

tj_template_t *tj_parse(const char *src, size_t len, g4_err_t *err);
void tj_free(tj_template_t **t);

/* Renders with the members of ctx (a JSON object) as variables. Returns a
 * NUL-terminated string the caller g4_free()s, its length in *len. */
char *tj_render(const tj_template_t *t, const cJSON *ctx, size_t *len, g4_err_t *err);
/* The budget of every render in this process: bytes of memory (the output
 * included) and expressions evaluated; past either the render fails with
 * G4_ERR_RANGE. 0 keeps a limit as it is (defaults 256 MiB, 20,000,000). */
void tj_set_limits(size_t max_bytes, uint64_t max_steps);

#endif
