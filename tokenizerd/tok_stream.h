/* tok_stream — UTF-8 safe text from token ids, whole or incremental.
 *
 * Token pieces are bytes (byte-fallback tokens can split a code point across
 * tokens). tok_utf8_clean() replaces every ill-formed sequence with U+FFFD
 * (one per maximal subpart, as Unicode recommends). The incremental
 * detokenizer emits text as soon as it is complete and holds back the bytes
 * of a code point still being spelled; the concatenation of everything it
 * emits, flush included, equals tok_utf8_clean() of the whole byte string. */
#ifndef TOK_STREAM_H
#define TOK_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "tok_vocab.h"

/* Writes the cleaned text of s[0..n) to out (room for 3*n+1 bytes, NUL-terminated);
 * returns its length. */
size_t tok_utf8_clean(const char *s, size_t n, char *out);
/* Length of the trailing bytes that begin a well-formed but unfinished code point. */
size_t tok_utf8_pending(const char *s, size_t n);

typedef struct tok_stream {
    char pend[4];
    int n_pend;
    int special; /* show control tokens as text */
} tok_stream_t;

void tok_stream_init(tok_stream_t *s, int special);
/* Appends the text that token id completes to *buf (g4_realloc'ed, *len bytes,
 * NUL-terminated). Returns the number of bytes appended, or -1 (no memory). */
long tok_stream_feed(const tok_vocab_t *v, tok_stream_t *s, int32_t id, char **buf, size_t *len);
/* Appends what is still held (as U+FFFD) and resets the state. */
long tok_stream_flush(tok_stream_t *s, char **buf, size_t *len);

/* Whole-sequence detokenization, cleaned (caller g4_free()s). */
char *tok_detokenize_text(const tok_vocab_t *v, const int32_t *ids, int n, int special, size_t *len);

#endif
