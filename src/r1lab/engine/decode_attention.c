/* Decode attention for a batch of rows that each add one token (r1lab.kernels, used by
   r1lab.engine.static_cache.DenseLayer). Compiled on first use with HEAD_DIM (D) and GROUPS (G, query heads per
   KV head) fixed, so the per-row accumulators live in registers. Keys are stored in blocks of 8
   positions, each block transposed (D, 8) and contiguous: the scores vectorise over positions and
   stream through memory, the weighted values vectorise over the head dimension, and there are no
   horizontal sums. A row's K/V are read once per step for all G of its query heads.

   qkv      (B, stride)   each row's [queries (H_kv, G, D) ; keys (H_kv, D) ; values (H_kv, D)],
            before RoPE and scaling (one matmul's output; stride >= (G + 2) H_kv D)
   out      (B, H_kv, G, D)   outputs
   Kp, Vp   (P, H_kv, W/8, D, 8), (P, H_kv, W, D)   the prompts' keys (blocked) and values; prompt
            p's tokens are columns start[p] .. W-1 (the rest is left padding)
   K, V     (S, H_kv, cap/8, D, 8), (S, H_kv, cap, D)   generated tokens; row b's are in cache slot
            slot[b], columns 0 .. n-1, of which column n-1 is written here from qkv
   cos, sin (positions, D/2)   RoPE tables (transformers' rotate_half form: dimension i pairs with
            i + D/2); row b is at position pos[b]; scale multiplies the queries
   group    (B,)   row b's prompt */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

typedef float v8 __attribute__((vector_size(32)));
#define NC (HEAD_DIM / 8)
static inline v8 load(const float *p) { v8 x; memcpy(&x, p, sizeof x); return x; }
static inline void store(float *p, v8 x) { memcpy(p, &x, sizeof x); }

/* s[g * T + j] = q[g] . k_j for j < len rounded up to 8 (the caller leaves room); k in blocks (., D, 8).
   Two blocks at a time: 2 G independent accumulators keep both FMA pipes busy (one block's G
   chains alone wait on the FMA latency). */
static void scores(const float *q, const float *k, int64_t len, float *s, int64_t T) {
    int64_t j = 0;
    for (; j + 8 < len; j += 16) {
        v8 acc0[GROUPS] = {0}, acc1[GROUPS] = {0};
        const float *b0 = k + j * HEAD_DIM, *b1 = b0 + 8 * HEAD_DIM;
        for (int i = 0; i < HEAD_DIM; i++) {
            v8 k0 = load(b0 + i * 8), k1 = load(b1 + i * 8);
            for (int g = 0; g < GROUPS; g++) {
                float qg = q[g * HEAD_DIM + i];
                acc0[g] += qg * k0;
                acc1[g] += qg * k1;
            }
        }
        for (int g = 0; g < GROUPS; g++) {
            store(s + g * T + j, acc0[g]);
            store(s + g * T + j + 8, acc1[g]);
        }
    }
    if (j < len) {
        v8 acc[GROUPS] = {0};
        const float *block = k + j * HEAD_DIM;
        for (int i = 0; i < HEAD_DIM; i++) {
            v8 k = load(block + i * 8);
            for (int g = 0; g < GROUPS; g++) acc[g] += q[g * HEAD_DIM + i] * k;
        }
        for (int g = 0; g < GROUPS; g++) store(s + g * T + j, acc[g]);
    }
}

/* o[g] += sum_j w[g * T + j] v[j] for j < len; v is (len, D) */
static void weighted(const float *w, int64_t T, const float *v, int64_t len, v8 o[GROUPS][NC]) {
    for (int64_t j = 0; j < len; j++) {
        v8 vj[NC];
        for (int c = 0; c < NC; c++) vj[c] = load(v + j * HEAD_DIM + 8 * c);
        for (int g = 0; g < GROUPS; g++) {
            float wg = w[g * T + j];
            for (int c = 0; c < NC; c++) o[g][c] += wg * vj[c];
        }
    }
}

/* RoPE of x (D) into out, times scale: out[i] = x[i] cos[i] - x[i + D/2] sin[i], and so on */
static void rope(const float *x, const float *cos, const float *sin, float scale, float *out, int64_t stride) {
    for (int i = 0; i < HEAD_DIM / 2; i++) {
        float a = x[i], b = x[i + HEAD_DIM / 2];
        out[i * stride] = (a * cos[i] - b * sin[i]) * scale;
        out[(i + HEAD_DIM / 2) * stride] = (b * cos[i] + a * sin[i]) * scale;
    }
}

/* softmax over the live ranges [a0, a1) and [b0, b1) of s (the rest is never read) */
static void softmax2(float *s, int64_t a0, int64_t a1, int64_t b0, int64_t b1) {
    float m = -3.0e38f, total = 0.f;
    for (int64_t j = a0; j < a1; j++) m = s[j] > m ? s[j] : m;
    for (int64_t j = b0; j < b1; j++) m = s[j] > m ? s[j] : m;
    #pragma omp simd reduction(+:total)
    for (int64_t j = a0; j < a1; j++) { s[j] = expf(s[j] - m); total += s[j]; }
    #pragma omp simd reduction(+:total)
    for (int64_t j = b0; j < b1; j++) { s[j] = expf(s[j] - m); total += s[j]; }
    float inv = 1.f / total;
    #pragma omp simd
    for (int64_t j = a0; j < a1; j++) s[j] *= inv;
    #pragma omp simd
    for (int64_t j = b0; j < b1; j++) s[j] *= inv;
}

/* W and cap are multiples of 8. Scores are computed in blocks of 8 columns: from start[p] rounded
   down (padding columns, ignored) and up to n rounded up (columns not yet written, ignored). */
void decode_attention(const float *qkv, int64_t stride, const float *cos, const float *sin, const int64_t *pos,
                      float scale, const float *Kp, const float *Vp, const int64_t *start, const int64_t *group,
                      const int64_t *slot, float *K, float *V, float *out, int64_t B, int64_t Hkv, int64_t W,
                      int64_t cap, int64_t n, int threads) {
    int64_t n8 = (n + 7) / 8 * 8;
    #pragma omp parallel num_threads(threads)
    {
        float *s = malloc(sizeof(float) * GROUPS * (W + n8));
        #pragma omp for schedule(static)
        for (int64_t bh = 0; bh < B * Hkv; bh++) {
            int64_t b = bh / Hkv, h = bh % Hkv, p = group[b], w0 = start[p], j0 = w0 / 8 * 8;
            int64_t L = W - j0, T = L + n8, ph = p * Hkv + h, sh = slot[b] * Hkv + h;
            const float *row = qkv + b * stride, *cb = cos + pos[b] * HEAD_DIM / 2, *sb = sin + pos[b] * HEAD_DIM / 2;
            const float *k = row + (Hkv * GROUPS + h) * HEAD_DIM, *v = row + (Hkv * GROUPS + Hkv + h) * HEAD_DIM;
            float qb[GROUPS * HEAD_DIM];
            for (int g = 0; g < GROUPS; g++) rope(row + (h * GROUPS + g) * HEAD_DIM, cb, sb, scale, qb + g * HEAD_DIM, 1);
            float *column = K + (sh * cap + (n - 1) / 8 * 8) * HEAD_DIM + (n - 1) % 8;
            rope(k, cb, sb, 1.f, column, 8);
            memcpy(V + (sh * cap + n - 1) * HEAD_DIM, v, sizeof(float) * HEAD_DIM);
            scores(qb, Kp + (ph * W + j0) * HEAD_DIM, L, s, T);
            scores(qb, K + sh * cap * HEAD_DIM, n, s + L, T);
            for (int g = 0; g < GROUPS; g++) softmax2(s + g * T, w0 - j0, L, L, L + n);
            v8 o[GROUPS][NC];
            memset(o, 0, sizeof o);
            weighted(s + (w0 - j0), T, Vp + (ph * W + w0) * HEAD_DIM, W - w0, o);
            weighted(s + L, T, V + sh * cap * HEAD_DIM, n, o);
            for (int g = 0; g < GROUPS; g++)
                for (int c = 0; c < NC; c++) store(out + (bh * GROUPS + g) * HEAD_DIM + 8 * c, o[g][c]);
        }
        free(s);
    }
}

/* The decode step's small operators, fused (r1lab.kernels.fused_ops): at batch ~128 each torch
   operator costs tens of microseconds of dispatch and thread hand-off for a few of work. */

/* out = x / sqrt(mean(x^2) + eps) * w for one row of dim; returns 1 / sqrt(mean(x^2) + eps) */
static inline float norm_row(const float *x, const float *w, float eps, float *out, int64_t dim) {
    float ss = 0.f;
    #pragma omp simd reduction(+:ss)
    for (int64_t i = 0; i < dim; i++) ss += x[i] * x[i];
    float inv = 1.f / sqrtf(ss / dim + eps);
    #pragma omp simd
    for (int64_t i = 0; i < dim; i++) out[i] = x[i] * inv * w[i];
    return inv;
}

/* out = x / sqrt(mean(x^2) + eps) * w, per row of x (rows, dim) */
void rms_norm(const float *x, const float *w, float eps, float *out, int64_t rows, int64_t dim) {
    for (int64_t r = 0; r < rows; r++) norm_row(x + r * dim, w, eps, out + r * dim, dim);
}

/* out = silu(gate) * up, where each row of gate_up (rows, 2 * inter) is [gate ; up] */
void silu_mul(const float *gate_up, float *out, int64_t rows, int64_t inter, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gate_up + r * 2 * inter, *u = g + inter;
        #pragma omp simd
        for (int64_t i = 0; i < inter; i++) out[r * inter + i] = g[i] / (1.f + expf(-g[i])) * u[i];
    }
}

/* The backward of silu_mul for the training update (r1lab.fused_mlp): from gate_up (rows, 2 * inter)
   and the gradient dh (rows, inter) of h = silu(gate) * up, the gradient d_gate_up (rows, 2 * inter)
   = [dh * up * silu'(gate) ; dh * silu(gate)], and h (rows, inter) itself, recomputed here rather
   than kept from the forward, for the down projection's weight gradient.
   silu'(g) = s * (1 + g * (1 - s)) with s = sigmoid(g). */
void silu_mul_backward(const float *gate_up, const float *dh, float *d_gate_up, float *h, int64_t rows, int64_t inter,
                       int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gate_up + r * 2 * inter, *u = g + inter, *d = dh + r * inter;
        float *dg = d_gate_up + r * 2 * inter, *du = dg + inter, *hr = h + r * inter;
        #pragma omp simd
        for (int64_t i = 0; i < inter; i++) {
            float s = 1.f / (1.f + expf(-g[i])), act = g[i] * s;
            hr[i] = act * u[i];
            du[i] = d[i] * act;
            dg[i] = d[i] * u[i] * s * (1.f + g[i] * (1.f - s));
        }
    }
}

/* RMSNorm for the training update (r1lab.fused): out = x * rstd * w per row of x (rows, dim), with
   rstd = 1 / sqrt(mean(x^2) + eps) kept (rows,) for the backward. */
void rms_norm_train(const float *x, const float *w, float eps, float *out, float *rstd, int64_t rows, int64_t dim,
                    int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) rstd[r] = norm_row(x + r * dim, w, eps, out + r * dim, dim);
}

/* Its backward, with n = x * rstd: dx = rstd * (dy * w - n * mean(dy * w * n)) per row, and the weight's
   gradient sum_rows(dy * n) as `chunks` partial sums (chunks, dim), chunk c over rows [c * rows / chunks,
   (c + 1) * rows / chunks): a fixed split, so the caller's sum over chunks is deterministic. */
void rms_norm_backward(const float *x, const float *w, const float *rstd, const float *dy, float *dx, float *dw_chunks,
                       int64_t rows, int64_t dim, int64_t chunks) {
    #pragma omp parallel for num_threads(chunks) schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        float *dw = dw_chunks + c * dim;
        for (int64_t i = 0; i < dim; i++) dw[i] = 0.f;
        for (int64_t r = c * rows / chunks; r < (c + 1) * rows / chunks; r++) {
            const float *xr = x + r * dim, *d = dy + r * dim;
            float inv = rstd[r], dot = 0.f;
            #pragma omp simd reduction(+:dot)
            for (int64_t i = 0; i < dim; i++) dot += d[i] * w[i] * xr[i];
            float k = dot * inv / dim;  /* mean(dy * w * n), as n = x * rstd */
            #pragma omp simd
            for (int64_t i = 0; i < dim; i++) {
                dx[r * dim + i] = inv * (d[i] * w[i] - xr[i] * inv * k);
                dw[i] += d[i] * xr[i] * inv;
            }
        }
    }
}

/* One token per row of logits (rows, V) from softmax(logits / temperature), by inverting the CDF
   with one uniform number u[r] in [0, 1) per row: the first token whose cumulative probability
   (float64) exceeds u[r] times the total, as r1lab.engine.sampler.categorical does in torch. */
void sample_rows(const float *logits, float temperature, const double *u, int64_t *out, int64_t rows, int64_t V,
                 int threads) {
    #pragma omp parallel num_threads(threads)
    {
        float *p = malloc(sizeof(float) * V);
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float *x = logits + r * V;
            float m = -3.0e38f, inv = 1.f / temperature;
            for (int64_t i = 0; i < V; i++) m = x[i] > m ? x[i] : m;
            /* masked tokens hold -inf; -ffast-math assumes no infinities, so they are compared, not exp'd */
            #pragma omp simd
            for (int64_t i = 0; i < V; i++) p[i] = x[i] > -3.0e38f ? expf((x[i] - m) * inv) : 0.f;
            double total = 0.0;
            for (int64_t i = 0; i < V; i++) total += p[i];
            double target = u[r] * total, cdf = 0.0;
            int64_t pick = V - 1;
            for (int64_t i = 0; i < V; i++) {
                cdf += p[i];
                if (cdf > target) { pick = i; break; }
            }
            out[r] = pick;
        }
        free(p);
    }
}
