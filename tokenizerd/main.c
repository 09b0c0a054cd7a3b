/* tokenizerd --model M.gguf --listen EP [--template T.jinja] [--scheduler EP] [--advertise EP] [--name NAME]
 * The Gemma 4 tokenizer and chat template as a ZeroMQ ROUTER service. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "g4_daemon.h"
#include "g4_log.h"
#include "tokd_service.h"

static const char s_usage[] =
    "usage: tokenizerd --model M.gguf --listen EP [--template T.jinja] [--scheduler EP] [--name NAME]\n"
    "  EP: ipc://PATH or tcp://HOST:PORT\n";

static g4_daemon_work_t *s_work; /* what the worker is doing, for heartbeats */
static uint64_t s_n_calls;

static void s_handle(void *t, void *sock, g4_msg_t *m)
{
    g4_daemon_work_begin(s_work, ++s_n_calls, 1, 0);
    tokd_handle(t, sock, m);
    g4_daemon_work_end(s_work);
}

static void s_serve(void *user, void *sock)
{
    tokd_t *t = user;
    g4_daemon_serve_burst(sock, 256, s_handle, t, &t->n_errors);
}

int main(int argc, char **argv)
{
    g4_log_set_level(G4_LOG_INFO); /* daemons say what they do; --log-level changes it */
    const char *model = NULL, *listen = NULL, *tmpl = NULL, *sched = NULL, *advertise = NULL, *name = "tokenizer";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "--model") || !strcmp(a, "-m")) && v) model = v, i++;
        else if (!strcmp(a, "--listen") && v) listen = v, i++;
        else if (!strcmp(a, "--template") && v) tmpl = v, i++;
        else if (!strcmp(a, "--scheduler") && v) sched = v, i++;
        else if (!strcmp(a, "--advertise") && v) advertise = v, i++;
        else if (!strcmp(a, "--name") && v) name = v, i++;
        else if (g4_daemon_log_opt(a, v)) i++;
        else {
            fputs(s_usage, strcmp(a, "--help") ? stderr : stdout);
            return strcmp(a, "--help") ? 2 : 0;
        }
    }
    if (!model || !listen) {
        fputs(s_usage, stderr);
        return 2;
    }
    g4_log_set_ident("tokenizerd");
    g4_daemon_signals();
    g4_err_t err;
    tokd_t t;
    memset(&t, 0, sizeof t);
    g4_gguf_t *g = g4_gguf_open(model, &err);
    if (!g || !(t.vocab = tok_vocab_load(g, &err))) {
        g4_log_error("tokenizerd", "%s", err.msg);
        return 1;
    }
    t.tmpl = tmpl ? tok_chat_template_file(tmpl, &err) : tok_chat_template_gguf(g, &err);
    if (!t.tmpl) {
        if (tmpl) {
            g4_log_error("tokenizerd", "%s", err.msg);
            return 1;
        }
        g4_log_warn("tokenizerd", "%s: chat requests will be refused", err.msg);
    }
    if (t.tmpl) { /* does the template fold role:"tool" messages itself? */
        const char *src = NULL;
        uint64_t n = 0;
        char *file = NULL;
        if (tmpl) {
            FILE *f = fopen(tmpl, "rb");
            if (f) {
                fseek(f, 0, SEEK_END);
                long sz = ftell(f);
                fseek(f, 0, SEEK_SET);
                file = sz > 0 ? malloc((size_t)sz) : NULL;
                if (file && fread(file, 1, (size_t)sz, f) == (size_t)sz) src = file, n = (uint64_t)sz;
                fclose(f);
            }
        } else {
            g4_gguf_get_str(g, "tokenizer.chat_template", &src, &n, &err);
        }
        t.native_tools = src && tok_chat_source_native_tools(src, (size_t)n);
        free(file);
    }
    snprintf(t.digest, sizeof t.digest, "%016llx", (unsigned long long)g4_gguf_digest(g));
    void *zctx = zmq_ctx_new();
    void *sock = g4_daemon_listen(zctx, ZMQ_ROUTER, listen, &err);
    if (!sock) {
        g4_log_error("tokenizerd", "%s", err.msg);
        return 1;
    }
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    G4__V1__Register reg = G4__V1__REGISTER__INIT;
    reg.role = G4__V1__ROLE__ROLE_TOKENIZER;
    reg.name = (char *)name;
    reg.pid = (int)getpid();
    reg.endpoint = (char *)(advertise ? advertise : listen); /* where others connect */
    reg.model = (char *)model;
    reg.model_digest = t.digest;
    reg.backend = "cpu";
    reg.n_vocab = tok_vocab_size(t.vocab);
    reg.host = host;
    int32_t media_ids[6];
    tokd_media_ids(t.vocab, media_ids);
    reg.media_ids = media_ids, reg.n_media_ids = 6;
    g4_daemon_t d;
    if (g4_daemon_init(&d, zctx, sched, &reg, &err)) {
        g4_log_error("tokenizerd", "%s", err.msg);
        return 1;
    }
    g4_log_info("tokenizerd", "serving %s on %s (%d tokens%s)", model, listen, tok_vocab_size(t.vocab),
                t.tmpl ? ", chat template" : "");
    /* requests are served on a worker thread: a long tokenization or chat
     * rendering never delays this thread's heartbeats */
    s_work = &d.work;
    g4_worker_t w = {.on_ready = s_serve, .user = &t};
    if (g4_worker_start(&w, zctx, sock, &err)) {
        g4_log_error("tokenizerd", "%s", err.msg);
        return 1;
    }
    while (!g4_daemon_stop) {
        zmq_pollitem_t it[1] = {{d.ctl, 0, ZMQ_POLLIN, 0}};
        const int n = d.ctl ? zmq_poll(it, 1, G4_HEARTBEAT_MS / 2) : (usleep(G4_HEARTBEAT_MS * 500), 0);
        if (n > 0) g4_daemon_poll_ctl(&d);
        g4_daemon_tick(&d);
    }
    g4_worker_stop(&w);
    g4_log_info("tokenizerd", "stopping after %llu requests (%llu errors)", (unsigned long long)t.n_requests,
                (unsigned long long)t.n_errors);
    g4_daemon_close(&d);
    zmq_close(sock);
    zmq_ctx_term(zctx);
    tj_free(&t.tmpl);
    tok_vocab_destroy(&t.vocab);
    g4_gguf_destroy(&g);
    return 0;
}
