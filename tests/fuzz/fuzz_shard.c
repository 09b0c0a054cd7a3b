/* libFuzzer target: any bytes as a g4.v1 Envelope frame (with up to three raw
 * frames cut from the input) into shardd's batch handler: the ForwardBatch
 * decoder, its checks (rows, slots, sample rows, frames, routes) and the
 * forward pass of what passes them. The shard is the first and only stage of
 * a small model (G4_FUZZ_MODEL, default
 * ../shared/testdata/models/dense-q8_0.gguf), with a Chain whose results go to
 * an inproc sink this target drains. Input: [n_raw][len16 x n_raw][frames][envelope]. */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_drain.h"
#include <string.h>

#include "shard_service.h"

static shard_t s_sh;
static void *s_z, *s_push, *s_pull, *s_sink;

static void s_init(void)
{
    const char *path = getenv("G4_FUZZ_MODEL");
    if (!path) path = "../shared/testdata/models/dense-q8_0.gguf";
    g4_err_t err;
    s_z = zmq_ctx_new();
    const shard_params_t p = {.model_path = path, .name = "fuzz", .begin = 0, .end = -1, .n_slots = 4, .n_ubatch = 16};
    if (shard_init(&s_sh, s_z, &p, &err)) abort();
    s_sh.check_route = 1, s_sh.route_wait_ms = 0;
    char *names[1] = {"fuzz"}, *eps[1] = {"inproc://fuzz-shard"};
    G4__V1__Chain ch = G4__V1__CHAIN__INIT;
    ch.names = names, ch.n_names = 1, ch.endpoints = eps, ch.n_endpoints = 1, ch.results = "inproc://fuzz-sink";
    shard_set_chain(&s_sh, &ch);
    s_sink = g4_wire_socket(s_z, ZMQ_PULL, &err);
    s_pull = g4_wire_socket(s_z, ZMQ_PULL, &err);
    s_push = g4_wire_socket(s_z, ZMQ_PUSH, &err);
    if (zmq_bind(s_sink, "inproc://fuzz-sink") || zmq_bind(s_pull, "inproc://fuzz-shard") ||
        zmq_connect(s_push, "inproc://fuzz-shard"))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s_z) s_init();
    if (!size) return 0;
    size_t n_raw = data[0] % 4, at = 1 + 2 * n_raw;
    if (size < at) return 0;
    size_t len[3];
    for (size_t i = 0; i < n_raw; i++) len[i] = (size_t)data[1 + 2 * i] | (size_t)data[2 + 2 * i] << 8;
    const uint8_t *env = data + at;
    size_t env_len = size - at;
    for (size_t i = 0; i < n_raw; i++) env_len = env_len > len[i] ? env_len - len[i] : 0;
    zmq_send(s_push, env, env_len, n_raw ? ZMQ_SNDMORE : 0);
    const uint8_t *fr = env + env_len;
    for (size_t i = 0; i < n_raw; i++) {
        const size_t l = fr + len[i] <= data + size ? len[i] : 0;
        zmq_send(s_push, fr, l, i + 1 < n_raw ? ZMQ_SNDMORE : 0);
        fr += l;
    }
    g4_msg_t m;
    g4_err_t err;
    if (g4_wire_recv(s_pull, 0, &m, 1000, &err) == G4_OK && m.env->body_case == G4__V1__ENVELOPE__BODY_FORWARD)
        shard_handle(&s_sh, &m);
    g4_msg_close(&m);
    fuzz_drain(s_sink); /* results and errors that reached the sink */
    return 0;
}
