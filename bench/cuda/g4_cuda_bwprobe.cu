/* g4_cuda_bwprobe — the device's memory bandwidth, the number decode is
 * held to: a kernel that reads N bytes once (16-byte loads, every SM busy,
 * the best of 20 runs) and, beside it, a device-to-device copy (bytes read
 * plus written). Prints one JSON line. Usage: g4_cuda_bwprobe [GiB] [device] */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

__global__ void s_read(const uint4 *__restrict__ p, size_t n, unsigned *sink)
{
    unsigned acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const uint4 v = __ldg(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) *sink = acc; /* keeps the loads */
}

int main(int argc, char **argv)
{
    const double gib = argc > 1 ? atof(argv[1]) : 4.0;
    const int dev = argc > 2 ? atoi(argv[2]) : 0;
    const size_t bytes = (size_t)(gib * 1073741824.0) / 16 * 16;
    cudaDeviceProp pr;
    if (cudaSetDevice(dev) != cudaSuccess || cudaGetDeviceProperties(&pr, dev) != cudaSuccess) {
        fprintf(stderr, "g4_cuda_bwprobe: no CUDA device %d\n", dev);
        return 1;
    }
    void *a = NULL, *b = NULL;
    unsigned *sink = NULL;
    if (cudaMalloc(&a, bytes) || cudaMalloc(&b, bytes) || cudaMalloc(&sink, 4)) {
        fprintf(stderr, "g4_cuda_bwprobe: cannot allocate 2 x %.1f GiB\n", gib);
        return 1;
    }
    cudaMemset(a, 1, bytes);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    float best_read = 1e30f, best_copy = 1e30f;
    for (int r = 0; r < 22; r++) {
        float ms;
        cudaEventRecord(e0);
        s_read<<<pr.multiProcessorCount * 8, 512>>>((const uint4 *)a, bytes / 16, sink);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms, e0, e1);
        if (r >= 2 && ms < best_read) best_read = ms;
        cudaEventRecord(e0);
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms, e0, e1);
        if (r >= 2 && ms < best_copy) best_copy = ms;
    }
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
        fprintf(stderr, "g4_cuda_bwprobe: %s\n", cudaGetErrorString(e));
        return 1;
    }
    printf("{\"device\": \"%s\", \"sms\": %d, \"bytes\": %zu, \"read_gbs\": %.1f, \"copy_gbs\": %.1f}\n", pr.name,
           pr.multiProcessorCount, bytes, bytes / (best_read * 1e-3) / 1e9, 2.0 * bytes / (best_copy * 1e-3) / 1e9);
    return 0;
}
