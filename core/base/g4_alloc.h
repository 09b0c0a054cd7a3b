/* g4_alloc — the one place memory is allocated.
 *
 * Thin wrappers over malloc that tests can make fail on the Nth call
 * (g4_alloc_fail_at), so loaders are exercised on every failure path.
 * Aligned allocations are for kernels' scratch buffers. */
#ifndef G4_ALLOC_H
#define G4_ALLOC_H

#include <stddef.h>

void *g4_malloc(size_t size);
void *g4_calloc(size_t n, size_t size); /* overflow-checked */
void *g4_realloc(void *p, size_t size);
void g4_free(void *p);
/* Aligned to `align` (power of two >= sizeof(void*)); free with g4_free_aligned. */
void *g4_malloc_aligned(size_t size, size_t align);
void g4_free_aligned(void *p);
/* Copies of strings; NULL on failure. */
char *g4_strdup(const char *s);
char *g4_strndup(const char *s, size_t n);

/* Bytes the system can give this process without swapping or OOM: the
 * smaller of MemAvailable and the cgroup's headroom (UINT64_MAX: unknown). */
unsigned long long g4_mem_available(void);

/* Test hook: make the n-th allocation from now fail (1 = the next one);
 * 0 disables. Returns the number of allocations seen since the last call. */
long g4_alloc_fail_at(long n);
/* Number of allocations attempted since the last g4_alloc_fail_at(). */
long g4_alloc_count(void);

#endif
