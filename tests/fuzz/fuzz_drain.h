/* fuzz_drain — what the daemon fuzz targets share: drop every frame waiting
 * on a socket (replies and results of the last input), so queues never fill. */
#ifndef FUZZ_DRAIN_H
#define FUZZ_DRAIN_H

#include <zmq.h>

static inline void fuzz_drain(void *sock)
{
    for (;;) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        const int n = zmq_msg_recv(&f, sock, ZMQ_DONTWAIT);
        zmq_msg_close(&f);
        if (n < 0) return;
    }
}

#endif
