/* g4_cuda_dev — the device layer of the CUDA backend (g4_cuda.h): devices,
 * the handle and its stream, device and pinned memory, copies, the
 * workspace, error reporting. The kernels are in g4_cuda_ops.cu and
 * g4_cuda_mm.cu.
 *
 * Threads: a handle belongs to the thread that opened it, whose current
 * device g4_cu_open sets; the kernel functions launch on the calling
 * thread's current device, so a thread that drives several devices calls
 * cudaSetDevice(g4_cu_device(cu)) before it uses another handle. The memory
 * functions here set the device themselves.
 *
 * Copies are asynchronous on the handle's stream: g4_cu_d2h returns before
 * the bytes are in host memory (with a pinned buffer); call g4_cu_sync
 * before reading them. A pageable host buffer makes the copy effectively
 * synchronous, but the stream order is what the caller must rely on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* (the C headers have no extern "C" of their own) */
extern "C" {
#include "g4_dtype.h"
#include "g4_err.h"
}
#include "g4_cuda_internal.cuh"

/* the workspace a handle starts with, and the step it grows in */
#define G4_CU_WS_INIT ((size_t)4 << 20)
#define G4_CU_WS_STEP ((size_t)1 << 20)

/* g4's status for a CUDA error */
static int s_code(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return G4_OK;
    case cudaErrorMemoryAllocation: return G4_ERR_NOMEM;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
    case cudaErrorInitializationError:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice: return G4_ERR_UNAVAILABLE;
    case cudaErrorInvalidValue:
    case cudaErrorInvalidConfiguration:
    case cudaErrorInvalidDevicePointer:
    case cudaErrorInvalidPitchValue:
    case cudaErrorInvalidMemcpyDirection: return G4_ERR_RANGE;
    default: return G4_ERR_IO;
    }
}

static int s_fail(g4_err_t *err, int dev, const char *what, cudaError_t e)
{
    return g4_err_set(err, s_code(e), "cuda:%d: %s: %s (%s)", dev, what, cudaGetErrorString(e), cudaGetErrorName(e));
}

int g4_cu_available(void) { return 1; }

int g4_cu_device_count(void)
{
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* (no driver, no device: not this thread's next error) */
        return 0;
    }
    return n > 0 ? n : 0;
}

/* dev is a device the runtime sees: G4_OK, or err says why not */
static int s_check_dev(int dev, g4_err_t *err)
{
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return g4_err_set(err, G4_ERR_UNAVAILABLE, "cuda:%d: no CUDA device: %s (%s)", dev, cudaGetErrorString(e),
                          cudaGetErrorName(e));
    }
    if (dev < 0 || dev >= n)
        return g4_err_set(err, n ? G4_ERR_RANGE : G4_ERR_UNAVAILABLE, "cuda:%d: no such device (%d visible)", dev, n);
    return G4_OK;
}

int g4_cu_device_info(int dev, char *name, size_t name_len, size_t *free_bytes, size_t *total_bytes, g4_err_t *err)
{
    int rc = s_check_dev(dev, err);
    if (rc) return rc;
    cudaDeviceProp prop;
    cudaError_t e = cudaGetDeviceProperties(&prop, dev);
    if (e != cudaSuccess) return s_fail(err, dev, "cudaGetDeviceProperties", e);
    if (name && name_len) snprintf(name, name_len, "%s", prop.name);
    if (free_bytes || total_bytes) {
        int prev = -1;
        if (cudaGetDevice(&prev) != cudaSuccess) prev = -1, (void)cudaGetLastError();
        e = cudaSetDevice(dev);
        if (e != cudaSuccess) return s_fail(err, dev, "cudaSetDevice", e);
        size_t fr = 0, tot = 0;
        e = cudaMemGetInfo(&fr, &tot);
        if (prev >= 0 && prev != dev) (void)cudaSetDevice(prev);
        if (e != cudaSuccess) return s_fail(err, dev, "cudaMemGetInfo", e);
        if (free_bytes) *free_bytes = fr;
        if (total_bytes) *total_bytes = tot;
    }
    return G4_OK;
}

g4_cu_t *g4_cu_open(int dev, g4_err_t *err)
{
    if (s_check_dev(dev, err)) return NULL;
    cudaError_t e = cudaSetDevice(dev);
    if (e != cudaSuccess) {
        s_fail(err, dev, "cudaSetDevice", e);
        return NULL;
    }
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, dev);
    if (e != cudaSuccess) {
        s_fail(err, dev, "cudaGetDeviceProperties", e);
        return NULL;
    }
    g4_cu_t *cu = (g4_cu_t *)calloc(1, sizeof *cu);
    if (!cu) {
        g4_err_set(err, G4_ERR_NOMEM, "cuda:%d: out of host memory", dev);
        return NULL;
    }
    cu->dev = dev;
    cu->n_sm = prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
    cu->smem_optin = prop.sharedMemPerBlockOptin > prop.sharedMemPerBlock ? prop.sharedMemPerBlockOptin
                                                                          : prop.sharedMemPerBlock;
    e = cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        s_fail(err, dev, "cudaStreamCreateWithFlags", e);
        free(cu);
        return NULL;
    }
    e = cudaMalloc(&cu->ws, G4_CU_WS_INIT);
    if (e != cudaSuccess) {
        s_fail(err, dev, "cudaMalloc of the workspace", e);
        (void)cudaGetLastError();
        cudaStreamDestroy(cu->stream);
        free(cu);
        return NULL;
    }
    cu->ws_bytes = G4_CU_WS_INIT;
    return cu;
}

void g4_cu_close(g4_cu_t **pcu)
{
    if (!pcu || !*pcu) return;
    g4_cu_t *cu = *pcu;
    (void)cudaSetDevice(cu->dev);
    (void)cudaStreamSynchronize(cu->stream);
    if (cu->ws) cudaFree(cu->ws);
    cudaStreamDestroy(cu->stream);
    (void)cudaGetLastError();
    free(cu);
    *pcu = NULL;
}

int g4_cu_device(const g4_cu_t *cu) { return cu ? cu->dev : -1; }

int g4_cu_sync(g4_cu_t *cu, g4_err_t *err)
{
    cudaError_t e = cudaSetDevice(cu->dev);
    if (e == cudaSuccess) e = cudaStreamSynchronize(cu->stream);
    if (e == cudaSuccess) e = cudaGetLastError(); /* a failed launch not yet reported */
    else (void)cudaGetLastError();
    if (e != cudaSuccess) return s_fail(err, cu->dev, "a kernel or copy on the stream failed", e);
    return G4_OK;
}

void *g4_cu_alloc(g4_cu_t *cu, size_t n)
{
    void *d = NULL;
    if (cudaSetDevice(cu->dev) != cudaSuccess || cudaMalloc(&d, n ? n : 1) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    if (cudaMemsetAsync(d, 0, n, cu->stream) != cudaSuccess || cudaStreamSynchronize(cu->stream) != cudaSuccess) {
        (void)cudaGetLastError();
        cudaFree(d);
        return NULL;
    }
    return d;
}

void g4_cu_free(g4_cu_t *cu, void *d)
{
    if (!d) return;
    (void)cudaSetDevice(cu->dev);
    cudaFree(d); /* (waits for the device) */
}

void *g4_cu_host_alloc(size_t n)
{
    void *h = NULL;
    if (cudaMallocHost(&h, n ? n : 1) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    return h;
}

void g4_cu_host_free(void *h)
{
    if (h) cudaFreeHost(h);
}

static int s_copy(g4_cu_t *cu, void *dst, const void *src, size_t n, cudaMemcpyKind kind)
{
    if (!n) return G4_OK;
    cudaError_t e = cudaSetDevice(cu->dev);
    if (e == cudaSuccess) e = cudaMemcpyAsync(dst, src, n, kind, cu->stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return s_code(e);
    }
    return G4_OK;
}

int g4_cu_h2d(g4_cu_t *cu, void *d, const void *h, size_t n) { return s_copy(cu, d, h, n, cudaMemcpyHostToDevice); }
/* (async: the bytes are in h once g4_cu_sync returns) */
int g4_cu_d2h(g4_cu_t *cu, void *h, const void *d, size_t n) { return s_copy(cu, h, d, n, cudaMemcpyDeviceToHost); }
int g4_cu_d2d(g4_cu_t *cu, void *d, const void *s, size_t n) { return s_copy(cu, d, s, n, cudaMemcpyDeviceToDevice); }

void *g4_cu_ws(g4_cu_t *cu, size_t n)
{
    if (n <= cu->ws_bytes && cu->ws) return cu->ws;
    if (cu->capturing) { /* no waiting or freeing while a graph records: the capture is off */
        cu->capture_broken = 1;
        return NULL;
    }
    cu->ws_epoch++;
    /* grow by half again what is asked (at least double the old), in whole MiB,
     * so a run whose sizes creep up reallocates a few times, not every call */
    size_t want = n + n / 2;
    if (want < 2 * cu->ws_bytes) want = 2 * cu->ws_bytes;
    if (want < G4_CU_WS_STEP) want = G4_CU_WS_STEP;
    want = (want + G4_CU_WS_STEP - 1) / G4_CU_WS_STEP * G4_CU_WS_STEP;
    (void)cudaSetDevice(cu->dev);
    (void)cudaStreamSynchronize(cu->stream); /* the old one may still be in use */
    if (cu->ws) cudaFree(cu->ws);
    cu->ws = NULL, cu->ws_bytes = 0;
    void *d = NULL;
    if (cudaMalloc(&d, want) != cudaSuccess) {
        (void)cudaGetLastError();
        want = n ? n : 1;
        if (cudaMalloc(&d, want) != cudaSuccess) {
            (void)cudaGetLastError();
            return NULL;
        }
    }
    cu->ws = d, cu->ws_bytes = want;
    return d;
}

int g4_cu_check_launch(g4_err_t *err, const char *what)
{
    const cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return G4_OK;
    int dev = -1;
    if (cudaGetDevice(&dev) != cudaSuccess) dev = -1, (void)cudaGetLastError();
    return g4_err_set(err, G4_ERR_RANGE, "cuda:%d: %s: launch failed: %s (%s)", dev, what, cudaGetErrorString(e),
                      cudaGetErrorName(e));
}

/* ---- graphs ------------------------------------------------------------------------ */

struct g4_cu_graph {
    cudaGraphExec_t exec;
};

uint64_t g4_cu_ws_epoch(const g4_cu_t *cu) { return cu->ws_epoch; }

int g4_cu_capture_begin(g4_cu_t *cu, g4_err_t *err)
{
    cudaError_t e = cudaSetDevice(cu->dev);
    /* thread-local: other threads' CUDA calls (another context's) are not caught up in it */
    if (e == cudaSuccess) e = cudaStreamBeginCapture(cu->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return s_fail(err, cu->dev, "cudaStreamBeginCapture", e);
    }
    cu->capturing = 1, cu->capture_broken = 0;
    return G4_OK;
}

int g4_cu_capture_end(g4_cu_t *cu, g4_cu_graph_t **g, g4_err_t *err)
{
    *g = NULL;
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(cu->stream, &graph);
    cu->capturing = 0;
    if (e != cudaSuccess || !graph || cu->capture_broken) {
        (void)cudaGetLastError();
        if (graph) cudaGraphDestroy(graph);
        return G4_OK; /* broken: the caller enqueues the work plainly */
    }
    cudaGraphExec_t exec = NULL;
    e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return s_fail(err, cu->dev, "cudaGraphInstantiate", e);
    }
    g4_cu_graph_t *gr = (g4_cu_graph_t *)calloc(1, sizeof *gr);
    if (!gr) {
        cudaGraphExecDestroy(exec);
        return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    }
    gr->exec = exec;
    *g = gr;
    return G4_OK;
}

int g4_cu_graph_launch(g4_cu_t *cu, g4_cu_graph_t *g, g4_err_t *err)
{
    const cudaError_t e = cudaGraphLaunch(g->exec, cu->stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return s_fail(err, cu->dev, "cudaGraphLaunch", e);
    }
    return G4_OK;
}

void g4_cu_graph_free(g4_cu_graph_t **g)
{
    if (!g || !*g) return;
    cudaGraphExecDestroy((*g)->exec);
    free(*g);
    *g = NULL;
}
