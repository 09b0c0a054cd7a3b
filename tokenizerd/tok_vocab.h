/* tok_vocab — the Gemma 4 tokenizer read from a GGUF (tokenizer.ggml.*).
 *
 * Algorithm (docs gemma4-model.md §4): special-token partition (control
 * tokens only when asked, user-defined tokens always), ' ' -> U+2581, runs of
 * '\n' split from the rest (a whole run that is a token is emitted directly),
 * rank-ordered BPE with leftmost ties over code points, byte fallback
 * (<0xXY>), optional BOS. Merge lookup is a hash of (left id, right id) and
 * the BPE uses a heap, so a long text costs O(n log n).
 * Used by tokenizerd and, in process, by `g4 run`. */
#ifndef TOK_VOCAB_H
#define TOK_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "g4_err.h"
#include "g4_gguf.h"

typedef struct tok_vocab tok_vocab_t;

/* Reads the vocabulary from an open GGUF (copied; the file may close after). */
tok_vocab_t *tok_vocab_load(const g4_gguf_t *g, g4_err_t *err);
void tok_vocab_destroy(tok_vocab_t **v);
int tok_vocab_size(const tok_vocab_t *v);
int32_t tok_vocab_bos(const tok_vocab_t *v);

/* Tokenizes text[0..len). add_bos: prepend <bos>; parse_special: match
 * control tokens in the text. *ids is allocated (caller g4_free()s). */
int tok_vocab_tokenize(const tok_vocab_t *v, const char *text, size_t len, int add_bos, int parse_special,
                       int32_t **ids, int *n_ids, g4_err_t *err);

/* The bytes of one token (▁ -> space, byte tokens -> that byte, control
 * tokens empty unless `special`). Returns the length written (truncated to
 * size), or -1 for an unknown id. */
int tok_vocab_piece(const tok_vocab_t *v, int32_t id, char *buf, size_t size, int special);
/* Concatenated pieces as a NUL-terminated string (caller g4_free()s). */
char *tok_vocab_detokenize(const tok_vocab_t *v, const int32_t *ids, int n, int special, size_t *len);

#endif
