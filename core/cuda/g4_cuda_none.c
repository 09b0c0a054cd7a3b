/* g4_cuda_none — the build without nvcc: no CUDA backend (g4_cuda.h). */
#include "g4_cuda.h"

int g4_cu_available(void) { return 0; }
int g4_cu_device_count(void) { return 0; }
int g4_cu_device_info(int dev, char *name, size_t name_len, size_t *free_bytes, size_t *total_bytes, g4_err_t *err)
{
    (void)name, (void)name_len, (void)free_bytes, (void)total_bytes;
    return g4_err_set(err, G4_ERR_RANGE, "cuda:%d: this build has no CUDA backend (nvcc was not found)", dev);
}
