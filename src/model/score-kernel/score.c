/*
 * FAIR scoring of one image on WebAssembly (the tfjs fallback's scoring, src/model/score-fast.ts):
 * MSGMS over `scales` scales + the CIELAB colour term, the k x k zero-padded mean, the max
 * (fair-reference.md section 6).
 *
 * float32 arithmetic, as the tensor path and the official PyTorch code, in loops over whole
 * interleaved rows (3 floats per pixel, neighbours 3 apart) that clang vectorises to 4 lanes of
 * WebAssembly SIMD; only the box filter's running sums are float64 (a float32 running sum over a
 * 256-row column drifts by ~1e-4). The two powers (u^2.4 of the sRGB linearisation, Lab's cube
 * root) are chords on a logarithmic grid indexed by the float's bits (relative error ~1e-7),
 * float64 Newton steps outside it (unclamped restorations).
 *
 * Freestanding: no libc, no imports. Build: scripts/build-wasm.sh (clang --target=wasm32 -O3
 * -msimd128), which regenerates src/model/score-kernel/module.ts.
 */

#define EXPORT(name) __attribute__((export_name(name)))
#define RESTRICT __restrict__
/* The row buffers of a loop never overlap (they are separate slices of the work space), which
 * clang cannot prove: without this it keeps the column sums scalar. */
#define INDEPENDENT _Pragma("clang loop vectorize(assume_safety)")

typedef int i32;

/* Work space of score_image for size S and `scales` scales, in floats (4-byte units). */
static i32 coarse_floats(i32 S, i32 scales) {
  i32 n = 0;
  for (i32 s = 1, L = S >> 1; s < scales; s++, L >>= 1) n += L * S; /* row-upsampled scale s */
  return n;
}
static i32 half_of(i32 S) { return S >> 1 > 0 ? S >> 1 : 1; }
EXPORT("score_work_floats")
i32 score_work_floats(i32 S, i32 scales) {
  i32 half = half_of(S);
  return S * S                 /* raw map */
       + half * half           /* channel-summed GMS of a coarse scale */
       + coarse_floats(S, scales)
       + 4 * (3 * S + 6)       /* column sums / differences of a row, restored and original */
       + 3 * S                 /* GMS ratio of a row */
       + 3 * S                 /* a row of zeros (above and below the image) */
       + 12 * S                /* colour of a row: linear and XYZ / f of both images */
       + 2 * S                 /* box filter column sums (float64) */
       + 4 * (half * half * 3)   /* pooled images, ping-pong x (restored, original) */
       + 2;                    /* alignment of the float64 column sums */
}

static inline float bits_to_float(i32 b) { float f; __builtin_memcpy(&f, &b, 4); return f; }
static inline i32 float_to_bits(float f) { i32 b; __builtin_memcpy(&b, &f, 4); return b; }

/* First guess of x^p for x > 0: the bits of a positive float are ~ 2^23 (log2(x) + 127), so
 * bits(x^p) ~ (1 - p) bits(1) + p bits(x) (error < 9 %). */
static inline float pow_guess(float x, float p) {
  const float one = 1065353216.0f;
  return bits_to_float((i32)((1.0f - p) * one + p * (float)float_to_bits(x)));
}

/* x^0.4 for x > 0 in float64 (the tables; values outside them): r = w^(-1/5) with w = x^2 by
 * Newton (r += r (1 - w r^5) / 5, error e -> 3 e^2), x^0.4 = w^(1/5) = w r^4. */
static double pow_0_4(double x) {
  double w = x * x, r = pow_guess((float)w, -0.2f);
  for (i32 k = 0; k < 7; k++) {
    double r2 = r * r;
    r = r + r * (1.0 - w * (r2 * r2 * r)) * 0.2;
  }
  double r2 = r * r;
  return w * r2 * r2;
}

/* cbrt(x) for x > 0 in float64: r = x^(-1/3) (Newton: r += r (1 - x r^3) / 3, error e -> 2 e^2),
 * cbrt = x r^2. */
static double cbrt_pos(double x) {
  double r = pow_guess((float)x, -1.0f / 3);
  for (i32 k = 0; k < 7; k++) r = r + r * (1.0 - x * (r * r * r)) * (1.0 / 3);
  return x * r * r;
}

/*
 * Tables of chords on a logarithmic grid: 512 cells per octave, cell j = the floats whose bits
 * >> 14 equal j + lo (so the index is two integer ops, no log), f(x) ~ A[j] + B[j] x on it.
 * Relative error of a chord of x^p over a cell of relative width 1/512: |p (1-p)| / 8 / 512^2:
 * 1.1e-7 for cbrt and x^0.4 (u^2.4 is computed as u^2 u^0.4 for that reason: its own chords
 * would be 15x worse). A cell is a scalar load pair: WebAssembly has no gather, and the
 * alternative, Newton steps in SIMD, cost ~3x more per value.
 */
#define CELL_SHIFT 14
#define OCTAVE_CELLS 512
/* cbrt on [2^-7, 2^1) (Lab's knee 0.008856 is above 2^-7); x^0.4 on [2^-4, 2^1) (u >= 0.0905). */
#define CBRT_OCTAVES 8
#define P04_OCTAVES 5
static float CBRT_A[CBRT_OCTAVES * OCTAVE_CELLS], CBRT_B[CBRT_OCTAVES * OCTAVE_CELLS];
static float P04_A[P04_OCTAVES * OCTAVE_CELLS], P04_B[P04_OCTAVES * OCTAVE_CELLS];
static i32 CBRT_LO, P04_LO, tables_ready;

static void chords(double (*f)(double), float lo, i32 cells, float *A, float *B) {
  const i32 first = float_to_bits(lo) >> CELL_SHIFT;
  for (i32 j = 0; j < cells; j++) {
    double x0 = bits_to_float((first + j) << CELL_SHIFT), x1 = bits_to_float((first + j + 1) << CELL_SHIFT);
    double y0 = f(x0), slope = (f(x1) - y0) / (x1 - x0);
    A[j] = (float)(y0 - slope * x0);
    B[j] = (float)slope;
  }
}

static void init_tables(void) {
  chords(cbrt_pos, 1.0f / 128, CBRT_OCTAVES * OCTAVE_CELLS, CBRT_A, CBRT_B);
  chords(pow_0_4, 1.0f / 16, P04_OCTAVES * OCTAVE_CELLS, P04_A, P04_B);
  CBRT_LO = float_to_bits(1.0f / 128) >> CELL_SHIFT;
  P04_LO = float_to_bits(1.0f / 16) >> CELL_SHIFT;
  tables_ready = 1;
}

/* sRGB -> linear (kornia: v > 0.04045 ? ((v+0.055)/1.055)^2.4 : v/12.92), in place. */
static void linearise(float *RESTRICT v, i32 n) {
  for (i32 p = 0; p < n; p++) {
    float a = v[p], u = ((a > 0.04045f ? a : 0.04045f) + 0.055f) * (1.0f / 1.055f);
    unsigned j = (unsigned)((float_to_bits(u) >> CELL_SHIFT) - P04_LO);
    float q = j < P04_OCTAVES * OCTAVE_CELLS ? P04_A[j] + P04_B[j] * u : (float)pow_0_4(u);
    v[p] = a > 0.04045f ? u * u * q : a * (1.0f / 12.92f);
  }
}

/* Lab's f(t) = t > 0.008856 ? cbrt(t) : 7.787 t + 4/29, in place. */
static void lab_f(float *RESTRICT v, i32 n) {
  for (i32 p = 0; p < n; p++) {
    float t = v[p], c = t > 0.008856f ? t : 0.008856f;
    unsigned j = (unsigned)((float_to_bits(c) >> CELL_SHIFT) - CBRT_LO);
    float hi = j < CBRT_OCTAVES * OCTAVE_CELLS ? CBRT_A[j] + CBRT_B[j] * c : (float)cbrt_pos(c);
    v[p] = t > 0.008856f ? hi : t * 7.787f + 4.0f / 29;
  }
}

/*
 * out[0 .. L*L) = sum over the 3 channels of the GMS ratio of two L x L x 3 images (Prewitt/3,
 * zero padding). Per row, over the interleaved floats (3L per row, the same channel of the
 * neighbouring pixel 3 apart): column sums v = up + mid + down and differences e = up - down,
 * then 3 gx = v[p-3] - v[p+3] and 3 gy = e[p-3] + e[p] + e[p+3]. With a = 9 gm^2 = (3gx)^2 +
 * (3gy)^2 + 9e-12, the ratio (2 gmY gmX + c) / (gmY^2 + gmX^2 + c + 1e-12) is
 * (2 sqrt(aY aX) + 9c) / (aY + aX + 9(c + 1e-12)).
 */
static void gms_plane(const float *RESTRICT y, const float *RESTRICT x, i32 L, float c, float *RESTRICT out, float *RESTRICT ws) {
  const i32 R = 3 * L, W = R + 6;
  float *RESTRICT vY = ws, *RESTRICT eY = ws + W, *RESTRICT vX = ws + 2 * W, *RESTRICT eX = ws + 3 * W;
  float *RESTRICT ratio = ws + 4 * W, *RESTRICT zero = ratio + R;
  const float cN = 9 * c, cD = 9 * (c + 1e-12f);
  for (i32 p = 0; p < R; p++) zero[p] = 0;
  for (i32 h = 0; h < 3; h++) vY[h] = eY[h] = vX[h] = eX[h] = vY[R + 3 + h] = eY[R + 3 + h] = vX[R + 3 + h] = eX[R + 3 + h] = 0;
  for (i32 r = 0; r < L; r++) {
    const float *yu = r > 0 ? y + (r - 1) * R : zero, *ym = y + r * R, *yd = r + 1 < L ? y + (r + 1) * R : zero;
    const float *xu = r > 0 ? x + (r - 1) * R : zero, *xm = x + r * R, *xd = r + 1 < L ? x + (r + 1) * R : zero;
    INDEPENDENT for (i32 p = 0; p < R; p++) {
      vY[p + 3] = yu[p] + ym[p] + yd[p]; eY[p + 3] = yu[p] - yd[p];
      vX[p + 3] = xu[p] + xm[p] + xd[p]; eX[p + 3] = xu[p] - xd[p];
    }
    INDEPENDENT for (i32 p = 0; p < R; p++) {
      float gxY = vY[p] - vY[p + 6], gyY = eY[p] + eY[p + 3] + eY[p + 6];
      float gxX = vX[p] - vX[p + 6], gyX = eX[p] + eX[p + 3] + eX[p + 6];
      float aY = gxY * gxY + gyY * gyY + 9e-12f, aX = gxX * gxX + gyX * gyX + 9e-12f;
      ratio[p] = (2 * __builtin_sqrtf(aY * aX) + cN) / (aY + aX + cD);
    }
    float *RESTRICT o = out + r * L;
    for (i32 i = 0; i < L; i++) o[i] = ratio[3 * i] + ratio[3 * i + 1] + ratio[3 * i + 2];
  }
}

/* 2x2 average pool (valid) of an L x L x 3 image into (L/2) x (L/2) x 3. */
static void pool2(const float *RESTRICT src, i32 L, float *RESTRICT dst) {
  const i32 H = L >> 1, R = L * 3;
  for (i32 r = 0; r < H; r++) {
    const float *a = src + 2 * r * R, *b = a + R;
    float *o = dst + r * H * 3;
    for (i32 j = 0; j < H; j++)
      for (i32 ch = 0; ch < 3; ch++) {
        i32 q = 6 * j + ch;
        o[3 * j + ch] = (a[q] + a[q + 3] + b[q] + b[q + 3]) * 0.25f;
      }
  }
}

/* Half-pixel bilinear source (torch align_corners=False) of output o, L -> S. */
static void tap(i32 o, i32 L, i32 S, i32 *i0, i32 *i1, float *w) {
  float src = (o + 0.5f) * ((float)L / S) - 0.5f;
  if (src < 0) src = 0;
  i32 a = (i32)src; /* floor: src >= 0 */
  if (a > L - 1) a = L - 1;
  *i0 = a;
  *i1 = a + 1 < L - 1 ? a + 1 : L - 1;
  *w = src - a;
}

/* up (L x S) = `low` (L x L) upsampled along the rows. */
static void upsample_rows(const float *RESTRICT low, i32 L, i32 S, float *RESTRICT up) {
  for (i32 o = 0; o < S; o++) {
    i32 a, b; float w;
    tap(o, L, S, &a, &b, &w);
    for (i32 r = 0; r < L; r++) {
      float u = low[r * L + a];
      up[r * S + o] = u + (low[r * L + b] - u) * w;
    }
  }
}

/* raw (S x S) += `up` (L x S) upsampled down the columns. */
static void add_columns(float *RESTRICT raw, const float *RESTRICT up, i32 L, i32 S) {
  for (i32 r = 0; r < S; r++) {
    i32 a, b; float t;
    tap(r, L, S, &a, &b, &t);
    const float *ua = up + a * S, *ub = up + b * S;
    float *RESTRICT o = raw + r * S;
    for (i32 i = 0; i < S; i++) o[i] += ua[i] + (ub[i] - ua[i]) * t;
  }
}

/*
 * raw[i] = 1 - k raw[i] + weight ((a_X - a_Y)^2 + (b_X - b_Y)^2) for the S*S pixels, a row at a
 * time. m: [9] sRGB -> XYZ/white, xyz_j = sum_k lin_k m[k*3+j].
 */
static void colour(const float *y, const float *x, i32 S, const float *m, float weight, float k, float *raw, float *RESTRICT lab) {
  const i32 R = S * 3;
  float *RESTRICT lin = lab, *RESTRICT f = lab + 2 * R; /* [restored | original] x R each */
  for (i32 r = 0; r < S; r++) {
    const float *yr = y + r * R, *xr = x + r * R;
    float *RESTRICT o = raw + r * S;
    for (i32 p = 0; p < R; p++) { lin[p] = yr[p]; lin[R + p] = xr[p]; }
    linearise(lin, 2 * R);
    for (i32 p = 0; p < 2 * R; p += 3) {
      float l0 = lin[p], l1 = lin[p + 1], l2 = lin[p + 2];
      f[p] = l0 * m[0] + l1 * m[3] + l2 * m[6];
      f[p + 1] = l0 * m[1] + l1 * m[4] + l2 * m[7];
      f[p + 2] = l0 * m[2] + l1 * m[5] + l2 * m[8];
    }
    lab_f(f, 2 * R);
    for (i32 i = 0, p = 0; i < S; i++, p += 3) {
      float fy = f[R + p + 1] - f[p + 1];
      float da = 500 * (f[R + p] - f[p] - fy), db = 200 * (fy - f[R + p + 2] + f[p + 2]);
      o[i] = 1 - k * o[i] + weight * (da * da + db * db);
    }
  }
}

/* k x k zero-padded mean of src (S x S) into dst by float64 running sums; returns the max. */
static float box_mean(const float *RESTRICT src, i32 S, i32 k, double *RESTRICT col, float *RESTRICT dst) {
  const i32 r = (k - 1) >> 1;
  const double inv = 1.0 / ((double)k * k);
  for (i32 i = 0; i < S; i++) col[i] = 0;
  const i32 r0 = r < S ? r : S;
  for (i32 yy = 0; yy < r0; yy++)
    for (i32 i = 0; i < S; i++) col[i] += src[yy * S + i];
  float max = -__builtin_inff();
  for (i32 yq = 0; yq < S; yq++) {
    i32 add = yq + r, sub = yq - r - 1;
    if (add < S && sub >= 0) for (i32 i = 0; i < S; i++) col[i] += (double)src[add * S + i] - src[sub * S + i];
    else if (add < S) for (i32 i = 0; i < S; i++) col[i] += src[add * S + i];
    else if (sub >= 0) for (i32 i = 0; i < S; i++) col[i] -= src[sub * S + i];
    double s = 0;
    for (i32 i = 0; i < r0; i++) s += col[i];
    float *o = dst + yq * S;
    for (i32 i = 0; i < S; i++) {
      if (i + r < S && i - r - 1 >= 0) s += col[i + r] - col[i - r - 1];
      else if (i + r < S) s += col[i + r];
      else if (i - r - 1 >= 0) s -= col[i - r - 1];
      float v = (float)(s * inv);
      o[i] = v;
      if (v > max) max = v;
    }
  }
  return max;
}

/*
 * Score one S x S x 3 image pair (restored y, original x; NHWC BGR float32): map (S x S float32)
 * and the returned score (its max). m: [9] XYZ matrix (channel order folded in); work: at least
 * score_work_floats(S, scales) floats, 8-byte aligned.
 */
EXPORT("score_image")
float score_image(const float *y, const float *x, i32 S, i32 scales, float c, float weight, i32 k,
                  const float *m, float *work, float *map) {
  const i32 half = half_of(S);
  float *raw = work, *low = raw + S * S, *ups = low + half * half, *ws = ups + coarse_floats(S, scales);
  float *lab = ws + 4 * (3 * S + 6) + 6 * S;
  double *col = (double *)(((unsigned long)(lab + 12 * S) + 7) & ~7ul);
  float *pool = (float *)(col + S);
  const i32 q = half * half * 3; /* floats per pooled image */
  const float norm = 1.0f / (3 * scales);
  if (!tables_ready) init_tables();

  gms_plane(y, x, S, c, raw, ws);
  /* Coarser scales: 2x2 pools, channel-summed GMS at their size, upsampled rows then columns. */
  const float *cy = y, *cx = x;
  float *up = ups;
  for (i32 s = 1, L = S >> 1; s < scales; s++, L >>= 1) {
    float *ny = pool + ((s - 1) % 2) * 2 * q, *nx = ny + q;
    pool2(cy, 2 * L, ny);
    pool2(cx, 2 * L, nx);
    cy = ny; cx = nx;
    gms_plane(cy, cx, L, c, low, ws);
    upsample_rows(low, L, S, up);
    up += L * S;
  }
  up = ups;
  for (i32 s = 1, L = S >> 1; s < scales; s++, L >>= 1) {
    add_columns(raw, up, L, S);
    up += L * S;
  }
  if (weight > 0) colour(y, x, S, m, weight, norm, raw, lab);
  else for (i32 i = 0; i < S * S; i++) raw[i] = 1 - norm * raw[i];

  if (k == 1) {
    float max = -__builtin_inff();
    for (i32 i = 0; i < S * S; i++) {
      map[i] = raw[i];
      if (raw[i] > max) max = raw[i];
    }
    return max;
  }
  return box_mean(raw, S, k, col, map);
}
