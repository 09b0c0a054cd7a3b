/* g4_clock — monotonic time for deadlines and measurements, wall time for logs. */
#ifndef G4_CLOCK_H
#define G4_CLOCK_H

#include <stddef.h>
#include <stdint.h>

uint64_t g4_clock_mono_ns(void); /* CLOCK_MONOTONIC in nanoseconds */
uint64_t g4_clock_mono_ms(void);
double g4_clock_mono_s(void);
/* Writes "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC) into buf. */
void g4_clock_wall_iso(char *buf, size_t size);
void g4_clock_sleep_ms(uint32_t ms);

#endif
