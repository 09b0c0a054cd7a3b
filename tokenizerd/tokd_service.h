/* tokd_service — the tokenizerd request handler (library, so tests and the
 * embedded stack can run it): Tokenize, Detokenize (incremental, the client
 * carries the state), RenderChat, ParseOutput, Info. */
#ifndef TOKD_SERVICE_H
#define TOKD_SERVICE_H

#include "g4_wire.h"
#include "tok_chat.h"
#include "tok_vocab.h"

#define TOKD_MAX_TEXT (64u << 20) /* bytes of text per request */
#define TOKD_MAX_IDS (1 << 24)

typedef struct tokd {
    tok_vocab_t *vocab;
    tj_template_t *tmpl; /* may be NULL */
    int native_tools;    /* the template folds role:"tool" messages itself */
    const g4_gguf_t *gguf;
    char digest[32];
    uint64_t n_requests, n_errors;
} tokd_t;

/* ids of <|image|> <|image> <image|> <|audio|> <|audio> <audio|> (-1 where the vocabulary lacks one) */
void tokd_media_ids(const tok_vocab_t *v, int32_t out[6]);

/* Answers one request on a ROUTER socket (malformed ones get an Error). */
void tokd_handle(tokd_t *t, void *sock, g4_msg_t *m);

#endif
