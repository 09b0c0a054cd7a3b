/* shard_daemon — shardd's main thread once the worker computes: it only
 * heartbeats and takes control messages (slot releases go on to the worker),
 * so a forward pass of any length never silences the shard; the heartbeat
 * counters say batches, errors, and when the weights are ready (g4 bench
 * waits for it). */
#ifndef SHARD_DAEMON_H
#define SHARD_DAEMON_H

#include "shard_service.h"

/* Runs until g4_daemon_stop. wmode: what g4_model_warm started (for the log). */
void shard_daemon_run(shard_t *s, g4_daemon_t *d, g4_weights_mode_t wmode);

#endif
