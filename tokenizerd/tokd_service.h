/* tokd_service — the tokenizerd request handler (library, so tests and the
 * embedded stack can run it): Tokenize, Detokenize (incremental, the client
 * carries the state), RenderChat, ParseOutput, Info; and what tokenizerd's
 * main needs around it: opening the model and template (tokd_open), serving
 * a burst on the worker thread (tokd_serve), closing (tokd_close). */
#ifndef TOKD_SERVICE_H
#define TOKD_SERVICE_H

#include "g4_daemon.h"
#include "g4_wire.h"
#include "tok_chat.h"
#include "tok_vocab.h"

#define TOKD_MAX_TEXT (64u << 20) /* bytes of text per request */
#define TOKD_MAX_IDS (1 << 24)

typedef struct tokd {
    tok_vocab_t *vocab;
    tj_template_t *tmpl; /* may be NULL */
    int native_tools;    /* the template folds role:"tool" messages itself */
    g4_gguf_t *gguf;     /* owned when tokd_open opened it (may be NULL) */
    char digest[32];
    uint64_t n_requests, n_errors;
    g4_daemon_work_t *work; /* tokd_serve publishes each call there (may be NULL) */
    uint64_t n_calls;
    size_t max_text;      /* bytes of text per tokenize / render / parse call (0: TOKD_MAX_TEXT) */
    int max_messages;     /* messages per conversation (0: 1024) */
} tokd_t;

/* Opens the model's vocabulary and the chat template: `tmpl` (a .jinja file;
 * failing is an error) or the GGUF's own (missing: chat requests are refused,
 * logged). Fills t (zeroed first); tokd_close frees it. */
int tokd_open(tokd_t *t, const char *model, const char *tmpl, g4_err_t *err);
void tokd_close(tokd_t *t);

/* g4_worker on_ready: answers the waiting requests of the ROUTER sock (user: tokd_t). */
void tokd_serve(void *user, void *sock);

/* ids of <|image|> <|image> <image|> <|audio|> <|audio> <audio|> (-1 where the vocabulary lacks one) */
void tokd_media_ids(const tok_vocab_t *v, int32_t out[6]);

/* Answers one request on a ROUTER socket (malformed ones get an Error). */
void tokd_handle(tokd_t *t, void *sock, g4_msg_t *m);

#endif
