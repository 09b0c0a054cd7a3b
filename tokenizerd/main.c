/* tokenizerd — the Gemma 4 tokenizer and chat template as a ZeroMQ ROUTER
 * service (tokd_service). Life: options -> vocabulary and template -> bind
 * -> register -> a worker thread serves, this one heartbeats -> SIGTERM ->
 * stop, exit 0. `tokenizerd --help` lists the options. */
#include <stddef.h>
#include <stdio.h>

#include "g4_daemon.h"
#include "g4_log.h"
#include "tokd_service.h"

typedef struct tokenizerd_cfg {
    g4_daemon_cfg_t d;
    char *model, *template_path;
    int64_t max_input_bytes, max_messages, max_render_mb, max_render_steps;
} tokenizerd_cfg_t;

#define S_STR(field) .type = G4_CFG_STRING, .offset = offsetof(tokenizerd_cfg_t, field)
static const g4_cfg_opt_t s_opts[] = {
    {"model", S_STR(model), NULL, 1, 0, 0, "the GGUF whose tokenizer to serve", .alias = "-m", .flags = G4_CFG_REQUIRED,
     .arg = "M.gguf"},
    {"template", S_STR(template_path), NULL, 1, 0, 0, "chat template file (default: the GGUF's)", .arg = "T.jinja"},
    /* bounded work: one request never holds the worker long (each call is refused past these) */
    {"max-input-bytes", .type = G4_CFG_INT, .offset = offsetof(tokenizerd_cfg_t, max_input_bytes), "2097152", 1,
     64 << 20, 0, "bytes of text (or conversation JSON) per call", .env = "G4_TOK_MAX_INPUT_BYTES", .arg = "N"},
    {"max-messages", .type = G4_CFG_INT, .offset = offsetof(tokenizerd_cfg_t, max_messages), "1024", 1, 1 << 20, 0,
     "messages per conversation"},
    {"max-render-mb", .type = G4_CFG_INT, .offset = offsetof(tokenizerd_cfg_t, max_render_mb), "256", 1, 1 << 16, 0,
     "memory a chat rendering may use (MiB, its output included)"},
    {"max-render-steps", .type = G4_CFG_INT, .offset = offsetof(tokenizerd_cfg_t, max_render_steps), "20000000", 1000,
     (int64_t)1 << 40, 0, "template expressions a chat rendering may evaluate"},
};
static const g4_daemon_spec_t s_spec = {
    .prog = "tokenizerd",
    .about = "The Gemma 4 tokenizer and chat template as a ZeroMQ ROUTER service.",
    .opts = s_opts, .n_opts = sizeof s_opts / sizeof s_opts[0],
    .common_offset = offsetof(tokenizerd_cfg_t, d), .registers = 1, .name = "tokenizer",
};

int main(int argc, char **argv)
{
    tokenizerd_cfg_t c;
    g4_daemon_opts_t o;
    const int usage = g4_daemon_configure(&o, &s_spec, &c, argc, argv);
    if (usage >= 0) return usage;
    g4_daemon_signals();
    g4_err_t err;
    tokd_t t;
    void *zctx = NULL, *sock = NULL;
    if (tokd_open(&t, c.model, c.template_path, &err)) goto fail;
    t.max_text = (size_t)c.max_input_bytes, t.max_messages = (int)c.max_messages;
    tj_set_limits((size_t)c.max_render_mb << 20, (uint64_t)c.max_render_steps);
    zctx = zmq_ctx_new(); /* after the model: a file that does not open leaves nothing behind */
    if (!(sock = g4_daemon_listen(zctx, ZMQ_ROUTER, c.d.listen, G4_WIRE_PEERS_CLIENTS, &err))) goto fail;
    int32_t media_ids[6];
    tokd_media_ids(t.vocab, media_ids);
    const g4_daemon_info_t info = {.role = G4__V1__ROLE__ROLE_TOKENIZER, .model = c.model,
                                   .digest = g4_gguf_digest(t.gguf), .n_vocab = tok_vocab_size(t.vocab),
                                   .media_ids = media_ids};
    g4_daemon_t d;
    if (g4_daemon_register(&d, zctx, &c.d, &info, &err)) goto fail;
    g4_log_info("tokenizerd", "serving %s on %s (%d tokens%s)", c.model, c.d.listen, tok_vocab_size(t.vocab),
                t.tmpl ? ", chat template" : "");
    /* requests are served on a worker thread: a long tokenization or chat
     * rendering never delays this thread's heartbeats */
    t.work = &d.work;
    g4_worker_t w = {.on_ready = tokd_serve, .user = &t};
    if (g4_worker_start(&w, zctx, sock, &err)) goto fail;
    while (!g4_daemon_stop) {
        g4_msg_t m;
        if (g4_daemon_wait(&d, G4_HEARTBEAT_MS / 2, &m)) g4_msg_close(&m);
        g4_daemon_tick(&d);
    }
    g4_worker_stop(&w);
    g4_log_info("tokenizerd", "stopping after %llu requests (%llu errors)", (unsigned long long)t.n_requests,
                (unsigned long long)t.n_errors);
    g4_daemon_close(&d);
    zmq_close(sock);
    zmq_ctx_term(zctx);
    tokd_close(&t);
    g4_daemon_opts_fini(&o);
    return 0;
fail:
    g4_log_error("tokenizerd", "%s", err.msg);
    g4_daemon_opts_fini(&o);
    return 1;
}
