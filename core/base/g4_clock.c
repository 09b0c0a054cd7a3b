/* g4_clock — see g4_clock.h. */

#include "g4_clock.h"

#include <stdio.h>
#include <time.h>

uint64_t g4_clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t g4_clock_mono_ms(void) { return g4_clock_mono_ns() / 1000000u; }
double g4_clock_mono_s(void) { return (double)g4_clock_mono_ns() * 1e-9; }

void g4_clock_wall_iso(char *buf, size_t size)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03dZ", base, (int)(ts.tv_nsec / 1000000));
}

void g4_clock_sleep_ms(uint32_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}
