/* g4_alloc — see g4_alloc.h. */

#include "g4_alloc.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_long s_count;
static atomic_long s_fail_at;

static int s_should_fail(void)
{
    long n = atomic_fetch_add(&s_count, 1) + 1;
    long f = atomic_load(&s_fail_at);
    return f > 0 && n == f;
}

long g4_alloc_fail_at(long n)
{
    long seen = atomic_exchange(&s_count, 0);
    atomic_store(&s_fail_at, n);
    return seen;
}

long g4_alloc_count(void) { return atomic_load(&s_count); }

void *g4_malloc(size_t size)
{
    if (s_should_fail()) return NULL;
    return malloc(size ? size : 1);
}

void *g4_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) return NULL;
    if (s_should_fail()) return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

void *g4_realloc(void *p, size_t size)
{
    if (s_should_fail()) return NULL;
    return realloc(p, size ? size : 1);
}

void g4_free(void *p) { free(p); }

void *g4_malloc_aligned(size_t size, size_t align)
{
    if (s_should_fail()) return NULL;
    void *p = NULL;
    if (align < sizeof(void *)) align = sizeof(void *);
    if (posix_memalign(&p, align, size ? size : 1) != 0) return NULL;
    return p;
}

void g4_free_aligned(void *p) { free(p); }

char *g4_strndup(const char *s, size_t n)
{
    char *d = g4_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *g4_strdup(const char *s) { return g4_strndup(s, strlen(s)); }

unsigned long long g4_mem_available(void)
{
    unsigned long long avail = ULLONG_MAX;
    char line[256];
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) avail = kb * 1024;
        fclose(f);
    }
    unsigned long long max = 0, cur = 0;
    f = fopen("/sys/fs/cgroup/memory.max", "r");
    if (f) {
        if (fscanf(f, "%llu", &max) != 1) max = 0; /* "max": no limit */
        fclose(f);
    }
    f = fopen("/sys/fs/cgroup/memory.current", "r");
    if (f) {
        if (fscanf(f, "%llu", &cur) != 1) cur = 0;
        fclose(f);
    }
    if (max && max > cur && max - cur < avail) avail = max - cur;
    return avail;
}
