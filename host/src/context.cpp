// Context: the resources of one host thread's calls (d2r/context.hpp), the host<->device copies
// and CUDA graph capture. In a build without CUDA (D2R_WITH_CUDA == 0) only the cpu backend
// exists: a cuda context throws "d2r was built without CUDA".
#include "d2r/context.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "d2r/error.hpp"

namespace d2r {

const char* to_string(Backend backend) noexcept {
  switch (backend) {
    case Backend::cpu: return "cpu";
    case Backend::cuda: return "cuda";
    case Backend::automatic: return "automatic";
  }
  return "unknown";
}

Backend parse_backend(const std::string& name) {
  if (name == "cpu") return Backend::cpu;
  if (name == "cuda") return Backend::cuda;
  if (name == "auto" || name == "automatic") return Backend::automatic;
  throw Error(ErrorKind::invalid_argument, "backend",
              fmt::format("d2r::parse_backend: argument 'backend': expected one of auto, cpu, cuda, got '{}'", name));
}

bool cuda_device_available() noexcept {
#if D2R_WITH_CUDA
  // Without a driver cudaGetDeviceCount returns an error and leaves the count unwritten.
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return count > 0;
#else
  return false;
#endif
}

struct Context::Impl {
  Backend backend = Backend::cpu;
  std::uint64_t seed = 0;
  ValueChecks value_checks = ValueChecks::full;
  int device = -1;
  cudaStream_t stream = nullptr;
  bool owns_stream = false;
  cublasHandle_t cublas = nullptr;
  void* cublas_workspace = nullptr;  // owned; given to the handle with cublasSetWorkspace
  DeviceProperties properties;
  struct Block {
    void* data = nullptr;
    std::size_t bytes = 0;
  };
  Block blocks[3];  // indexed by Workspace

  ~Impl() {
#if D2R_WITH_CUDA
    if (backend == Backend::cuda) {
      if (cublas != nullptr) cublasDestroy(cublas);
      if (cublas_workspace != nullptr) D2R_CUDA_TRY_NO_THROW(cudaFree(cublas_workspace));
      for (Block& block : blocks)
        if (block.data != nullptr) D2R_CUDA_TRY_NO_THROW(cudaFree(block.data));
      if (owns_stream) D2R_CUDA_TRY_NO_THROW(cudaStreamDestroy(stream));
      return;
    }
#endif
    for (Block& block : blocks) std::free(block.data);
  }
};

Context::Context(const ContextOptions& options) : impl_(std::make_unique<Impl>()) {
  impl_->seed = options.seed;
  impl_->value_checks = options.value_checks;
  Backend backend = options.backend;
  if (backend == Backend::automatic) backend = cuda_device_available() ? Backend::cuda : Backend::cpu;
  if (backend == Backend::cuda) {
#if D2R_WITH_CUDA
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess || count == 0) {
      (void)cudaGetLastError();
      throw Error(ErrorKind::unsupported, "backend",
                  fmt::format("d2r::Context: argument 'backend': cuda was requested but no CUDA device is usable ({})",
                              status != cudaSuccess ? cudaGetErrorString(status) : "0 devices"));
    }
    if (options.device < 0 || options.device >= count) {
      throw Error(ErrorKind::invalid_argument, "device",
                  fmt::format("d2r::Context: argument 'device': expected 0 <= device < {}, got {}", count,
                              options.device));
    }
    D2R_CUDA_TRY(cudaSetDevice(options.device));
    impl_->device = options.device;
    if (options.stream != nullptr) {
      impl_->stream = options.stream;
    } else {
      D2R_CUDA_TRY(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
      impl_->owns_stream = true;
    }
    impl_->backend = backend;  // so that ~Impl frees what follows if it throws
    cudaDeviceProp prop{};
    D2R_CUDA_TRY(cudaGetDeviceProperties(&prop, options.device));
    impl_->properties = {.name = prop.name,
                         .compute_capability_major = prop.major,
                         .compute_capability_minor = prop.minor,
                         .multiprocessors = prop.multiProcessorCount,
                         .shared_memory_per_block = prop.sharedMemPerBlock,
                         .shared_memory_per_block_optin = prop.sharedMemPerBlockOptin,
                         .l2_cache_bytes = static_cast<std::size_t>(prop.l2CacheSize),
                         .total_memory_bytes = prop.totalGlobalMem};
    // The handle is created here, once, and bound to the stream once: cublasSetStream resets the
    // handle's workspace to cuBLAS's own pool, so binding it before every call (or creating the
    // handle lazily, perhaps inside a stream capture) would let cuBLAS allocate inside a captured
    // graph. The workspace size is cuBLAS's recommendation (cublasSetWorkspace).
    const std::size_t cublas_bytes = std::size_t{prop.major >= 9 ? 32u : 4u} << 20;
    D2R_CUBLAS_TRY(cublasCreate(&impl_->cublas));
    D2R_CUBLAS_TRY(cublasSetStream(impl_->cublas, impl_->stream));
    D2R_CUDA_TRY(cudaMalloc(&impl_->cublas_workspace, cublas_bytes));
    D2R_CUBLAS_TRY(cublasSetWorkspace(impl_->cublas, impl_->cublas_workspace, cublas_bytes));
#else
    throw Error(ErrorKind::unsupported, "backend",
                "d2r::Context: argument 'backend': cuda was requested but d2r was built without CUDA "
                "(-DD2R_ENABLE_CUDA=OFF); use the cpu backend");
#endif
  }
  impl_->backend = backend;
}

Context::~Context() = default;
Context::Context(Context&&) noexcept = default;
Context& Context::operator=(Context&&) noexcept = default;

Backend Context::backend() const noexcept { return impl_->backend; }
std::uint64_t Context::seed() const noexcept { return impl_->seed; }
void Context::set_seed(std::uint64_t seed) noexcept { impl_->seed = seed; }
ValueChecks Context::value_checks() const noexcept { return impl_->value_checks; }
void Context::set_value_checks(ValueChecks checks) noexcept { impl_->value_checks = checks; }
int Context::device() const noexcept { return impl_->device; }
cudaStream_t Context::stream() const noexcept { return impl_->stream; }
const DeviceProperties& Context::device_properties() const noexcept { return impl_->properties; }
std::size_t Context::workspace_capacity(Workspace which) const noexcept {
  return impl_->blocks[static_cast<int>(which)].bytes;
}

std::string Context::device_name() const { return impl_->properties.name; }

cublasHandle_t Context::cublas() {
  if (impl_->backend != Backend::cuda) {
    throw Error(ErrorKind::unsupported, "", "d2r::Context::cublas: the cpu backend has no cuBLAS handle");
  }
  return impl_->cublas;
}

void* Context::workspace(std::size_t bytes, Workspace which) {
  Impl::Block& block = impl_->blocks[static_cast<int>(which)];
  if (bytes <= block.bytes) return block.data;
  const std::size_t grown = std::max<std::size_t>({bytes, 2 * block.bytes, 4096});
  const std::size_t rounded = (grown + 255) / 256 * 256;
  if (impl_->backend == Backend::cuda) {
    // The old block may still be read by queued kernels: wait for them before freeing it.
    D2R_CUDA_TRY(cudaStreamSynchronize(impl_->stream));
    if (block.data != nullptr) D2R_CUDA_TRY(cudaFree(block.data));
    block = {};
    D2R_CUDA_TRY(cudaMalloc(&block.data, rounded));
  } else {
    std::free(block.data);
    block = {};
    block.data = std::aligned_alloc(256, rounded);
    if (block.data == nullptr) throw std::bad_alloc();
  }
  block.bytes = rounded;
  return block.data;
}

void Context::synchronize() const {
  if (impl_->backend == Backend::cuda) D2R_CUDA_TRY(cudaStreamSynchronize(impl_->stream));
}

void Context::to_host(void* dst, const void* src, std::size_t bytes) const {
  if (bytes == 0) return;
  if (impl_->backend == Backend::cuda) {
    D2R_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, impl_->stream));
    D2R_CUDA_TRY(cudaStreamSynchronize(impl_->stream));
  } else {
    std::memcpy(dst, src, bytes);
  }
}

void Context::from_host(void* dst, const void* src, std::size_t bytes) const {
  if (bytes == 0) return;
  if (impl_->backend == Backend::cuda) {
    D2R_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, impl_->stream));
    D2R_CUDA_TRY(cudaStreamSynchronize(impl_->stream));
  } else {
    std::memcpy(dst, src, bytes);
  }
}

void Context::to_host_rows(void* dst, std::size_t row_bytes, const void* src, std::size_t src_pitch,
                           std::size_t rows) const {
  if (rows == 1) src_pitch = row_bytes;  // a one-row view's stride is free (cudaMemcpy2D wants pitch >= width)
  if (impl_->backend == Backend::cuda) {
    D2R_CUDA_TRY(
        cudaMemcpy2DAsync(dst, row_bytes, src, src_pitch, row_bytes, rows, cudaMemcpyDeviceToHost, impl_->stream));
    D2R_CUDA_TRY(cudaStreamSynchronize(impl_->stream));
  } else {
    for (std::size_t r = 0; r < rows; ++r) {
      std::memcpy(static_cast<char*>(dst) + r * row_bytes, static_cast<const char*>(src) + r * src_pitch, row_bytes);
    }
  }
}

// ---------------------------------------------------------------- graphs
namespace {
std::array<void*, 3> current_workspaces(const Context& ctx) {
  // workspace(0, ·) never allocates: it returns the current block.
  auto& c = const_cast<Context&>(ctx);
  return {c.workspace(0, Workspace::primitive), c.workspace(0, Workspace::composite),
          c.workspace(0, Workspace::solver)};
}
}  // namespace

CapturedGraph Context::capture(const std::function<void()>& record) {
  if (impl_->backend != Backend::cuda) {
    throw Error(ErrorKind::unsupported, "", "d2r::Context::capture: CUDA graphs need the cuda backend");
  }
  CapturedGraph out;
#if D2R_WITH_CUDA
  cudaStream_t stream = impl_->stream;
  D2R_CUDA_TRY(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t graph = nullptr;
  try {
    record();
  } catch (...) {  // end the capture, so the stream stays usable, then report
    (void)cudaStreamEndCapture(stream, &graph);
    if (graph != nullptr) (void)cudaGraphDestroy(graph);
    (void)cudaGetLastError();
    throw;
  }
  D2R_CUDA_TRY(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
  D2R_CUDA_TRY_NO_THROW(cudaGraphDestroy(graph));
  D2R_CUDA_TRY(status);
  out.ctx_ = this;
  out.exec_ = exec;
  out.workspaces_ = current_workspaces(*this);
  out.seed_ = impl_->seed;
#else
  (void)record;
#endif
  return out;
}

CapturedGraph::~CapturedGraph() {
#if D2R_WITH_CUDA
  if (exec_ != nullptr) D2R_CUDA_TRY_NO_THROW(cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_)));
#endif
}
CapturedGraph::CapturedGraph(CapturedGraph&& other) noexcept
    : ctx_(std::exchange(other.ctx_, nullptr)),
      exec_(std::exchange(other.exec_, nullptr)),
      workspaces_(other.workspaces_),
      seed_(other.seed_) {}
CapturedGraph& CapturedGraph::operator=(CapturedGraph&& other) noexcept {
  if (this != &other) {
    CapturedGraph old(std::move(*this));
    ctx_ = std::exchange(other.ctx_, nullptr);
    exec_ = std::exchange(other.exec_, nullptr);
    workspaces_ = other.workspaces_;
    seed_ = other.seed_;
  }
  return *this;
}

bool CapturedGraph::stale() const noexcept {
  return exec_ == nullptr || current_workspaces(*ctx_) != workspaces_ || ctx_->seed() != seed_;
}

void CapturedGraph::launch() const {
  if (exec_ == nullptr) throw Error(ErrorKind::unsupported, "", "d2r::CapturedGraph::launch: the graph is empty");
#if D2R_WITH_CUDA
  D2R_CUDA_TRY(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), ctx_->stream()));
#endif
}

}  // namespace d2r
