/* sched_text — the stop-string rule of schedulerd's way out, as a pure
 * function (sched_text.c also holds the detokenizer calls and progress
 * events, which see sched_internal.h). Used by sched_text.c; tested by
 * tests/unit/test_sched.c. */
#ifndef SCHED_TEXT_H
#define SCHED_TEXT_H

#include <stddef.h>

/* How much of the text not yet emitted, text[0, len), may go out now.
 * A stop string found in it ends the request: *matched is set to 1 and the
 * return value is where the first match starts (the match and what follows
 * are dropped). Otherwise a tail that is a proper prefix of a stop string is
 * held back (it may still become one) unless last says no more text comes.
 * Text from the incremental detokenizer is whole UTF-8 characters and a stop
 * string starts with a lead byte, so the cut never splits a character.
 * stop[i] has stop_len[i] bytes; empty stop strings are ignored. */
size_t sched_text_stop_hold(const char *text, size_t len, char *const *stop, const size_t *stop_len, int n_stop,
                            int last, int *matched);

#endif
