/* g4_cuda_internal — what the CUDA sources share (not an API: only
 * the .cu files of core/cuda include it): the handle, its workspace, error checks. */
#ifndef G4_CUDA_INTERNAL_CUH
#define G4_CUDA_INTERNAL_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "g4_cuda.h"

struct g4_cu {
    int dev;
    cudaStream_t stream;
    void *ws;         /* workspace (device), ws_bytes long; grows on demand */
    size_t ws_bytes;
    int n_sm;         /* multiprocessors                                 */
    int capturing;    /* between g4_cu_capture_begin and _end            */
    int capture_broken; /* a call could not be recorded (the workspace)  */
    uint64_t ws_epoch; /* bumped each time the workspace moves          */
    size_t smem_optin; /* shared memory per block a kernel may opt in to  */
};

/* The workspace, at least n bytes (grows: waits for the stream, frees the
 * old one); NULL when the device is out of memory. Work on the one stream
 * uses it in turn, so one kernel's scratch may be the next one's. */
void *g4_cu_ws(g4_cu_t *cu, size_t n);

/* After a launch: G4_OK, or the launch error as a G4_ERR_RANGE naming what. */
int g4_cu_check_launch(g4_err_t *err, const char *what);

/* Blocks to cover n items with `per` per block. */
static inline unsigned g4_cu_blocks(int64_t n, int64_t per) { return (unsigned)((n + per - 1) / per); }

#endif
