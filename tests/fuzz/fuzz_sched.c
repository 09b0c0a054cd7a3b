/* libFuzzer target: any bytes as a g4.v1 Envelope frame into schedulerd —
 * its ROUTER (GenerateRequest, Cancel, Status, Register, Heartbeat and
 * anything else a client or daemon may send) when the first byte is even, its
 * results PULL (ForwardResult) when odd — through sched_poll over inproc
 * sockets, so every decoder and handler the scheduler runs on a peer's frame
 * is reached. */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_drain.h"

#include "schedulerd.h"

static sched_t *s_s;
static void *s_z, *s_dealer, *s_push;

static void s_init(void)
{
    g4_err_t err;
    s_z = zmq_ctx_new();
    const sched_params_t p = {.listen = "inproc://fuzz-sched", .results = "inproc://fuzz-res", .n_ubatch = 64};
    if (!(s_s = sched_new(s_z, &p, &err))) abort();
    s_dealer = g4_wire_socket(s_z, ZMQ_DEALER, &err);
    s_push = g4_wire_socket(s_z, ZMQ_PUSH, &err);
    if (!s_dealer || !s_push || zmq_connect(s_dealer, p.listen) || zmq_connect(s_push, p.results)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s_z) s_init();
    if (!size) return 0;
    zmq_send((data[0] & 1) ? s_push : s_dealer, data + 1, size - 1, ZMQ_DONTWAIT);
    sched_poll(s_s, 0);
    sched_poll(s_s, 0);
    fuzz_drain(s_dealer); /* drain the replies */
    return 0;
}
