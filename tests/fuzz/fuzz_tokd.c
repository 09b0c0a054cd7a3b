/* libFuzzer target: any bytes as a g4.v1 Envelope frame into tokenizerd's
 * request handler (every request decoder: tokenize, detokenize, render chat,
 * parse output, info), over an inproc ROUTER/DEALER pair. Needs the Gemma 4
 * vocabulary: G4_FUZZ_VOCAB or ../shared/testdata/vocab/ggml-vocab-gemma-4.gguf. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokd_service.h"

static tokd_t s_t;
static void *s_z, *s_router, *s_dealer;
static g4_gguf_t *s_g; /* kept for the whole run */

static void s_init(void)
{
    const char *path = getenv("G4_FUZZ_VOCAB");
    if (!path) path = "../shared/testdata/vocab/ggml-vocab-gemma-4.gguf";
    g4_err_t err;
    s_g = g4_gguf_open(path, &err);
    if (!s_g || !(s_t.vocab = tok_vocab_load(s_g, &err))) abort();
    s_t.tmpl = tok_chat_template_gguf(s_g, &err);
    s_z = zmq_ctx_new();
    s_router = g4_wire_socket(s_z, ZMQ_ROUTER, &err);
    s_dealer = g4_wire_socket(s_z, ZMQ_DEALER, &err);
    zmq_bind(s_router, "inproc://fuzz");
    zmq_connect(s_dealer, "inproc://fuzz");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s_z) s_init();
    zmq_send(s_dealer, data, size, 0);
    g4_msg_t m;
    g4_err_t err;
    int rc = g4_wire_recv(s_router, 1, &m, 1000, &err);
    if (rc == G4_OK) tokd_handle(&s_t, s_router, &m);
    else if (m.route_len) g4_wire_send_error(s_router, m.route, m.route_len, 0, rc, "%s", err.msg);
    g4_msg_close(&m);
    /* drain the reply */
    char buf[1 << 16];
    while (zmq_recv(s_dealer, buf, sizeof buf, ZMQ_DONTWAIT) >= 0) {
    }
    return 0;
}
