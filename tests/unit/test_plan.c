/* Tests of core/topo/g4_plan on synthetic machines (no topology read, no
 * model file): even bounds, one stage per node, layers in proportion to the nodes'
 * memory bandwidth (or memory when one is unknown), the fall-back to memory
 * when a bandwidth split does not fit, and each stage's bytes (embedding on
 * the first, head on the last, a KV-sharing layer's source cache on the
 * stage that reads it). */
#include <string.h>

#include "g4_plan.h"
#include "g4_test.h"

#define S_L 12

static uint64_t s_w[S_L], s_kv[S_L];
static int s_src[S_L];

static g4_plan_model_t s_model(void)
{
    for (int l = 0; l < S_L; l++) s_w[l] = 100, s_kv[l] = l < 10 ? 10 : 0, s_src[l] = l < 10 ? l : 9;
    return (g4_plan_model_t){S_L, s_w, s_kv, s_src, 50, 30, 0, 0};
}

static int s_layers(const g4_plan_t *p, int i) { return p->stages[i].layer_end - p->stages[i].layer_begin; }

int test_plan(void)
{
    int b[8];
    CHECK(g4_plan_even(12, 3, b, 8) == 3 && b[0] == 0 && b[1] == 4 && b[2] == 8 && b[3] == 12);
    CHECK(g4_plan_even(5, 7, b, 8) == 5 && b[5] == 5);   /* at most one stage per layer */
    CHECK(g4_plan_even(12, 0, b, 8) == 1 && b[1] == 12); /* at least one */
    CHECK(g4_plan_even(100, 20, b, 8) == 7);             /* bounded by the array */

    const g4_plan_model_t m = s_model();
    g4_plan_t p;
    /* one node: one stage with everything, embedding and head once */
    g4_topo_node_t one[1] = {{0, 0, 8, 1 << 20, 0}};
    CHECK(g4_plan_make(&m, one, 1, 0, &p) == 1 && p.split == G4_PLAN_SPLIT_SINGLE && p.fits);
    CHECK(p.stages[0].layer_begin == 0 && p.stages[0].layer_end == S_L && p.stages[0].weight_bytes == 12 * 100 + 50 + 30 &&
          p.stages[0].kv_bytes == 100);
    /* two nodes, equal memory, no bandwidth: by memory, even here */
    g4_topo_node_t two[2] = {{0, 0, 4, 1 << 20, 0}, {1, 1, 4, 1 << 20, 0}};
    CHECK(g4_plan_make(&m, two, 2, 0, &p) == 2 && p.split == G4_PLAN_SPLIT_MEMORY);
    CHECK(p.stages[0].node == 0 && p.stages[1].node == 1 && p.stages[0].layer_end == p.stages[1].layer_begin);
    CHECKF(s_layers(&p, 0) == 6 && s_layers(&p, 1) == 6, "memory split %d + %d", s_layers(&p, 0), s_layers(&p, 1));
    /* the second stage's layers 10, 11 read layer 9's cache: it holds a copy when 9 runs on the first */
    CHECK(p.stages[1].kv_bytes == 4 * 10);
    CHECK(p.stages[0].weight_bytes == 6 * 100 + 50 && p.stages[1].weight_bytes == 6 * 100 + 30);
    /* unequal bandwidth: node 0 three times node 1 gets about three times the layers */
    two[0].bandwidth_mbs = 300000, two[1].bandwidth_mbs = 100000;
    CHECK(g4_plan_make(&m, two, 2, 0, &p) == 2 && p.split == G4_PLAN_SPLIT_BANDWIDTH);
    CHECKF(s_layers(&p, 0) == 9 && s_layers(&p, 1) == 3, "bandwidth split %d + %d", s_layers(&p, 0), s_layers(&p, 1));
    two[0].bandwidth_mbs = 100000, two[1].bandwidth_mbs = 300000;
    CHECK(g4_plan_make(&m, two, 2, 0, &p) == 2 && s_layers(&p, 0) < s_layers(&p, 1));
    /* a bandwidth split that does not fit node 1's memory: the memory split */
    two[0].memory_bytes = 1 << 20, two[1].memory_bytes = 700;
    CHECK(g4_plan_make(&m, two, 2, 0, &p) == 2 && p.split == G4_PLAN_SPLIT_MEMORY);
    CHECK(!p.fits || s_layers(&p, 1) <= 6);
    /* memory short everywhere: stages say they do not fit */
    two[0].memory_bytes = two[1].memory_bytes = 100;
    CHECK(g4_plan_make(&m, two, 2, 0, &p) == 2 && !p.fits && !p.stages[0].fits);
    /* more stages than nodes (--shards): stage i on node i % n, every stage keeps a layer */
    g4_topo_node_t four[4] = {{0, 0, 2, 1 << 20, 400000}, {1, 1, 2, 1 << 20, 100000}, {2, 2, 2, 1 << 20, 100000},
                              {3, 3, 2, 1 << 20, 100000}};
    CHECK(g4_plan_make(&m, four, 4, 0, &p) == 4 && p.split == G4_PLAN_SPLIT_BANDWIDTH);
    int sum = 0, min = S_L;
    for (int i = 0; i < 4; i++) sum += s_layers(&p, i), min = s_layers(&p, i) < min ? s_layers(&p, i) : min;
    CHECKF(sum == S_L && min >= 1 && s_layers(&p, 0) > s_layers(&p, 1), "4 nodes: %d layers, smallest %d", sum, min);
    CHECK(g4_plan_make(&m, two, 2, 5, &p) == 5 && p.stages[4].node == 0 && p.stages[4].layer_end == S_L);
    CHECK(!strcmp(g4_plan_split_name(G4_PLAN_SPLIT_BANDWIDTH), "bandwidth"));

    /* devices: two GPUs that hold everything split it by memory, no embedding on the GPU */
    g4_plan_device_t gg[3] = {{1, 1000}, {2, 1000}, {0, 0}};
    CHECK(g4_plan_devices(&m, gg, 2, &p) == 2 && p.fits && s_layers(&p, 0) == 6 && s_layers(&p, 1) == 6);
    CHECK(p.stages[0].weight_bytes == 600 && p.stages[1].weight_bytes == 630 && p.stages[1].kv_bytes == 40);
    /* ... and leave the CPU out */
    CHECK(g4_plan_devices(&m, gg, 3, &p) == 2 && p.stages[1].node == 1 && p.stages[1].layer_end == S_L);
    /* a small and a large GPU: about one to three */
    gg[0].memory_bytes = 500, gg[1].memory_bytes = 1500;
    CHECKF(g4_plan_devices(&m, gg, 2, &p) == 2 && p.fits && s_layers(&p, 0) == 3, "1:3 split gives %d", s_layers(&p, 0));
    /* GPU first, then the CPU: the GPU takes what fits (4 layers of 110), the CPU the rest */
    g4_plan_device_t gc[2] = {{1, 500}, {0, 0}};
    CHECK(g4_plan_devices(&m, gc, 2, &p) == 2 && p.fits);
    CHECKF(s_layers(&p, 0) == 4 && s_layers(&p, 1) == 8 && p.stages[0].node == 0 && p.stages[1].node == 1, "gpu+cpu %d + %d",
           s_layers(&p, 0), s_layers(&p, 1));
    CHECK(p.stages[0].weight_bytes == 400 && p.stages[1].weight_bytes == 800 + 30);
    /* the CPU first: the GPU fills from the end with the head (and layer 9's cache that 10, 11 read) */
    g4_plan_device_t cg[2] = {{0, 0}, {1, 500}};
    CHECK(g4_plan_devices(&m, cg, 2, &p) == 2 && p.fits);
    CHECKF(s_layers(&p, 0) == 8 && s_layers(&p, 1) == 4 && p.stages[1].total_bytes == 450, "cpu+gpu %d + %d (%llu)",
           s_layers(&p, 0), s_layers(&p, 1), (unsigned long long)p.stages[1].total_bytes);
    CHECK(p.stages[0].weight_bytes == 800 + 50);
    /* two small GPUs and the CPU */
    g4_plan_device_t ggc[3] = {{1, 400}, {2, 400}, {0, 0}};
    CHECK(g4_plan_devices(&m, ggc, 3, &p) == 3 && p.fits);
    CHECKF(s_layers(&p, 0) == 3 && s_layers(&p, 1) == 3 && s_layers(&p, 2) == 6, "%d %d %d", s_layers(&p, 0),
           s_layers(&p, 1), s_layers(&p, 2));
    /* GPUs alone that cannot hold it: a plan that says so */
    g4_plan_device_t tiny[2] = {{1, 300}, {2, 300}};
    CHECK(g4_plan_devices(&m, tiny, 2, &p) == 2 && !p.fits);
    return g4_test_failures;
}
