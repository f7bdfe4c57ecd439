// CPU kernels of mindyolox, run by MindSpore as ``ops.Custom(func_type="aot")`` operators
// (mindyolox/models/cpu_kernels.py builds this file with g++ and loads it).
//
// Every function has MindSpore's AOT signature (mindspore/ops/operations/custom_ops.py:260-307):
//   int F(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
//         void *stream, void *extra)
// params = inputs then the output; all tensors float32, contiguous NCHW; returns 0 on success.
//
// Depthwise k x k convolution (groups == channels, stride S, symmetric padding P), weight
// [C, 1, k, k]:
//   DwFwdS{S}_P{P}(x [B,C,H,W], w)            -> y  [B,C,Ho,Wo]
//   DwBwdXS{S}_P{P}(dy, w, x (shape only))    -> dx [B,C,H,W]
//   DwBwdWS{S}_P{P}(x, dy, w (shape only))    -> dw [C,1,k,k]
// computed directly, tap by tap over rows of the (b, c) plane: no column tensor. The forward
// adds the taps in the (i, j) order of one output, like Im2Col + GEMM.
//
// The fused eval path (BatchNorm folded, forward only):
//   DwBiasSiluS{S}_P{P}(x, w, bias [C]) -> SiLU(depthwise(x, w) + bias), one pass per plane
//   BiasSilu(x [B, C, ...], bias [C])    -> SiLU(x + bias)
//
// SiLU y = x * sigmoid(x) and its gradient from the saved input:
//   SiluFwd(x) -> y;  SiluBwd(x, dy) -> dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x)
// expf is glibc's vector variant (libmvec, <= 4 ulp).
//
// Further down: train-mode batch norm (BnFwd / BnBwd) and batch norm + SiLU (BnSiluFwd /
// BnSiluBwd), the SimOTA assignment, and dense convolutions through oneDNN's own primitives
// (DnnlConv*: the training forward and both gradients, and the eval forward with bias + SiLU).
//
// Loops over (b, c) planes (or channels, or elements) are split over a parked pool of
// worker threads (Pool below) when a call has enough work (kMinWork). The thread count is
// MINDYOLOX_KERNEL_THREADS, else the CPUs this process may run on (sched_getaffinity) --
// never OMP_NUM_THREADS: MindSpore's backend (libmindspore_ms_backend.so) sets it to 1 in the
// process environment when it is imported, so reading it ran every kernel on one thread.
// Not OpenMP: libgomp's workers busy-wait after a region and took the cores from MindSpore's
// next kernels (a nano train step 25 % slower, yolox-s 2x); the pool's workers sleep on a
// condition variable between calls.
#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

// glibc's libmvec has SIMD variants of expf (declared by math.h only under -ffast-math)
extern "C" float expf(float) __attribute__((simd("notinbranch")));

namespace {
constexpr int64_t kMinWork = 1 << 16;  // ~multiply-adds below which one thread does the call

int thread_count() {
  static const int count = [] {
    const char *v = std::getenv("MINDYOLOX_KERNEL_THREADS");
    if (v != nullptr && std::atoi(v) > 0) return std::atoi(v);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }();
  return count;
}

// Parked workers: run(n, f) calls f(k) for k in [0, n), f(0) on the calling thread and the
// others on workers that sleep between calls. One call at a time uses the pool; a kernel
// called meanwhile from another MindSpore thread runs on its own thread (busy.try_lock).
// Safety: the pool is never destroyed (workers block in wait() until the process ends, so no
// destructor races them at exit), the library pins itself in memory (RTLD_NODELETE: MindSpore
// dlclose()s an AOT library when its last kernel is freed, and a parked worker's code must
// stay mapped), and a forked child (which has no workers) makes a pool of its own.
class Pool {
 public:
  explicit Pool(int workers) : owner_(getpid()) {
    for (int k = 1; k <= workers; ++k) std::thread([this, k] { Loop(k); }).detach();
  }
  pid_t owner() const { return owner_; }
  std::mutex busy;

  void Run(int64_t n, const std::function<void(int64_t)> &f) {
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &f;
      parts_ = n;
      pending_ = n - 1;
      ++generation_;
    }
    wake_.notify_all();
    f(0);
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, [this] { return pending_ == 0; });
  }

 private:
  void Loop(int64_t k) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      wake_.wait(lk, [&] { return generation_ != seen; });
      seen = generation_;
      if (k >= parts_) continue;
      const std::function<void(int64_t)> *f = job_;
      lk.unlock();
      (*f)(k);
      lk.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }
  std::mutex m_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)> *job_ = nullptr;
  int64_t parts_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  pid_t owner_;
};

Pool *pool() {
  static Pool *p = nullptr;
  static std::mutex make;
  std::lock_guard<std::mutex> lk(make);
  if (p == nullptr) {
    Dl_info info;
    if (dladdr(reinterpret_cast<void *>(&thread_count), &info) != 0 && info.dli_fname != nullptr)
      dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);  // pinned: never unmapped under the workers
  }
  if (p == nullptr || p->owner() != getpid()) p = new Pool(thread_count() - 1);  // a fork's child: new workers
  return p;
}

// f(begin, end) over [0, n) in contiguous chunks, one per thread; work: total cost estimate
template <class F>
void parallel_for(int64_t n, int64_t work, F f) {
  const int64_t t = std::min<int64_t>({thread_count(), n, std::max<int64_t>(1, work / kMinWork)});
  if (t <= 1) {
    f(int64_t{0}, n);
    return;
  }
  Pool *p = pool();
  std::unique_lock<std::mutex> own(p->busy, std::try_to_lock);
  if (!own.owns_lock()) {  // another kernel holds the pool: this one runs on its own thread
    f(int64_t{0}, n);
    return;
  }
  const std::function<void(int64_t)> part = [&](int64_t k) { f(n * k / t, n * (k + 1) / t); };
  p->Run(t, part);
}

// valid output columns ow for tap j: 0 <= ow*S - P + j < W
template <int S>
inline void ow_range(int64_t W, int64_t Wo, int P, int j, int64_t &lo, int64_t &hi) {
  int64_t a = P - j;  // need ow*S >= a
  lo = a <= 0 ? 0 : (a + S - 1) / S;
  int64_t b = W - 1 + P - j;  // ow*S <= b
  hi = b < 0 ? -1 : std::min<int64_t>(Wo - 1, b / S);
}

// y = x + bias, then SiLU, over one plane of n values (the fused eval epilogue)
inline void bias_silu_plane(float *y, int64_t n, float bias) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float v = y[i] + bias;
    y[i] = v / (1.0f + expf(-v));
  }
}

// Epi: params are (x, w, bias [C], y) and every plane ends with bias_silu_plane (eval only)
template <int S, int P, bool Epi = false>
int fwd(int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != (Epi ? 4 : 3)) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *bias = Epi ? static_cast<const float *>(params[2]) : nullptr;
  float *y = static_cast<float *>(params[Epi ? 3 : 2]);
  const int64_t B = shapes[0][0], C = shapes[0][1], H = shapes[0][2], W = shapes[0][3];
  const int K = static_cast<int>(shapes[1][2]);
  const int64_t Ho = shapes[Epi ? 3 : 2][2], Wo = shapes[Epi ? 3 : 2][3];
  if (Epi && (ndims[2] != 1 || shapes[2][0] != C)) return 2;
  parallel_for(B * C, B * C * Ho * Wo * K * K, [&](int64_t first, int64_t last) {
  for (int64_t bc = first; bc < last; ++bc) {
    const int64_t c = bc % C;
    const float *xp = x + bc * H * W;
    const float *wp = w + c * K * K;
    float *yp = y + bc * Ho * Wo;
    std::memset(yp, 0, sizeof(float) * Ho * Wo);
    for (int64_t oh = 0; oh < Ho; ++oh) {
      float *yr = yp + oh * Wo;
      for (int i = 0; i < K; ++i) {
        const int64_t ih = oh * S - P + i;
        if (ih < 0 || ih >= H) continue;
        const float *xr = xp + ih * W;
        for (int j = 0; j < K; ++j) {
          int64_t lo, hi;
          ow_range<S>(W, Wo, P, j, lo, hi);
          const float wv = wp[i * K + j];
          const float *xs = xr - P + j;
#pragma omp simd
          for (int64_t ow = lo; ow <= hi; ++ow) yr[ow] += wv * xs[ow * S];
        }
      }
    }
    if (Epi) bias_silu_plane(yp, Ho * Wo, bias[c]);
  }
  });
  return 0;
}

// dx from dy (params: dy, w, dx)
template <int S, int P>
int bwd_x(int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != 4) return 1;
  const float *dy = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[3]);
  const int64_t B = shapes[3][0], C = shapes[3][1], H = shapes[3][2], W = shapes[3][3];
  const int K = static_cast<int>(shapes[1][2]);
  const int64_t Ho = shapes[0][2], Wo = shapes[0][3];
  parallel_for(B * C, B * C * Ho * Wo * K * K, [&](int64_t first, int64_t last) {
  for (int64_t bc = first; bc < last; ++bc) {
    const int64_t c = bc % C;
    const float *gp = dy + bc * Ho * Wo;
    const float *wp = w + c * K * K;
    float *xp = dx + bc * H * W;
    std::memset(xp, 0, sizeof(float) * H * W);
    for (int64_t oh = 0; oh < Ho; ++oh) {
      const float *gr = gp + oh * Wo;
      for (int i = 0; i < K; ++i) {
        const int64_t ih = oh * S - P + i;
        if (ih < 0 || ih >= H) continue;
        float *xr = xp + ih * W;
        for (int j = 0; j < K; ++j) {
          int64_t lo, hi;
          ow_range<S>(W, Wo, P, j, lo, hi);
          const float wv = wp[i * K + j];
          float *xs = xr - P + j;
          if (S == 1) {
#pragma omp simd
            for (int64_t ow = lo; ow <= hi; ++ow) xs[ow] += wv * gr[ow];
          } else {
            for (int64_t ow = lo; ow <= hi; ++ow) xs[ow * S] += wv * gr[ow];
          }
        }
      }
    }
  }
  });
  return 0;
}

// dw from x and dy (params: x, dy, dw)
template <int S, int P>
int bwd_w(int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != 4) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *dy = static_cast<const float *>(params[1]);
  float *dw = static_cast<float *>(params[3]);
  const int64_t B = shapes[0][0], C = shapes[0][1], H = shapes[0][2], W = shapes[0][3];
  const int K = static_cast<int>(shapes[3][2]);
  if (K * K > 64) return 2;  // acc below
  const int64_t Ho = shapes[1][2], Wo = shapes[1][3];
  parallel_for(C, B * C * Ho * Wo * K * K, [&](int64_t first, int64_t last) {
  for (int64_t c = first; c < last; ++c) {
    float acc[64] = {0};  // K*K <= 64
    for (int64_t b = 0; b < B; ++b) {
      const float *xp = x + (b * C + c) * H * W;
      const float *gp = dy + (b * C + c) * Ho * Wo;
      for (int64_t oh = 0; oh < Ho; ++oh) {
        const float *gr = gp + oh * Wo;
        for (int i = 0; i < K; ++i) {
          const int64_t ih = oh * S - P + i;
          if (ih < 0 || ih >= H) continue;
          const float *xr = xp + ih * W;
          for (int j = 0; j < K; ++j) {
            int64_t lo, hi;
            ow_range<S>(W, Wo, P, j, lo, hi);
            const float *xs = xr - P + j;
            float s = 0.f;
#pragma omp simd reduction(+ : s)
            for (int64_t ow = lo; ow <= hi; ++ow) s += gr[ow] * xs[ow * S];
            acc[i * K + j] += s;
          }
        }
      }
    }
    for (int t = 0; t < K * K; ++t) dw[c * K * K + t] = acc[t];
  }
  });
  return 0;
}

// k x k patches of every output position as channels (channel c*k*k + i*k + j, the order of a
// flattened [O, C, k, k] weight), stride S, symmetric padding P, zeros outside the input:
//   Im2ColS{S}_P{P}(x [B,C,H,W])              -> cols [B, C*k*k, Ho, Wo]   (k from the shapes)
//   Col2ImS{S}_P{P}(dcols, x (shape only))    -> dx [B,C,H,W], the sum of the patches back
template <int S, int P>
int im2col(int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  float *cols = static_cast<float *>(params[1]);
  const int64_t B = shapes[0][0], C = shapes[0][1], H = shapes[0][2], W = shapes[0][3];
  const int64_t KK = shapes[1][1] / C, Ho = shapes[1][2], Wo = shapes[1][3];
  const int K = static_cast<int>(std::lround(std::sqrt(static_cast<double>(KK))));
  if (K * K != KK || K * K * C != shapes[1][1]) return 2;
  parallel_for(B * C, B * C * KK * Ho * Wo / 4, [&](int64_t first, int64_t last) {
  for (int64_t bc = first; bc < last; ++bc) {
    const float *xp = x + bc * H * W;
    for (int i = 0; i < K; ++i) {
      for (int j = 0; j < K; ++j) {
        float *cp = cols + (bc * KK + i * K + j) * Ho * Wo;
        int64_t lo, hi;
        ow_range<S>(W, Wo, P, j, lo, hi);
        for (int64_t oh = 0; oh < Ho; ++oh) {
          float *cr = cp + oh * Wo;
          const int64_t ih = oh * S - P + i;
          if (ih < 0 || ih >= H || hi < lo) {
            std::memset(cr, 0, sizeof(float) * Wo);
            continue;
          }
          const float *xs = xp + ih * W - P + j;
          for (int64_t ow = 0; ow < lo; ++ow) cr[ow] = 0.f;
#pragma omp simd
          for (int64_t ow = lo; ow <= hi; ++ow) cr[ow] = xs[ow * S];
          for (int64_t ow = hi + 1; ow < Wo; ++ow) cr[ow] = 0.f;
        }
      }
    }
  }
  });
  return 0;
}

template <int S, int P>
int col2im(int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != 3) return 1;
  const float *cols = static_cast<const float *>(params[0]);
  float *dx = static_cast<float *>(params[2]);
  const int64_t B = shapes[2][0], C = shapes[2][1], H = shapes[2][2], W = shapes[2][3];
  const int64_t KK = shapes[0][1] / C, Ho = shapes[0][2], Wo = shapes[0][3];
  const int K = static_cast<int>(std::lround(std::sqrt(static_cast<double>(KK))));
  if (K * K != KK || K * K * C != shapes[0][1]) return 2;
  parallel_for(B * C, B * C * KK * Ho * Wo / 4, [&](int64_t first, int64_t last) {
  for (int64_t bc = first; bc < last; ++bc) {
    float *xp = dx + bc * H * W;
    std::memset(xp, 0, sizeof(float) * H * W);
    for (int i = 0; i < K; ++i) {
      for (int j = 0; j < K; ++j) {
        const float *cp = cols + (bc * KK + i * K + j) * Ho * Wo;
        int64_t lo, hi;
        ow_range<S>(W, Wo, P, j, lo, hi);
        for (int64_t oh = 0; oh < Ho; ++oh) {
          const int64_t ih = oh * S - P + i;
          if (ih < 0 || ih >= H) continue;
          const float *cr = cp + oh * Wo;
          float *xs = xp + ih * W - P + j;
          if (S == 1) {
#pragma omp simd
            for (int64_t ow = lo; ow <= hi; ++ow) xs[ow] += cr[ow];
          } else {
            for (int64_t ow = lo; ow <= hi; ++ow) xs[ow * S] += cr[ow];
          }
        }
      }
    }
  }
  });
  return 0;
}
}  // namespace

#define EXPORT(S, P)                                                                              \
  extern "C" int DwFwdS##S##_P##P(int n, void **p, int *d, int64_t **s, const char **t, void *st, \
                                 void *e) { return fwd<S, P>(n, p, d, s); }                      \
  extern "C" int DwBiasSiluS##S##_P##P(int n, void **p, int *d, int64_t **s, const char **t, void *st, \
                                      void *e) { return fwd<S, P, true>(n, p, d, s); }          \
  extern "C" int DwBwdXS##S##_P##P(int n, void **p, int *d, int64_t **s, const char **t, void *st, \
                                  void *e) { return bwd_x<S, P>(n, p, d, s); }                   \
  extern "C" int DwBwdWS##S##_P##P(int n, void **p, int *d, int64_t **s, const char **t, void *st, \
                                  void *e) { return bwd_w<S, P>(n, p, d, s); }                   \
  extern "C" int Im2ColS##S##_P##P(int n, void **p, int *d, int64_t **s, const char **t, void *st, \
                                   void *e) { return im2col<S, P>(n, p, d, s); }                 \
  extern "C" int Col2ImS##S##_P##P(int n, void **p, int *d, int64_t **s, const char **t, void *st, \
                                   void *e) { return col2im<S, P>(n, p, d, s); }
EXPORT(1, 1)
EXPORT(2, 1)

namespace {
inline int64_t numel(int nd, const int64_t *s) { int64_t n = 1; for (int i = 0; i < nd; ++i) n *= s[i]; return n; }
}
extern "C" int SiluFwd(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[1]);
  const int64_t n = numel(ndims[0], shapes[0]);
  parallel_for(n, n * 8, [&](int64_t first, int64_t last) {
#pragma omp simd
    for (int64_t i = first; i < last; ++i) y[i] = x[i] / (1.0f + expf(-x[i]));
  });
  return 0;
}
// BiasSilu(x [B, C, ...], bias [C]) -> y = SiLU(x + bias[c]) (the fused eval epilogue of a
// convolution whose BatchNorm is folded: one pass instead of BiasAdd + SiLU)
extern "C" int BiasSilu(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 3 || ndims[0] < 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *bias = static_cast<const float *>(params[1]);
  float *y = static_cast<float *>(params[2]);
  const int64_t B = shapes[0][0], C = shapes[0][1];
  const int64_t plane = numel(ndims[0], shapes[0]) / std::max<int64_t>(1, B * C);
  if (shapes[1][0] != C) return 2;
  parallel_for(B * C, B * C * plane * 8, [&](int64_t first, int64_t last) {
    for (int64_t bc = first; bc < last; ++bc) {
      const float *xp = x + bc * plane;
      float *yp = y + bc * plane;
      if (xp != yp) std::memcpy(yp, xp, sizeof(float) * plane);
      bias_silu_plane(yp, plane, bias[bc % C]);
    }
  });
  return 0;
}
// params: x, dy -> dx
extern "C" int SiluBwd(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 3) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *g = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[2]);
  const int64_t n = numel(ndims[0], shapes[0]);
  parallel_for(n, n * 8, [&](int64_t first, int64_t last) {
#pragma omp simd
    for (int64_t i = first; i < last; ++i) {
      const float s = 1.0f / (1.0f + expf(-x[i]));
      dx[i] = g[i] * s * (1.0f + x[i] * (1.0f - s));
    }
  });
  return 0;
}

// Batch normalisation in train mode over [B, C, H, W], statistics per channel over B*H*W,
// two passes in double (mean, then the mean of squared deviations: PyTorch's biased
// variance, exact where E[x^2] - E[x]^2 cancels); cfg = (eps, keep), keep the running
// statistics' momentum (MindSpore's: the weight of the old value):
//   BnFwd(x, gamma [C], beta [C], running_mean [C], running_var [C], cfg [2]) -> (y, mean [C], var [C])
// mean and var are the batch's (biased); the kernel WRITES ITS INPUTS running_mean and
// running_var, moved by the batch (the variance's unbiased): in a compiled graph those inputs
// are the BN Parameters' own memory, and an update through outputs and Assign nodes cost the
// nano train step's compile 4 s of 16 (mindyolox/models/batchnorm.py says why it is sound).
//   BnBwd(dy, x, gamma, mean, var, cfg)          -> (dx, dgamma [C], dbeta [C])
// dbeta = sum dy, dgamma = sum dy * xhat, dx = gamma * invstd * (dy - dbeta / N - xhat * dgamma / N),
// xhat = (x - mean) * invstd, invstd = 1 / sqrt(var + eps).
// The same with SiLU after the normalisation (a train-mode BaseConv's BN + SiLU as one kernel
// each way; only x is kept for the backward, which recomputes z = BN(x) from it):
//   BnSiluFwd(x, gamma, beta, running_mean, running_var, cfg) -> (SiLU(z), mean, var), stats in place
//   BnSiluBwd(dy, x, gamma, beta, mean, var, cfg)              -> (dx, dgamma, dbeta)
// The forward is BnFwd's then SiluFwd's to the bit; the backward's z uses the float var (the
// forward's scale came from the double one: z within an ulp or two).
namespace {
template <bool Silu>
int bn_fwd(int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != 9 || ndims[0] != 4) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]);
  const float *beta = static_cast<const float *>(params[2]);
  float *running_mean = static_cast<float *>(params[3]);  // updated in place
  float *running_var = static_cast<float *>(params[4]);
  const float eps = static_cast<const float *>(params[5])[0];
  const float keep = static_cast<const float *>(params[5])[1];
  float *y = static_cast<float *>(params[6]);
  float *mean_out = static_cast<float *>(params[7]);
  float *var_out = static_cast<float *>(params[8]);
  const int64_t B = shapes[0][0], C = shapes[0][1], HW = shapes[0][2] * shapes[0][3];
  const double n = static_cast<double>(B * HW);
  parallel_for(C, B * C * HW * (Silu ? 8 : 3), [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      double sum = 0.0;
      for (int64_t b = 0; b < B; ++b) {
        const float *xp = x + (b * C + c) * HW;
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < HW; ++i) sum += xp[i];
      }
      const double mean = sum / n;
      double sq = 0.0;
      for (int64_t b = 0; b < B; ++b) {
        const float *xp = x + (b * C + c) * HW;
#pragma omp simd reduction(+ : sq)
        for (int64_t i = 0; i < HW; ++i) {
          const double d = xp[i] - mean;
          sq += d * d;
        }
      }
      const double var = sq / n;
      // (x - mean) first: x * scale + (beta - mean * scale) would cancel when |mean| >> std
      const float scale = static_cast<float>(gamma[c] / std::sqrt(var + eps));
      const float m = static_cast<float>(mean), shift = beta[c];
      for (int64_t b = 0; b < B; ++b) {
        const float *xp = x + (b * C + c) * HW;
        float *yp = y + (b * C + c) * HW;
#pragma omp simd
        for (int64_t i = 0; i < HW; ++i) {
          const float z = (xp[i] - m) * scale + shift;
          yp[i] = Silu ? z / (1.0f + expf(-z)) : z;
        }
      }
      mean_out[c] = static_cast<float>(mean);
      var_out[c] = static_cast<float>(var);
      const float unbiased = static_cast<float>(n > 1 ? var * n / (n - 1) : var);
      running_mean[c] = running_mean[c] * keep + static_cast<float>(mean) * (1.0f - keep);
      running_var[c] = running_var[c] * keep + unbiased * (1.0f - keep);
    }
  });
  return 0;
}

template <bool Silu>
int bn_bwd(int nparam, void **params, int *ndims, int64_t **shapes) {
  const int in = Silu ? 7 : 6;  // BnSiluBwd has beta among its inputs
  if (nparam != in + 3 || ndims[0] != 4) return 1;
  const float *dy = static_cast<const float *>(params[0]);
  const float *x = static_cast<const float *>(params[1]);
  const float *gamma = static_cast<const float *>(params[2]);
  const float *beta = Silu ? static_cast<const float *>(params[3]) : nullptr;
  const float *mean_in = static_cast<const float *>(params[in - 3]);
  const float *var_in = static_cast<const float *>(params[in - 2]);
  const float eps = static_cast<const float *>(params[in - 1])[0];
  float *dx = static_cast<float *>(params[in]);
  float *dgamma = static_cast<float *>(params[in + 1]);
  float *dbeta = static_cast<float *>(params[in + 2]);
  const int64_t B = shapes[0][0], C = shapes[0][1], HW = shapes[0][2] * shapes[0][3];
  const double n = static_cast<double>(B * HW);
  parallel_for(C, B * C * HW * (Silu ? 8 : 3), [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      const double mean = mean_in[c];
      const double var = var_in[c];
      const double invstd = 1.0 / std::sqrt(var + eps);
      const float m = static_cast<float>(mean);
      const float scale = Silu ? static_cast<float>(gamma[c] / std::sqrt(var + eps)) : 0.f;  // z = BN(x), Silu
      const float shift = Silu ? beta[c] : 0.f;
      double sdy = 0.0, sdyx = 0.0;
      for (int64_t b = 0; b < B; ++b) {
        const float *gp = dy + (b * C + c) * HW;
        const float *xp = x + (b * C + c) * HW;
        if (Silu) {  // the gradient at z = BN(x) (the forward's z), kept in dx for the second pass
          float *dp = dx + (b * C + c) * HW;
#pragma omp simd reduction(+ : sdy, sdyx)
          for (int64_t i = 0; i < HW; ++i) {
            const float z = (xp[i] - m) * scale + shift;
            const float s = 1.0f / (1.0f + expf(-z));
            const float g = gp[i] * s * (1.0f + z * (1.0f - s));
            dp[i] = g;
            sdy += g;
            sdyx += g * (xp[i] - mean);
          }
        } else {
#pragma omp simd reduction(+ : sdy, sdyx)
          for (int64_t i = 0; i < HW; ++i) {
            sdy += gp[i];
            sdyx += gp[i] * (xp[i] - mean);
          }
        }
      }
      const double dg = sdyx * invstd;  // sum dy * xhat
      const double g = gamma[c] * invstd;
      const float k_dy = static_cast<float>(g);
      const float k_x = static_cast<float>(-g * invstd * dg / n);
      const float k_0 = static_cast<float>(-g * sdy / n);
      for (int64_t b = 0; b < B; ++b) {
        const float *gp = Silu ? dx + (b * C + c) * HW : dy + (b * C + c) * HW;
        const float *xp = x + (b * C + c) * HW;
        float *dp = dx + (b * C + c) * HW;
#pragma omp simd
        for (int64_t i = 0; i < HW; ++i) dp[i] = k_dy * gp[i] + k_x * (xp[i] - m) + k_0;
      }
      dgamma[c] = static_cast<float>(dg);
      dbeta[c] = static_cast<float>(sdy);
    }
  });
  return 0;
}
}  // namespace

#define EXPORT_BN(NAME, F)                                                                            \
  extern "C" int NAME(int n, void **p, int *d, int64_t **s, const char **, void *, void *) { return F(n, p, d, s); }
EXPORT_BN(BnFwd, bn_fwd<false>)
EXPORT_BN(BnBwd, bn_bwd<false>)
EXPORT_BN(BnSiluFwd, bn_fwd<true>)
EXPORT_BN(BnSiluBwd, bn_bwd<true>)

// SimOTA label assignment (official YOLOX 0.3.0 rules, mindyolox/losses/simota.py's module doc)
// image by image over the REAL labels only -- the first nlabel rows, nlabel = the number of
// rows whose sum is > 0 -- and the candidate anchors only, as the official per-image code does;
// the dense graph computes [B, max_labels, A] matrices for every padding row too.
//   SimOTA(boxes [B,A,4] cxcywh px, obj [B,A] logits, cls [B,A,C] logits, labels [B,G,5]
//          (class, cx, cy, w, h) px, grids [A,2] cells, strides [A] px)
//     -> out [B,A,4]: (fg 0/1, matched gt row or -1, matched class, IoU of the prediction with
//        its gt), zeros / -1 for background. Forward only (the assignment is stop-gradient).
namespace {
inline float bce_log(float x) { return x > 0.f ? std::max(std::log(x), -100.f) : -100.f; }

inline float iou_cxcywh(const float *g, const float *p) {
  const float tl_x = std::max(g[0] - g[2] / 2, p[0] - p[2] / 2), tl_y = std::max(g[1] - g[3] / 2, p[1] - p[3] / 2);
  const float br_x = std::min(g[0] + g[2] / 2, p[0] + p[2] / 2), br_y = std::min(g[1] + g[3] / 2, p[1] + p[3] / 2);
  const float inter = (tl_x < br_x && tl_y < br_y) ? (br_x - tl_x) * (br_y - tl_y) : 0.f;
  return inter / (g[2] * g[3] + p[2] * p[3] - inter);
}

// false when a label's class is outside [0, C) (the call then fails: no silent clamp)
bool simota_image(const float *boxes, const float *obj, const float *cls, const float *labels, const float *grids,
                  const float *strides, int64_t A, int64_t C, int64_t G, float *out) {
  for (int64_t a = 0; a < A; ++a) {
    out[a * 4 + 0] = 0.f; out[a * 4 + 1] = -1.f; out[a * 4 + 2] = 0.f; out[a * 4 + 3] = 0.f;
  }
  int64_t n = 0;
  for (int64_t g = 0; g < G; ++g) {
    const float *r = labels + g * 5;
    if (r[0] + r[1] + r[2] + r[3] + r[4] > 0.f) ++n;
  }
  for (int64_t g = 0; g < n; ++g)
    if (!(labels[g * 5] >= 0.f && labels[g * 5] < static_cast<float>(C))) return false;
  if (n == 0) return true;
  // candidates: centre strictly inside some gt box OR within 2.5 strides of its centre
  std::vector<int64_t> cand;
  std::vector<uint8_t> both;  // [n, A] in box AND in centre region
  both.assign(n * A, 0);
  for (int64_t a = 0; a < A; ++a) {
    const float s = strides[a];
    const float cx = grids[a * 2] * s + 0.5f * s, cy = grids[a * 2 + 1] * s + 0.5f * s;
    const float radius = 2.5f * s;
    bool any = false;
    for (int64_t g = 0; g < n; ++g) {
      const float *r = labels + g * 5;
      const float hw = 0.5f * r[3], hh = 0.5f * r[4];
      const bool in_box = cx > r[1] - hw && cx < r[1] + hw && cy > r[2] - hh && cy < r[2] + hh;
      const bool in_ctr = cx > r[1] - radius && cx < r[1] + radius && cy > r[2] - radius && cy < r[2] + radius;
      both[g * A + a] = in_box && in_ctr;
      any = any || in_box || in_ctr;
    }
    if (any) cand.push_back(a);
  }
  const int64_t M = static_cast<int64_t>(cand.size());
  if (M == 0) return true;
  // class cost: sum_c BCE(p_c, c == c_g) = S - neg(p_g) + pos(p_g), p = sqrt(sigmoid(cls) sigmoid(obj))
  std::vector<float> S(M), sobj(M);
  for (int64_t m = 0; m < M; ++m) {
    const int64_t a = cand[m];
    const float so = 1.f / (1.f + std::exp(-obj[a]));
    sobj[m] = so;
    double sum = 0.0;
    const float *cr = cls + a * C;
    for (int64_t c = 0; c < C; ++c) sum += -bce_log(1.f - std::sqrt(1.f / (1.f + std::exp(-cr[c])) * so));
    S[m] = static_cast<float>(sum);
  }
  std::vector<float> cost(n * M), ious(n * M);
  std::vector<int> ks(n);
  for (int64_t g = 0; g < n; ++g) {
    const float *r = labels + g * 5;
    const int64_t cg = static_cast<int64_t>(r[0]);
    float top[10];
    int ntop = 0;
    const int kmax = static_cast<int>(std::min<int64_t>(10, M));
    for (int64_t m = 0; m < M; ++m) {
      const int64_t a = cand[m];
      const float iou = iou_cxcywh(r + 1, boxes + a * 4);
      const float p = std::sqrt(1.f / (1.f + std::exp(-cls[a * C + cg])) * sobj[m]);
      float c = S[m] + bce_log(1.f - p) - bce_log(p) + 3.f * -std::log(iou + 1e-8f);
      if (!both[g * A + a]) c += 100000.f;
      cost[g * M + m] = c;
      ious[g * M + m] = iou;
      // the kmax largest IoUs, in descending order
      int pos = ntop < kmax ? ntop++ : kmax;
      while (pos > 0 && top[pos - 1] < iou) {
        if (pos < kmax) top[pos] = top[pos - 1];
        --pos;
      }
      if (pos < kmax) top[pos] = iou;
    }
    float sum = 0.f;
    for (int i = 0; i < ntop; ++i) sum += top[i];
    ks[g] = std::max(1, static_cast<int>(std::floor(sum)));
  }
  // each gt takes its k lowest-cost candidates (first index on ties); count the claims
  std::vector<int> claims(M, 0), owner(M, -1);
  for (int64_t g = 0; g < n; ++g) {
    const int k = std::min<int64_t>(ks[g], M);
    int64_t idx[10];
    int nk = 0;
    const float *cg = cost.data() + g * M;
    for (int64_t m = 0; m < M; ++m) {
      int pos = nk < k ? nk++ : k;
      while (pos > 0 && cg[idx[pos - 1]] > cg[m]) {
        if (pos < k) idx[pos] = idx[pos - 1];
        --pos;
      }
      if (pos < k) idx[pos] = m;
    }
    for (int i = 0; i < nk; ++i) {
      ++claims[idx[i]];
      owner[idx[i]] = static_cast<int>(g);
    }
  }
  for (int64_t m = 0; m < M; ++m) {
    if (claims[m] == 0) continue;
    int64_t g = owner[m];
    if (claims[m] > 1) {  // the gt of lowest cost among all (first on ties)
      g = 0;
      for (int64_t h = 1; h < n; ++h)
        if (cost[h * M + m] < cost[g * M + m]) g = h;
    }
    float *o = out + cand[m] * 4;
    o[0] = 1.f;
    o[1] = static_cast<float>(g);
    o[2] = labels[g * 5];
    o[3] = ious[g * M + m];
  }
  return true;
}
}  // namespace

extern "C" int SimOTA(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 7 || ndims[0] != 3 || ndims[2] != 3 || ndims[3] != 3) return 1;
  const float *boxes = static_cast<const float *>(params[0]);
  const float *obj = static_cast<const float *>(params[1]);
  const float *cls = static_cast<const float *>(params[2]);
  const float *labels = static_cast<const float *>(params[3]);
  const float *grids = static_cast<const float *>(params[4]);
  const float *strides = static_cast<const float *>(params[5]);
  float *out = static_cast<float *>(params[6]);
  const int64_t B = shapes[0][0], A = shapes[0][1], C = shapes[2][2], G = shapes[3][1];
  std::vector<uint8_t> ok(B, 1);
  parallel_for(B, B * A * (C + 8 * G), [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b)
      ok[b] = simota_image(boxes + b * A * 4, obj + b * A, cls + b * A * C, labels + b * G * 5, grids, strides, A,
                           C, G, out + b * A * 4);
  });
  return std::all_of(ok.begin(), ok.end(), [](uint8_t v) { return v != 0; }) ? 0 : 3;
}

// EmaLerp(n, ema[n], src[n], sizes[n], alpha): ema_i -= alpha * (ema_i - src_i) for n float32
// tensors given by their addresses -- the model EMA's update (mindyolox/training/ema.py, which
// calls it through ctypes on the Parameters' storage). Not an AOT operator. The tensors are
// one sequence of elements split evenly over the pool.
extern "C" void EmaLerp(int64_t n, float *const *ema, const float *const *src, const int64_t *sizes, float alpha) {
  std::vector<int64_t> start(n + 1, 0);
  for (int64_t i = 0; i < n; ++i) start[i + 1] = start[i] + sizes[i];
  parallel_for(start[n], start[n], [&](int64_t first, int64_t last) {
    int64_t i = std::upper_bound(start.begin(), start.end(), first) - start.begin() - 1;
    for (; i < n && start[i] < last; ++i) {
      float *e = ema[i];
      const float *s = src[i];
      const int64_t lo = std::max(first, start[i]) - start[i], hi = std::min(last, start[i + 1]) - start[i];
#pragma omp simd
      for (int64_t j = lo; j < hi; ++j) e[j] -= alpha * (e[j] - s[j]);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Dense k x k convolutions through oneDNN's own convolution primitives (mindyolox/ops/dnnl_conv.py).
//
// MindSpore 2.10's CPU Conv2D hands oneDNN plain NCHW memory, for which oneDNN has only its
// reference k x k kernel; the Im2Col + GEMM path writes a k*k times larger column tensor.
// PyTorch asks oneDNN for the convolution with "any" memory formats (blocked, e.g. nChw16c
// with AVX-512) and reorders the plain tensors in and out. This does the same with the oneDNN
// that MindSpore already loaded (lib/libdnnl.so.3, oneDNN 3.10.1, threadpool CPU runtime:
// dnnl_version() reports cpu_runtime 8), through its C API, resolved with dlsym at first use --
// no header or link dependency. The values below are oneDNN 3.x's ABI (include/oneapi/dnnl/
// dnnl_types.h, dnnl_common_types.h of v3.10.1). Its threads are this library's pool (the
// threadpool interface of dnnl_threadpool_iface.hpp: a stream made with
// dnnl_threadpool_interop_stream_create runs every parallel region on it).
//   DnnlConvSiluS{S}_P{P}(x [B,C,H,W], w [O,C,k,k], bias [O]) -> SiLU(conv(x, w) + bias) [B,O,Ho,Wo]
//     (eval: forward_inference with the SiLU as a post-op)
//   DnnlConvS{S}_P{P}(x, w) -> y;  DnnlConvBwdDataS{S}_P{P}(dy, w, x (shape only)) -> dx;
//   DnnlConvBwdWeightsS{S}_P{P}(x, dy, w (shape only)) -> dw   (training, no bias)
// Each kind makes one plan per shape at its first call (the primitive in the formats it chose
// and the reorders from and to the caller's plain NCHW / OIHW tensors) and keeps it.
// DnnlAvailable() -> 1 when the library and every symbol were found (Python asks before use).
namespace dnnl {
namespace threadpool_interop {
struct threadpool_iface {  // the layout of oneDNN's abstract class (virtual functions in this order)
  virtual int get_num_threads() const = 0;
  virtual bool get_in_parallel() const = 0;
  virtual void parallel_for(int n, const std::function<void(int, int)> &fn) = 0;
  virtual uint64_t get_flags() const = 0;
  virtual ~threadpool_iface() = default;
};
}  // namespace threadpool_interop
}  // namespace dnnl

namespace {
using dnnl_dims = int64_t[12];
struct dnnl_exec_arg { int arg; void *memory; };
constexpr int kF32 = 3, kTagAny = 1, kTagA = 2, kTagAbcd = 5, kForwardTraining = 64, kForwardInference = 96,
              kConvDirect = 1, kEltwiseSwish = 44, kCpu = 1, kQuerySrcMd = 129, kQueryDiffSrcMd = 130,
              kQueryWeightsMd = 131, kQueryDiffWeightsMd = 132, kQueryDstMd = 133, kQueryDiffDstMd = 134,
              kArgSrc = 1, kArgDst = 17, kArgWeights = 33, kArgBias = 41, kArgDiffSrc = 129, kArgDiffDst = 145,
              kArgDiffWeights = 161;

struct DnnlApi {
  bool ok = false;
  int (*engine_create)(void **, int, size_t);
  int (*md_create_with_tag)(void **, int, const int64_t *, int, int);
  int (*conv_pd_create)(void **, void *, int, int, const void *, const void *, const void *, const void *,
                        const int64_t *, const int64_t *, const int64_t *, const int64_t *, const void *);
  int (*conv_bwd_data_pd_create)(void **, void *, int, const void *, const void *, const void *, const int64_t *,
                                 const int64_t *, const int64_t *, const int64_t *, const void *, const void *);
  int (*conv_bwd_weights_pd_create)(void **, void *, int, const void *, const void *, const void *, const void *,
                                    const int64_t *, const int64_t *, const int64_t *, const int64_t *, const void *,
                                    const void *);
  const void *(*pd_query_md)(const void *, int, int);
  size_t (*md_get_size)(const void *);
  int (*md_equal)(const void *, const void *);
  int (*reorder_pd_create)(void **, const void *, void *, const void *, void *, const void *);
  int (*primitive_create)(void **, const void *);
  int (*memory_create)(void **, const void *, void *, void *);
  int (*memory_set_data_handle)(void *, void *);
  int (*primitive_execute)(const void *, void *, int, const dnnl_exec_arg *);
  int (*stream_wait)(void *);
  int (*attr_create)(void **);
  int (*post_ops_create)(void **);
  int (*post_ops_append_eltwise)(void *, int, float, float);
  int (*attr_set_post_ops)(void *, const void *);
  int (*tp_stream_create)(void **, void *, void *);
  void *engine = nullptr, *stream = nullptr;
};

thread_local bool tls_in_region = false;

struct PoolIface : dnnl::threadpool_interop::threadpool_iface {
  int get_num_threads() const override { return thread_count(); }
  bool get_in_parallel() const override { return tls_in_region; }
  uint64_t get_flags() const override { return 0; }  // synchronous
  void parallel_for(int n, const std::function<void(int, int)> &fn) override {
    parallel_for_(n, fn);
  }
  static void parallel_for_(int n, const std::function<void(int, int)> &fn) {
    ::parallel_for(n, int64_t{n} * kMinWork, [&](int64_t first, int64_t last) {
      const bool was = tls_in_region;
      tls_in_region = true;
      for (int64_t i = first; i < last; ++i) fn(static_cast<int>(i), n);
      tls_in_region = was;
    });
  }
};

template <class T>
bool load(void *lib, const char *name, T &fn) {
  fn = reinterpret_cast<T>(dlsym(lib, name));
  return fn != nullptr;
}

DnnlApi &dnnl_api() {
  static DnnlApi api = [] {
    DnnlApi a;
    void *lib = dlopen("libdnnl.so.3", RTLD_NOW | RTLD_NOLOAD);  // MindSpore's, already in the process
    if (lib == nullptr) return a;
    bool ok = load(lib, "dnnl_engine_create", a.engine_create) &&
              load(lib, "dnnl_memory_desc_create_with_tag", a.md_create_with_tag) &&
              load(lib, "dnnl_convolution_forward_primitive_desc_create", a.conv_pd_create) &&
              load(lib, "dnnl_convolution_backward_data_primitive_desc_create", a.conv_bwd_data_pd_create) &&
              load(lib, "dnnl_convolution_backward_weights_primitive_desc_create", a.conv_bwd_weights_pd_create) &&
              load(lib, "dnnl_primitive_desc_query_md", a.pd_query_md) &&
              load(lib, "dnnl_memory_desc_get_size", a.md_get_size) && load(lib, "dnnl_memory_desc_equal", a.md_equal) &&
              load(lib, "dnnl_reorder_primitive_desc_create", a.reorder_pd_create) &&
              load(lib, "dnnl_primitive_create", a.primitive_create) && load(lib, "dnnl_memory_create", a.memory_create) &&
              load(lib, "dnnl_memory_set_data_handle", a.memory_set_data_handle) &&
              load(lib, "dnnl_primitive_execute", a.primitive_execute) && load(lib, "dnnl_stream_wait", a.stream_wait) &&
              load(lib, "dnnl_primitive_attr_create", a.attr_create) && load(lib, "dnnl_post_ops_create", a.post_ops_create) &&
              load(lib, "dnnl_post_ops_append_eltwise", a.post_ops_append_eltwise) &&
              load(lib, "dnnl_primitive_attr_set_post_ops", a.attr_set_post_ops) &&
              load(lib, "dnnl_threadpool_interop_stream_create", a.tp_stream_create);
    if (!ok || a.engine_create(&a.engine, kCpu, 0) != 0) return a;
    static PoolIface iface;
    if (a.tp_stream_create(&a.stream, a.engine, &iface) != 0) return a;
    a.ok = true;
    return a;
  }();
  return api;
}

// One primitive for one shape, with the reorders between the caller's plain NCHW / OIHW tensors
// and the formats the primitive chose ("any" asked; blocked on AVX-512/AVX2 CPUs).
struct Plan {
  struct Arg {
    int id;                     // DNNL_ARG_*
    int param;                  // index into the custom op's params (inputs first, then the output)
    bool out;                   // written by the primitive (reordered to the caller afterwards)
    void *user = nullptr, *mem = nullptr, *re = nullptr;  // plain memory, the primitive's, reorder
    size_t offset = 0;          // of the reordered copy in the workspace
  };
  void *prim = nullptr;
  std::vector<Arg> args;
  std::vector<dnnl_exec_arg> exec;  // (id, primitive's memory) of every arg: fixed, only data handles change
  size_t workspace = 0;         // bytes of reordered copies
};

// The reordered copies of every plan live in one buffer, grown to the largest plan's need: calls
// run one at a time (dnnl_guard), so a per-plan copy of each blocked activation would only hold
// memory (yolox-s 640 b2 train: the step's peak RSS +0.2 GB).
char *workspace(size_t bytes) {
  static char *buffer = nullptr;
  static size_t size = 0;
  if (bytes > size) {
    std::free(buffer);
    buffer = static_cast<char *>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
    size = buffer ? bytes : 0;
  }
  return buffer;
}

void *reorder(DnnlApi &a, const void *from, const void *to) {
  void *pd = nullptr, *prim = nullptr;
  if (a.reorder_pd_create(&pd, from, a.engine, to, a.engine, nullptr) != 0) return nullptr;
  if (a.primitive_create(&prim, pd) != 0) return nullptr;
  return prim;  // (the descriptors of a plan live as long as the process, like the plan)
}

// binds one argument of primitive descriptor ``pd``: its plain descriptor ``user``, the one the
// primitive chose (query ``query``, ``index``: the bias is weights #1), a reorder when they differ
bool bind(DnnlApi &a, Plan &plan, const void *pd, int id, int query, int param, bool out, const void *user,
          int index = 0) {
  Plan::Arg arg{id, param, out};
  const void *chosen = a.pd_query_md(pd, query, index);
  void *none = nullptr;
  if (chosen == nullptr || a.memory_create(&arg.user, user, a.engine, none)) return false;
  if (!a.md_equal(chosen, user) && !(arg.re = out ? reorder(a, chosen, user) : reorder(a, user, chosen))) return false;
  if (a.memory_create(&arg.mem, chosen, a.engine, none)) return false;
  if (arg.re) {
    arg.offset = plan.workspace;
    plan.workspace += (a.md_get_size(chosen) + 63) / 64 * 64;
  }
  plan.args.push_back(arg);
  plan.exec.push_back({id, arg.mem});
  return true;
}

bool run(DnnlApi &a, void *prim, std::initializer_list<dnnl_exec_arg> args) {
  return a.primitive_execute(prim, a.stream, static_cast<int>(args.size()), args.begin()) == 0 &&
         a.stream_wait(a.stream) == 0;
}

// runs ``plan`` on the custom op's pointers: inputs reordered in, the primitive, outputs out
int execute(DnnlApi &a, Plan &plan, void **params) {
  char *space = workspace(plan.workspace);
  if (plan.workspace && space == nullptr) return 6;
  for (auto &g : plan.args) {
    a.memory_set_data_handle(g.user, params[g.param]);
    a.memory_set_data_handle(g.mem, g.re ? space + g.offset : params[g.param]);
    if (g.re && !g.out && !run(a, g.re, {{kArgSrc, g.user}, {kArgDst, g.mem}})) return 4;
  }
  if (a.primitive_execute(plan.prim, a.stream, static_cast<int>(plan.exec.size()), plan.exec.data()) != 0 ||
      a.stream_wait(a.stream) != 0)
    return 5;
  for (auto &g : plan.args)
    if (g.re && g.out && !run(a, g.re, {{kArgSrc, g.mem}, {kArgDst, g.user}})) return 4;
  return 0;
}

// what a call computes: the eval forward with bias + SiLU, or the training forward and gradients
enum Kind { kEvalSilu, kTrainFwd, kBwdData, kBwdWeights };

// the primitive of ``kind`` for x [B,C,H,W], w [O,C,K,K], y [B,O,Ho,Wo]; param indices of the
// custom ops: EvalSilu (x, w, bias, y), TrainFwd (x, w, y), BwdData (dy, w, x, dx),
// BwdWeights (x, dy, w, dw)
Plan *make_plan(DnnlApi &a, Kind kind, int64_t B, int64_t C, int64_t H, int64_t W, int64_t O, int64_t K, int S,
                int P, int64_t Ho, int64_t Wo) {
  const int64_t xs[4] = {B, C, H, W}, ws[4] = {O, C, K, K}, ys[4] = {B, O, Ho, Wo}, bs[1] = {O};
  void *u_x, *u_w, *u_y, *u_b, *a_x, *a_w, *a_y;
  if (a.md_create_with_tag(&u_x, 4, xs, kF32, kTagAbcd) || a.md_create_with_tag(&u_w, 4, ws, kF32, kTagAbcd) ||
      a.md_create_with_tag(&u_y, 4, ys, kF32, kTagAbcd) || a.md_create_with_tag(&u_b, 1, bs, kF32, kTagA) ||
      a.md_create_with_tag(&a_x, 4, xs, kF32, kTagAny) || a.md_create_with_tag(&a_w, 4, ws, kF32, kTagAny) ||
      a.md_create_with_tag(&a_y, 4, ys, kF32, kTagAny))
    return nullptr;
  dnnl_dims strides = {S, S}, dil = {0, 0}, pad = {P, P};
  void *attr = nullptr, *post = nullptr, *fwd = nullptr, *pd = nullptr;
  if (kind == kEvalSilu && (a.attr_create(&attr) || a.post_ops_create(&post) ||
                            a.post_ops_append_eltwise(post, kEltwiseSwish, 1.f, 0.f) || a.attr_set_post_ops(attr, post)))
    return nullptr;
  const int prop = kind == kEvalSilu ? kForwardInference : kForwardTraining;
  if (a.conv_pd_create(&fwd, a.engine, prop, kConvDirect, a_x, a_w, kind == kEvalSilu ? u_b : nullptr, a_y, strides,
                       dil, pad, pad, attr))
    return nullptr;
  pd = fwd;
  if (kind == kBwdData && a.conv_bwd_data_pd_create(&pd, a.engine, kConvDirect, a_x, a_w, a_y, strides, dil, pad, pad,
                                                    fwd, nullptr))
    return nullptr;
  if (kind == kBwdWeights && a.conv_bwd_weights_pd_create(&pd, a.engine, kConvDirect, a_x, a_w, nullptr, a_y, strides,
                                                          dil, pad, pad, fwd, nullptr))
    return nullptr;
  auto *plan = new Plan;
  bool ok = a.primitive_create(&plan->prim, pd) == 0;
  switch (kind) {
    case kEvalSilu:
      ok = ok && bind(a, *plan, pd, kArgSrc, kQuerySrcMd, 0, false, u_x) &&
           bind(a, *plan, pd, kArgWeights, kQueryWeightsMd, 1, false, u_w) &&
           bind(a, *plan, pd, kArgBias, kQueryWeightsMd, 2, false, u_b, 1) && bind(a, *plan, pd, kArgDst, kQueryDstMd, 3, true, u_y);
      break;
    case kTrainFwd:
      ok = ok && bind(a, *plan, pd, kArgSrc, kQuerySrcMd, 0, false, u_x) &&
           bind(a, *plan, pd, kArgWeights, kQueryWeightsMd, 1, false, u_w) && bind(a, *plan, pd, kArgDst, kQueryDstMd, 2, true, u_y);
      break;
    case kBwdData:
      ok = ok && bind(a, *plan, pd, kArgDiffDst, kQueryDiffDstMd, 0, false, u_y) &&
           bind(a, *plan, pd, kArgWeights, kQueryWeightsMd, 1, false, u_w) &&
           bind(a, *plan, pd, kArgDiffSrc, kQueryDiffSrcMd, 3, true, u_x);
      break;
    case kBwdWeights:
      ok = ok && bind(a, *plan, pd, kArgSrc, kQuerySrcMd, 0, false, u_x) &&
           bind(a, *plan, pd, kArgDiffDst, kQueryDiffDstMd, 1, false, u_y) &&
           bind(a, *plan, pd, kArgDiffWeights, kQueryDiffWeightsMd, 3, true, u_w);
      break;
  }
  if (!ok) {  // (not cached: the call fails, and so would a retry)
    delete plan;
    return nullptr;
  }
  return plan;
}

// one oneDNN call at a time in the process: one stream, and the pool is shared
std::mutex &dnnl_guard() {
  static std::mutex guard;
  return guard;
}

// the custom op of ``kind``: shapes checked, the plan of these shapes made once, then run
template <Kind kind, int S, int P>
int dnnl_conv(int nparam, void **params, int *ndims, int64_t **shapes) {
  const int xi = kind == kBwdData ? 2 : 0, wi = kind == kBwdWeights ? 2 : 1;   // x and w among the params
  const int yi = kind == kEvalSilu ? 3 : kind == kTrainFwd ? 2 : kind == kBwdData ? 0 : 1;  // y / dy
  const int expect = kind == kTrainFwd ? 3 : 4;
  if (nparam != expect) return 1;
  for (int i = 0; i < nparam; ++i)
    if (ndims[i] != (kind == kEvalSilu && i == 2 ? 1 : 4)) return 1;
  DnnlApi &a = dnnl_api();
  if (!a.ok) return 2;
  const int64_t B = shapes[xi][0], C = shapes[xi][1], H = shapes[xi][2], W = shapes[xi][3];
  const int64_t O = shapes[wi][0], K = shapes[wi][2], Ho = shapes[yi][2], Wo = shapes[yi][3];
  if (shapes[wi][1] != C || shapes[yi][0] != B || shapes[yi][1] != O || (kind == kEvalSilu && shapes[2][0] != O))
    return 1;
  std::lock_guard<std::mutex> lk(dnnl_guard());
  static std::vector<std::pair<std::vector<int64_t>, Plan *>> plans;  // this kind's and geometry's
  const std::vector<int64_t> key = {B, C, H, W, O, K};
  Plan *plan = nullptr;
  for (auto &kv : plans)
    if (kv.first == key) plan = kv.second;
  if (plan == nullptr) {
    plan = make_plan(a, kind, B, C, H, W, O, K, S, P, Ho, Wo);
    if (plan == nullptr) return 3;
    plans.emplace_back(key, plan);
  }
  return execute(a, *plan, params);
}
}  // namespace

extern "C" int DnnlAvailable() { return dnnl_api().ok ? 1 : 0; }
#define EXPORT_DNNL(S, P)                                                                                 \
  extern "C" int DnnlConvSiluS##S##_P##P(int n, void **p, int *d, int64_t **s, const char **t, void *st,    \
                                         void *e) { return dnnl_conv<kEvalSilu, S, P>(n, p, d, s); }        \
  extern "C" int DnnlConvS##S##_P##P(int n, void **p, int *d, int64_t **s, const char **t, void *st,        \
                                     void *e) { return dnnl_conv<kTrainFwd, S, P>(n, p, d, s); }            \
  extern "C" int DnnlConvBwdDataS##S##_P##P(int n, void **p, int *d, int64_t **s, const char **t, void *st,  \
                                            void *e) { return dnnl_conv<kBwdData, S, P>(n, p, d, s); }      \
  extern "C" int DnnlConvBwdWeightsS##S##_P##P(int n, void **p, int *d, int64_t **s, const char **t,         \
                                               void *st, void *e) { return dnnl_conv<kBwdWeights, S, P>(n, p, d, s); }
EXPORT_DNNL(1, 1)
EXPORT_DNNL(2, 1)
EXPORT_DNNL(1, 0)
